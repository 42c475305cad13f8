"""The packed dataset layout (data/dataset/): written by the `dataset` stage from the folder
format, read back identically by load_split_arrays, viewable (preview.png), a few files."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from partseg.data import (generate_synthetic_dataset, load_classes, load_split_arrays,
                          pack_folder_dataset, split_fingerprint)
from partseg.plumbing.errors import PartsegError
from partseg.gan.train import ImageFolderData

ROOT = Path(__file__).resolve().parent.parent
SIZES = dict(n_train=5, n_labeled=3, n_test=2, n_test_shifted=1)


@pytest.fixture(scope="module")
def folder_and_packed(tmp_path_factory):
    root = tmp_path_factory.mktemp("packed")
    summary = generate_synthetic_dataset(root / "folder", resolution=32, seed=0, workers=1,
                                         show_progress=False, **SIZES)
    manifest = pack_folder_dataset(root / "folder", root / "packed", summary=summary)
    return root / "folder", root / "packed", manifest


def test_packed_reads_back_exactly_what_the_folder_holds(folder_and_packed):
    folder, packed, manifest = folder_and_packed
    assert sorted(manifest["splits"]) == ["labeled", "test", "test_shifted", "train"]
    for split in manifest["splits"]:
        expected = load_split_arrays(folder, split)
        got = load_split_arrays(packed, split)
        np.testing.assert_array_equal(got[0], expected[0])
        np.testing.assert_array_equal(got[1], expected[1])
        assert got[2] == expected[2]
    images, masks, stems = load_split_arrays(packed, "train", limit=2)
    assert images.shape == (2, 32, 32, 3) and masks.shape == (2, 32, 32) and len(stems) == 2
    images.fill(0)  # a private copy: the file is not touched
    assert load_split_arrays(packed, "train")[0].any()


def test_packed_is_few_files_with_classes_and_preview(folder_and_packed):
    _, packed, _ = folder_and_packed
    files = sorted(str(p.relative_to(packed)) for p in packed.rglob("*") if p.is_file())
    assert len(files) == 3 + 4 * 3, files  # manifest, classes, preview; 3 files per split
    assert load_classes(packed)[:2] == ["background", "skin"]
    assert (packed / "preview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_gan_training_data_is_the_same_on_either_layout(folder_and_packed):
    folder, packed, _ = folder_and_packed
    from_folder = ImageFolderData(folder / "train" / "images", 32)
    from_packed = ImageFolderData.from_dataset(packed, "train", 32)
    assert from_packed.fingerprint == split_fingerprint(packed, "train")
    assert len(from_packed) == len(from_folder)
    assert torch_equal(from_packed.images, from_folder.images)


def torch_equal(a, b) -> bool:
    return bool((a == b).all()) and a.shape == b.shape


def test_damaged_or_missing_parts_name_the_file(folder_and_packed, tmp_path):
    _, packed, _ = folder_and_packed
    with pytest.raises(PartsegError, match="split 'nope' not found"):
        load_split_arrays(packed, "nope")
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(packed, broken)
    (broken / "test" / "masks.npy").write_bytes(b"garbage")
    with pytest.raises(PartsegError, match=r"test/masks.npy: unreadable"):
        load_split_arrays(broken, "test")
    np.save(broken / "test" / "images.npy", np.zeros((5, 32, 32, 3), np.uint8))
    with pytest.raises(PartsegError, match=r"test/images.npy: shape"):
        load_split_arrays(broken, "test")


def test_dataset_stage_packs_a_users_folder(folder_and_packed, tmp_path):
    """data.source: folder: the user's PNG folder is the input, the packed copy the output."""
    folder, _, _ = folder_and_packed
    params = (ROOT / "tests" / "tiny_params.yaml").read_text().replace(
        "data: {source: synthetic, path: data/user, resolution: 32}",
        f"data: {{source: folder, path: {folder}, resolution: 32}}").replace(
        "annotate: {source: simulated", "annotate: {source: inverted")
    (tmp_path / "params.yaml").write_text(params)
    result = subprocess.run([sys.executable, "-m", "stages.dataset", "--params", str(tmp_path / "params.yaml"),
                    "--threads", "1", "--out", str(tmp_path / "dataset")],
                   cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    out = tmp_path / "dataset"
    assert not (tmp_path / "dataset.folder.tmp").exists()  # scratch folder removed
    images, masks, stems = load_split_arrays(out, "labeled")
    assert images.shape == (3, 32, 32, 3) and masks.shape == (3, 32, 32)
    assert stems == load_split_arrays(folder, "labeled")[2]
    assert (out / "preview.png").is_file()


def test_the_packed_fingerprint_follows_the_pixels_not_the_png_encoder(folder_and_packed,
                                                                        tmp_path):
    """A GAN run id includes the data's fingerprint: re-encoding the same images (another
    Pillow, another zlib) must not change it, changing one pixel must."""
    import shutil

    from PIL import Image

    folder, packed, _ = folder_and_packed
    copy = tmp_path / "reencoded"
    shutil.copytree(folder, copy)
    for path in sorted((copy / "train" / "images").iterdir()):
        Image.open(path).save(path, compress_level=0)  # same pixels, other bytes
    same = pack_folder_dataset(copy, tmp_path / "same")
    assert split_fingerprint(tmp_path / "same", "train") == split_fingerprint(packed, "train")
    assert same["splits"]["train"]["fingerprint"] == split_fingerprint(packed, "train")
    first = sorted((copy / "train" / "images").iterdir())[0]
    pixels = np.array(Image.open(first))
    pixels[0, 0] = 255 - pixels[0, 0]
    Image.fromarray(pixels).save(first)
    pack_folder_dataset(copy, tmp_path / "changed")
    assert split_fingerprint(tmp_path / "changed", "train") != split_fingerprint(packed, "train")
