"""The annotation folder that `partseg annotate` edits, in the project's folder format.

    <root>/images/<stem>.png|jpg   the samples to annotate (exported by the `annotate` stage)
    <root>/masks/<stem>.png        uint8 label ids, 255 = ignore (unlabelled)
    <root>/classes.yaml            ordered class names; index = label id
    <root>/candidates.json         optional, written by the `annotate` stage when the person
                                   chooses the shots: {"k": shots needed, "order": stems,
                                   best first}; the page lists the images in that order and
                                   marks the first k as suggested

Requests name images by stem only, and a stem is looked up in the listing of images/: a
request never becomes a file path, so nothing outside the folder can be read or written.
A mask file exists exactly when at least one pixel is labelled, so "annotated" means the same
here and in the pipeline (which needs masks/<stem>.png).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
from PIL import Image

from partseg.data.folder import IGNORE, load_classes
from partseg.plumbing.errors import PartsegError
from partseg.plumbing.io import IMAGE_SUFFIXES, check_image_size, read_mask, save_png


class AnnotationFolder:
    """Lists, reads, checks and atomically saves the masks of one annotation folder."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.images_dir = self.root / "images"
        self.masks_dir = self.root / "masks"
        self.classes_file = self.root / "classes.yaml"
        if not self.images_dir.is_dir():
            raise PartsegError(
                f"{self.images_dir}: folder not found. Run the pipeline with annotate.source: manual "
                f"first (it exports the samples to annotate there), or pass --dir")
        self.classes = load_classes(self.root)  # the same reader as the pipeline's
        if not self.image_files():
            raise PartsegError(f"{self.images_dir}: no .png/.jpg images to annotate")
        # One save at a time: the atomic temp name is fixed per mask, so two concurrent
        # saves of the same mask must not interleave.
        self._save_lock = threading.Lock()

    def image_files(self) -> dict[str, Path]:
        """stem -> image path, sorted by stem; read fresh so newly exported images appear."""
        files: dict[str, Path] = {}
        for path in sorted(self.images_dir.iterdir()):
            if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
                continue
            if path.stem.endswith(".partial"):  # left over by a killed atomic write
                continue
            if path.stem in files:
                raise PartsegError(f"{files[path.stem]} and {path}: two images share the stem "
                                   f"'{path.stem}'; keep one")
            files[path.stem] = path
        return files

    def image_path(self, stem: str) -> Path:
        files = self.image_files()
        if stem not in files:
            raise KeyError(stem)
        return files[stem]

    def mask_path(self, stem: str) -> Path:
        self.image_path(stem)  # only stems of listed images have masks
        return self.masks_dir / f"{stem}.png"

    def image_size(self, stem: str) -> tuple[int, int]:
        """(width, height) read from the image header."""
        path = self.image_path(stem)
        try:
            with Image.open(path) as image:
                size = image.size
        except (OSError, Image.DecompressionBombError) as error:
            raise PartsegError(f"{path}: unreadable image ({error})") from None
        check_image_size(path, *size)  # its mask upload is bounded by this size
        return size

    def load_mask(self, stem: str) -> np.ndarray | None:
        """The saved mask (checked against its image and the classes), or None if not annotated."""
        path = self.mask_path(stem)
        if not path.exists():
            return None
        mask = read_mask(path)
        self.check_mask(stem, mask, source=str(path))
        return mask

    def check_mask(self, stem: str, mask: np.ndarray, source: str) -> None:
        """Refuse a mask of the wrong size or with a label id outside classes.yaml."""
        width, height = self.image_size(stem)
        if mask.ndim != 2 or mask.shape != (height, width):
            found = "x".join(str(n) for n in mask.shape[::-1])
            raise PartsegError(f"{source}: mask is {found} but image {stem} is {width}x{height}")
        bad = np.unique(mask[(mask != IGNORE) & (mask >= len(self.classes))])
        if bad.size:
            raise PartsegError(
                f"{source}: label id {int(bad[0])} is outside the {len(self.classes)} classes of "
                f"{self.classes_file} (ids 0..{len(self.classes) - 1}, {IGNORE} = ignore)")

    def save_mask(self, stem: str, mask: np.ndarray) -> bool:
        """Check and save atomically; an all-ignore mask removes the file. True if a file is kept."""
        path = self.mask_path(stem)
        mask = np.asarray(mask)
        if mask.dtype != np.uint8:
            raise PartsegError(f"mask for {stem}: expected uint8 label ids, got {mask.dtype}")
        self.check_mask(stem, mask, source=f"mask for {stem}")
        with self._save_lock:
            if (mask == IGNORE).all():
                path.unlink(missing_ok=True)
                return False
            save_png(mask, path)
            return True

    def candidates(self) -> dict:
        """{"k": shots needed, "order": stems best first}, or {} without candidates.json."""
        path = self.root / "candidates.json"
        if not path.is_file():
            return {}
        try:
            data = json.loads(path.read_text())
            return {"k": int(data["k"]), "order": [str(stem) for stem in data["order"]]}
        except (ValueError, KeyError, TypeError):
            raise PartsegError(f"{path}: not a candidates file written by the annotate stage; "
                               f"delete it to list the images by name") from None

    def status(self, stem: str) -> dict:
        """What the page lists per image: size, whether annotated, share of labelled pixels."""
        width, height = self.image_size(stem)
        path = self.masks_dir / f"{stem}.png"
        labelled = 0.0
        if path.exists():
            try:
                labelled = float((read_mask(path) != IGNORE).mean())
            except PartsegError:
                labelled = 0.0  # the page reports the problem when the mask is opened
        order = self.candidates().get("order", [])
        rank = order.index(stem) + 1 if stem in order else None
        return {"stem": stem, "width": width, "height": height,
                "annotated": path.exists(), "labelled": round(labelled, 4), "rank": rank}

    def progress(self) -> dict:
        """Masks painted, out of the shots needed (k of candidates.json, else every image)."""
        stems = list(self.image_files())
        done = sum((self.masks_dir / f"{stem}.png").exists() for stem in stems)
        needed = self.candidates().get("k", len(stems))
        return {"annotated": done, "total": needed, "count": len(stems)}
