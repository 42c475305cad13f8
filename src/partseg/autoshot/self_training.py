"""Self-training: the distilled UNet labels unlabelled real images, and a new UNet learns them.

Auto-shot's UNet has only seen generated faces. The real `train` split (10,000 unlabelled
images in the demo) shows the faces the UNet will meet. The UNet trained on the synthetic set
(the teacher) labels them; pixels it is unsure of are left out (255, ignored by the loss), and
a fresh UNet (the student) trains on the rest with the same augmentation and schedule. No peer
in REFERENCES.md does this; train_autoshot's self_train_images switches it on, and the README's
ablation table says what it is worth here.

Which pixels are kept: those whose top probability reaches `confidence`, and, with
`class_portion` p > 0, also the most confident fraction p of the pixels predicted as each class
(class-balanced selection, as in CBST, Zou et al. 2018). One threshold alone keeps thin parts
least: an eyebrow pixel is rarely 90 % sure, so the student hardly sees eyebrows. On the demo
the portion does not help (README "Ablation"): the teacher over-paints the thin parts, so
their less sure pixels are mostly wrong (bench/pseudo_label_quality.py measures it).
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

IGNORE = 255
# Per-class thresholds are read from histograms of the top probability in this many bins: two
# uint8 arrays the size of the labels, whatever the number of images.
SCORE_LEVELS = 256


@dataclass
class PseudoLabels:
    """The teacher's labels of real images (IGNORE where left out) and what was kept."""

    labels: np.ndarray            # uint8 [N,H,W]
    kept: float                   # fraction of all pixels kept
    class_kept: dict[int, float]  # class id -> fraction of its predicted pixels kept

    def summary(self, classes: list[str]) -> str:
        per_class = ", ".join(f"{classes[c]} {share:.0%}" for c, share in self.class_kept.items())
        return f"{self.kept:.1%} of the pixels kept ({per_class})"


@torch.no_grad()
def pseudo_labels(teacher, images: np.ndarray, confidence: float, class_portion: float = 0.0,
                  batch_size: int = 256, device: torch.device | str | None = None) -> PseudoLabels:
    """The teacher's labels of uint8 images [N,H,W,3]: a pixel is kept when its top probability
    is at least `confidence` or, with class_portion > 0, is among the class_portion most
    confident of the pixels predicted as its class."""
    from partseg.autoshot.segmenter import predict_probabilities
    from partseg.imaging import images_to_unit_tensor

    device = device or next(teacher.parameters()).device
    teacher.eval()
    labels = np.empty(images.shape[:3], dtype=np.uint8)
    confident = np.empty(images.shape[:3], dtype=bool)
    # The top probability in 1/255 steps, for the per-class thresholds only.
    scores = np.empty(images.shape[:3], dtype=np.uint8) if class_portion > 0 else None
    for start in range(0, len(images), batch_size):
        batch = images_to_unit_tensor(images[start:start + batch_size], device)
        top, label = predict_probabilities(teacher, batch).max(dim=1)
        end = start + len(batch)
        labels[start:end] = label.to(torch.uint8).cpu().numpy()
        confident[start:end] = (top >= confidence).cpu().numpy()
        if scores is not None:
            scores[start:end] = (top * (SCORE_LEVELS - 1)).floor().to(torch.uint8).cpu().numpy()
    keep = confident
    if scores is not None:
        thresholds = class_score_thresholds(labels, scores, class_portion)
        keep = confident | (scores >= thresholds[labels])
    predicted = np.bincount(labels.ravel(), minlength=SCORE_LEVELS)
    kept_per_class = np.bincount(labels[keep], minlength=SCORE_LEVELS)
    labels[~keep] = IGNORE
    return PseudoLabels(labels, float(keep.mean()),
                        {int(c): float(kept_per_class[c] / predicted[c])
                         for c in np.flatnonzero(predicted)})


def class_score_thresholds(labels: np.ndarray, scores: np.ndarray, portion: float) -> np.ndarray:
    """Per class id (indexable by any uint8 label), the highest score level that keeps at least
    `portion` of the pixels predicted as that class."""
    thresholds = np.full(SCORE_LEVELS, SCORE_LEVELS, dtype=np.int64)  # keeps none: no such class
    for label in np.unique(labels):
        counts = np.bincount(scores[labels == label], minlength=SCORE_LEVELS)
        at_least = np.cumsum(counts[::-1])[::-1]  # at_least[t]: pixels scoring t or more
        thresholds[label] = np.flatnonzero(at_least >= portion * at_least[0]).max()
    return thresholds


def student_snapshots(snapshots: Path, labels: np.ndarray) -> Path:
    """The student's snapshot folder, keyed by its pseudo-labels' content.

    The student's own fingerprint covers its options and the images' shape, not which pixels
    were kept: a rerun with another confidence or class_portion (the same teacher, the same
    images) must train a new student, not resume the old one. Other students' folders go.
    """
    digest = hashlib.sha1(np.ascontiguousarray(labels).data).hexdigest()[:16]
    folder = Path(snapshots) / "student" / f"labels-{digest}"
    if folder.parent.is_dir():
        for other in folder.parent.iterdir():
            if other.is_dir() and other != folder:
                shutil.rmtree(other, ignore_errors=True)
            elif other.is_file():  # an older layout kept the snapshot file right here
                other.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    return folder
