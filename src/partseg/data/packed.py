"""The packed dataset: what the `dataset` stage writes to data/dataset/ and every stage reads.

    <root>/dataset.yaml              manifest: layout, source summary, per split: count, size, fingerprint
    <root>/classes.yaml              ordered class names (as in the folder format)
    <root>/preview.png               a picture of the dataset for people to look at
    <root>/<split>/images.npy        uint8 [N, H, W, 3]
    <root>/<split>/masks.npy         uint8 [N, H, W] label ids, 255 = ignore (splits with masks)
    <root>/<split>/stems.txt         the N image stems, one a line, in array order

Why packed: the default demo has 11.3k images, i.e. 22.6k PNG files. DVC checks every file
of a tracked folder on `dvc status` (and hashes each one the first time), which alone took
~10 s; a dozen array files are checked in milliseconds. The arrays are plain `.npy`
(uncompressed, so a stage can memory-map a split and read only the first `limit` images),
and at the demo's 32 px they take about as much disk as the PNGs did (a PNG file of a few
hundred bytes still occupies a whole file-system block).

The user's own data stays in the folder format (partseg.data.folder): that is the *input* of
the `dataset` stage, which validates it, normalises it and packs it here. Read a packed
dataset through `partseg.data.folder.load_split_arrays`, which reads either layout.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import yaml

from partseg.plumbing.errors import PartsegError
from partseg.plumbing.io import atomic_dir, list_images, save_yaml

MANIFEST = "dataset.yaml"
LAYOUT = "packed-npy-v1"


def is_packed(root: str | os.PathLike) -> bool:
    """True when `root` is a packed dataset (it has the manifest), False for a folder dataset."""
    return (Path(root) / MANIFEST).is_file()


def load_manifest(root: str | os.PathLike) -> dict:
    path = Path(root) / MANIFEST
    try:
        manifest = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise PartsegError(f"{path}: cannot read the dataset manifest ({error}); "
                           "rebuild it with the `dataset` stage") from None
    if not isinstance(manifest, dict) or manifest.get("layout") != LAYOUT:
        raise PartsegError(f"{path}: not a {LAYOUT} dataset manifest; rebuild it with the "
                           "`dataset` stage")
    return manifest


def folder_fingerprint(images_dir: str | os.PathLike) -> str:
    """Identity of a folder of training images: names and byte sizes of its files (cheap: no
    file is read). The formula the GAN trainer uses for a user's folder."""
    listing = "\n".join(f"{p.name}\t{p.stat().st_size}" for p in list_images(images_dir))
    return hashlib.sha1(listing.encode()).hexdigest()[:16]


def pixel_fingerprint(stems: list[str], images: np.ndarray) -> str:
    """Identity of a packed split: its stems and its pixels. Unlike byte sizes of PNG files it
    does not change with the PNG encoder (a new Pillow or zlib compresses the same images to
    other sizes), so a GAN snapshot resumes on any machine that renders the same data."""
    digest = hashlib.sha1("\n".join(stems).encode())
    digest.update(np.ascontiguousarray(images).tobytes())
    return digest.hexdigest()[:16]


def split_fingerprint(root: str | os.PathLike, split: str) -> str:
    """A short id of a split's images, for resuming training only on the same data."""
    if not is_packed(root):
        return folder_fingerprint(Path(root) / split / "images")
    splits = load_manifest(root)["splits"]
    if split not in splits:
        raise PartsegError(f"{Path(root) / MANIFEST}: no split {split!r} "
                           f"(the dataset has {', '.join(splits)})")
    return str(splits[split]["fingerprint"])


def write_stems(path: str | os.PathLike, stems: list[str]) -> None:
    """The stems one a line, UTF-8, "\n" only (folder.stem_problem refuses names that would
    not come back: control characters, bytes that are not UTF-8)."""
    Path(path).write_bytes("".join(f"{stem}\n" for stem in stems).encode("utf-8"))


def read_stems(path: str | os.PathLike) -> list[str]:
    """What write_stems wrote: split on "\n" alone, so spaces and any other character in a
    name are kept (read_text() would also split on "\r", split() on every space)."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise PartsegError(f"{path}: unreadable ({error}); rebuild the dataset "
                           "(stage `dataset`)") from None
    return text.split("\n")[:-1] if text else []


def pack_folder_dataset(folder: str | os.PathLike, out_dir: str | os.PathLike,
                        summary: dict | None = None) -> dict:
    """Pack a prepared folder dataset (equal-size images per split) into `out_dir`.

    `summary` (what the generator or importer reported) is kept in the manifest. Returns the
    manifest.
    """
    from partseg.data.folder import FolderSplit, _splits_present, load_classes, load_split_arrays

    folder = Path(folder)
    classes = load_classes(folder)
    manifest = {"layout": LAYOUT, "classes": classes, "splits": {}, "source": summary or {}}
    with atomic_dir(out_dir) as tmp:
        shutil.copyfile(folder / "classes.yaml", tmp / "classes.yaml")
        if (folder / "preview.png").is_file():
            shutil.copyfile(folder / "preview.png", tmp / "preview.png")
        for split in _splits_present(folder):
            if not len(FolderSplit(folder, split)):
                continue  # an empty split (e.g. n_test_shifted: 0) is simply absent
            images, masks, stems = load_split_arrays(folder, split)
            (tmp / split).mkdir()
            np.save(tmp / split / "images.npy", images)
            if masks is not None:
                np.save(tmp / split / "masks.npy", masks)
            write_stems(tmp / split / "stems.txt", stems)
            manifest["splits"][split] = {
                "images": len(stems), "masks": masks is not None,
                "height": int(images.shape[1]), "width": int(images.shape[2]),
                "fingerprint": pixel_fingerprint(stems, images)}
        save_yaml(manifest, tmp / MANIFEST)
    return manifest


def load_packed_split(root: str | os.PathLike, split: str, limit: int | None = None
                      ) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """Images [N,H,W,3], masks [N,H,W] (or None) and stems of one split of a packed dataset."""
    root = Path(root)
    splits = load_manifest(root)["splits"]
    if split not in splits:
        raise PartsegError(f"{root}: split {split!r} not found (the dataset has "
                           f"{', '.join(splits) or 'no splits'})")
    folder = root / split
    stems = read_stems(folder / "stems.txt")
    count = len(stems) if limit is None else min(int(limit), len(stems))

    def read(name: str, ndim: int) -> np.ndarray:
        path = folder / name
        try:
            # Memory-mapped, so `limit` reads only the images asked for; then a private copy.
            array = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as error:
            raise PartsegError(f"{path}: unreadable ({error}); rebuild the dataset "
                               "(stage `dataset`)") from None
        rgb = ndim == 3 or array.shape[-1] == 3  # images end in 3 channels, masks do not
        if array.dtype != np.uint8 or array.ndim != ndim or array.shape[0] != len(stems) or not rgb:
            raise PartsegError(f"{path}: shape {array.shape} {array.dtype} does not match "
                               f"{len(stems)} stems; rebuild the dataset (stage `dataset`)")
        return np.array(array[:count])

    images = read("images.npy", 4)
    masks = read("masks.npy", 3) if splits[split]["masks"] else None
    if masks is not None and masks.shape[1:] != images.shape[1:3]:
        raise PartsegError(f"{folder / 'masks.npy'}: masks {masks.shape[1:]} differ from "
                           f"images {images.shape[1:3]}")
    return images, masks, stems[:count]
