"""data.protocol: face10 keeps the source's classes, face4 merges them to background, eye,
mouth, nose, at the dataset stage and wherever the 10-class annotator's labels are used."""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from partseg.data.folder import load_classes, load_split_arrays
from partseg.data.protocols import (label_lookup, merge_folder_dataset, merge_labels,
                                    merges_face_classes, protocol_classes)
from partseg.data.synthetic import FACE_CLASSES, generate_synthetic_dataset
from partseg.plumbing.errors import PartsegError
from partseg.plumbing.params import parse_params

ROOT = Path(__file__).resolve().parents[1]
FACE4 = ["background", "eye", "mouth", "nose"]
SIZES = {"n_train": 2, "n_labeled": 3, "n_test": 3, "n_test_shifted": 2}


def test_face4_keeps_eye_mouth_nose_and_the_rest_is_background():
    table = label_lookup(list(FACE_CLASSES), FACE4)
    merged = {name: FACE4[table[i]] for i, name in enumerate(FACE_CLASSES)}
    assert merged == {"background": "background", "skin": "background", "hair": "background",
                      "eye": "eye", "eyebrow": "background", "nose": "nose", "mouth": "mouth",
                      "ear": "background", "neck": "background", "cloth": "background"}
    labels = np.array([[0, 3, 5, 6], [4, 255, 9, 1]], np.uint8)
    np.testing.assert_array_equal(merge_labels(labels, list(FACE_CLASSES), FACE4),
                                  [[0, 1, 3, 2], [0, 255, 0, 0]])


def test_face10_is_the_identity_for_any_source():
    labels = np.array([[0, 1, 2]], np.uint8)
    assert merge_labels(labels, ["a", "b", "c"], ["a", "b", "c"]) is labels
    assert protocol_classes("face10", ["background", "wheel"]) == ["background", "wheel"]
    assert protocol_classes("face10", list(FACE_CLASSES)) == list(FACE_CLASSES)
    assert protocol_classes("face4", list(FACE_CLASSES)) == FACE4
    assert merges_face_classes(FACE4) and not merges_face_classes(list(FACE_CLASSES))


def test_face4_on_other_classes_names_the_key():
    with pytest.raises(PartsegError, match=r"data\.protocol: face4 merges the 10 face classes.*"
                                           r"'wheel'"):
        protocol_classes("face4", ["background", "wheel"])


def test_unknown_protocol_names_the_key():
    with pytest.raises(PartsegError, match=r"data\.protocol: 'face5' is not one of face10, face4"):
        parse_params({"data": {"protocol": "face5"}})
    with pytest.raises(PartsegError, match=r"data\.protocol: 'face5' is not one of"):
        protocol_classes("face5", list(FACE_CLASSES))
    assert parse_params({}).data.protocol == "face10"


def _dataset_stage(tmp_path: Path, protocol: str) -> Path:
    """Run the dataset stage's build on the tiny params, in process (fast)."""
    from stages.dataset import build

    raw = yaml.safe_load((ROOT / "tests" / "tiny_params.yaml").read_text())
    raw["data"]["protocol"] = protocol
    raw["dataset"].update(SIZES)
    out = tmp_path / protocol
    build(SimpleNamespace(out=str(out), threads=1), parse_params(raw))
    return out


def test_dataset_stage_writes_merged_face4_masks(tmp_path):
    face10, face4 = _dataset_stage(tmp_path, "face10"), _dataset_stage(tmp_path, "face4")
    assert load_classes(face10) == list(FACE_CLASSES)
    assert load_classes(face4) == FACE4
    for split in ("labeled", "test", "test_shifted"):
        images10, masks10, stems10 = load_split_arrays(face10, split)
        images4, masks4, stems4 = load_split_arrays(face4, split)
        np.testing.assert_array_equal(images4, images10)  # only the labels change
        assert stems4 == stems10
        np.testing.assert_array_equal(masks4, merge_labels(masks10, list(FACE_CLASSES), FACE4))
        assert set(np.unique(masks4)) <= {0, 1, 2, 3, 255}
    assert set(np.unique(load_split_arrays(face4, "labeled")[1])) >= {0, 1, 2, 3}  # all 4 seen
    source = yaml.safe_load((face4 / "dataset.yaml").read_text())["source"]
    assert source["classes"] == FACE4 and source["protocol"] == "face4"
    for fractions in source["class_pixel_fraction"].values():
        assert list(fractions) == FACE4 and abs(sum(fractions.values()) - 1) < 1e-3


def test_merge_folder_dataset_refuses_a_folder_with_other_classes(tmp_path):
    folder = tmp_path / "cars"
    generate_synthetic_dataset(folder, resolution=32, seed=0, workers=1, show_progress=False,
                               **SIZES)
    (folder / "classes.yaml").write_text(yaml.safe_dump(["background", "wheel", "door"]))
    with pytest.raises(PartsegError, match=r"data\.protocol: face4"):
        merge_folder_dataset(folder, "face4", {})
    assert merge_folder_dataset(folder, "face10", {"x": 1}) == {"x": 1}  # untouched


@pytest.fixture
def face10_annotator(tmp_path):
    import torch

    from partseg.autoshot.segmenter import load_segmenter, save_segmenter
    from partseg.autoshot.unet import UNet

    torch.manual_seed(0)
    path = tmp_path / "annotator.pt"
    save_segmenter(path, UNet(len(FACE_CLASSES), base_channels=4, depth=2),
                   {"class_names": list(FACE_CLASSES), "resolution": 32})
    return load_segmenter(path), path


def test_annotator_labels_are_merged_to_the_protocol(face10_annotator):
    from partseg.shots.simulated_annotator import annotator_labels, check_annotator
    from partseg.autoshot.segmenter import predict_labels

    model, path = face10_annotator
    images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    own = [labels for labels, _ in predict_labels(model, images)]
    merged = [labels for labels, _ in annotator_labels(model, images, FACE4)]
    for labels10, labels4 in zip(own, merged):
        np.testing.assert_array_equal(labels4, merge_labels(labels10, list(FACE_CLASSES), FACE4))
    same = [labels for labels, _ in annotator_labels(model, images, list(FACE_CLASSES))]
    for labels10, labels in zip(own, same):
        np.testing.assert_array_equal(labels, labels10)  # face10: exactly as before
    check_annotator(model, path, FACE4, 32)  # the shipped 10-class annotator serves face4
    with pytest.raises(PartsegError, match="this annotator labels"):
        check_annotator(model, path, ["background", "wheel"], 32)


def test_simulated_annotate_gives_face4_masks(face10_annotator):
    from partseg.shots.sources import simulated_annotations

    _, path = face10_annotator
    images = list(np.random.default_rng(1).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8))
    masks, confidence = simulated_annotations(images, path, FACE4)
    assert len(masks) == len(confidence) == 2
    assert all(set(np.unique(mask)) <= {0, 1, 2, 3} for mask in masks)


def test_train_annotator_stage_under_face4(tmp_path):
    """Trained here: on merged rendered masks (4 classes). Adopted: the shipped 10-class one,
    scored on the face4 test split with its labels merged."""
    from partseg.autoshot.segmenter import load_segmenter
    from stages.train_annotator import build

    dataset = _dataset_stage(tmp_path, "face4")
    raw = yaml.safe_load((ROOT / "tests" / "tiny_params.yaml").read_text())
    raw["data"]["protocol"] = "face4"
    for name, checkpoint in (("trained", None),
                             ("adopted", str(ROOT / "data/pretrained/annotator/annotator.pt"))):
        raw["train_annotator"]["checkpoint"] = checkpoint
        out = tmp_path / name
        build(SimpleNamespace(dataset=str(dataset), snapshots=str(tmp_path / f"{name}.snap"),
                              out=str(out)), parse_params(raw))
        scores = yaml.safe_load((out / "metrics.json").read_text())["test"]
        assert list(scores["per_class_iou"]) == FACE4
    assert load_segmenter(tmp_path / "trained" / "annotator.pt").meta["class_names"] == FACE4
    assert scores["miou"] > 0.5  # the adopted annotator, merged, still labels faces well
