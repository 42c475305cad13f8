"""Self-training's pseudo-labels and the test-time flip of evaluation."""

import numpy as np
import torch

from partseg.autoshot.self_training import IGNORE, pseudo_labels
from partseg.evaluation import segmenter_labels


class FixedProbabilities(torch.nn.Module):
    """A 'segmenter' whose logits are a function of the red channel: class 1 where red is high,
    sure where red is far from 0.5, unsure near it; and a left/right-asymmetric ramp in class 2."""

    def __init__(self):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    def forward(self, images):
        red = images[:, 0]
        ramp = torch.linspace(0, 3, images.shape[-1]).expand_as(red)
        return torch.stack([-8 * (red - 0.5), 8 * (red - 0.5), ramp - 2.9], dim=1) + self.anchor


def test_pseudo_labels_keep_confident_pixels_only():
    images = np.zeros((3, 4, 6, 3), np.uint8)
    images[..., 0] = np.array([0, 120, 128, 135, 250, 255], np.uint8)  # unsure near 128
    labels, kept = pseudo_labels(FixedProbabilities(), images, confidence=0.9, batch_size=2)
    assert labels.shape == (3, 4, 6) and labels.dtype == np.uint8
    assert (labels[..., 0] == 0).all() and (labels[..., 4:] == 1).all()
    assert (labels[..., 1:4] == IGNORE).all()
    assert abs(kept - 0.5) < 1e-6
    everything, kept_all = pseudo_labels(FixedProbabilities(), images, confidence=0.0)
    assert kept_all == 1.0 and (everything != IGNORE).all()


class LeaningRight(torch.nn.Module):
    """Class 1 grows more likely from left to right, and with the image's red: not mirror-symmetric."""

    def __init__(self):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    def forward(self, images):
        ramp = torch.linspace(0, 3, images.shape[-1]).expand_as(images[:, 0])
        return torch.stack([torch.zeros_like(ramp), ramp - 1 + 2 * images[:, 0] - 1], 1) + self.anchor


def test_flip_averages_the_mirror_view_and_mirrors_back():
    images = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    model = LeaningRight()
    plain = segmenter_labels(model, images, "cpu", flip=False)
    flipped = segmenter_labels(model, images, "cpu", flip=True)
    assert plain.shape == flipped.shape == (2, 16, 16) and flipped.dtype == np.uint8
    assert (flipped != plain).any()  # the model is not mirror-symmetric: the flip counts
    # Flip-averaging is mirror-equivariant: the mirror image gets the mirrored labels.
    mirrored = segmenter_labels(model, np.ascontiguousarray(images[:, :, ::-1]), "cpu", flip=True)
    assert (mirrored[:, :, ::-1] == flipped).all()
