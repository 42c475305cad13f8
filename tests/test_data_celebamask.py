"""CelebAMask-HQ importer on a tiny fixture in the published layout."""

import numpy as np
import pytest
from PIL import Image

from partseg.data import FACE_CLASSES, FolderSplit, import_celebamask, validate_folder_dataset
from partseg.data.celebamask import compose_mask
from partseg.plumbing.errors import PartsegError

C = {name: i for i, name in enumerate(FACE_CLASSES)}
IGNORE = 255

# Part rectangles (rows, cols) on a 32x32 mask; overlaps exercise the paint order.
PARTS = {
    "skin": (slice(8, 24), slice(8, 24)),
    "eye_g": (slice(11, 16), slice(4, 28)),   # glasses: beyond the skin at cols 4..7
    "l_eye": (slice(12, 14), slice(10, 13)),
    "r_eye": (slice(12, 14), slice(18, 21)),
    "l_brow": (slice(10, 11), slice(10, 14)),  # row 10 is under the hair
    "r_brow": (slice(10, 12), slice(18, 22)),
    "nose": (slice(14, 19), slice(15, 17)),
    "u_lip": (slice(20, 21), slice(13, 19)),
    "mouth": (slice(21, 22), slice(13, 19)),
    "l_lip": (slice(22, 23), slice(13, 19)),
    "l_ear": (slice(14, 18), slice(6, 8)),
    "ear_r": (slice(18, 22), slice(2, 4)),     # earring below the ear, over the background
    "hair": (slice(2, 11), slice(6, 26)),
    "hat": (slice(0, 5), slice(6, 26)),
    "neck": (slice(24, 29), slice(12, 20)),
    "neck_l": (slice(26, 28), slice(10, 22)),  # necklace: on the neck and a little beyond
    "cloth": (slice(28, 32), slice(0, 32)),
}


def _write_sample(root, image_id, parts=PARTS):
    photo = np.random.default_rng(image_id).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    images = root / "CelebA-HQ-img"
    images.mkdir(parents=True, exist_ok=True)
    Image.fromarray(photo).save(images / f"{image_id}.jpg", quality=95)
    folder = root / "CelebAMask-HQ-mask-anno" / str(image_id // 2000)
    folder.mkdir(parents=True, exist_ok=True)
    for part, (rows, cols) in parts.items():
        binary = np.zeros((32, 32, 3), np.uint8)  # stored as RGB 0/255, as some releases do
        binary[rows, cols] = 255
        Image.fromarray(binary).save(folder / f"{image_id:05d}_{part}.png")


@pytest.fixture
def celeba(tmp_path):
    root = tmp_path / "CelebAMask-HQ"
    for image_id in range(6):
        _write_sample(root, image_id)
    return root


def test_paint_order_and_class_protocol(celeba):
    folder = celeba / "CelebAMask-HQ-mask-anno" / "0"
    mask = compose_mask({p: folder / f"00000_{p}.png" for p in PARTS})
    assert mask[20, 15] == C["mouth"] and mask[21, 15] == C["mouth"] and mask[22, 15] == C["mouth"]
    assert mask[12, 11] == C["eye"] and mask[12, 19] == C["eye"]   # eyes seen through the glasses
    assert mask[13, 9] == C["skin"]       # skin under the glasses stays skin
    assert mask[13, 5] == IGNORE          # glasses frame beyond the face: ignore
    assert mask[11, 19] == C["eyebrow"] and mask[10, 11] == C["hair"]  # hair covers the brow
    assert mask[16, 6] == C["ear"] and mask[20, 3] == IGNORE           # ear; the earring alone
    assert mask[26, 15] == C["neck"] and mask[26, 11] == IGNORE        # necklace on / off the neck
    assert mask[3, 10] == IGNORE and mask[6, 10] == C["hair"]          # the hat hides the hair
    assert mask[16, 15] == C["nose"] and mask[30, 1] == C["cloth"] and mask[20, 30] == C["background"]


def test_import_writes_the_folder_format(celeba, tmp_path):
    out = tmp_path / "imported"
    summary = import_celebamask(celeba, out, resolution=32, n_train=2, n_labeled=2, n_test=2, seed=1)
    assert summary["splits"] == {"test": {"images": 2, "masks": 2}, "labeled": {"images": 2, "masks": 2},
                                 "train": {"images": 2, "masks": 0}}
    validate_folder_dataset(out)
    stems = {split: FolderSplit(out, split).stems for split in ("train", "labeled", "test")}
    assert sorted(sum(stems.values(), [])) == [f"{i:05d}" for i in range(6)]  # disjoint, complete
    test = FolderSplit(out, "test")
    assert test.image(0).shape == (32, 32, 3)
    mask = test.mask(0)
    assert mask.shape == (32, 32) and mask[12, 11] == C["eye"] and mask[3, 10] == IGNORE
    assert not FolderSplit(out, "train").has_masks
    assert (out / "preview.png").is_file()
    # Same seed, same split; another seed, another split.
    again = import_celebamask(celeba, tmp_path / "again", resolution=32, n_train=2, n_labeled=2,
                              n_test=2, seed=1)
    assert again["splits"] == summary["splits"]
    assert FolderSplit(tmp_path / "again", "test").stems == stems["test"]
    other = tmp_path / "other"
    import_celebamask(celeba, other, resolution=32, n_train=2, n_labeled=2, n_test=2, seed=2)
    assert FolderSplit(other, "test").stems != stems["test"]


def test_import_resizes_to_the_resolution(celeba, tmp_path):
    import_celebamask(celeba, tmp_path / "small", resolution=16, n_train=1, n_labeled=1, n_test=1)
    labeled = FolderSplit(tmp_path / "small", "labeled")
    assert labeled.image(0).shape == (16, 16, 3) and labeled.mask(0).shape == (16, 16)
    assert set(np.unique(labeled.mask(0))) <= set(range(len(FACE_CLASSES))) | {IGNORE}


def test_missing_masks_are_named(celeba, tmp_path):
    _write_sample(celeba, 6, parts={})  # a photo with no part masks at all
    with pytest.raises(PartsegError, match="00006_skin.png"):
        import_celebamask(celeba, tmp_path / "out", resolution=16, n_train=0, n_labeled=4, n_test=3)
    assert not (tmp_path / "out").exists()


def test_missing_folders_are_named(celeba, tmp_path):
    with pytest.raises(PartsegError, match="CelebA-HQ-img"):
        import_celebamask(tmp_path, tmp_path / "out", resolution=16, n_train=1, n_labeled=1, n_test=1)
    for path in sorted((celeba / "CelebAMask-HQ-mask-anno").rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    with pytest.raises(PartsegError, match="CelebAMask-HQ-mask-anno"):
        import_celebamask(celeba, tmp_path / "out", resolution=16, n_train=1, n_labeled=1, n_test=1)


def test_asking_for_more_images_than_there_are(celeba, tmp_path):
    with pytest.raises(PartsegError, match="n_train"):
        import_celebamask(celeba, tmp_path / "out", resolution=16, n_train=10, n_labeled=1, n_test=1)


def test_a_corrupt_part_mask_is_named(celeba, tmp_path):
    (celeba / "CelebAMask-HQ-mask-anno" / "0" / "00003_nose.png").write_bytes(b"broken")
    with pytest.raises(PartsegError, match="00003_nose.png"):
        import_celebamask(celeba, tmp_path / "out", resolution=16, n_train=0, n_labeled=3, n_test=3)
