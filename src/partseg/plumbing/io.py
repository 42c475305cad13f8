"""Files: atomic writes, and reading images and masks with clear errors.

Every output goes to a temporary name in the same folder and is renamed into place, so a
killed stage never leaves a half-written file that looks finished.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import warnings
from pathlib import Path
from typing import IO, Any, Iterator

import numpy as np
import yaml
from PIL import Image, UnidentifiedImageError

from partseg.plumbing.errors import PartsegError

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
    """Yield an empty temporary folder; on success it replaces `path` as a whole.

    Until then the previous `path` stays untouched (DVC keeps it too: every out is `persist`),
    so a failure or a kill at any point leaves either the old result or the new one, never a
    hole or a mix. The swap is two renames; the old folder is deleted after.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    old = path.with_name(path.name + ".old.tmp")
    for leftover in (tmp, old):  # from a run killed earlier
        if leftover.exists():
            shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    if old.exists():
        shutil.rmtree(old) if old.is_dir() else old.unlink()


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


class DuplicateKeyError(yaml.YAMLError):
    """A YAML mapping that names one key twice."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.safe_load that refuses a key written twice in one mapping (plain YAML keeps the
    last one silently, so an edit further up a file would be ignored)."""

    def construct_mapping(self, node, deep=False):
        first_line: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                if key in first_line:
                    raise DuplicateKeyError(f"line {line}: key {key!r} is written twice (first "
                                            f"on line {first_line[key]}); keep one")
                first_line[key] = line
            except TypeError:  # an unhashable key: the base class reports it
                continue
        return super().construct_mapping(node, deep)


def load_yaml(path: str | os.PathLike) -> Any:
    """A YAML file's data: safe types only, duplicate keys refused; a PartsegError names the
    file (and the line) for a missing, unreadable or invalid file."""
    path = Path(path)
    try:
        return yaml.load(path.read_text(), Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except FileNotFoundError:
        raise PartsegError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise PartsegError(f"{path}: is a folder; name a YAML file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise PartsegError(f"{path}: unreadable ({error})") from None
    except DuplicateKeyError as error:
        raise PartsegError(f"{path}: {error}") from None
    except yaml.YAMLError as error:
        raise PartsegError(f"{path}: not valid YAML ({' '.join(str(error).split())})") from None


def _unpickling_reason(text: str) -> str:
    """The line of torch's weights-only refusal that says what was found (torch's message is
    a page of advice, one line of which is about this file)."""
    found = re.search(r"GLOBAL ([\w.]+)", text)
    if found:
        return f"it pickles {found.group(1)}, which could run code"
    advice = ("Weights only load failed", "Please file an issue", "Check the documentation")
    lines = [line.strip() for line in text.splitlines()
             if line.strip() and not line.strip().startswith(advice)]
    return lines[0] if lines else "not a weights-only file"


def load_weights(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """torch.load with weights_only=True (tensors, numbers, strings and containers only): a
    tampered file that pickles code is refused, named, instead of run. Every failure is a
    PartsegError naming the file."""
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise PartsegError(f"{path}: file not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise PartsegError(f"{path}: refused to load: not plain tensor data "
                           f"({_unpickling_reason(str(error))}); delete it and rerun the step "
                           "that writes it") from None
    except (RuntimeError, EOFError, OSError, ValueError, TypeError, AttributeError) as error:
        raise PartsegError(f"{path}: not a readable PyTorch file ({type(error).__name__}); "
                           "delete it and rerun the step that writes it") from None


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


# The largest image partseg decodes, anywhere (check, the dataset stage, segment, the annotation
# server): 40 megapixels, e.g. 7746x5164. Why a limit: a PNG of a few hundred KB can declare
# 14000x14000 (588 MB decoded as RGB, more as it is converted), and Pillow's own guard only
# stops at 179 megapixels, with an exception no caller expected. Checked on the header, before
# any pixel is decoded.
MAX_IMAGE_PIXELS = 40_000_000
# Pillow warns from 89 megapixels on: such an image is refused here anyway, by one message
# instead of a warning's several lines before it.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


def check_image_size(name: str | os.PathLike, width: int, height: int) -> None:
    """Refuse an image (named `name`) whose width x height exceeds MAX_IMAGE_PIXELS."""
    if width * height > MAX_IMAGE_PIXELS:
        raise PartsegError(f"{name}: image is {width}x{height} ({width * height / 1e6:.0f} "
                           f"megapixels); partseg reads at most {MAX_IMAGE_PIXELS // 1_000_000} "
                           "megapixels: downscale it first")


def open_image(source: str | os.PathLike | IO[bytes], name: str | os.PathLike | None = None,
               *, formats: tuple[str, ...] | None = None) -> Image.Image:
    """Open and decode an image (a path or a binary file), its size checked from the header
    before decoding. `formats` (e.g. ("PNG",)) is checked on the content, not the suffix.
    Every failure is a PartsegError naming `name` (default: the path)."""
    name = source if name is None else name
    try:
        image = Image.open(source)  # reads the header only
    except FileNotFoundError:
        raise PartsegError(f"{name}: file not found") from None
    except Image.DecompressionBombError:
        # Pillow refuses far larger images on its own, before we see their size.
        raise PartsegError(f"{name}: image has more than {MAX_IMAGE_PIXELS // 1_000_000} "
                           "megapixels, the most partseg reads: downscale it first") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise PartsegError(f"{name}: unreadable or truncated image ({error})") from None
    check_image_size(name, *image.size)
    if formats is not None and image.format not in formats:
        raise PartsegError(f"{name}: the file holds a {image.format or 'unknown'} image, not "
                           f"{' or '.join(formats)}; save it as {formats[0]}")
    try:
        image.load()  # decode now: a truncated file fails here, not later
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise PartsegError(f"{name}: unreadable or truncated image ({error})") from None
    return image


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image as HxWx3 uint8 RGB. Grayscale, RGBA, palette and 16-bit are converted."""
    path = Path(path)
    image = open_image(path)
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
    """Read a label mask as HxW uint8 ids. A mask must be a PNG file (by its content: a JPEG
    named .png has had its label ids changed by compression), single-channel (L or P mode)."""
    path = Path(path)
    image = open_image(path, formats=("PNG",))
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
