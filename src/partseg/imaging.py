"""Images between numpy and torch: one conversion per float range, named for the range.

Files and arrays hold images as uint8 numpy [N, H, W, 3]; networks take float [N, 3, H, W]:

    images_to_unit_tensor     uint8 [N,H,W,3] -> float [N,3,H,W] in [0, 1]    (the UNet segmenter)
    images_to_signed_tensor   uint8 [N,H,W,3] -> float [N,3,H,W] in [-1, 1]   (the generator's
                                                range: GAN training, inversion, VAE, shot choice)
    uint8_to_signed           a uint8 tensor of any layout -> float in [-1, 1]
    signed_tensor_to_images   float [N,3,H,W] in [-1, 1] -> uint8 [N,H,W,3]   (generator output)

Each keeps the exact operations (and their order) of the copies it replaced, so no result moves.
"""

from __future__ import annotations

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
