"""Stage train_annotator: trains the simulated annotator on rendered faces (never the labelled
split), scores it on test, adopts a shipped one, and refuses one that does not fit the data."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from partseg.data.synthetic import generate_synthetic_dataset, render_face_sample
from partseg.plumbing.io import load_json
from partseg.shots.simulated_annotator import render_training_faces

ROOT = Path(__file__).resolve().parent.parent


def run_stage(params: Path, dataset: Path, out: Path, snapshots: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stages.train_annotator", "--params", str(params), "--threads", "1",
         "--dataset", str(dataset), "--snapshots", str(snapshots), "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={"PARTSEG_DEVICE": "cpu", "PATH": "/usr/bin:/bin"})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("annotator")
    generate_synthetic_dataset(root / "dataset", n_train=2, n_labeled=2, n_test=4,
                               n_test_shifted=2, show_progress=False, workers=1)
    params = yaml.safe_load((ROOT / "tests" / "tiny_params.yaml").read_text())
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    result = run_stage(root / "params.yaml", root / "dataset", root / "out", root / "snapshots")
    assert result.returncode == 0, result.stderr
    return root, params


def test_rendered_faces_are_new_faces_not_the_dataset_splits():
    images, masks = render_training_faces(3, seed=0, resolution=32)
    assert images.shape == (3, 32, 32, 3) and masks.shape == (3, 32, 32)
    for split in ("train", "labeled", "test"):
        image, _ = render_face_sample(0, split, 0, 32)
        assert not any(np.array_equal(image, other) for other in images)
    again, _ = render_training_faces(3, seed=0, resolution=32, workers=2)
    assert np.array_equal(images, again)


def test_training_writes_the_annotator_and_its_own_test_score(trained):
    root, _ = trained
    assert (root / "out" / "annotator.pt").is_file()
    scores = load_json(root / "out" / "metrics.json")["test"]
    assert 0.0 <= scores["miou"] <= 1.0 and scores["images"] == 4
    assert set(scores["per_class_iou"]) >= {"background", "eye", "mouth"}
    record = yaml.safe_load((root / "out" / "record.yaml").read_text())
    assert record["trained"]["n_images"] == 16


def test_adopting_a_trained_annotator_records_its_checksum(trained):
    root, params = trained
    params["train_annotator"]["checkpoint"] = str(root / "out" / "annotator.pt")
    (root / "adopt.yaml").write_text(yaml.safe_dump(params))
    result = run_stage(root / "adopt.yaml", root / "dataset", root / "adopted", root / "s2")
    assert result.returncode == 0, result.stderr
    record = yaml.safe_load((root / "adopted" / "record.yaml").read_text())
    assert len(record["sha256"]) == 64
    assert (root / "adopted" / "annotator.pt").read_bytes() == (root / "out" / "annotator.pt").read_bytes()


def test_an_annotator_of_another_resolution_is_refused(trained, tmp_path):
    root, params = trained
    generate_synthetic_dataset(tmp_path / "dataset64", resolution=64, n_train=1, n_labeled=1,
                               n_test=1, n_test_shifted=1, show_progress=False, workers=1)
    params["train_annotator"]["checkpoint"] = str(root / "out" / "annotator.pt")
    params["data"]["resolution"] = 64
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(params))
    result = run_stage(tmp_path / "p.yaml", tmp_path / "dataset64", tmp_path / "out", tmp_path / "s")
    assert result.returncode == 2
    assert "was trained at 32 px, but data.resolution is 64" in result.stderr
    assert "train_annotator.checkpoint: null" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()
