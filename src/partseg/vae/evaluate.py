"""How well the VAE reconstructs images: PSNR and pictures (images above, reconstructions below).

Reconstructions decode the encoder's posterior mean, so they are deterministic.
"""

from __future__ import annotations

import numpy as np
import torch

from partseg.imaging import images_to_signed_tensor, psnr_signed, signed_tensor_to_images
from partseg.vae.model import GeneratorVAE


def reconstruction_grid(vae: GeneratorVAE, images: torch.Tensor) -> np.ndarray:
    """Two rows: the images [N, 3, H, W] in [-1, 1], then their reconstructions."""
    was_training = vae.training
    vae.eval()
    recon = vae.reconstruct(images)
    vae.train(was_training)
    rows = [np.concatenate(list(signed_tensor_to_images(batch)), axis=1) for batch in (images, recon)]
    return np.concatenate(rows, axis=0)


def reconstruction_report(vae: GeneratorVAE, info: dict, images: np.ndarray, shown: int
                          ) -> tuple[dict, np.ndarray]:
    """Held-out uint8 images [N, H, W, 3] -> (metrics: steps trained and the reconstruction
    PSNR over all N, a picture of the first `shown` and their reconstructions)."""
    from partseg.visualize import image_grid

    targets = images_to_signed_tensor(images)
    recon = vae.reconstruct(targets)
    options = info["options"]
    metrics = {"step": info["step"], "target_steps": options["steps"],
               "kimg": round(info["step"] * options["batch_size"] / 1000, 1),
               "test_psnr_encoder": round(psnr_signed(recon, targets), 3),
               "test_images": int(len(images))}
    picture = image_grid([list(images[:shown]), list(signed_tensor_to_images(recon[:shown]))], upscale=3)
    return metrics, picture
