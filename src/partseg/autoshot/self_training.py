"""Self-training: the distilled UNet labels unlabelled real images, and a new UNet learns them.

Auto-shot's UNet has only seen generated faces. The real `train` split (10,000 unlabelled
images in the demo) shows the faces the UNet will meet. The UNet trained on the synthetic set
(the teacher) labels them; pixels whose top probability is below `confidence` are left out
(255, ignored by the loss), and a fresh UNet (the student) trains on the rest with the same
augmentation and schedule. No peer in REFERENCES.md does this; train_autoshot's
self_train_images switches it on, and the README's ablation table says what it is worth here.
"""

from __future__ import annotations

import numpy as np
import torch

IGNORE = 255


@torch.no_grad()
def pseudo_labels(teacher, images: np.ndarray, confidence: float, batch_size: int = 256,
                  device: torch.device | str | None = None) -> tuple[np.ndarray, float]:
    """uint8 labels [N,H,W] of uint8 images [N,H,W,3] by `teacher`, 255 where its top
    probability is below `confidence`; and the fraction of pixels kept."""
    from partseg.autoshot.segmenter import predict_probabilities
    from partseg.imaging import images_to_unit_tensor

    device = device or next(teacher.parameters()).device
    teacher.eval()
    labels = np.empty(images.shape[:3], dtype=np.uint8)
    for start in range(0, len(images), batch_size):
        batch = images_to_unit_tensor(images[start:start + batch_size], device)
        top, label = predict_probabilities(teacher, batch).max(dim=1)
        label[top < confidence] = IGNORE
        labels[start:start + batch_size] = label.to(torch.uint8).cpu().numpy()
    return labels, float((labels != IGNORE).mean())
