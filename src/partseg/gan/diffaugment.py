"""Differentiable augmentation (DiffAugment, Zhao et al. 2020) for GAN training on small data.

The same random colour, translation and cutout transforms are applied to real and generated
images before the discriminator sees them; they are differentiable, so the generator is
trained through them and does not learn to reproduce the augmentations. Images in [-1, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

TRANSLATION_RATIO = 0.125   # shift by up to 1/8 of the image size, zero padding
CUTOUT_RATIO = 0.5          # erase a square of half the image size


def _uniform(x: torch.Tensor) -> torch.Tensor:
    return torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device)


def adjust_colour(x: torch.Tensor) -> torch.Tensor:
    """Random brightness (+-0.5), saturation (x0..2) and contrast (x0.5..1.5) per image."""
    x = x + (_uniform(x) - 0.5)
    grey = x.mean(dim=1, keepdim=True)
    x = (x - grey) * (_uniform(x) * 2) + grey
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_uniform(x) + 0.5) + mean


def translate(x: torch.Tensor, ratio: float = TRANSLATION_RATIO) -> torch.Tensor:
    """Shift each image by a random whole number of pixels; uncovered pixels are zero."""
    batch, _, height, width = x.shape
    max_y, max_x = int(height * ratio + 0.5), int(width * ratio + 0.5)
    shift_y = torch.randint(-max_y, max_y + 1, (batch, 1, 1), device=x.device)
    shift_x = torch.randint(-max_x, max_x + 1, (batch, 1, 1), device=x.device)
    rows = torch.arange(height, device=x.device)[None, :, None] - shift_y + max_y  # [N, H, 1]
    cols = torch.arange(width, device=x.device)[None, None, :] - shift_x + max_x   # [N, 1, W]
    padded = F.pad(x, [max_x, max_x, max_y, max_y])
    samples = torch.arange(batch, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[samples, rows, cols].permute(0, 3, 1, 2)


def cutout(x: torch.Tensor, ratio: float = CUTOUT_RATIO) -> torch.Tensor:
    """Zero a random square (side ratio * size, may be clipped at the border) per image."""
    batch, _, height, width = x.shape
    cut_h, cut_w = int(height * ratio + 0.5), int(width * ratio + 0.5)
    centre_y = torch.randint(0, height + (1 - cut_h % 2), (batch, 1, 1), device=x.device)
    centre_x = torch.randint(0, width + (1 - cut_w % 2), (batch, 1, 1), device=x.device)
    top = centre_y - cut_h // 2
    left = centre_x - cut_w // 2
    rows = torch.arange(height, device=x.device)[None, :, None] - top    # [N, H, 1]
    cols = torch.arange(width, device=x.device)[None, None, :] - left    # [N, 1, W]
    inside = (rows >= 0) & (rows < cut_h) & (cols >= 0) & (cols < cut_w)
    return x * (~inside).to(x.dtype)[:, None]


def diff_augment(x: torch.Tensor) -> torch.Tensor:
    """Colour, then translation, then cutout (the paper's recommended policy)."""
    return cutout(translate(adjust_colour(x)))
