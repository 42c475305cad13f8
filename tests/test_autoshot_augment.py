"""Augmentation: image and labels stay aligned, flips swap classes only when asked, determinism."""

import math

import pytest
import torch
import torch.nn.functional as F

from partseg.autoshot.augment import _inverse_affine, color_jitter, random_geometric


def _painted_pair(batch=8, height=24, width=32):
    """A red asymmetric 'L' on black, and targets whose class 1 is exactly the red pixels."""
    shape = torch.zeros(height, width)
    shape[4:18, 6:11] = 1.0      # vertical bar
    shape[13:18, 6:22] = 1.0     # foot to the right: not symmetric under flips or rotations
    images = torch.zeros(batch, 3, height, width)
    images[:, 0] = shape
    targets = torch.stack([1 - shape, shape]).expand(batch, -1, -1, -1).clone()
    return images, targets


def _generator(seed):
    return torch.Generator().manual_seed(seed)


def test_geometry_moves_image_and_labels_together():
    images, targets = _painted_pair()
    out_images, out_targets, valid = random_geometric(
        images, targets, scale=(0.6, 1.6), rotation_deg=30, translate=0.2, flip=True,
        generator=_generator(0))
    red = out_images[:, 0]
    # The class-1 probability is the warped red channel wherever we look, for every sample.
    assert torch.allclose(red, out_targets[:, 1], atol=1e-5)
    assert valid.all()  # outside="background": padding is labelled background, not ignored
    # ...and the transform did something: every sample moved (else the test proves nothing).
    moved = (out_images - images).abs().flatten(1).amax(1)
    assert (moved > 0.5).all()
    # The check has teeth: the warped image against the *unwarped* labels disagrees.
    assert not torch.allclose(red, targets[:, 1], atol=0.1)


def test_outside_pixels_are_background_or_ignored():
    images, targets = _painted_pair(batch=2)
    for outside in ("background", "ignore"):
        _, out_targets, valid = random_geometric(
            images, targets, scale=(0.5, 0.5), rotation_deg=0, translate=0.0, flip=False,
            outside=outside, generator=_generator(1))
        # Zoomed out by 2 around the centre: the outer rim comes from outside the image.
        corner_valid = valid[:, 0, 0]
        centre_valid = valid[:, 12, 16]
        assert centre_valid.all()
        if outside == "background":
            assert corner_valid.all()
            assert torch.allclose(out_targets[:, :, 0, 0], torch.tensor([1.0, 0.0]))
        else:
            assert not corner_valid.any()
            assert (out_targets[:, :, 0, 0] == 0).all()
        # valid targets are distributions
        sums = out_targets.sum(1)[valid]
        assert torch.allclose(sums, torch.ones_like(sums), atol=1e-5)


def test_ignored_pixels_stay_ignored():
    """Hard masks carry 'ignore' as all-zero target vectors; they must come out invalid."""
    images, targets = _painted_pair(batch=2)
    targets[:, :, :, :8] = 0.0  # left strip ignored
    _, out_targets, valid = random_geometric(images, targets, scale=(1, 1), rotation_deg=0,
                                             translate=0, flip=False, generator=_generator(2))
    assert not valid[:, :, :8].any()
    assert valid[:, :, 9:].all()
    assert (out_targets[:, :, :, :8] == 0).all()


def _mirrored_or_same(out, original):
    """Per sample: 'flip' if out is the mirror image of original, 'same' if unchanged."""
    kinds = []
    for o, x in zip(out, original):
        if torch.allclose(o, x.flip(-1), atol=1e-5):
            kinds.append("flip")
        elif torch.allclose(o, x, atol=1e-5):
            kinds.append("same")
        else:
            kinds.append("other")
    return kinds


def test_flip_swaps_no_classes_by_default():
    images = torch.rand(16, 3, 8, 12)
    targets = torch.softmax(torch.randn(16, 3, 8, 12), 1)
    out_images, out_targets, _ = random_geometric(
        images, targets, scale=(1, 1), rotation_deg=0, translate=0, flip=True,
        generator=_generator(3))
    kinds = _mirrored_or_same(out_images, images)
    assert set(kinds) == {"flip", "same"}  # both happen in a batch of 16
    assert _mirrored_or_same(out_targets, targets) == kinds  # labels mirrored, channels untouched


def test_flip_permutation_swaps_left_and_right_classes():
    images = torch.rand(16, 3, 8, 12)
    targets = torch.softmax(torch.randn(16, 3, 8, 12), 1)
    out_images, out_targets, _ = random_geometric(
        images, targets, scale=(1, 1), rotation_deg=0, translate=0, flip=True,
        flip_permutation=[0, 2, 1], generator=_generator(3))
    kinds = _mirrored_or_same(out_images, images)
    assert set(kinds) == {"flip", "same"}
    for kind, out, original in zip(kinds, out_targets, targets):
        expected = original.flip(-1)[[0, 2, 1]] if kind == "flip" else original
        assert torch.allclose(out, expected, atol=1e-5)


def test_bad_flip_permutation_is_refused():
    images, targets = _painted_pair(batch=1)
    with pytest.raises(ValueError, match="permutation"):
        random_geometric(images, targets, flip_permutation=[0, 0], generator=_generator(0))


def test_same_generator_state_gives_the_same_augmentation():
    images, targets = _painted_pair(batch=4)
    first = random_geometric(images, targets, generator=_generator(7))
    second = random_geometric(images, targets, generator=_generator(7))
    other = random_geometric(images, targets, generator=_generator(8))
    for a, b in zip(first, second):
        assert torch.equal(a, b)
    assert not torch.equal(first[0], other[0])


def test_rotation_of_a_non_square_image_has_no_shear():
    """90 degrees turns a centred square patch of a 8x16 image into the same square, rotated."""
    image = torch.zeros(1, 1, 8, 16)
    image[0, 0, 2:6, 6:10] = 1.0
    image[0, 0, 2:4, 6:8] = 2.0
    theta = _inverse_affine(torch.tensor([1.0], dtype=torch.float64),
                            torch.tensor([math.pi / 2], dtype=torch.float64),
                            torch.zeros(1, 2, dtype=torch.float64), torch.tensor([False]), 8, 16)
    grid = F.affine_grid(theta, [1, 1, 8, 16], align_corners=False)
    out = F.grid_sample(image, grid, align_corners=False)
    patch = image[0, 0, 2:6, 6:10]
    turned = out[0, 0, 2:6, 6:10]
    assert any(torch.allclose(turned, torch.rot90(patch, k), atol=1e-5) for k in (1, 3))
    assert torch.isclose(out.sum(), image.sum())


def test_color_jitter_changes_images_only_within_range_and_deterministically():
    images = torch.rand(4, 3, 8, 8)
    jittered = color_jitter(images, 0.4, generator=_generator(0))
    assert jittered.shape == images.shape
    assert jittered.min() >= 0 and jittered.max() <= 1
    assert not torch.allclose(jittered, images)
    assert torch.equal(jittered, color_jitter(images, 0.4, generator=_generator(0)))
    assert torch.equal(color_jitter(images, 0.0, generator=_generator(0)), images)
