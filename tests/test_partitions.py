"""Parts of any shape: partitions of the face drawn by the demo generator (grid4, bands3), one
registry of protocols, `annotate --protocol` / `evaluate --protocol`, and the experiment stage
`partitions`."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml

from partseg.data.partitions import FACE_REGION, PARTITIONS, render_partition_sample
from partseg.data.protocols import (check_protocol, classes_under, known_protocols, relabel,
                                    split_masks)
from partseg.data.synthetic import FACE_CLASSES, face_specs, render_face_sample
from partseg.plumbing.errors import PartsegError
from partseg.plumbing.io import load_json
from partseg.plumbing.params import Params, parse_params

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the stages package (`pytest` alone does not put it there)
SAMPLES = [("labeled", 0), ("labeled", 1), ("test", 2), ("test", 3), ("test_shifted", 0),
           ("test_shifted", 3), ("test_shifted", 5)]
GRID4 = list(PARTITIONS["grid4"])


@pytest.mark.parametrize("name", list(PARTITIONS))
def test_every_face_pixel_gets_a_part_and_the_rest_stays_background(name):
    for split, index in SAMPLES:
        image, semantic, parts = render_partition_sample(0, split, index, 32, name)
        in_face = np.isin(semantic, FACE_REGION)
        assert parts.shape == semantic.shape and parts.dtype == np.uint8
        assert (parts[in_face] >= 1).all() and (parts[in_face] < len(PARTITIONS[name])).all()
        assert (parts[~in_face] == 0).all()


def test_the_picture_and_its_semantic_mask_are_render_face_samples():
    for split, index in SAMPLES:
        image, semantic, parts = render_partition_sample(0, split, index, 48, "grid4")
        expected_image, expected_mask = render_face_sample(0, split, index, 48)
        np.testing.assert_array_equal(image, expected_image)
        np.testing.assert_array_equal(semantic, expected_mask)
        again = render_partition_sample(0, split, index, 48, "grid4")[2]
        np.testing.assert_array_equal(parts, again)  # deterministic


def centroid(mask: np.ndarray, labels) -> np.ndarray:
    rows, cols = np.nonzero(np.isin(mask, labels))
    return np.array([cols.mean(), rows.mean()])


def test_the_grid_splits_each_portrait_into_four_cells_left_right_and_up_down():
    for index in range(6):
        parts = render_partition_sample(0, "labeled", index, 64, "grid4")[2]
        counts = np.bincount(parts.ravel(), minlength=5)
        assert (counts[1:] > 0).all(), index  # every cell shows
        left, right = centroid(parts, [1, 3]), centroid(parts, [2, 4])
        upper, lower = centroid(parts, [1, 2]), centroid(parts, [3, 4])
        assert left[0] < right[0] and upper[1] < lower[1], index


def test_the_grid_rolls_and_turns_with_the_head():
    """Points given in a rolled, turned face's own coordinates (around its centre: on the
    line through the nose, halfway from forehead to chin) land in the cell they name, also
    where an upright grid around the same centre would put them in the next cell."""
    from partseg.data.partitions import face_centre
    from partseg.data.synthetic import _yawed

    size, checked = 96, 0
    offsets = {(0.6, -0.15): 2, (0.6, 0.15): 4, (-0.6, -0.15): 1, (-0.6, 0.15): 3,
               (0.15, -0.6): 2, (-0.15, -0.6): 1, (0.15, 0.6): 4, (-0.15, 0.6): 3}
    for index in range(40):
        faces = face_specs(0, "test_shifted", index)
        if len(faces) != 1 or abs(faces[0].roll) < 0.4:
            continue
        face = faces[0]
        _, semantic, parts = render_partition_sample(0, "test_shifted", index, size, "grid4")
        u0, (v0, _) = _yawed(0.0, face.yaw)[0], face_centre(face)
        cos, sin = math.cos(face.roll), math.sin(face.roll)
        for (du, dv), cell in offsets.items():
            u, v = u0 + du, v0 + dv
            x = face.cx + (cos * u - sin * v) * face.scale
            y = face.cy + (sin * u + cos * v) * face.scale
            row, col = int(y * size), int(x * size)
            if 0 <= row < size and 0 <= col < size and semantic[row, col] in FACE_REGION:
                assert parts[row, col] == cell, (index, du, dv)
                upright = 1 + (x >= face.cx + u0 * face.scale * cos) + 2 * (y >= face.cy)
                checked += upright != cell  # a point the roll moved to another cell
    assert checked >= 3


def test_bands_are_concentric_inner_to_outer():
    for index in range(6):
        parts = render_partition_sample(0, "labeled", index, 64, "bands3")[2]
        centre = centroid(parts, [1])
        rows, cols = np.nonzero(parts)
        distance = np.hypot(cols - centre[0], rows - centre[1])
        mean = [distance[parts[rows, cols] == band].mean() for band in (1, 2, 3)
                if (parts == band).any()]
        assert len(mean) >= 2 and mean == sorted(mean), index


def test_one_registry_knows_every_protocol_and_params_agree():
    assert known_protocols() == ["face10", "face4", "grid4", "bands3"]
    choices = Params.__dataclass_fields__["partitions"].default_factory.__dataclass_fields__
    assert tuple(known_protocols()) == choices["names"].metadata["choices"]
    assert classes_under("grid4", list(FACE_CLASSES)) == GRID4
    assert classes_under("face4", ["background", "eye", "mouth", "nose"]) == [
        "background", "eye", "mouth", "nose"]  # a face4 dataset is already in face4


def test_an_unknown_protocol_stops_with_one_message_naming_it():
    for call in (lambda: check_protocol("grid5"),
                 lambda: classes_under("grid5", list(FACE_CLASSES), key="--protocol")):
        with pytest.raises(PartsegError, match=r"'grid5' is not a known protocol; the "
                                               r"protocols are face10, face4, grid4, bands3"):
            call()
    with pytest.raises(PartsegError, match=r"partitions\.names: 'grid5' is not one of"):
        parse_params({"partitions": {"names": ["grid4", "grid5"]}})


def test_relabel_merges_by_name_or_says_it_cannot():
    labels = np.array([[0, 3, 5, 1]], np.uint8)
    face4 = ["background", "eye", "mouth", "nose"]
    np.testing.assert_array_equal(relabel(labels, list(FACE_CLASSES), face4), [[0, 1, 3, 0]])
    assert relabel(labels, list(FACE_CLASSES), list(FACE_CLASSES)) is labels
    assert relabel(labels, list(FACE_CLASSES), GRID4) is None


# ---- on a tiny packed dataset --------------------------------------------------------------


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A tiny synthetic dataset (the dataset stage), a tiny 32 px generator and tiny params."""
    from partseg.gan import Generator, save_checkpoint
    from stages.dataset import build as build_dataset

    root = tmp_path_factory.mktemp("partitions")
    raw = yaml.safe_load((ROOT / "tests" / "tiny_params.yaml").read_text())
    raw["dataset"].update({"n_train": 2, "n_labeled": 3, "n_test": 4, "n_test_shifted": 2})
    raw["annotate"] = {"source": "inverted", "k": 1, "manual_dir": str(root / "annotations")}
    raw["invert_test"] = {"splits": ["test"], "n_images": 3}
    raw["evaluate"]["splits"] = ["test"]
    raw["partitions"] = {"names": ["face10", "grid4", "bands3"], "shot": "auto", "candidates": 3}
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    params = parse_params(raw)
    build_dataset(SimpleNamespace(out=str(root / "dataset"), threads=1), params)
    torch.manual_seed(0)
    generator = Generator(32, style_dim=32, n_mlp=2, channel_base=256, channel_max=32).eval()
    save_checkpoint(root / "train_gan" / "generator.pt", g_ema=generator)
    return SimpleNamespace(root=root, params=params, dataset=root / "dataset")


def test_split_masks_render_partitions_for_exactly_the_dataset_images(project):
    masks, stems = split_masks(project.dataset, "test", "grid4", limit=3)
    assert stems == ["000000", "000001", "000002"]
    for mask, stem in zip(masks, stems):
        np.testing.assert_array_equal(mask, render_partition_sample(0, "test", int(stem), 32,
                                                                    "grid4")[2])
    face4, _ = split_masks(project.dataset, "test", "face4")
    assert face4.shape == (4, 32, 32) and set(np.unique(face4)) <= {0, 1, 2, 3}


def test_partitions_need_the_generators_own_pictures(project, tmp_path):
    import shutil

    copy = tmp_path / "dataset"
    shutil.copytree(project.dataset, copy)
    images = np.load(copy / "test" / "images.npy")
    images[1] ^= 1  # another picture than the generator's
    np.save(copy / "test" / "images.npy", images)
    with pytest.raises(PartsegError, match=r"image 000001 is not the demo generator's picture"):
        split_masks(copy, "test", "bands3")
    manifest = yaml.safe_load((copy / "dataset.yaml").read_text())
    manifest["source"]["source"] = "celebamask"
    (copy / "dataset.yaml").write_text(yaml.safe_dump(manifest))
    with pytest.raises(PartsegError, match=r"grid4 is a partition drawn by the demo face "
                                           r"generator.*data\.source: celebamask"):
        split_masks(copy, "test", "grid4")


def annotate_args(project, out: Path, protocol: str | None):
    return SimpleNamespace(dataset=str(project.dataset), generator=str(project.root / "train_gan"),
                           samples=str(project.root / "sample"), annotator="unused.pt",
                           out=str(out), protocol=protocol)


def test_annotate_inverted_shots_in_a_partition(project, tmp_path):
    from partseg.plumbing.io import read_mask
    from stages.annotate import build

    build(annotate_args(project, tmp_path / "grid4", "grid4"), project.params)
    record = load_json(tmp_path / "grid4" / "annotations.json")
    assert record["classes"] == GRID4 and record["protocol"] == "grid4"
    expected = render_partition_sample(0, "labeled", 0, 32, "grid4")[2]
    np.testing.assert_array_equal(read_mask(tmp_path / "grid4" / "masks" / "000000.png"), expected)
    build(annotate_args(project, tmp_path / "default", None), project.params)
    record = load_json(tmp_path / "default" / "annotations.json")
    assert record["classes"] == list(FACE_CLASSES) and "protocol" not in record


def test_annotate_refuses_a_partition_for_the_simulated_annotator_and_unknown_names(project,
                                                                                   tmp_path):
    from stages.annotate import build

    simulated = parse_params({**yaml.safe_load((project.root / "params.yaml").read_text()),
                              "annotate": {"source": "simulated", "k": 1}})
    with pytest.raises(PartsegError, match=r"--protocol: the simulated annotator paints the face "
                                           r"classes, not the partition bands3"):
        build(annotate_args(project, tmp_path / "out", "bands3"), simulated)
    result = subprocess.run(
        [sys.executable, "-m", "stages.annotate", "--params", str(project.root / "params.yaml"),
         "--dataset", str(project.dataset), "--generator", str(tmp_path / "absent"),
         "--samples", str(tmp_path / "absent"), "--annotator", str(tmp_path / "absent.pt"),
         "--out", str(tmp_path / "out"), "--protocol", "grid5"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert ("--protocol: 'grid5' is not a known protocol; the protocols are face10, face4, "
            "grid4, bands3") in result.stderr
    assert not (tmp_path / "out").exists()


def evaluation_inputs(project, tmp_path: Path) -> SimpleNamespace:
    """What evaluate reads: an auto-shot UNet in the 10 face classes, one-shot labels of the
    first 3 test images (here: their true grid4 masks, the few-shot net trained in grid4)."""
    from partseg.autoshot.segmenter import save_segmenter
    from partseg.autoshot.unet import UNet
    from partseg.plumbing.io import save_json

    torch.manual_seed(0)
    save_segmenter(tmp_path / "autoshot" / "model.pt", UNet(10, base_channels=4, depth=2),
                   {"classes": list(FACE_CLASSES), "resolution": 32})
    oneshot = tmp_path / "oneshot" / "test"
    oneshot.mkdir(parents=True)
    truth, stems = split_masks(project.dataset, "test", "grid4", limit=3)
    np.save(oneshot / "labels.npy", truth)
    save_json({"stems": stems}, oneshot / "stems.json")
    save_json({"source": "inverted", "classes": GRID4}, tmp_path / "annotate" / "annotations.json")
    for empty in ("baselines", "shards", "inversions"):
        (tmp_path / empty).mkdir()
    folders = {name: str(tmp_path / name) for name in
               ("oneshot", "inversions", "autoshot", "baselines", "shards")}
    return SimpleNamespace(dataset=str(project.dataset), annotations=str(tmp_path / "annotate"),
                           annotator="", out=None, protocol=None, **folders)


def test_evaluate_scores_in_the_named_protocol(project, tmp_path):
    from stages.evaluate import build

    args = evaluation_inputs(project, tmp_path)
    args.protocol, args.out = "grid4", str(tmp_path / "grid4")
    build(args, project.params)
    metrics = load_json(tmp_path / "grid4" / "metrics.json")
    assert metrics["protocol"] == {"name": "grid4", "classes": GRID4}
    # the one-shot labels are the grid4 truth; the face10 auto-shot net cannot be scored in grid4
    assert metrics["test_inverted_subset"] == {"oneshot_mlp": {"miou": 1.0, "pixel_accuracy": 1.0}}
    assert "test" not in metrics  # no method of the full split predicts grid4
    args.protocol, args.out = "face4", str(tmp_path / "face4")
    build(args, project.params)  # auto-shot's 10 classes merge into face4; one-shot's do not
    metrics = load_json(tmp_path / "face4" / "metrics.json")
    assert set(metrics["test"]) == {"autoshot"}
    assert set(metrics["test_inverted_subset"]) == {"autoshot"}
    args.protocol, args.out = None, str(tmp_path / "default")
    build(args, project.params)  # no protocol: the dataset's classes, as the default run
    assert "protocol" not in load_json(tmp_path / "default" / "metrics.json")
    args.protocol, args.out = "grid5", str(tmp_path / "unknown")
    with pytest.raises(PartsegError, match=r"--protocol: 'grid5' is not a known protocol"):
        build(args, project.params)
    assert not (tmp_path / "unknown").exists()


def test_the_partitions_stage_writes_its_results(project, tmp_path):
    from stages.invert_test import build as invert_test
    from stages.partitions import build

    invert_test(SimpleNamespace(dataset=str(project.dataset),
                                generator=str(project.root / "train_gan"),
                                out=str(tmp_path / "invert_test")), project.params)
    out = tmp_path / "partitions"
    build(SimpleNamespace(dataset=str(project.dataset), generator=str(project.root / "train_gan"),
                          inversions=str(tmp_path / "invert_test"), out=str(out)), project.params)
    assert sorted(p.name for p in out.iterdir()) == [
        "metrics.json", "per_class.csv", "predictions.png", "section.md", "shots.png"]
    metrics = load_json(out / "metrics.json")
    candidates = metrics["shot_candidates"]
    assert [c["stem"] for c in candidates] == ["000000", "000001", "000002"]
    best = max(candidates, key=lambda c: (c["every_part"], c["parts_shown"], c["psnr"]))
    assert metrics["shot"] == best["stem"] and metrics["test_images"] == 3
    assert list(metrics["protocols"]) == ["face10", "grid4", "bands3"]
    grid = metrics["protocols"]["grid4"]
    assert list(grid["per_class_iou"]) == GRID4 and 0.0 <= grid["miou"] <= 1.0
    assert grid["face_iou"] is not None
    section = (out / "section.md").read_text()
    assert section.startswith("## Parts of any shape") and "### bands3" in section
    assert "](shots.png)" in section and "](predictions.png)" in section


def test_a_named_shot_is_inverted_alone_and_an_unknown_one_is_named(project):
    from partseg.experiments.partitions import choose_shot

    params = parse_params({**yaml.safe_load((project.root / "params.yaml").read_text()),
                           "partitions": {"shot": "000002"}})
    shots, candidates = choose_shot(project.dataset, project.root / "train_gan", params)
    assert shots.stems == ["000002"] and candidates == [] and len(shots.wplus) == 1
    params.partitions.shot = "000099"
    with pytest.raises(PartsegError, match=r"labeled: no image 000099"):
        choose_shot(project.dataset, project.root / "train_gan", params)


def test_face_scores_split_finding_the_face_from_dividing_it():
    from partseg.experiments.partitions import face_scores, part_borders

    truth = np.array([[[0, 1, 1, 2],
                       [0, 1, 1, 2]]], np.uint8)
    predicted = np.array([[[1, 1, 2, 2],
                           [0, 1, 1, 0]]], np.uint8)
    # the border: the face pixels beside another part (1 next to 2)
    assert part_borders(truth, [1, 2]).tolist() == [[[False, False, True, True],
                                                     [False, False, True, True]]]
    scores = face_scores(predicted, truth, [1, 2])
    assert scores["face_iou"] == 5 / 7 and scores["right_part_in_face"] == 4 / 5
    assert scores["wrong_part_on_borders"] == 1.0 and scores["face_on_borders"] == 4 / 6
    assert face_scores(predicted, truth, None)["face_iou"] is None


def test_the_partitions_reading_states_what_was_measured():
    from partseg.experiments.partitions import reading

    def result(miou, face_iou, on_borders, base):
        return {"miou": miou, "per_class_iou": {"background": 0.9, "inner": 0.2, "outer": 0.6},
                "face_iou": face_iou, "right_part_in_face": 0.5,
                "wrong_part_on_borders": on_borders, "face_on_borders": base,
                "face_shares": {"inner": {"shot": 0.3, "truth": 0.5, "predicted": 0.35},
                                "outer": {"shot": 0.7, "truth": 0.5, "predicted": 0.65}}}

    text = reading({"face10": {**result(0.15, 0.6, None, None), "face_shares": None},
                    "bands3": result(0.3, 0.4, 0.8, 0.4)}, count=3)
    assert "bands3 reaches 30.0 mIoU over 3 classes" in text
    assert "face10 60.0, bands3 40.0, a spread of 20.0 points" in text
    assert "80.0 % of the wrong ones lie on a border between parts, where 40.0 % of the face " \
           "lies (2.0 times that share)" in text
    assert "5.0 points from the shot's share and 15.0 from the test faces'" in text
    assert "not measured" in text
