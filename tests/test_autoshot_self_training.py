"""Self-training's pseudo-labels and the test-time flip of evaluation."""

import numpy as np
import torch

from partseg.autoshot.self_training import (IGNORE, class_score_thresholds, pseudo_labels,
                                            student_snapshots)
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
    pseudo = pseudo_labels(FixedProbabilities(), images, confidence=0.9, batch_size=2)
    labels = pseudo.labels
    assert labels.shape == (3, 4, 6) and labels.dtype == np.uint8
    assert (labels[..., 0] == 0).all() and (labels[..., 4:] == 1).all()
    assert (labels[..., 1:4] == IGNORE).all()
    assert abs(pseudo.kept - 0.5) < 1e-6
    everything = pseudo_labels(FixedProbabilities(), images, confidence=0.0)
    assert everything.kept == 1.0 and (everything.labels != IGNORE).all()


def test_class_portion_keeps_the_most_confident_pixels_of_every_class():
    # Columns 0-2 are class 0 at falling confidence, 3-5 class 1 at rising confidence; only the
    # outer columns reach 0.97. A portion of 1/2 keeps the surer half of each class as well.
    images = np.zeros((2, 4, 6, 3), np.uint8)
    images[..., 0] = np.array([0, 100, 125, 131, 155, 255], np.uint8)
    alone = pseudo_labels(FixedProbabilities(), images, confidence=0.97)
    balanced = pseudo_labels(FixedProbabilities(), images, confidence=0.97, class_portion=0.5)
    assert (alone.labels[..., 1:5] == IGNORE).all() and alone.class_kept == {0: 1 / 3, 1: 1 / 3}
    assert (balanced.labels[..., :2] == 0).all() and (balanced.labels[..., 4:] == 1).all()
    assert (balanced.labels[..., 2:4] == IGNORE).all()
    assert balanced.class_kept == {0: 2 / 3, 1: 2 / 3}  # at least half: ties at a level stay
    assert "class 0 67%" in balanced.summary(["class 0", "class 1", "other"])
    # The confidence threshold still keeps what it kept alone.
    assert ((alone.labels == IGNORE) | (balanced.labels == alone.labels)).all()


def test_class_score_thresholds_per_class():
    labels = np.array([0, 0, 0, 0, 2, 2], np.uint8)
    scores = np.array([10, 20, 30, 40, 200, 250], np.uint8)
    thresholds = class_score_thresholds(labels, scores, portion=0.5)
    assert thresholds[0] == 30 and thresholds[2] == 250
    assert thresholds[1] > 255  # a class nobody predicted keeps nothing
    assert class_score_thresholds(labels, scores, portion=1.0)[0] == 10


def test_student_snapshots_are_keyed_by_the_pseudo_labels(tmp_path):
    first = student_snapshots(tmp_path, np.zeros((2, 4, 4), np.uint8))
    (first / "segmenter_snapshot.pt").write_bytes(b"x")
    assert student_snapshots(tmp_path, np.zeros((2, 4, 4), np.uint8)) == first
    assert (first / "segmenter_snapshot.pt").exists()  # the same labels resume
    other = student_snapshots(tmp_path, np.full((2, 4, 4), IGNORE, np.uint8))
    assert other != first and not first.exists()  # other labels: a new student, the old goes


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
