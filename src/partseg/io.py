"""Files: atomic writes, and reading images and masks with clear errors.

Every output goes to a temporary name in the same folder and is renamed into place, so a
killed stage never leaves a half-written file that looks finished.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import yaml
from PIL import Image, UnidentifiedImageError

from partseg.errors import PartsegError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path` (same suffix); rename it to `path` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.partial{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder; on success it replaces `path` as a whole."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if path.exists():
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    os.replace(tmp, path)


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, read in blocks (checkpoints can be GBs)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_json(data: Any, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def load_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def save_yaml(data: Any, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(data, sort_keys=False))


def save_torch(obj: Any, path: str | os.PathLike) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def save_png(array: np.ndarray, path: str | os.PathLike) -> None:
    """Save an HxW (label ids) or HxWx3 uint8 array as PNG."""
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(array)).save(tmp, format="PNG")


def _open_image(path: Path) -> Image.Image:
    try:
        image = Image.open(path)
        image.load()  # decode now: a truncated file fails here, not later
        return image
    except FileNotFoundError:
        raise PartsegError(f"{path}: file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise PartsegError(f"{path}: unreadable or truncated image ({error})") from None


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image as HxWx3 uint8 RGB. Grayscale, RGBA, palette and 16-bit are converted."""
    path = Path(path)
    image = _open_image(path)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit (or 32-bit int) grayscale: scale to 8 bits instead of clipping.
        values = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if values.max() > 255 or image.mode.startswith("I;16") else 255.0
        gray = np.clip(np.round(values / peak * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        gray = np.clip(np.round(values * (255.0 if values.max() <= 1.0 else 1.0)), 0, 255)
        return np.repeat(gray.astype(np.uint8)[:, :, None], 3, axis=2)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Composite transparency on black rather than dropping alpha blindly.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    return np.asarray(image.convert("RGB"))


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Read a label mask as HxW uint8 ids. A mask must be single-channel (L or P mode)."""
    path = Path(path)
    image = _open_image(path)
    if image.mode == "P":
        return np.asarray(image, dtype=np.uint8)  # palette indices are the label ids
    if image.mode == "L":
        return np.asarray(image, dtype=np.uint8)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        values = np.asarray(image)
        if values.max(initial=0) > 255:
            raise PartsegError(f"{path}: mask has label id {int(values.max())} > 255; "
                               "masks hold uint8 label ids (255 = ignore)")
        return values.astype(np.uint8)
    raise PartsegError(f"{path}: mask must be a single-channel image of label ids "
                       f"(mode L or P), found mode {image.mode} with {len(image.getbands())} channels")


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files in `folder` (png/jpg), sorted by name."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
