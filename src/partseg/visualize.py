"""Pictures of images and label masks: palettes, overlays, grids and class legends.

Shared by the dataset preview, evaluation figures, `partseg segment` and the annotation tool.
Everything takes and returns uint8 numpy arrays (HxWx3 for pictures, HxW for label ids), so
the caller decides where the picture goes (`partseg.plumbing.io.save_png`, a web page, ...).
"""

from __future__ import annotations

import colorsys
import functools
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

IGNORE_ID = 255
IGNORE_COLOUR = (128, 128, 128)

# Hand-picked, mutually distinct colours for the first ids; id 0 (background) is dark so the
# parts stand out. Ids past this list get generated colours (golden-ratio hue steps).
_BASE_COLOURS = (
    (24, 24, 32),      # 0 background
    (230, 159, 0),     # orange
    (86, 180, 233),    # sky blue
    (0, 158, 115),     # bluish green
    (240, 228, 66),    # yellow
    (0, 114, 178),     # blue
    (213, 94, 0),      # vermillion
    (204, 121, 167),   # reddish purple
    (170, 255, 195),   # mint
    (145, 30, 180),    # purple
    (70, 240, 240),    # cyan
    (240, 50, 230),    # magenta
    (210, 245, 60),    # lime
    (250, 190, 212),   # pink
    (0, 128, 128),     # teal
    (128, 0, 0),       # maroon
    (220, 190, 255),   # lavender
    (170, 110, 40),    # brown
    (255, 250, 200),   # beige
    (128, 128, 0),     # olive
)


@functools.lru_cache(maxsize=None)
def _palette_table() -> np.ndarray:
    """Colours of all 256 ids; 255 (ignore) is grey. palette(n) is always a prefix of it."""
    table = np.zeros((256, 3), dtype=np.uint8)
    table[: len(_BASE_COLOURS)] = _BASE_COLOURS
    golden = 0.618033988749895
    for i in range(len(_BASE_COLOURS), 256):
        hue = (i * golden) % 1.0
        value = (0.95, 0.75, 0.55)[i % 3]
        table[i] = np.round(np.array(colorsys.hsv_to_rgb(hue, 0.75, value)) * 255)
    table[IGNORE_ID] = IGNORE_COLOUR
    table.setflags(write=False)
    return table


def palette(n: int) -> np.ndarray:
    """`n` distinct RGB colours as an [n, 3] uint8 array; colour 0 (background) is dark."""
    if not 0 <= n <= 256:
        raise ValueError(f"palette size must be 0..256, got {n}")
    return _palette_table()[:n].copy()


def colorize(mask: np.ndarray) -> np.ndarray:
    """HxW label ids -> HxWx3 uint8 colours (ignore 255 in grey)."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"colorize expects an HxW label mask, got shape {mask.shape}")
    return _palette_table()[mask.astype(np.uint8)]


def overlay(image: np.ndarray, mask: np.ndarray, alpha: float = 0.5,
            transparent: Sequence[int] = (0,)) -> np.ndarray:
    """Blend the mask colours onto the image; ids in `transparent` (background) stay as is."""
    image = np.asarray(image, dtype=np.uint8)
    mask = np.asarray(mask)
    if image.shape[:2] != mask.shape:
        raise ValueError(f"image {image.shape[:2]} and mask {mask.shape} differ in size")
    blended = (1.0 - alpha) * image + alpha * colorize(mask)
    keep = np.isin(mask, list(transparent))
    blended[keep] = image[keep]
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


def enlarge(picture: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement by an integer factor (keeps label pixels crisp)."""
    if factor <= 1:
        return picture
    return np.repeat(np.repeat(picture, factor, axis=0), factor, axis=1)


def _as_rgb(picture: np.ndarray) -> np.ndarray:
    picture = np.asarray(picture)
    if picture.ndim == 2:
        picture = np.repeat(picture[:, :, None], 3, axis=2)
    if picture.dtype != np.uint8:
        raise ValueError(f"pictures must be uint8, got {picture.dtype}")
    return picture


def image_grid(rows: Sequence[Sequence[np.ndarray]], pad: int = 2, upscale: int = 1,
               background: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """Lay out rows of HxWx3 uint8 pictures; cells take the largest picture's size.

    Rows may have different lengths; `upscale` enlarges every picture (nearest neighbour)
    so that small images stay readable.
    """
    rows = [[_as_rgb(p) for p in row] for row in rows if len(row) > 0]
    if not rows:
        raise ValueError("image_grid needs at least one picture")
    factor = max(1, int(upscale))
    cell_h = max(p.shape[0] for row in rows for p in row) * factor
    cell_w = max(p.shape[1] for row in rows for p in row) * factor
    n_cols = max(len(row) for row in rows)
    height = len(rows) * cell_h + (len(rows) + 1) * pad
    width = n_cols * cell_w + (n_cols + 1) * pad
    grid = np.empty((height, width, 3), dtype=np.uint8)
    grid[:] = background
    for r, row in enumerate(rows):
        for c, picture in enumerate(row):
            picture = enlarge(picture, factor)
            top, left = pad + r * (cell_h + pad), pad + c * (cell_w + pad)
            grid[top: top + picture.shape[0], left: left + picture.shape[1]] = picture
    return grid


def stack_vertical(pictures: Sequence[np.ndarray], pad: int = 2,
                   background: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """Stack pictures of possibly different widths top to bottom, left aligned."""
    pictures = [_as_rgb(p) for p in pictures]
    width = max(p.shape[1] for p in pictures)
    height = sum(p.shape[0] for p in pictures) + pad * (len(pictures) - 1)
    out = np.empty((height, width, 3), dtype=np.uint8)
    out[:] = background
    top = 0
    for picture in pictures:
        out[top: top + picture.shape[0], : picture.shape[1]] = picture
        top += picture.shape[0] + pad
    return out


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType support: fixed-size bitmap font
        return ImageFont.load_default()


def text_strip(text: str, width: int, size: int = 12,
               background: tuple[int, int, int] = (255, 255, 255),
               colour: tuple[int, int, int] = (0, 0, 0)) -> np.ndarray:
    """One line of text on a strip `width` pixels wide (a caption or a title)."""
    font = _font(size)
    height = size + 6
    canvas = Image.new("RGB", (max(1, width), height), background)
    ImageDraw.Draw(canvas).text((3, 2), text, fill=colour, font=font)
    return np.asarray(canvas)


def legend(class_names: Sequence[str], width: int | None = None, size: int = 12,
           background: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """A strip of colour swatches with the class names, wrapped to `width` pixels.

    Entry i shows palette colour i, so the legend matches `colorize` and `overlay`.
    """
    font = _font(size)
    colours = palette(len(class_names))
    swatch, gap, line_h = size, 6, size + 8
    entries = []
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    for i, name in enumerate(class_names):
        label = f"{i} {name}"
        text_w = int(np.ceil(probe.textlength(label, font=font)))
        entries.append((label, swatch + 4 + text_w + gap * 2, colours[i]))
    if width is None:
        width = max(200, min(800, sum(e[1] for e in entries)))
    width = max(width, max(e[1] for e in entries) + gap)
    # Greedy line wrapping.
    lines, line, used = [], [], gap
    for entry in entries:
        if line and used + entry[1] > width:
            lines.append(line)
            line, used = [], gap
        line.append(entry)
        used += entry[1]
    lines.append(line)
    canvas = Image.new("RGB", (width, line_h * len(lines) + 4), background)
    draw = ImageDraw.Draw(canvas)
    for row, entries_in_line in enumerate(lines):
        x, y = gap, 4 + row * line_h
        for label, entry_w, colour in entries_in_line:
            draw.rectangle([x, y, x + swatch - 1, y + swatch - 1],
                           fill=tuple(int(c) for c in colour), outline=(0, 0, 0))
            draw.text((x + swatch + 4, y - 1), label, fill=(0, 0, 0), font=font)
            x += entry_w
    return np.asarray(canvas)


def titled_grid(rows: Sequence[Sequence[np.ndarray]], titles: Sequence[str],
                class_names: Sequence[str] | None = None, upscale: int = 4, pad: int = 2,
                size: int = 12) -> np.ndarray:
    """A grid with a title above each column and, optionally, the class legend below.

    Cells are enlarged `upscale` times (nearest neighbour) so that 32 px images and their
    masks can be judged by eye; titles are clipped to their column's width.
    """
    grid = image_grid(rows, pad=pad, upscale=upscale)
    cell_w = max(np.asarray(p).shape[1] for row in rows for p in row) * max(1, int(upscale))
    header = np.full((size + 6, grid.shape[1], 3), 255, np.uint8)
    for c, title in enumerate(titles):
        left = pad + c * (cell_w + pad)
        strip = text_strip(str(title), cell_w, size=size)
        header[:, left: left + cell_w] = strip[:, :cell_w]
    parts = [header, grid]
    if class_names is not None:
        parts.append(legend(class_names, width=grid.shape[1], size=size))
    return stack_vertical(parts, pad=pad)


def shots_picture(shots, classes: list[str]) -> np.ndarray:
    """The shots and their masks side by side, enlarged, with the legend: what the few-shot
    network learns from, large enough to judge."""
    rows = [[image, colorize(mask), overlay(image, mask)]
            for image, mask in zip(shots.images, shots.masks)]
    upscale = max(1, 256 // shots.images[0].shape[0])
    grid = titled_grid(rows, ["shot", "its mask", "overlay"], classes, upscale=upscale)
    return grid
