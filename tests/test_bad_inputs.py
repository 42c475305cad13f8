"""Crafted bad inputs, as a hostile or careless user would bring them, fed to `partseg check`,
the stages, `partseg segment`, `partseg annotate` and the annotation server.

Each one must stop with one line that names the file, key or request and says what to do:
exit status 2, no traceback, and every output that existed before left as it was. The table
is what README.md's "What partseg refuses" summarises. Hypothesis then generates what a table
cannot list: file names, numbers, image shapes.
"""

from __future__ import annotations

import functools
import http.client
import json
import os
import struct
import subprocess
import sys
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from conftest import required_stage_arguments
from partseg.data.folder import stem_problem
from partseg.data.packed import load_packed_split, pack_folder_dataset, read_stems, write_stems
from partseg.plumbing.errors import PartsegError
from partseg.plumbing.io import MAX_IMAGE_PIXELS, save_yaml
from partseg.plumbing.params import parse_params

ROOT = Path(__file__).resolve().parent.parent
CLASSES = ["background", "part"]
ENV = {**os.environ, "PARTSEG_DEVICE": "cpu", "DVC_NO_ANALYTICS": "1"}


# ---------------------------------------------------------------------------------------------
# Crafted files


@functools.lru_cache
def png_declaring(width: int, height: int) -> bytes:
    """A valid grayscale PNG of width x height zeros: a few hundred KB that decode to
    width*height bytes (a decompression bomb when large). Compressed row by row."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    compressor, row, parts = zlib.compressobj(9), bytes(width + 1), []
    for _ in range(height):
        parts.append(compressor.compress(row))
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(parts))
            + chunk(b"IEND", b""))


class RunsCode:
    """Pickles as a call to os.system: what a tampered .pt file would carry."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def write_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format="PNG")
    return path


def folder_dataset(root: Path, labeled: int = 2) -> Path:
    """A valid folder dataset: classes.yaml, labeled/ and test/ with 8x8 images and masks."""
    save_yaml(CLASSES, root / "classes.yaml")
    rng = np.random.default_rng(0)
    for split, count in (("labeled", labeled), ("test", 2)):
        for i in range(count):
            write_png(root / split / "images" / f"img{i}.png",
                      rng.integers(0, 255, (8, 8, 3), dtype=np.uint8))
            write_png(root / split / "masks" / f"img{i}.png", (np.arange(64) % 2).reshape(8, 8)
                      .astype(np.uint8))
    return root


def params_file(path: Path, sections: dict, folder: Path | None = None) -> Path:
    """params.yaml with `sections`; with `folder`, a folder dataset (annotated by a person)."""
    raw = dict(sections)
    if folder is not None:
        raw.setdefault("data", {}).update(source="folder", path=str(folder))
        raw.setdefault("annotate", {}).update(source="manual")
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


# ---------------------------------------------------------------------------------------------
# Running an entry point and judging its answer


def run(module: str, *args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=300)


def assert_refused(result: subprocess.CompletedProcess, message: str) -> str:
    """Exit 2, no traceback, and stderr ends with the one `error:` message, which holds
    `message` (a stage logs '[stage] started' before it; several problems of one folder
    dataset are listed under the error line, one a line)."""
    assert "Traceback" not in result.stderr and "Warning" not in result.stderr, result.stderr
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert result.stderr.count("error: ") == 1, result.stderr
    error = result.stderr[result.stderr.index("error: "):].strip()
    assert message in error, result.stderr
    return error


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its bytes (to prove that outputs were left alone)."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@dataclass
class Case:
    """One bad input: `make(tmp)` builds it and returns the argv (module, args...) to run."""
    name: str
    make: Callable[[Path], list]
    message: str


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """A tiny (untrained) segmenter file; what is refused here never depends on its skill."""
    from partseg.autoshot.segmenter import save_segmenter
    from partseg.autoshot.unet import UNet

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "model.pt"
    save_segmenter(path, UNet(2, base_channels=4, depth=2), {"class_names": CLASSES,
                                                             "resolution": 16})
    return path


# ---------------------------------------------------------------------------------------------
# `partseg check` and params.yaml (read the same way by every stage)


def check_params(sections: dict) -> Callable[[Path], list]:
    return lambda tmp: ["partseg.cli", "check", "--params", params_file(tmp / "p.yaml", sections)]


def check_text(text: str) -> Callable[[Path], list]:
    def make(tmp: Path) -> list:
        (tmp / "p.yaml").write_text(text)
        return ["partseg.cli", "check", "--params", tmp / "p.yaml"]
    return make


def check_folder(mutate: Callable[[Path], None], sections: dict | None = None):
    def make(tmp: Path) -> list:
        root = folder_dataset(tmp / "user")
        mutate(root)
        path = params_file(tmp / "p.yaml", sections or {}, folder=root)
        return ["partseg.cli", "check", "--params", path]
    return make


def jpeg_as_mask(root: Path) -> None:
    mask = root / "labeled" / "masks" / "img0.png"
    Image.open(mask).convert("L").save(mask, format="JPEG")


def bomb_image(width: int, height: int) -> Callable[[Path], None]:
    def mutate(root: Path) -> None:
        (root / "labeled" / "images" / "img0.png").write_bytes(png_declaring(width, height))
    return mutate


def renamed(new_stem: str) -> Callable[[Path], None]:
    def mutate(root: Path) -> None:
        for kind in ("images", "masks"):
            old = root / "labeled" / kind / "img0.png"
            old.rename(old.with_name(f"{new_stem}.png"))
    return mutate


CHECK_CASES = [
    Case("nan learning rate", check_text("train_fewshot: {lr: .nan}\n"),
         "params key train_fewshot.lr: expected a finite number, got nan"),
    Case("inf learning rate", check_text("train_gan: {lr: .inf}\n"),
         "params key train_gan.lr: expected a finite number, got inf"),
    Case("negative infinity", check_text("train_autoshot: {weight_decay: -.inf}\n"),
         "params key train_autoshot.weight_decay: expected a finite number"),
    Case("zero label count", check_params({"baselines": {"label_counts": [0]}}),
         "params key baselines.label_counts: 0 is below the minimum 1"),
    Case("label count beyond the labelled images", check_params({"baselines": {"label_counts": [100000]}}),
         "params key baselines.label_counts: 100000 labelled images, but the labeled split has "
         "dataset.n_labeled = 500"),
    Case("negative shard id", check_params({"synthesize": {"shards": [-1, 1]}}),
         "params key synthesize.shards: -1 is below the minimum 0"),
    Case("no shards", check_params({"synthesize": {"shards": []}}),
         "params key synthesize.shards: needs at least 1 item(s), got an empty list"),
    Case("annotator scale range reversed",
         check_params({"train_annotator": {"augment": {"scale_min": 2.0, "scale_max": 1.0}}}),
         "params key train_annotator.augment.scale_min: 2.0 is larger than scale_max (1.0)"),
    Case("auto-shot scale range reversed",
         check_params({"train_autoshot": {"augment": {"scale_min": 1.5, "scale_max": 0.5}}}),
         "params key train_autoshot.augment.scale_min: 1.5 is larger than scale_max (0.5)"),
    Case("unknown split", check_params({"evaluate": {"splits": ["tset"]}}),
         "params key evaluate.splits: 'tset' is not a split of the synthetic dataset"),
    Case("unknown split to invert", check_params({"invert_test": {"splits": ["test", "vaild"]}}),
         "params key invert_test.splits: 'vaild' is not a split of the synthetic dataset"),
    Case("no split evaluated", check_params({"evaluate": {"splits": []}}),
         "params key evaluate.splits: needs at least 1 item(s)"),
    Case("duplicate key", check_text("train_fewshot:\n  lr: 0.01\n  steps: 5\n  lr: 0.1\n"),
         "p.yaml: line 4: key 'lr' is written twice (first on line 2); keep one"),
    Case("duplicate section", check_text("sample: {n: 4}\ndataset: {seed: 1}\nsample: {n: 8}\n"),
         "p.yaml: line 3: key 'sample' is written twice (first on line 1); keep one"),
    Case("params is a folder", lambda tmp: ["partseg.cli", "check", "--params", tmp],
         ": is a folder; name a YAML file"),
    Case("params missing", lambda tmp: ["partseg.cli", "check", "--params", tmp / "nope.yaml"],
         "nope.yaml: params file not found"),
    Case("params not a mapping", check_text("- 1\n- 2\n"),
         "p.yaml: expected a mapping of stage sections at the top level"),
    Case("missing checkpoint", check_params({"train_gan": {"checkpoint": "nowhere/g.pt"}}),
         "params key train_gan.checkpoint: nowhere/g.pt is not a file"),
    Case("missing VAE checkpoint", check_params({"train_vae": {"checkpoint": "gone/vae.pt"}}),
         "params key train_vae.checkpoint: gone/vae.pt is not a file"),
    Case("JPEG saved as a .png mask", check_folder(jpeg_as_mask),
         "img0.png: the file holds a JPEG image, not PNG; save it as PNG"),
    Case("14000x14000 PNG bomb", check_folder(bomb_image(14000, 14000)),
         f"img0.png: image has more than {MAX_IMAGE_PIXELS // 1_000_000} megapixels"),
    Case("7000x7000 PNG (over the limit, under Pillow's)", check_folder(bomb_image(7000, 7000)),
         "img0.png: image is 7000x7000 (49 megapixels); partseg reads at most 40 megapixels"),
    Case("12000x12000 PNG (over Pillow's warning size)", check_folder(bomb_image(12000, 12000)),
         "img0.png: image is 12000x12000 (144 megapixels); partseg reads at most 40 megapixels"),
    Case("newline in a file name", check_folder(renamed("two\nlines")),
         "contains the control character '\\n'; rename the file"),
    Case("tab in a file name", check_folder(renamed("a\tb")),
         "contains the control character '\\t'; rename the file"),
    Case("classes.yaml with a key twice", check_folder(lambda root: (root / "classes.yaml")
                                                       .write_text("classes: [a, b]\nclasses: [c]\n")),
         "classes.yaml: line 2: key 'classes' is written twice (first on line 1); keep one"),
    Case("split of the folder missing", check_folder(lambda root: None,
                                                     {"evaluate": {"splits": ["val"]}}),
         "params key evaluate.splits: 'val' is not a split of"),
]


@pytest.mark.parametrize("case", CHECK_CASES, ids=lambda case: case.name)
def test_check_refuses(case, tmp_path):
    result = run(*case.make(tmp_path))
    assert_refused(result, case.message)


def test_check_accepts_a_space_in_a_file_name(tmp_path):
    root = folder_dataset(tmp_path / "user")
    renamed("with space")(root)
    result = run("partseg.cli", "check", "--params", params_file(tmp_path / "p.yaml", {}, root))
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------------------------------------
# The stages: params and files refused before any output is touched


def stage(name: str, build: Callable[[Path], tuple[dict, Path | None, list]]):
    """A stage run on a params file of `build(tmp)` -> (sections, folder dataset, extra args);
    its --out is tmp/out, which holds an earlier result that must survive."""
    def make(tmp: Path) -> list:
        sections, folder, extra = build(tmp)
        path = params_file(tmp / "p.yaml", sections, folder)
        # The paths a case does not name: absent, as in a fresh clone before any stage ran.
        given = {str(word) for word in extra}
        absent = [word for arg in sorted(required_stage_arguments(name) - {"out", "shard"})
                  if f"--{arg}" not in given for word in (f"--{arg}", tmp / "absent" / arg)]
        return [f"stages.{name}", "--params", path, *extra, *absent, "--out", tmp / "out"]
    return make


def tampered(path: Path) -> Path:
    """A .pt file that would run `touch <path>.ran` if unpickled without weights_only."""
    torch.save({"stems": ["a"], "wplus": RunsCode(path.with_suffix(".ran"))}, path)
    return path


def annotate_bad_latents(tmp: Path):
    (tmp / "samples").mkdir()
    tampered(tmp / "samples" / "latents.pt")
    save_yaml(CLASSES, tmp / "dataset" / "classes.yaml")
    return {}, None, ["--dataset", tmp / "dataset", "--samples", tmp / "samples"]


def annotate_truncated_latents(tmp: Path):
    (tmp / "samples").mkdir()
    (tmp / "samples" / "latents.pt").write_bytes(b"PK\x03\x04 truncated")
    save_yaml(CLASSES, tmp / "dataset" / "classes.yaml")
    return {}, None, ["--dataset", tmp / "dataset", "--samples", tmp / "samples"]


def train_vae_bad_checkpoint(tmp: Path):
    return ({"train_vae": {"checkpoint": str(tampered(tmp / "vae.pt"))}}, None,
            ["--generator", ROOT / "data/pretrained/demo_gan", "--dataset", tmp])


def dataset_with(mutate: Callable[[Path], None]):
    def build(tmp: Path):
        root = folder_dataset(tmp / "user")
        mutate(root)
        return {}, root, []
    return build


def baselines_too_many_labels(tmp: Path):
    root = folder_dataset(tmp / "user")
    return ({"baselines": {"label_counts": [1, 5]}}, root,
            ["--dataset", root, "--snapshots", tmp / "snapshots"])


def evaluate_missing_split(tmp: Path):
    root = folder_dataset(tmp / "user")
    return {"evaluate": {"splits": ["val"]}}, root, ["--dataset", root]


STAGE_CASES = [
    Case("dataset: 14000x14000 PNG bomb", stage("dataset", dataset_with(bomb_image(14000, 14000))),
         "img0.png: image has more than 40 megapixels"),
    Case("dataset: JPEG saved as a .png mask", stage("dataset", dataset_with(jpeg_as_mask)),
         "img0.png: the file holds a JPEG image, not PNG"),
    Case("dataset: newline in a file name", stage("dataset", dataset_with(renamed("a\nb"))),
         "contains the control character '\\n'; rename the file"),
    Case("annotate: tampered latents.pt", stage("annotate", annotate_bad_latents),
         "latents.pt: refused to load: not plain tensor data"),
    Case("annotate: truncated latents.pt", stage("annotate", annotate_truncated_latents),
         "latents.pt: not a readable PyTorch file"),
    Case("train_vae: tampered checkpoint", stage("train_vae", train_vae_bad_checkpoint),
         "vae.pt: refused to load: not plain tensor data"),
    Case("baselines: more labels than images", stage("baselines", baselines_too_many_labels),
         "params key baselines.label_counts: 5 labelled images, but"),
    Case("evaluate: no split to evaluate", stage("evaluate", evaluate_missing_split),
         "params key evaluate.splits: none of val is a split with masks in"),
    Case("synthesize: negative shard", stage("synthesize", lambda tmp: (
        {"synthesize": {"shards": [-1, 1]}}, None, ["--shard", "-1"])),
         "params key synthesize.shards: -1 is below the minimum 0"),
    Case("train_annotator: scale range reversed", stage("train_annotator", lambda tmp: (
        {"train_annotator": {"augment": {"scale_min": 3.0, "scale_max": 2.0}}}, None, [])),
         "params key train_annotator.augment.scale_min: 3.0 is larger than scale_max"),
]


@pytest.mark.parametrize("case", STAGE_CASES, ids=lambda case: case.name)
def test_stage_refuses_and_keeps_the_previous_output(case, tmp_path):
    argv = case.make(tmp_path)
    write_png(tmp_path / "out" / "earlier.png", np.zeros((2, 2), np.uint8))
    before = snapshot(tmp_path / "out")
    assert_refused(run(*argv), case.message)
    assert snapshot(tmp_path / "out") == before
    assert not list(tmp_path.rglob("*.ran")), "a tampered file ran code"
    assert not list(tmp_path.glob("out*.tmp")), "a scratch folder was left behind"


def test_a_file_name_with_spaces_round_trips_through_the_dataset_stage(tmp_path):
    root = folder_dataset(tmp_path / "user")
    renamed("my photo  1")(root)
    path = params_file(tmp_path / "p.yaml", {"data": {"resolution": 32}}, root)
    result = run("stages.dataset", "--params", path, "--out", tmp_path / "dataset")
    assert result.returncode == 0, result.stderr
    assert load_packed_split(tmp_path / "dataset", "labeled")[2] == ["img1", "my photo  1"]


# ---------------------------------------------------------------------------------------------
# partseg segment and partseg annotate


def segment(inputs: Callable[[Path], list], out: Callable[[Path], Path] = lambda tmp: tmp / "out",
            model: str | None = None):
    def make(tmp: Path) -> list:
        return ["partseg.cli", "segment", *inputs(tmp), "-m", model or tmp / "model.pt",
                "-o", out(tmp), "--device", "cpu"]
    return make


def wrong_shape_model(tmp: Path) -> Path:
    checkpoint = torch.load(tmp / "model.pt", weights_only=True)
    checkpoint["config"]["base_channels"] = 8  # the weights are for 4
    torch.save(checkpoint, tmp / "wrong.pt")
    return tmp / "wrong.pt"


def image_file(tmp: Path, name: str = "a.png") -> Path:
    return write_png(tmp / name, np.full((16, 16, 3), 100, np.uint8))


def existing_file(tmp: Path) -> Path:
    (tmp / "out.txt").write_text("keep me")
    return tmp / "out.txt"


def huge_frames_video(tmp: Path) -> Path:
    """A 70 KB video whose one frame is 7000x7000 (PNG-coded, in AVI)."""
    import av

    with av.open(str(tmp / "huge.avi"), "w") as container:
        stream = container.add_stream("png", rate=1)
        stream.width, stream.height, stream.pix_fmt = 7000, 7000, "gray"
        frame = av.VideoFrame.from_ndarray(np.zeros((7000, 7000), np.uint8), format="gray")
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    return tmp / "huge.avi"


def bomb_file(tmp: Path) -> Path:
    (tmp / "bomb.png").write_bytes(png_declaring(14000, 14000))
    return tmp / "bomb.png"


SEGMENT_CASES = [
    Case("model of the wrong shape", lambda tmp: segment(
        lambda t: [image_file(t)], model=wrong_shape_model(tmp))(tmp),
         "wrong.pt: its weights do not fit its architecture (Error(s) in loading state_dict"),
    Case("tampered model", lambda tmp: segment(
        lambda t: [image_file(t)], model=tampered(tmp / "evil.pt"))(tmp),
         "evil.pt: not a readable model file"),
    Case("--out names a file (no model even loaded)", segment(
        lambda t: [image_file(t)], out=existing_file, model="no/such/model.pt"),
         "out.txt: exists and is not a folder; name a folder for --out"),
    Case("unreadable video", segment(lambda t: [t / "clip.mp4"]),
         "nothing segmented: 1 file(s) could not be read:"),
    Case("video of 7000x7000 frames", segment(lambda t: [huge_frames_video(t)]),
         "huge.avi (frame size): image is 7000x7000 (49 megapixels)"),
    Case("14000x14000 PNG bomb", segment(lambda t: [bomb_file(t)]),
         "bomb.png: image has more than 40 megapixels"),
    Case("annotate --port 70000", lambda tmp: ["partseg.cli", "annotate", "--dir",
                                               annotation_folder(tmp), "--port", "70000",
                                               "--no-browser"],
         "--port 70000: a port is 0..65535 (0 = a free one)"),
]


@pytest.mark.parametrize("case", SEGMENT_CASES, ids=lambda case: case.name)
def test_segment_and_annotate_refuse(case, tmp_path, model):
    (tmp_path / "model.pt").write_bytes(model.read_bytes())
    (tmp_path / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 but nothing else")
    argv = case.make(tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    assert_refused(run(*argv), case.message)
    assert {p: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before
    assert not (tmp_path / "out").exists(), "an empty or partial output folder was left"
    assert not list(tmp_path.rglob("*.ran")), "a tampered file ran code"


def test_segment_memory_is_bounded_on_a_1x30000_strip(tmp_path, model):
    """The shorter side scaled to the model's resolution made a 1x30000 strip 16x480000
    pixels; the working size is capped (autoshot.segmenter.MAX_WORKING_PIXELS), whatever the aspect."""
    write_png(tmp_path / "strip.png", np.full((1, 30000, 3), 90, np.uint8))
    code = ("import resource, sys\nfrom partseg import cli\ntry:\n    cli.main(sys.argv[1:])\n"
            "finally:\n    print('maxrss', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    result = subprocess.run([sys.executable, "-c", code, "segment", str(tmp_path / "strip.png"),
                             "-m", str(model), "-o", str(tmp_path / "out"), "--device", "cpu"],
                            cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    peak_mb = int(result.stdout.split("maxrss")[-1]) / 1024
    assert peak_mb < 1500, f"segment of a 1x30000 PNG peaked at {peak_mb:.0f} MB"
    assert Image.open(tmp_path / "out" / "labels" / "strip.png").size == (30000, 1)


# ---------------------------------------------------------------------------------------------
# The annotation server: refused requests get a 4xx answer, and the server lives on


def annotation_folder(tmp: Path) -> Path:
    root = tmp / "annotations"
    save_yaml(CLASSES, root / "classes.yaml")
    write_png(root / "images" / "s0.png", np.full((6, 8, 3), 50, np.uint8))
    return root


@pytest.fixture
def server(tmp_path):
    from partseg.paint.server import serve

    root = annotation_folder(tmp_path)
    (root / "images" / "bomb.png").write_bytes(png_declaring(7000, 7000))
    server, _ = serve(root, log=lambda message: None)
    yield server
    server.shutdown()
    server.server_close()


def request(server, method: str, path: str, body: bytes = b"",
            content_type: str = "application/octet-stream") -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=30)
    connection.request(method, path, body=body, headers={"Content-Type": content_type})
    answer = connection.getresponse()
    status, data = answer.status, json.loads(answer.read() or b"{}")
    connection.close()
    return status, data


def jpeg_bytes() -> bytes:
    import io

    buffer = io.BytesIO()
    Image.fromarray(np.zeros((6, 8), np.uint8)).save(buffer, format="JPEG")
    return buffer.getvalue()


SERVER_CASES = [
    ("PNG bomb as a mask", "PUT", "/api/images/s0/mask", lambda: png_declaring(14000, 14000),
     "image/png", 413, "mask PNG declares more pixels than any image partseg reads"),
    ("12000x12000 mask for an 8x6 image", "PUT", "/api/images/s0/mask",
     lambda: png_declaring(12000, 12000), "image/png", 422,
     "mask is 12000x12000 but image s0 is 8x6"),
    ("JPEG sent as image/png", "PUT", "/api/images/s0/mask", jpeg_bytes, "image/png", 400,
     "mask body is a JPEG image, not a PNG"),
    ("JSON nested 100000 deep", "PUT", "/api/images/s0/mask",
     lambda: b'{"mask": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "application/json", 400,
     "JSON mask is nested too deeply"),
    ("image over the size limit", "GET", "/api/images/bomb/image", lambda: b"", "text/plain",
     422, "bomb.png: image is 7000x7000 (49 megapixels)"),
]


@pytest.mark.parametrize("name, method, path, body, kind, status, message", SERVER_CASES,
                         ids=[case[0] for case in SERVER_CASES])
def test_server_answers_bad_requests(server, name, method, path, body, kind, status, message):
    answer, data = request(server, method, path, body(), kind)
    assert (answer, message in data.get("error", "")) == (status, True), data
    assert not (server.folder.masks_dir / "s0.png").exists()
    assert request(server, "GET", "/api/classes")[0] == 200  # still serving


# ---------------------------------------------------------------------------------------------
# Generated inputs (Hypothesis): what a table of examples cannot list


# File names: anything Linux allows in a name, as text or as raw (maybe not UTF-8) bytes.
# (Lone surrogates are not text a file system can hold; non-UTF-8 names come from the bytes.)
name_text = st.text(st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",)),
                    min_size=1, max_size=40)
name_bytes = st.binary(min_size=1, max_size=40).filter(
    lambda raw: b"/" not in raw and b"\x00" not in raw).map(os.fsdecode)
file_stems = st.one_of(name_text, name_bytes).filter(
    lambda stem: not stem.startswith(".") and len(os.fsencode(stem)) <= 200)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stems=st.lists(file_stems, min_size=1, max_size=3, unique=True))
def test_any_file_name_round_trips_or_is_refused_by_name(stems):
    """Packing keeps every stem exactly, in order, or refuses the file with one message."""
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "data"
        save_yaml(CLASSES, folder / "classes.yaml")
        for stem in stems:
            write_png(folder / "train" / "images" / f"{stem}.png", np.zeros((4, 4, 3), np.uint8))
        try:
            pack_folder_dataset(folder, Path(scratch) / "packed")
        except PartsegError as error:
            assert any(stem_problem(stem) for stem in stems)
            assert "\n" not in str(error) and "rename the file" in str(error)
            return
        assert not any(stem_problem(stem) for stem in stems)
        assert load_packed_split(Path(scratch) / "packed", "train")[2] == sorted(stems)


@given(st.lists(st.text(st.characters(blacklist_categories=("Cc", "Cs"))), max_size=5))
def test_stems_file_round_trips(stems):
    with tempfile.TemporaryDirectory() as scratch:
        write_stems(Path(scratch) / "stems.txt", stems)
        assert read_stems(Path(scratch) / "stems.txt") == stems


numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**9, 10**9))


@settings(max_examples=200)
@given(section_key=st.sampled_from([("train_fewshot", "lr"), ("train_gan", "lr"),
                                    ("inversion", "lr"), ("synthesize", "drop_uncertain"),
                                    ("train_autoshot", "class_balance_power"),
                                    ("sample", "truncation")]),
       value=numbers)
def test_any_number_is_accepted_finite_or_refused_naming_the_key(section_key, value):
    section, key = section_key
    try:
        params = parse_params({section: {key: value}})
    except PartsegError as error:
        assert f"params key {section}.{key}:" in str(error)
        return
    accepted = getattr(getattr(params, section), key)
    assert np.isfinite(accepted) and accepted >= 0


@given(shards=st.lists(st.integers(-5, 5), max_size=4),
       counts=st.lists(st.integers(-3, 600), max_size=3))
def test_shards_and_label_counts_are_checked_as_the_stages_use_them(shards, counts):
    try:
        params = parse_params({"synthesize": {"shards": shards},
                               "baselines": {"label_counts": counts}})
    except PartsegError as error:
        assert str(error).startswith(("params key synthesize.shards",
                                      "params key baselines.label_counts"))
        return
    assert shards and min(shards) >= 0 and len(set(shards)) == len(shards)
    assert all(1 <= n <= params.dataset.n_labeled for n in counts)


@given(height=st.integers(1, 200_000), width=st.integers(1, 200_000),
       size=st.sampled_from([None, 0, 16, 32, 512, 4096]), depth=st.integers(1, 6))
def test_segment_working_size_is_bounded_whatever_the_shape(height, width, size, depth):
    from partseg.autoshot.segmenter import MAX_WORKING_PIXELS, Segmenter

    segmenter = object.__new__(Segmenter)  # the sizing rule alone, without a model file
    segmenter.model = torch.nn.Module()
    segmenter.model.config = {"depth": depth}
    segmenter.resolution = 32
    segmenter.size = 32 if size is None else size
    working = segmenter.working_size(height, width)
    assert min(working) >= 1
    assert segmenter._padded_pixels(*working) <= MAX_WORKING_PIXELS


def test_a_tampered_feature_cache_is_refused_not_run(tmp_path):
    """The issue's demonstration: FeatureCache(...).latents() on a latents.pt that pickles a
    call. Every torch.load in partseg is weights_only=True, whatever torch's default."""
    from conftest import tiny_generator
    from partseg.features import FeatureExtractor, write_feature_cache
    from partseg.features.cache import FeatureCache
    from partseg.gan import sample_images

    generator = tiny_generator()
    sample = sample_images(generator, 2, seed=0)
    cache = write_feature_cache(tmp_path / "cache", FeatureExtractor(generator, "all", 8),
                                sample["wplus"], batch_size=2, generator_checksum="x",
                                params={}, show_progress=False)
    name = json.loads((cache.dir / "manifest.json").read_text())["latents_file"]
    tampered(cache.dir / name)
    with pytest.raises(PartsegError, match=f"{name}: refused to load: not plain tensor data"):
        FeatureCache(cache.dir).latents()
    assert not list(tmp_path.rglob("*.ran"))
