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

`score_video` gathers both, and the clip-level IoU, into one method's summary.
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


def score_video(labels: np.ndarray, masks: np.ndarray,
                classes: list[str]) -> tuple[dict, dict[str, np.ndarray]]:
    """One method's scores on a clip: (summary, per-frame columns).

    summary: per-frame mIoU averaged over all frames, over the frames with the person (any
    non-background ground truth) and over those without (None when there are none), the
    clip-level mIoU, flicker, the fraction of pixels labelled as a part in the frames without
    the person, and the clip-level IoU per class. Columns: "miou" and "flicker" [N] (flicker of
    the pair ending at each frame; NaN for frame 0)."""
    miou = per_frame_miou(labels, masks, len(classes))
    present = (masks != 0).any(axis=(1, 2))
    changed, stable = flicker_per_pair(labels, masks)
    confusion = clip_confusion(labels, masks, len(classes))
    summary = {
        "miou_per_frame_mean": float(np.mean(miou)),
        "miou_with_person": float(np.mean(miou[present])) if present.any() else None,
        "miou_without_person": float(np.mean(miou[~present])) if (~present).any() else None,
        "miou_clip": confusion.miou(),
        "flicker": temporal_flicker(labels, masks),
        "false_person_pixels_when_gone": float((labels[~present] != 0).mean())
        if (~present).any() else None,
        "per_class_iou": dict(zip(classes, map(float, confusion.iou()))),
    }
    flicker = np.concatenate([[np.nan], changed / np.maximum(stable, 1)])
    return summary, {"miou": miou, "flicker": flicker}


def _check(labels: np.ndarray, masks: np.ndarray) -> None:
    if labels.shape != masks.shape:
        raise ValueError(f"labels {labels.shape} and masks {masks.shape} differ in shape")
