"""Augmentation for training the segmenter: geometry applied identically to image and labels,
colour applied to images only.

Conventions (both functions):
- images are float RGB in [0, 1], [B, 3, H, W];
- targets are per-pixel class distributions [B, K, H, W]: soft labels (softmax of the few-shot
  net's logits) or one-hot masks. A pixel whose target vector is all zeros is "ignored" (that is
  how a hard mask's 255 travels through the same code path as soft labels);
- every random number comes from the torch.Generator passed in, drawn in a fixed order and
  amount whatever the options, so the same generator state gives the same augmentation.

Geometry: one affine map per sample (scale, rotation, translation, optional horizontal flip)
resampled with one `grid_sample` call (bilinear, zeros outside) over the concatenation of image,
targets and an all-ones "inside" channel: image and labels cannot drift apart because they are
literally the same tensor being warped. Bilinear on probabilities (never on argmax ids) keeps the
soft labels soft and makes one-hot edges slightly soft, which acts as boundary label smoothing.

Pixels whose source lies outside the image (zooming out, rotating, translating) are a choice:
- outside="background" (default): the image is black there and the target is the background
  class. Zoom-out (scale 0.5) leaves up to three quarters of the picture empty; teaching the
  net that empty surroundings are background is what lets it segment a small object inside a
  larger real scene, which is the point of scale augmentation.
- outside="ignore": those pixels get no loss (valid_mask False).
In both cases a pixel is valid when at least half of its target mass comes from labelled (or
background-filled) pixels, and valid targets are renormalised to sum to 1.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F


def random_geometric(images: torch.Tensor, targets: torch.Tensor, *,
                     scale: tuple[float, float] = (0.5, 2.0), rotation_deg: float = 10.0,
                     translate: float = 0.25, flip: bool = True,
                     flip_permutation: Sequence[int] | None = None,
                     outside: str = "background", background_class: int = 0,
                     generator: torch.Generator | None = None,
                     part: tuple[int, slice] | None = None,
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Warp images [B,3,H,W] and targets [B,K,H,W] with the same random affine map per sample.

    scale: (min, max) zoom factor, drawn log-uniformly (so 0.5 and 2 are equally likely);
    rotation_deg: max absolute rotation; translate: max shift per axis as a fraction of the image
    size; flip: horizontal flip with probability 1/2. A flip swaps no classes unless
    `flip_permutation` is given: flip_permutation[i] is the class that class i becomes in the
    mirror image (e.g. left eye <-> right eye); it must be a permutation of range(K).

    part: (global batch size, rows) when the batch is the rows `rows` of a larger global
    batch split across processes: the draws are made for the global batch and these rows kept,
    so each sample is warped as in a 1-process run.

    Returns (images, targets, valid_mask [B,H,W] bool); see the module docstring for outside.
    """
    if images.dim() != 4 or targets.dim() != 4 or images.shape[0] != targets.shape[0] \
            or images.shape[-2:] != targets.shape[-2:]:
        raise ValueError(f"random_geometric: images {tuple(images.shape)} and targets "
                         f"{tuple(targets.shape)} must be [B,C,H,W] with the same B, H, W")
    if outside not in ("background", "ignore"):
        raise ValueError(f"random_geometric: outside must be 'background' or 'ignore', got {outside!r}")
    batch, num_classes = targets.shape[0], targets.shape[1]
    permutation = _check_permutation(flip_permutation, num_classes)

    # Fixed draw: 5 uniforms per sample, whatever the options (keeps runs comparable).
    draws = _draw(batch, 5, generator, part)
    low, high = math.log(scale[0]), math.log(scale[1])
    zoom = torch.exp(low + (high - low) * draws[:, 0])
    angle = torch.deg2rad((2 * draws[:, 1] - 1) * rotation_deg)
    shift = (2 * draws[:, 2:4] - 1) * translate
    flipped = (draws[:, 4] < 0.5) & flip

    if permutation is not None and bool(flipped.any()):
        mirrored = torch.empty_like(targets)
        mirrored[:, permutation] = targets
        targets = torch.where(flipped.view(-1, 1, 1, 1).to(targets.device), mirrored, targets)

    height, width = images.shape[-2:]
    theta = _inverse_affine(zoom, angle, shift, flipped, height, width)
    theta = theta.to(device=images.device, dtype=images.dtype)
    grid = F.affine_grid(theta, list(images.shape[:1]) + [1, height, width], align_corners=False)
    inside = torch.ones_like(images[:, :1])
    stacked = torch.cat([images, targets.to(images.dtype), inside], dim=1)
    warped = F.grid_sample(stacked, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    images_out = warped[:, :3]
    targets_out = warped[:, 3:3 + num_classes]
    inside = warped[:, -1:]

    if outside == "background":
        fill = torch.zeros_like(targets_out[:1, :, :1, :1])
        fill[:, background_class] = 1.0
        targets_out = targets_out + (1.0 - inside) * fill
    mass = targets_out.sum(dim=1, keepdim=True)
    valid = mass >= 0.5
    targets_out = torch.where(valid, targets_out / mass.clamp_min(1e-6), torch.zeros_like(targets_out))
    return images_out, targets_out, valid[:, 0]


def _draw(batch: int, count: int, generator: torch.Generator | None,
          part: tuple[int, slice] | None, dtype=torch.float64) -> torch.Tensor:
    """`count` uniforms per sample of the batch, or of this process's rows of it."""
    if part is None:
        return torch.rand(batch, count, generator=generator, dtype=dtype)
    global_batch, rows = part
    draws = torch.rand(global_batch, count, generator=generator, dtype=dtype)[rows]
    if len(draws) != batch:
        raise ValueError(f"augment: rows {rows} of a batch of {global_batch} are not {batch} images")
    return draws


def _check_permutation(permutation: Sequence[int] | None, num_classes: int) -> torch.Tensor | None:
    if permutation is None:
        return None
    values = [int(v) for v in permutation]
    if sorted(values) != list(range(num_classes)):
        raise ValueError(f"flip_permutation {values} is not a permutation of the {num_classes} classes")
    return torch.tensor(values, dtype=torch.long)


def _inverse_affine(zoom: torch.Tensor, angle: torch.Tensor, shift: torch.Tensor,
                    flipped: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """theta [B,2,3] for affine_grid (output -> input, normalised coordinates).

    The forward map, in centred pixel units, is out = zoom * R(angle) * M * in + shift * (W, H),
    with M the mirror when flipped. Its inverse is built in pixel units and conjugated with
    D = diag(W/2, H/2) into normalised units, so a rotation of a non-square image stays a
    rotation (no shear) and a shift of 0.25 is a quarter of the image on both axes.
    """
    cos, sin = torch.cos(angle), torch.sin(angle)
    rotate_back = torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], -2)
    mirror = torch.ones(len(zoom), 2, dtype=torch.float64)
    mirror[:, 0] = torch.where(flipped, -1.0, 1.0)
    inverse = mirror[:, :, None] * rotate_back / zoom[:, None, None]   # M^-1 R^-1 / zoom
    half = torch.tensor([width / 2.0, height / 2.0], dtype=torch.float64)
    linear = inverse * half[None, :] / half[None, :, None]              # D^-1 inverse D
    shift_pixels = shift * torch.tensor([float(width), float(height)], dtype=torch.float64)
    offset = -(inverse @ shift_pixels[:, :, None])[:, :, 0] / half[None, :]
    return torch.cat([linear, offset[:, :, None]], dim=2).float()


def color_jitter(images: torch.Tensor, strength: float,
                 generator: torch.Generator | None = None,
                 part: tuple[int, slice] | None = None) -> torch.Tensor:
    """Random brightness, contrast and saturation per image, each factor in [1-s, 1+s].

    Images only (labels do not change with colour); the result is clamped to [0, 1].
    """
    if strength <= 0:
        return images
    factors = 1.0 + strength * (2 * _draw(images.shape[0], 3, generator, part, torch.float32) - 1)
    factors = factors.to(device=images.device, dtype=images.dtype)
    brightness, contrast, saturation = (factors[:, i].view(-1, 1, 1, 1) for i in range(3))
    out = images * brightness
    mean = _gray(out).mean(dim=(-2, -1), keepdim=True)
    out = (out - mean) * contrast + mean
    gray = _gray(out)
    out = (out - gray) * saturation + gray
    return out.clamp(0.0, 1.0)


def _gray(images: torch.Tensor) -> torch.Tensor:
    """Luma [B,1,H,W] (ITU-R BT.601 weights)."""
    weights = images.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)
