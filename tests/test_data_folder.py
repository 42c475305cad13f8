"""The folder dataset format: validation errors name the file, conversion, prepared copies."""

import numpy as np
import pytest
import yaml
from PIL import Image

from partseg.data import (FolderSplit, load_classes, load_split_arrays, prepare_folder_dataset,
                          validate_folder_dataset)
from partseg.plumbing.errors import PartsegError

CLASSES = ["background", "body", "head"]


def _save(array, path, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path) if mode else Image.fromarray(array).save(path)


def _picture(seed, h=12, w=16):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _mask(seed, h=12, w=16):
    return np.random.default_rng(seed).integers(0, len(CLASSES), (h, w), dtype=np.uint8)


@pytest.fixture
def dataset(tmp_path):
    """labeled and test with masks, train without: 3 images each, 16x12 px."""
    root = tmp_path / "user"
    root.mkdir()
    (root / "classes.yaml").write_text(yaml.safe_dump(CLASSES))
    for s, split in enumerate(["labeled", "test", "train"]):
        for i in range(3):
            suffix = "jpg" if (split == "train" and i == 0) else "png"
            _save(_picture(10 * s + i), root / split / "images" / f"img{i}.{suffix}")
            if split != "train":
                _save(_mask(10 * s + i), root / split / "masks" / f"img{i}.png")
    return root


def test_a_valid_dataset_passes_with_a_summary(dataset):
    summary = validate_folder_dataset(dataset)
    assert "3 classes" in summary
    assert "labeled: 3 images, 3 masks" in summary and "train: 3 images, no masks" in summary


def test_folder_split_reads_images_and_masks(dataset):
    labeled = FolderSplit(dataset, "labeled")
    assert labeled.stems == ["img0", "img1", "img2"] and len(labeled) == 3
    assert labeled.classes == CLASSES and labeled.has_masks
    assert np.array_equal(labeled.image(1), _picture(1))
    assert np.array_equal(labeled.mask(2), _mask(2))
    train = FolderSplit(dataset, "train")
    assert not train.has_masks and train.mask(0) is None
    assert train.image(0).shape == (12, 16, 3)  # the jpg


def test_load_split_arrays(dataset):
    images, masks, stems = load_split_arrays(dataset, "test", limit=2)
    assert images.shape == (2, 12, 16, 3) and images.dtype == np.uint8
    assert masks.shape == (2, 12, 16) and masks.dtype == np.uint8 and stems == ["img0", "img1"]
    images, masks, stems = load_split_arrays(dataset, "train")
    assert images.shape[0] == 3 and masks is None


def test_load_split_arrays_refuses_mixed_sizes(dataset):
    _save(_picture(99, h=20, w=20), dataset / "train" / "images" / "img9.png")
    with pytest.raises(PartsegError, match="img9.png"):
        load_split_arrays(dataset, "train")


def _break_mask_without_image(root):
    _save(_mask(5), root / "test" / "masks" / "orphan.png")
    return "orphan.png"


def _break_image_without_mask(root):
    _save(_picture(5), root / "labeled" / "images" / "lonely.png")
    return "lonely.png"


def _break_mask_size(root):
    _save(_mask(5, h=10, w=10), root / "test" / "masks" / "img1.png")
    return "img1.png"


def _break_label_range(root):
    mask = _mask(5)
    mask[0, 0] = 7
    _save(mask, root / "labeled" / "masks" / "img2.png")
    return "img2.png"


def _break_truncated_image(root):
    path = root / "test" / "images" / "img0.png"
    path.write_bytes(path.read_bytes()[:60])
    return "img0.png"


def _break_garbage_image(root):
    (root / "train" / "images" / "img1.png").write_bytes(b"not an image at all")
    return "img1.png"


def _break_rgb_mask(root):
    _save(_picture(5), root / "labeled" / "masks" / "img0.png")
    return "img0.png"


def _break_jpeg_mask(root):
    _save(_picture(5), root / "test" / "masks" / "img0.jpg")
    return "img0.jpg"


def _break_missing_split(root):
    for path in sorted((root / "test").rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    (root / "test").rmdir()
    return "test"


def _break_no_classes(root):
    (root / "classes.yaml").unlink()
    return "classes.yaml"


def _break_bad_classes(root):
    (root / "classes.yaml").write_text("background: 0\nbody: 1\n")
    return "classes.yaml"


def _break_duplicate_stem(root):
    _save(_picture(5), root / "train" / "images" / "img2.jpg")
    return "img2"


@pytest.mark.parametrize("breaker", [
    _break_mask_without_image, _break_image_without_mask, _break_mask_size, _break_label_range,
    _break_truncated_image, _break_garbage_image, _break_rgb_mask, _break_jpeg_mask,
    _break_missing_split, _break_no_classes, _break_bad_classes, _break_duplicate_stem,
])
def test_each_bad_input_names_the_file(dataset, breaker):
    culprit = breaker(dataset)
    with pytest.raises(PartsegError) as caught:
        validate_folder_dataset(dataset)
    assert culprit in str(caught.value)


def test_messages_say_what_is_wrong(dataset):
    _break_label_range(dataset)
    with pytest.raises(PartsegError, match=r"label id\(s\) \[7\] outside the 3 classes"):
        validate_folder_dataset(dataset)


def test_several_problems_are_reported_together(dataset):
    _break_mask_without_image(dataset)
    _break_label_range(dataset)
    with pytest.raises(PartsegError) as caught:
        validate_folder_dataset(dataset)
    assert "2 problems" in str(caught.value)
    assert "orphan.png" in str(caught.value) and "img2.png" in str(caught.value)


def test_ignore_label_is_allowed(dataset):
    mask = _mask(5)
    mask[:3] = 255
    _save(mask, dataset / "labeled" / "masks" / "img0.png")
    validate_folder_dataset(dataset)


def test_optional_masks_may_be_absent_but_not_partial(dataset):
    validate_folder_dataset(dataset)  # train has no masks: fine
    _save(_mask(1), dataset / "train" / "masks" / "img1.png")
    with pytest.raises(PartsegError, match="img0.jpg: image without a mask"):
        validate_folder_dataset(dataset)


def test_load_classes_accepts_a_list_or_a_classes_key(tmp_path):
    (tmp_path / "classes.yaml").write_text("- bg\n- wheel\n")
    assert load_classes(tmp_path) == ["bg", "wheel"]
    (tmp_path / "classes.yaml").write_text("classes: [bg, wheel, window]\n")
    assert load_classes(tmp_path) == ["bg", "wheel", "window"]
    (tmp_path / "classes.yaml").write_text("[bg, bg]\n")
    with pytest.raises(PartsegError, match="duplicate"):
        load_classes(tmp_path)
    (tmp_path / "classes.yaml").write_text("[bg, : oops\n")
    with pytest.raises(PartsegError, match="classes.yaml"):
        load_classes(tmp_path)


def test_other_image_modes_are_converted_not_rejected(dataset):
    gray = np.arange(12 * 16, dtype=np.uint8).reshape(12, 16)
    images = dataset / "train" / "images"
    _save(gray, images / "gray.png")
    rgba = np.dstack([_picture(3), np.full((12, 16), 255, np.uint8)])
    _save(rgba, images / "rgba.png")
    Image.fromarray(_picture(4)).convert("P", palette=Image.Palette.ADAPTIVE).save(images / "palette.png")
    deep = (np.arange(12 * 16, dtype=np.uint16).reshape(12, 16) * 300)
    Image.fromarray(deep).save(images / "deep.png")  # 16-bit grayscale
    assert Image.open(images / "deep.png").mode.startswith("I")
    validate_folder_dataset(dataset)
    train = FolderSplit(dataset, "train")
    for stem in ("gray", "rgba", "palette", "deep"):
        picture = train.image(train.stems.index(stem))
        assert picture.shape == (12, 16, 3) and picture.dtype == np.uint8
    assert np.array_equal(train.image(train.stems.index("gray"))[..., 0], gray)
    assert np.array_equal(train.image(train.stems.index("rgba")), _picture(3))
    deep_read = train.image(train.stems.index("deep"))[..., 0].astype(int)
    assert deep_read.max() > 200 and np.all(np.diff(deep_read.ravel()) >= 0)  # scaled, not clipped


def test_prepare_writes_a_square_normalised_copy(dataset, tmp_path):
    # A wide image whose left half is class 1 (red) and right half class 2 (blue).
    image = np.zeros((20, 40, 3), np.uint8)
    image[:, :20] = (255, 0, 0)
    image[:, 20:] = (0, 0, 255)
    mask = np.ones((20, 40), np.uint8)
    mask[:, 20:] = 2
    _save(image, dataset / "labeled" / "images" / "wide.png")
    _save(mask, dataset / "labeled" / "masks" / "wide.png")
    out = tmp_path / "prepared"
    summary = prepare_folder_dataset(dataset, out, resolution=8)
    assert summary["splits"]["labeled"] == {"images": 4, "masks": 4}
    assert summary["splits"]["train"] == {"images": 3, "masks": 0}
    assert load_classes(out) == CLASSES and (out / "preview.png").is_file()
    images, masks, stems = load_split_arrays(out, "labeled")
    assert images.shape == (4, 8, 8, 3) and masks.shape == (4, 8, 8)
    assert stems == ["img0", "img1", "img2", "wide"]
    wide_image, wide_mask = images[3], masks[3]
    # Centre crop (columns 10..29 of 40) then resize: left half red/class 1, right half blue/class 2.
    assert np.all(wide_mask[:, :4] == 1) and np.all(wide_mask[:, 4:] == 2)
    assert np.all(wide_image[:, :4, 0] == 255) and np.all(wide_image[:, 4:, 2] == 255)
    assert set(np.unique(masks[:3])) <= {0, 1, 2}
    assert not (out / "train" / "masks").exists()
    assert (out / "train" / "images" / "img0.png").is_file()  # the jpg became a png
    validate_folder_dataset(out)


def test_prepare_refuses_a_broken_dataset_and_writes_nothing(dataset, tmp_path):
    _break_mask_size(dataset)
    with pytest.raises(PartsegError, match="img1.png"):
        prepare_folder_dataset(dataset, tmp_path / "prepared", resolution=8)
    assert not (tmp_path / "prepared").exists()
