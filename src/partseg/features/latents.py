"""The features of given latents into a new cache: the one way every stage opens a cache.

    cache = cache_latent_features(out / "cache", checkpoint, shots.wplus, params.features,
                                  batch_size=8, noises=shots.noises, device=device)

`generator` is a checkpoint path (loaded onto `device`; the cache records the file's sha256) or
a generator module already loaded (the cache records `checksum` when given, else the sha256 of
the module's state dict). The features params section gives the layers and the resolution and
is recorded in the manifest, where the staleness check compares it.
"""

from __future__ import annotations

import os
from typing import Sequence

import torch

from partseg.features.cache import FeatureCache, generator_checksum, write_feature_cache
from partseg.features.extract import FeatureExtractor


def cache_latent_features(out_dir: str | os.PathLike,
                          generator: str | os.PathLike | torch.nn.Module,
                          wplus: torch.Tensor, options, *, batch_size: int,
                          noises: Sequence[torch.Tensor] | None = None,
                          checksum: str | None = None, device=None,
                          show_progress: bool = True) -> FeatureCache:
    """Extract the features of `wplus` (with per-image `noises`, or the generator's constant
    noise) at `options.layers` and `options.resolution`, `batch_size` images at a time, into a
    new cache at `out_dir`, and open it."""
    from partseg.plumbing.params import as_dict

    if not isinstance(generator, torch.nn.Module):
        from partseg.gan import load_generator

        checksum = generator_checksum(generator) if checksum is None else checksum
        generator = load_generator(generator, device="cpu" if device is None else device)
    elif checksum is None:
        checksum = generator_checksum(generator)
    extractor = FeatureExtractor(generator, options.layers, options.resolution)
    return write_feature_cache(out_dir, extractor, wplus, noises=noises, batch_size=batch_size,
                               generator_checksum=checksum, params=as_dict(options),
                               show_progress=show_progress)
