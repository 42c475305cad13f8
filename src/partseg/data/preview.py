"""A picture of a folder dataset for people to look at: images, their masks, a class legend."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from partseg.data.folder import FolderSplit, load_classes
from partseg.plumbing.errors import PartsegError
from partseg.plumbing.io import save_png
from partseg.visualize import image_grid, legend, overlay, stack_vertical, text_strip

# Which split shows the dataset best: a labelled one first.
_MAIN_SPLITS = ("labeled", "test", "train")
_EXTRA_SPLITS = ("test_shifted",)


def _split_if_present(root: Path, split: str) -> FolderSplit | None:
    return FolderSplit(root, split) if (root / split / "images").is_dir() else None


def _section(data: FolderSplit, count: int, columns: int, upscale: int) -> list[np.ndarray]:
    """A caption, then per row of `columns` images: the images, then their masks overlaid."""
    count = min(count, len(data))
    rows = []
    for start in range(0, count, columns):
        picks = range(start, min(start + columns, count))
        images = [data.image(i) for i in picks]
        rows.append(images)
        if data.has_masks:
            rows.append([overlay(image, data.mask(i), alpha=0.55)
                         for image, i in zip(images, picks)])
    grid = image_grid(rows, pad=2, upscale=upscale)
    what = "images (top) and masks overlaid (below)" if data.has_masks else "images (no masks)"
    return [text_strip(f"{data.split}: {what}", grid.shape[1]), grid]


def write_preview(dataset_dir: str | os.PathLike, out_png: str | os.PathLike, n: int = 16,
                  columns: int = 8) -> Path:
    """Write a grid of `n` images of the main split with their masks overlaid, a row of
    `test_shifted` when present, and the class legend. Returns the PNG's path."""
    root = Path(dataset_dir)
    classes = load_classes(root)
    splits = [s for s in (_split_if_present(root, name) for name in _MAIN_SPLITS) if s and len(s)]
    labelled = [s for s in splits if s.has_masks]
    main = (labelled or splits or [None])[0]
    if main is None:
        raise PartsegError(f"{root}: no split with images to preview")
    sample = main.image(0)
    upscale = max(1, 96 // max(sample.shape[:2]))  # make tiny images readable
    parts = _section(main, n, columns, upscale)
    for name in _EXTRA_SPLITS:
        extra = _split_if_present(root, name)
        if extra is not None and len(extra):
            parts += _section(extra, min(columns, max(1, n // 2)), columns, upscale)
    width = max(p.shape[1] for p in parts)
    parts.append(legend(classes, width=width))
    out_png = Path(out_png)
    save_png(stack_vertical(parts, pad=4), out_png)
    return out_png
