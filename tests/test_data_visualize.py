"""Visual helpers (palette, colorize, overlay, grids, legend) and the dataset preview."""

import numpy as np
from PIL import Image

from partseg.data import FACE_CLASSES, generate_synthetic_dataset, write_preview
from partseg.visualize import (colorize, enlarge, image_grid, legend, overlay, palette,
                               stack_vertical, text_strip)


def test_palette_is_distinct_with_a_dark_background():
    colours = palette(40)
    assert colours.shape == (40, 3) and colours.dtype == np.uint8
    assert len({tuple(c) for c in colours}) == 40
    assert colours[0].astype(int).sum() < 120  # background dark
    assert np.array_equal(palette(10), colours[:10])  # a prefix: colours never change with n


def test_colorize_maps_ids_and_ignore_to_grey():
    mask = np.array([[0, 1], [2, 255]], np.uint8)
    picture = colorize(mask)
    assert picture.shape == (2, 2, 3) and picture.dtype == np.uint8
    assert np.array_equal(picture[0, 1], palette(2)[1])
    assert tuple(picture[1, 1]) == (128, 128, 128)


def test_overlay_keeps_background_and_tints_parts():
    image = np.full((4, 4, 3), 200, np.uint8)
    mask = np.zeros((4, 4), np.uint8)
    mask[:2] = 3
    out = overlay(image, mask, alpha=0.5)
    assert np.array_equal(out[2:], image[2:])
    expected = np.round(0.5 * 200 + 0.5 * palette(4)[3].astype(float))
    assert np.array_equal(out[0, 0], expected.astype(np.uint8))


def test_image_grid_layout_and_upscale():
    a = np.zeros((4, 6, 3), np.uint8)
    b = np.full((2, 2, 3), 255, np.uint8)
    grid = image_grid([[a, a, a], [b]], pad=1, upscale=2)
    assert grid.shape == (2 * 8 + 3, 3 * 12 + 4, 3)
    assert np.all(grid[1:9, 1:13] == 0)           # first cell, enlarged
    assert np.all(grid[10:14, 1:5] == 255)        # the small picture, enlarged, top-left of its cell
    gray = image_grid([[np.zeros((3, 3), np.uint8)]], pad=0)
    assert gray.shape == (3, 3, 3)
    assert enlarge(b, 3).shape == (6, 6, 3)


def test_legend_and_text_strips_are_pictures():
    strip = legend(list(FACE_CLASSES), width=300)
    assert strip.ndim == 3 and strip.shape[1] == 300 and strip.dtype == np.uint8
    swatch_colour = palette(2)[1]
    assert (strip.reshape(-1, 3) == swatch_colour).all(axis=1).any()  # skin's swatch is drawn
    assert legend(list(FACE_CLASSES), width=300).shape[0] > legend(["a"], width=300).shape[0]
    caption = text_strip("hello", 80)
    assert caption.shape[1] == 80 and (caption < 128).any()  # some dark text pixels
    stacked = stack_vertical([caption, strip], pad=2)
    assert stacked.shape == (caption.shape[0] + strip.shape[0] + 2, 300, 3)


def test_preview_is_written(tmp_path):
    generate_synthetic_dataset(tmp_path / "d", n_train=2, n_labeled=10, n_test=2,
                               n_test_shifted=4, show_progress=False, workers=1)
    out = write_preview(tmp_path / "d", tmp_path / "preview.png", n=10)
    picture = np.asarray(Image.open(out))
    # 10 labeled images on 2 rows (+ overlays) and 4 shifted (+ overlays), enlarged 3x.
    assert picture.shape[1] >= 8 * 96 and picture.shape[0] >= 6 * 96
    assert (tmp_path / "d" / "preview.png").is_file()
