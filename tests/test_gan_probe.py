"""The linear part probe: scores, labeler training, and the probe on a tiny generator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from partseg.gan import Generator
from partseg.gan.probe import iou_scores, linear_probe, render_with_features, train_labeler


def test_iou_scores_by_hand():
    target = np.array([[0, 0, 1, 1], [2, 2, 255, 1]])
    pred = np.array([[0, 1, 1, 1], [2, 0, 0, 1]])
    scores = iou_scores(pred, target, 4)
    # class 0: hits 1, union 3; class 1: hits 3, union 4; class 2: hits 1, union 2; 3 absent
    assert scores["per_class_iou"] == [pytest.approx(1 / 3, abs=1e-4), 0.75, 0.5, None]
    assert scores["miou"] == pytest.approx((1 / 3 + 0.75 + 0.5) / 3)
    assert scores["pixel_accuracy"] == pytest.approx(5 / 7)


def bright_red(images: np.ndarray) -> np.ndarray:
    """A labeler any linear RGB classifier can imitate: class 1 where red > green."""
    return (images[..., 0].astype(int) > images[..., 1].astype(int)).astype(np.uint8)


@pytest.fixture(scope="module")
def generator():
    torch.manual_seed(0)
    return Generator(16, style_dim=16, n_mlp=2, channel_base=128, channel_max=16).eval()


def test_features_cover_every_styled_conv_at_image_size(generator):
    wplus = torch.randn(3, generator.n_latent, generator.style_dim)
    images, features = render_with_features(generator, wplus, batch_size=2)
    channels = sum(row["channels"] for row in generator.layer_table())
    assert images.shape == (3, 16, 16, 3) and features.shape == (3, channels, 16, 16)
    with torch.no_grad():
        expected = generator.synthesis(wplus, noise="const")
    np.testing.assert_array_equal(images, ((expected.clamp(-1, 1) + 1) * 127.5).round()
                                  .to(torch.uint8).permute(0, 2, 3, 1).numpy())


def test_probe_scores_a_linearly_solvable_labeler(generator):
    result = linear_probe(generator, bright_red, 2, n_train=6, n_test=6, steps=100)
    assert result["rgb_miou"] > 0.8  # red > green is linear in RGB
    assert 0.0 <= result["miou"] <= 1.0 and 0.0 <= result["pixel_accuracy"] <= 1.0
    assert result["channels"] == sum(row["channels"] for row in generator.layer_table())
    assert result["n_train"] == 6 and sum(result["label_class_fraction"]) == pytest.approx(1.0)
    again = linear_probe(generator, bright_red, 2, n_train=6, n_test=6, steps=100)
    assert again["miou"] == result["miou"]  # seeded


def separable_pixels(n: int = 32, size: int = 16, seed: int = 0):
    """Images whose class is plain in every pixel's colour, with a wide margin: class 1
    pixels have red in 160..255 and green in 0..95, class 0 the reverse (blue is noise).

    Unlike red > green on uniform noise, no pixel sits near the decision boundary, so a
    correct labeler reaches ~100% and the assertion does not hang on one CPU's rounding.
    """
    rng = np.random.default_rng(seed)
    masks = (rng.random((n, size, size)) < 0.5).astype(np.uint8)
    high, low = rng.integers(160, 256, masks.shape), rng.integers(0, 96, masks.shape)
    red, green = np.where(masks == 1, high, low), np.where(masks == 1, low, high)
    images = np.stack([red, green, rng.integers(0, 256, masks.shape)], axis=-1)
    return images.astype(np.uint8), masks


def test_labeler_learns_from_labelled_images():
    images, masks = separable_pixels()
    target = masks.copy()
    masks[:, 0, 0] = 255  # ignored pixels are allowed in training
    labeler = train_labeler(images, masks, 2, steps=80, batch_size=8)
    predicted = labeler(images)
    assert predicted.shape == masks.shape and predicted.dtype == np.uint8
    # ~1.0 when it learns (0.98 after 40 steps, 1.0 after 80 here); chance is 0.5.
    assert iou_scores(predicted, target, 2)["pixel_accuracy"] > 0.95
