"""Stage annotate: with `annotate.source: manual`, missing masks stop the pipeline with the
list of files to paint; painted masks are validated and the few-shot net trains on them;
`annotate.pick` chooses the shots among the candidates (auto, first, or named)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from partseg.data import FACE_CLASSES
from partseg.gan import Generator, save_checkpoint

ROOT = Path(__file__).resolve().parent.parent


def stage(name: str, params: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"stages.{name}", "--params", str(params),
                           "--threads", "1", *args], cwd=ROOT, capture_output=True, text=True,
                          env={"PARTSEG_DEVICE": "cpu", "PATH": "/usr/bin:/bin"}, timeout=300)


def make_project(tmp_path: Path, pick="first", k: int = 2, n: int = 2) -> Path:
    """A generator, its n samples, a dataset folder (classes only) and manual params."""
    params = yaml.safe_load((ROOT / "tests" / "tiny_params.yaml").read_text())
    params["annotate"] = {"source": "manual", "k": k, "manual_dir": str(tmp_path / "annotations"),
                          "pick": pick}
    params["sample"]["n"] = n
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "dataset").mkdir()
    (tmp_path / "dataset" / "classes.yaml").write_text(yaml.safe_dump(list(FACE_CLASSES)))
    generator = Generator(32, style_dim=32, n_mlp=2, channel_base=256, channel_max=32)
    save_checkpoint(tmp_path / "train_gan" / "generator.pt", g_ema=generator)
    result = stage("sample", tmp_path / "params.yaml", "--generator", str(tmp_path / "train_gan"),
                   "--out", str(tmp_path / "sample"))
    assert result.returncode == 0, result.stderr
    return tmp_path


@pytest.fixture()
def project(tmp_path):
    return make_project(tmp_path)


def run_annotate(project: Path) -> subprocess.CompletedProcess:
    return stage("annotate", project / "params.yaml", "--dataset", str(project / "dataset"),
                 "--generator", str(project / "train_gan"), "--samples", str(project / "sample"),
                 "--annotator", str(project / "unused.pt"), "--out", str(project / "annotate"))


def paint(project: Path, stem: str, mask: np.ndarray) -> None:
    (project / "annotations" / "masks").mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask).save(project / "annotations" / "masks" / f"{stem}.png")


def test_missing_masks_stop_with_the_list_of_files_to_paint(project):
    result = run_annotate(project)
    assert result.returncode == 2
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("error: 2 of 2 masks to annotate are missing")
    assert str(project / "annotations" / "masks" / "sample_000.png") in message
    assert "partseg annotate" in message and "0=background" in message and "9=cloth" in message
    assert "Traceback" not in result.stderr
    exported = sorted(p.name for p in (project / "annotations" / "images").iterdir())
    assert exported == ["sample_000.png", "sample_001.png"]
    assert (project / "annotations" / "classes.yaml").is_file()
    assert not (project / "annotate").exists()


def test_a_mask_with_an_unknown_label_names_the_file(project):
    run_annotate(project)
    paint(project, "sample_000", np.zeros((32, 32), np.uint8))
    paint(project, "sample_001", np.full((32, 32), 12, np.uint8))
    result = run_annotate(project)
    assert result.returncode == 2
    assert "sample_001.png: label id 12 is outside the 10 classes" in result.stderr


def test_a_mask_of_the_wrong_size_names_the_file(project):
    run_annotate(project)
    paint(project, "sample_000", np.zeros((32, 32), np.uint8))
    paint(project, "sample_001", np.zeros((16, 32), np.uint8))
    result = run_annotate(project)
    assert result.returncode == 2
    assert "sample_001.png: mask is 32x16 but its image is 32x32" in result.stderr


def test_painted_masks_train_the_few_shot_net(project):
    run_annotate(project)
    rows = np.arange(32)[:, None].repeat(32, axis=1)
    paint(project, "sample_000", (rows // 16).astype(np.uint8))           # top 0, bottom 1
    paint(project, "sample_001", np.where(rows < 8, 255, 2).astype(np.uint8))  # some ignored
    assert run_annotate(project).returncode == 0
    shots = sorted(p.name for p in (project / "annotate" / "masks").iterdir())
    assert shots == ["sample_000.png", "sample_001.png"]
    result = stage("features", project / "params.yaml", "--generator", str(project / "train_gan"),
                   "--annotations", str(project / "annotate"), "--out", str(project / "features"))
    assert result.returncode == 0, result.stderr
    result = stage("train_fewshot", project / "params.yaml", "--features",
                   str(project / "features"), "--annotations", str(project / "annotate"),
                   "--out", str(project / "train_fewshot"))
    assert result.returncode == 0, result.stderr
    assert (project / "train_fewshot" / "model.pt").is_file()
    assert (project / "train_fewshot" / "training_log.tsv").read_text().startswith("step")


def test_auto_pick_offers_every_candidate_and_takes_the_painted_one(tmp_path):
    project = make_project(tmp_path, pick="auto", k=1, n=3)
    result = run_annotate(project)
    assert result.returncode == 2
    message = result.stderr.strip().splitlines()[-1]
    assert "0 of the 1 shots are painted. Choose 1 more of the 3 candidates" in message
    assert "Traceback" not in result.stderr
    exported = sorted(p.name for p in (project / "annotations" / "images").iterdir())
    assert exported == ["sample_000.png", "sample_001.png", "sample_002.png"]
    paint(project, "sample_002", np.ones((32, 32), np.uint8))
    assert run_annotate(project).returncode == 0
    assert [p.name for p in (project / "annotate" / "masks").iterdir()] == ["sample_002.png"]
    assert (project / "annotate" / "shots.png").is_file()


def test_named_pick_exports_only_those_candidates(tmp_path):
    project = make_project(tmp_path, pick=["sample_001"], k=1, n=3)
    result = run_annotate(project)
    assert result.returncode == 2
    assert str(project / "annotations" / "masks" / "sample_001.png") in result.stderr
    assert [p.name for p in (project / "annotations" / "images").iterdir()] == ["sample_001.png"]


def test_a_pick_that_names_no_sample_says_which_exist(tmp_path):
    project = make_project(tmp_path, pick=["sample_009"], k=1, n=2)
    result = run_annotate(project)
    assert result.returncode == 2
    assert ("annotate.pick: sample_009 is not a generated sample; the candidates are "
            "sample_000, sample_001") in result.stderr


def test_auto_pick_ranks_the_mask_that_shows_most_parts_first():
    sys.path.insert(0, str(ROOT))  # `pytest` (unlike `python -m pytest`) does not put it there
    from partseg.shots.choose import AUTO_PICK_ORDER, coverage_scores, rank

    hair_only = np.zeros((32, 32), np.uint8)
    hair_only[:8] = 2
    face = hair_only.copy()
    face[10:12, 8:10], face[10:12, 20:22], face[20:22, 14:18] = 3, 3, 6  # eyes and a mouth
    tiny = face.copy()
    tiny[25, 5:8] = 7  # three ear pixels are not a visible part
    eared = face.copy()
    eared[25:27, 5:7] = 7  # a 2x2 ear is
    scores = coverage_scores([hair_only, tiny, face, eared], confidence=[0.9, 0.5, 0.8, 0.1])
    assert [s["parts_shown"] for s in scores] == [1, 3, 3, 4]
    assert [s["smallest_part_pixels"] for s in scores] == [256, 8, 8, 4]
    # most parts first, however unsure; then equal part counts by confidence
    assert rank(scores, AUTO_PICK_ORDER) == [3, 2, 1, 0]