"""The synthetic face generator: determinism, masks, classes, splits and the dataset writer."""

import hashlib

import numpy as np
import pytest
import yaml

from partseg.data import FACE_CLASSES, generate_synthetic_dataset, render_face_sample
from partseg.data.folder import FolderSplit, validate_folder_dataset
from partseg.data.synthetic import face_specs
from partseg.plumbing.errors import PartsegError


def _digest(*arrays):
    return hashlib.sha256(b"".join(a.tobytes() for a in arrays)).hexdigest()


def test_classes_are_the_face_protocol_in_order():
    assert FACE_CLASSES == ("background", "skin", "hair", "eye", "eyebrow", "nose", "mouth",
                            "ear", "neck", "cloth")


def test_same_seed_same_bytes_and_other_seeds_differ():
    first = render_face_sample(0, "train", 3, 32)
    again = render_face_sample(0, "train", 3, 32)
    assert _digest(*first) == _digest(*again)
    assert _digest(*render_face_sample(1, "train", 3, 32)) != _digest(*first)
    assert _digest(*render_face_sample(0, "train", 4, 32)) != _digest(*first)
    assert _digest(*render_face_sample(0, "test", 3, 32)) != _digest(*first)


def test_shapes_and_types_at_several_resolutions():
    for resolution in (32, 48, 64):
        image, mask = render_face_sample(0, "labeled", 0, resolution)
        assert image.shape == (resolution, resolution, 3) and image.dtype == np.uint8
        assert mask.shape == (resolution, resolution) and mask.dtype == np.uint8


def test_a_sample_is_the_same_scene_at_every_resolution():
    # The mask at 64 px, sampled at the 32 px pixel centres' neighbours, mostly agrees.
    small = render_face_sample(5, "test", 7, 32)[1]
    large = render_face_sample(5, "test", 7, 64)[1]
    agreement = (large[::2, ::2] == small).mean()
    assert agreement > 0.8


def test_resolution_outside_the_supported_range_is_refused():
    with pytest.raises(PartsegError, match="resolution"):
        render_face_sample(0, "train", 0, 16)
    with pytest.raises(PartsegError, match="split"):
        render_face_sample(0, "validation", 0, 32)


def test_masks_hold_valid_ids_and_every_class_appears_in_a_split():
    seen = np.zeros(len(FACE_CLASSES), bool)
    for index in range(40):
        image, mask = render_face_sample(0, "labeled", index, 32)
        assert mask.max() < len(FACE_CLASSES)  # every pixel has a class: the mask covers the image
        present = np.bincount(mask.ravel(), minlength=len(FACE_CLASSES)) > 0
        assert present[0] and present[1]  # background and skin in every portrait
        seen |= present
    assert seen.all(), [c for c, s in zip(FACE_CLASSES, seen) if not s]


def test_test_shifted_sometimes_has_several_faces_and_they_show():
    counts = [len(face_specs(0, "test_shifted", i)) for i in range(20)]
    assert set(counts) <= {1, 2, 3} and max(counts) >= 2 and min(counts) == 1
    assert all(len(face_specs(0, "test", i)) == 1 for i in range(5))
    multi = counts.index(3)
    mask = render_face_sample(0, "test_shifted", multi, 64)[1]
    assert (mask == FACE_CLASSES.index("nose")).sum() > 0


def test_faces_vary_in_hair_style_yaw_and_roll():
    faces = [face_specs(0, "train", i)[0] for i in range(60)]
    assert {f.hair_style for f in faces} == {"bald", "short", "long"}
    assert any(f.bangs for f in faces) and any(f.mouth_open > 0 for f in faces)
    assert any(f.hair_style == "long" and f.covers_ears for f in faces)
    assert np.ptp([f.roll for f in faces]) > 0.2 and np.ptp([f.yaw for f in faces]) > 0.3
    shifted = [f for i in range(30) for f in face_specs(0, "test_shifted", i)]
    assert max(abs(f.roll) for f in shifted) > 0.6  # rotations well beyond the portraits'


def test_colour_alone_does_not_separate_the_classes():
    # The best colour lookup table, fitted on the very pixels it is scored on, still gets a
    # low mean IoU: parts must be told apart by shape and context, not colour.
    colours, labels = [], []
    for index in range(40):
        image, mask = render_face_sample(0, "labeled", index, 32)
        colours.append(image.reshape(-1, 3) // 16)
        labels.append(mask.ravel())
    colours, labels = np.concatenate(colours).astype(np.int64), np.concatenate(labels)
    key = (colours[:, 0] * 16 + colours[:, 1]) * 16 + colours[:, 2]
    table = np.zeros((16 ** 3, len(FACE_CLASSES)), np.int64)
    np.add.at(table, (key, labels), 1)
    predicted = table.argmax(axis=1)[key]
    ious = [((predicted == c) & (labels == c)).sum() / max(1, ((predicted == c) | (labels == c)).sum())
            for c in range(len(FACE_CLASSES))]
    assert np.mean(ious) < 0.5


def test_generate_writes_the_folder_format_deterministically(tmp_path):
    sizes = dict(n_train=5, n_labeled=3, n_test=3, n_test_shifted=2)
    summary = generate_synthetic_dataset(tmp_path / "a", resolution=32, seed=3, show_progress=False,
                                         workers=1, **sizes)
    root = tmp_path / "a"
    assert yaml.safe_load((root / "classes.yaml").read_text()) == list(FACE_CLASSES)
    assert (root / "preview.png").stat().st_size > 0
    for split, count in [("train", 5), ("labeled", 3), ("test", 3), ("test_shifted", 2)]:
        data = FolderSplit(root, split)
        assert len(data) == count and data.has_masks
        assert summary["splits"][split] == {"images": count, "masks": count}
        image, mask = render_face_sample(3, split, 0, 32)
        assert np.array_equal(data.image(0), image) and np.array_equal(data.mask(0), mask)
    assert "train: 5 images, 5 masks" in validate_folder_dataset(root)
    assert summary["bytes"] > 0 and summary["resolution"] == 32
    # Parallel workers write the same bytes.
    generate_synthetic_dataset(tmp_path / "b", resolution=32, seed=3, show_progress=False,
                               workers=2, **sizes)
    for path in sorted((root / "labeled").rglob("*.png")):
        twin = tmp_path / "b" / path.relative_to(root)
        assert path.read_bytes() == twin.read_bytes()


def test_generate_rejects_a_bad_resolution(tmp_path):
    with pytest.raises(PartsegError, match="resolution"):
        generate_synthetic_dataset(tmp_path / "x", resolution=512, n_train=1, n_labeled=1,
                                   n_test=1, n_test_shifted=1, show_progress=False)
    assert not (tmp_path / "x").exists()
