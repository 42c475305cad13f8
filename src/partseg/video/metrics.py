"""Scores of a segmented video against its ground truth: per-frame mIoU and temporal flicker.

Per-frame mIoU: the mIoU of one frame (partseg.metrics.ConfusionMatrix.miou), i.e. the mean
IoU over the classes present in that frame's ground truth or prediction, background included.
A frame the face has left is scored like any other: all-background predicted on an
all-background frame gives 1.0, and every class hallucinated there adds an IoU of 0 (and
lowers the background's). So the empty frames reward a method that sees nothing there.

Temporal flicker: among the pixels whose ground-truth label is the same in a frame and the
next, the fraction whose predicted label changes. Ground truth that does not move should not
make labels move; a perfect segmenter scores 0, and so does one that is wrong in the same way
every frame (flicker measures stability, mIoU accuracy). Pooled over all consecutive pairs.
"""

from __future__ import annotations

import numpy as np

from partseg.metrics import ConfusionMatrix


def per_frame_miou(labels: np.ndarray, masks: np.ndarray, num_classes: int) -> np.ndarray:
    """float [N]: each frame's mIoU (classes present in its ground truth or prediction)."""
    _check(labels, masks)
    return np.array([ConfusionMatrix(num_classes).update(label, mask).miou()
                     for label, mask in zip(labels, masks)])


def flicker_per_pair(labels: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(changed, stable) int [N-1]: for frames t-1 -> t, the ground-truth-stable pixels whose
    predicted label changed, and the ground-truth-stable pixels."""
    _check(labels, masks)
    stable = masks[1:] == masks[:-1]
    changed = (labels[1:] != labels[:-1]) & stable
    axes = tuple(range(1, stable.ndim))
    return changed.sum(axis=axes), stable.sum(axis=axes)


def temporal_flicker(labels: np.ndarray, masks: np.ndarray) -> float:
    """Fraction of ground-truth-stable pixels (over all consecutive frame pairs) whose
    predicted label changes; NaN for fewer than two frames or no stable pixel."""
    if len(labels) < 2:
        return float("nan")
    changed, stable = flicker_per_pair(labels, masks)
    return float(changed.sum() / stable.sum()) if stable.sum() else float("nan")


def clip_confusion(labels: np.ndarray, masks: np.ndarray, num_classes: int) -> ConfusionMatrix:
    """One confusion matrix over every pixel of every frame (the clip-level per-class IoU)."""
    _check(labels, masks)
    return ConfusionMatrix(num_classes).update(labels, masks)


def _check(labels: np.ndarray, masks: np.ndarray) -> None:
    if labels.shape != masks.shape:
        raise ValueError(f"labels {labels.shape} and masks {masks.shape} differ in shape")
