"""Images between numpy and torch: one conversion per float range, named for the range.

Files and arrays hold images as uint8 numpy [N, H, W, 3]; networks take float [N, 3, H, W]:

    images_to_unit_tensor     uint8 [N,H,W,3] -> float [N,3,H,W] in [0, 1]    (the UNet segmenter)
    images_to_signed_tensor   uint8 [N,H,W,3] -> float [N,3,H,W] in [-1, 1]   (the generator's
                                                range: GAN training, inversion, VAE, shot choice)
    uint8_to_signed           a uint8 tensor of any layout -> float in [-1, 1]
    signed_tensor_to_images   float [N,3,H,W] in [-1, 1] -> uint8 [N,H,W,3]   (generator output)

and the one PSNR and one label-map resize:

    psnr_db                   the PSNR formula, of an MSE (float, numpy or torch)
    psnr                      per-image PSNR of uint8 images (inversion)
    psnr_signed               PSNR of float batches in [-1, 1] (the VAE)
    resize_masks              nearest-neighbour resize of label maps (shots to the feature size)

Each keeps the exact operations (and their order) of the copies it replaced, so no result moves.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def images_to_unit_tensor(images: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 [B,H,W,3] -> float [B,3,H,W] in [0,1] (uint8 / 255; the UNet's input), on `device`
    (moved there as uint8, converted there)."""
    tensor = torch.from_numpy(np.require(images, requirements=["C", "W"])).to(device)
    return tensor.permute(0, 3, 1, 2).float().div_(255.0)


def uint8_to_signed(tensor: torch.Tensor) -> torch.Tensor:
    """A uint8 tensor (any shape and layout) -> float in [-1, 1] (x / 127.5 - 1)."""
    return tensor.float() / 127.5 - 1.0


def images_to_signed_tensor(images: np.ndarray, device: torch.device | str | None = None
                            ) -> torch.Tensor:
    """uint8 [N,H,W,3] -> float [N,3,H,W] in [-1,1] (the generator's range); with `device`,
    moved there as uint8 and converted there."""
    tensor = torch.from_numpy(np.ascontiguousarray(images))
    if device is not None:
        tensor = tensor.to(device)
    return uint8_to_signed(tensor.permute(0, 3, 1, 2))


def signed_tensor_to_images(images: torch.Tensor) -> np.ndarray:
    """Float [N, 3, H, W] in [-1, 1] (e.g. raw generator output) -> uint8 numpy [N, H, W, 3]."""
    scaled = (images.detach().float().clamp(-1, 1) + 1) * 127.5
    return scaled.round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


# ---- comparing images and resizing label maps ---------------------------------------------
# The one PSNR (psnr_db's formula, used by psnr, psnr_signed and the VAE's training log) and
# the one resize of label maps at run time (resize_masks) live here, beside the conversions.
# (The dataset stage's square crop + resize of users' masks, partseg.data.folder.normalise_mask,
# samples pixel centres with PIL; it prepares files, and its labels are those of the dataset.)

def psnr_db(mse, peak_to_peak: float, floor: float):
    """10 log10(peak_to_peak^2 / max(mse, floor)) in dB, of a float (-> float), a numpy
    array or a torch tensor (elementwise, same type back)."""
    if isinstance(mse, torch.Tensor):
        return 10 * torch.log10(peak_to_peak ** 2 / mse.clamp_min(floor))
    if isinstance(mse, np.ndarray):
        return 10.0 * np.log10(peak_to_peak ** 2 / np.maximum(mse, floor))
    return 10 * math.log10(peak_to_peak ** 2 / max(mse, floor))


def psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-image PSNR in dB of uint8 [N, H, W, 3] arrays (peak 255; identical images give 100)."""
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).reshape(len(a), -1).mean(axis=1)
    return psnr_db(mse, 255.0, 255.0 ** 2 * 1e-10)


def psnr_signed(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two float image batches in [-1, 1] (peak-to-peak 2), over the whole
    batch: the VAE's measure, as its training log measures it (not per uint8 image as psnr)."""
    mse = float((a.clamp(-1, 1) - b.clamp(-1, 1)).square().mean())
    return psnr_db(mse, 2.0, 1e-12)


def resize_masks(masks: list[np.ndarray], resolution: int) -> np.ndarray:
    """Nearest-neighbour resize of label masks (labels must never be interpolated):
    HxW uint8 label maps -> uint8 [N, resolution, resolution]."""
    stacked = torch.from_numpy(np.stack(masks)).unsqueeze(1).float()
    resized = torch.nn.functional.interpolate(stacked, size=(resolution, resolution), mode="nearest")
    return resized.squeeze(1).to(torch.uint8).numpy()
