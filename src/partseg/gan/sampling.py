"""Seeded sampling from a generator: the images a person annotates, with their latents.

Latent i depends only on (seed, i), so asking for more samples never changes the first ones,
and sample i can be regenerated alone.
"""

from __future__ import annotations

import numpy as np
import torch

from partseg.gan.generator import Generator
from partseg.imaging import signed_tensor_to_images


def seeded_z(seed: int, indices, style_dim: int) -> torch.Tensor:
    """z_i ~ N(0, I) drawn from a stream keyed by (seed, i) alone; [len(indices), style_dim]."""
    rows = [np.random.default_rng(np.random.SeedSequence([seed, int(i)]))
            .standard_normal(style_dim, dtype=np.float32) for i in indices]
    return torch.from_numpy(np.stack(rows)) if rows else torch.zeros(0, style_dim)


@torch.no_grad()
def sample_images(generator: Generator, n: int, *, seed: int, truncation: float = 1.0,
                  batch_size: int = 32, device: str | torch.device | None = None) -> dict:
    """n seeded samples: dict(images uint8 [n,H,W,3], z [n,style_dim], wplus [n,n_latent,style_dim]).

    wplus is the (truncated) mapped w repeated over the layers, and the images are
    generator.synthesis(wplus, noise="const"): feeding wplus back reproduces them exactly.
    Latents are returned on the CPU.
    """
    device = torch.device(device) if device is not None else generator.input.input.device
    generator = generator.to(device)
    z = seeded_z(seed, range(n), generator.style_dim)
    images, wplus = [], []
    for start in range(0, n, batch_size):
        z_batch = z[start:start + batch_size].to(device)
        w = generator.truncate(generator.mapping(z_batch), truncation)
        ws = w.unsqueeze(1).repeat(1, generator.n_latent, 1)
        images.append(signed_tensor_to_images(generator.synthesis(ws, noise="const")))
        wplus.append(ws.cpu())
    height = width = generator.size
    return dict(
        images=np.concatenate(images) if images else np.zeros((0, height, width, 3), np.uint8),
        z=z,
        wplus=torch.cat(wplus) if wplus else torch.zeros(0, generator.n_latent,
                                                           generator.style_dim),
    )
