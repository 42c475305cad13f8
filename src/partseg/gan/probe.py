"""GAN quality without downloaded weights: a linear probe of the generator's pixel features.

FID needs Inception weights, which cannot be downloaded here; and what this project needs from
a GAN is not realism in general but features that separate the parts. So the signal is:

1. a small segmenter (the "labeler") is trained on the dataset's labelled pool (real images);
2. the generator renders images from seeded latents, and its styled-conv activations are read,
   upsampled to image resolution and concatenated (the method's pixel representation);
3. the labeler labels those generated images;
4. a linear per-pixel classifier is fitted on the features of some generated images and
   scored (mIoU against the labeler's masks) on others.

A high probe mIoU means the parts are linearly separable in the generator's features AND the
generated images look enough like real ones for the labeler to find the parts in them. The
same probe on raw RGB (`rgb_miou`) is the floor: the margin over it is what the features add.
Everything is seeded; the functions take callables so any segmenter can be the labeler.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from partseg.gan.generator import Generator
from partseg.gan.sampling import seeded_z
from partseg.imaging import images_to_signed_tensor, signed_tensor_to_images

Labeler = Callable[[np.ndarray], np.ndarray]   # uint8 [N,H,W,3] -> label ids [N,H,W]
IGNORE = 255


# ---- scores -------------------------------------------------------------------------------

def confusion_matrix(pred: np.ndarray, target: np.ndarray, n_classes: int) -> np.ndarray:
    keep = target != IGNORE
    index = target[keep].astype(np.int64) * n_classes + pred[keep].astype(np.int64)
    return np.bincount(index, minlength=n_classes ** 2).reshape(n_classes, n_classes)


def iou_scores(pred: np.ndarray, target: np.ndarray, n_classes: int) -> dict:
    """mIoU over the classes present in target or prediction, per-class IoU, pixel accuracy."""
    matrix = confusion_matrix(pred, target, n_classes)
    hits = np.diag(matrix).astype(np.float64)
    union = matrix.sum(0) + matrix.sum(1) - hits
    present = union > 0
    per_class = np.where(present, hits / np.maximum(union, 1), np.nan)
    return dict(miou=float(np.nanmean(per_class)) if present.any() else float("nan"),
                per_class_iou=[None if np.isnan(v) else round(float(v), 4) for v in per_class],
                pixel_accuracy=float(hits.sum() / max(matrix.sum(), 1)))


# ---- the labeler: a small dilated CNN trained on the labelled pool ------------------------

class SmallSegmenter(nn.Module):
    """3x3 convs with growing dilation (receptive field 35 px), then a 1x1 classifier."""

    def __init__(self, n_classes: int, width: int = 32, dilations=(1, 2, 4, 8, 1, 1)):
        super().__init__()
        layers, channels = [], 3
        for dilation in dilations:
            layers += [nn.Conv2d(channels, width, 3, padding=dilation, dilation=dilation),
                       nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            channels = width
        layers.append(nn.Conv2d(width, n_classes, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


def _to_input(images: np.ndarray, device) -> torch.Tensor:
    return images_to_signed_tensor(images).to(device)


def train_labeler(images: np.ndarray, masks: np.ndarray, n_classes: int, *, steps: int = 500,
                  batch_size: int = 32, lr: float = 3e-3, seed: int = 0,
                  device: str | torch.device = "cpu") -> Labeler:
    """Fit SmallSegmenter on (images uint8 [N,H,W,3], masks [N,H,W]); returns a labeler.

    Augmentation: horizontal flips (the face classes are left/right symmetric).
    """
    torch.manual_seed(seed)
    model = SmallSegmenter(n_classes).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    x_all, y_all = _to_input(images, "cpu"), torch.from_numpy(masks.astype(np.int64))
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        pick = torch.randint(len(x_all), (batch_size,), generator=generator)
        x, y = x_all[pick], y_all[pick]
        flip = torch.rand(batch_size, generator=generator) < 0.5
        x[flip], y[flip] = x[flip].flip(-1), y[flip].flip(-1)
        loss = F.cross_entropy(model(x.to(device)), y.to(device), ignore_index=IGNORE)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    model.eval()

    @torch.no_grad()
    def label(batch_images: np.ndarray) -> np.ndarray:
        out = [model(_to_input(batch_images[i:i + 64], device)).argmax(1).cpu().numpy()
               for i in range(0, len(batch_images), 64)]
        return np.concatenate(out).astype(np.uint8)

    return label


# ---- generator features -------------------------------------------------------------------

@torch.no_grad()
def render_with_features(generator: Generator, wplus: torch.Tensor, batch_size: int = 32
                         ) -> tuple[np.ndarray, torch.Tensor]:
    """Images (uint8 [N,H,W,3]) and pixel features [N, C, H, W] (all styled convs, bilinear)."""
    device = generator.input.input.device
    modules = dict(generator.named_modules())
    captured: list[torch.Tensor] = []
    hooks = [modules[row["name"]].register_forward_hook(lambda m, a, out: captured.append(out))
             for row in generator.layer_table()]
    images, features = [], []
    try:
        for start in range(0, len(wplus), batch_size):
            captured.clear()
            image = generator.synthesis(wplus[start:start + batch_size].to(device), noise="const")
            size = image.shape[-1]
            maps = [F.interpolate(a, size=(size, size), mode="bilinear", align_corners=True)
                    if a.shape[-1] != size else a for a in captured]
            features.append(torch.cat(maps, dim=1).cpu())
            images.append(signed_tensor_to_images(image))
    finally:
        for hook in hooks:
            hook.remove()
    return np.concatenate(images), torch.cat(features)


def fit_linear(features: torch.Tensor, labels: np.ndarray, n_classes: int, *, steps: int = 300,
               lr: float = 0.05, seed: int = 0) -> Callable[[torch.Tensor], np.ndarray]:
    """Per-pixel logistic regression on standardised features (full batch, Adam)."""
    torch.manual_seed(seed)
    channels = features.shape[1]
    x = features.permute(0, 2, 3, 1).reshape(-1, channels)
    y = torch.from_numpy(labels.astype(np.int64)).reshape(-1)
    mean, std = x.mean(0), x.std(0).clamp(min=1e-6)
    x = (x - mean) / std
    linear = nn.Linear(channels, n_classes)
    optimizer = torch.optim.Adam(linear.parameters(), lr=lr)
    for _ in range(steps):
        loss = F.cross_entropy(linear(x), y, ignore_index=IGNORE)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    @torch.no_grad()
    def predict(test_features: torch.Tensor) -> np.ndarray:
        n, c, h, w = test_features.shape
        flat = (test_features.permute(0, 2, 3, 1).reshape(-1, c) - mean) / std
        return linear(flat).argmax(1).reshape(n, h, w).numpy().astype(np.uint8)

    return predict


def linear_probe(generator: Generator, labeler: Labeler, n_classes: int, *, n_train: int = 64,
                 n_test: int = 64, seed: int = 0, truncation: float = 1.0,
                 steps: int = 300) -> dict:
    """Probe mIoU of a linear classifier on the generator's features; see the module doc.

    Returns dict(miou, pixel_accuracy, per_class_iou, rgb_miou, rgb_pixel_accuracy,
    label_class_fraction, channels, n_train, n_test).
    """
    n = n_train + n_test
    z = seeded_z(seed, range(n), generator.style_dim).to(generator.input.input.device)
    with torch.no_grad():
        w = generator.truncate(generator.mapping(z), truncation)
    wplus = w.unsqueeze(1).repeat(1, generator.n_latent, 1)
    images, features = render_with_features(generator, wplus)
    labels = labeler(images)
    train, test = slice(0, n_train), slice(n_train, n)

    predict = fit_linear(features[train], labels[train], n_classes, steps=steps, seed=seed)
    scores = iou_scores(predict(features[test]), labels[test], n_classes)
    rgb = _to_input(images, "cpu")
    rgb_predict = fit_linear(rgb[train], labels[train], n_classes, steps=steps, seed=seed)
    rgb_scores = iou_scores(rgb_predict(rgb[test]), labels[test], n_classes)
    fraction = np.bincount(labels.ravel(), minlength=n_classes)[:n_classes] / labels.size
    return dict(miou=scores["miou"], pixel_accuracy=scores["pixel_accuracy"],
                per_class_iou=scores["per_class_iou"], rgb_miou=rgb_scores["miou"],
                rgb_pixel_accuracy=rgb_scores["pixel_accuracy"],
                label_class_fraction=[round(float(f), 4) for f in fraction],
                channels=int(features.shape[1]), n_train=n_train, n_test=n_test)
