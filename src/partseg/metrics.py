"""Segmentation metrics: a confusion matrix, per-class IoU, mIoU, pixel accuracy, and its picture.

Conventions (stated once, used by every stage that reports a number):
- rows of the matrix are the target (ground-truth) class, columns the predicted class;
- target pixels labelled 255 are ignored (not counted anywhere, whatever was predicted);
- IoU of class c = TP / (TP + FP + FN); it is NaN when c appears in neither target nor prediction
  (nothing to score), and 0 when it appears in one but never overlaps;
- mIoU is the mean of the per-class IoUs that are not NaN, background (class 0) INCLUDED by
  default, as in the paper's face table (whose 10-class mean of 69.9 counts background 84.7);
  `miou(include_background=False)` drops class 0 for protocols that leave it out.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from partseg.plumbing.errors import PartsegError
from partseg.plumbing.io import atomic_path

IGNORE = 255


def _as_numpy(array) -> np.ndarray:
    if hasattr(array, "detach"):  # a torch tensor
        array = array.detach().cpu().numpy()
    return np.asarray(array)


class ConfusionMatrix:
    """Accumulates pixel counts matrix[target, prediction] over any number of images."""

    def __init__(self, num_classes: int):
        if num_classes < 1:
            raise ValueError("num_classes must be at least 1")
        self.num_classes = num_classes
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, pred, target) -> "ConfusionMatrix":
        """Add integer label arrays of the same shape (numpy or torch); target 255 is ignored."""
        pred, target = _as_numpy(pred), _as_numpy(target)
        if pred.shape != target.shape:
            raise PartsegError(f"prediction shape {pred.shape} differs from target shape {target.shape}")
        for name, array in (("prediction", pred), ("target", target)):
            if not np.issubdtype(array.dtype, np.integer):
                raise PartsegError(f"{name} must hold integer label ids, got dtype {array.dtype}")
        keep = target != IGNORE
        pred, target = pred[keep].astype(np.int64), target[keep].astype(np.int64)
        for name, array in (("prediction", pred), ("target", target)):
            if array.size and (array.min() < 0 or array.max() >= self.num_classes):
                bad = int(array[(array < 0) | (array >= self.num_classes)][0])
                raise PartsegError(f"{name} has label id {bad}; valid ids are 0..{self.num_classes - 1}"
                                   f"{' and 255 (ignore)' if name == 'target' else ''}")
        counts = np.bincount(target * self.num_classes + pred, minlength=self.num_classes ** 2)
        self.matrix += counts.reshape(self.num_classes, self.num_classes)
        return self

    def __iadd__(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        if other.num_classes != self.num_classes:
            raise ValueError("cannot add confusion matrices of different class counts")
        self.matrix += other.matrix
        return self

    @property
    def total(self) -> int:
        return int(self.matrix.sum())

    def iou(self) -> np.ndarray:
        """Per-class IoU, float [K]; NaN where the class is in neither target nor prediction."""
        true_positive = np.diag(self.matrix).astype(np.float64)
        union = self.matrix.sum(axis=0) + self.matrix.sum(axis=1) - true_positive
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, true_positive / union, np.nan)

    def miou(self, include_background: bool = True) -> float:
        """Mean IoU over classes present (not NaN); class 0 (background) included by default."""
        values = self.iou() if include_background else self.iou()[1:]
        values = values[~np.isnan(values)]
        return float(values.mean()) if values.size else float("nan")

    def pixel_accuracy(self) -> float:
        """Fraction of counted (non-ignored) pixels labelled correctly; NaN when none counted."""
        return float(np.trace(self.matrix) / self.total) if self.total else float("nan")

    def class_accuracy(self) -> np.ndarray:
        """Per-class recall TP / target pixels; NaN for classes absent from the target."""
        support = self.matrix.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(support > 0, np.diag(self.matrix) / support, np.nan)

    def to_frame(self, class_names: Sequence[str] | None = None) -> pd.DataFrame:
        """One row per class: id, class, iou, accuracy (recall), target and predicted pixel counts."""
        names = _class_names(class_names, self.num_classes)
        return pd.DataFrame({
            "id": np.arange(self.num_classes),
            "class": names,
            "iou": self.iou(),
            "accuracy": self.class_accuracy(),
            "target_pixels": self.matrix.sum(axis=1),
            "predicted_pixels": self.matrix.sum(axis=0),
        })

    def normalized(self) -> np.ndarray:
        """Row-normalised matrix (each target class sums to 1; rows of absent classes are 0)."""
        support = self.matrix.sum(axis=1, keepdims=True)
        return np.divide(self.matrix, support, out=np.zeros(self.matrix.shape), where=support > 0)


def _class_names(class_names: Sequence[str] | None, num_classes: int) -> list[str]:
    if class_names is None:
        return [str(i) for i in range(num_classes)]
    if len(class_names) != num_classes:
        raise PartsegError(f"{len(class_names)} class names given for {num_classes} classes")
    return [str(name) for name in class_names]


# ----------------------------------------------------------------------------- picture

CELL = 56
FONT_SIZE = 15
MARGIN = 12


def _font(size: int = FONT_SIZE) -> ImageFont.ImageFont:
    try:  # Pillow >= 10.1 ships a scalable default font
        return ImageFont.load_default(size=size)
    except TypeError:
        return ImageFont.load_default()


def _text_size(draw: ImageDraw.ImageDraw, text: str, font) -> tuple[int, int]:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    return right - left, bottom - top


def _cell_colour(value: float) -> tuple[int, int, int]:
    """White (0) to dark blue (1)."""
    return (int(255 - 227 * value), int(255 - 177 * value), int(255 - 75 * value))


def confusion_png(cm: ConfusionMatrix | np.ndarray, class_names: Sequence[str] | None,
                  path: str | os.PathLike) -> None:
    """Draw the row-normalised confusion matrix (percent in each cell) as a PNG, atomically.

    Rows: target class (with its pixel count); columns: predicted class (names written vertically).
    """
    counts = cm.matrix if isinstance(cm, ConfusionMatrix) else np.asarray(cm)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise PartsegError(f"confusion matrix must be square, got shape {counts.shape}")
    num_classes = counts.shape[0]
    names = _class_names(class_names, num_classes)
    support = counts.sum(axis=1, keepdims=True)
    rates = np.divide(counts, support, out=np.zeros(counts.shape), where=support > 0)

    font, small = _font(), _font(FONT_SIZE - 3)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    row_labels = [f"{name} ({int(n):,})" for name, n in zip(names, support[:, 0])]
    label_width = max(_text_size(probe, text, font)[0] for text in row_labels) + 2 * MARGIN
    label_height = max(_text_size(probe, name, font)[0] for name in names) + 2 * MARGIN
    title_height = _text_size(probe, "Ag", font)[1] + 2 * MARGIN
    left, top = label_width + title_height, label_height + title_height
    image = Image.new("RGB", (left + num_classes * CELL + MARGIN, top + num_classes * CELL + MARGIN),
                      "white")
    draw = ImageDraw.Draw(image)

    draw.text((left + num_classes * CELL // 2, MARGIN), "predicted", fill="black", font=font, anchor="mt")
    _draw_vertical(image, "target", (MARGIN, top + num_classes * CELL // 2), font)
    for i, text in enumerate(row_labels):
        draw.text((left - MARGIN, top + i * CELL + CELL // 2), text, fill="black", font=font, anchor="rm")
    for j, name in enumerate(names):
        _draw_vertical(image, name, (left + j * CELL + CELL // 2, top - MARGIN), font, anchor_bottom=True)
    for i in range(num_classes):
        for j in range(num_classes):
            x0, y0 = left + j * CELL, top + i * CELL
            value = float(rates[i, j])
            draw.rectangle([x0, y0, x0 + CELL - 1, y0 + CELL - 1], fill=_cell_colour(value),
                           outline=(200, 200, 200))
            if support[i, 0] > 0:
                draw.text((x0 + CELL // 2, y0 + CELL // 2), f"{100 * value:.0f}", anchor="mm", font=small,
                          fill="white" if value > 0.5 else "black")
            if i == j:  # the diagonal, framed
                draw.rectangle([x0, y0, x0 + CELL - 1, y0 + CELL - 1], outline="black", width=2)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


def _draw_vertical(image: Image.Image, text: str, at: tuple[int, int], font, *,
                   anchor_bottom: bool = False) -> None:
    """Paste `text` rotated 90° (reading bottom to top), centred on x; bottom at y or centred on y."""
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    left, top, right, bottom = probe.textbbox((0, 0), text, font=font)
    label = Image.new("RGB", (right - left + 4, bottom - top + 4), "white")
    ImageDraw.Draw(label).text((2 - left, 2 - top), text, fill="black", font=font)
    label = label.rotate(90, expand=True)
    x = at[0] - label.width // 2
    y = at[1] - label.height if anchor_bottom else at[1] - label.height // 2
    image.paste(label, (x, y))
