"""Prediction with a trained few-shot model: logits of whole feature maps, and uncertainty.

Features may be a torch tensor or a numpy array (an fp16 memmap too) [N,C,R,R]; they are moved to
the model's device and converted to float32 one batch at a time, so only `batch_size` images are
ever held in float32. Logits come back as float32 on the CPU. An ensemble's logits are the log of
its mean probabilities (softmax them for soft labels, as the auto-shot stage does).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from torch import nn

from partseg.plumbing.errors import PartsegError
from partseg.fewshot.ensemble import Ensemble
from partseg.fewshot.train import feature_signature

# What must agree between a model's training features and the features it is given. The
# generator checksum is recorded but not compared: the features stage may checksum the
# checkpoint file and another stage the loaded module, which differ for the same weights.
CHECKED_FEATURE_KEYS = ("layers", "channels_per_layer", "resolution", "num_channels")


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _batches(features, batch_size: int, in_channels: int | None):
    """Torch batches (in the features' dtype) along the image axis, after checking the shape."""
    if features.ndim != 4:
        raise PartsegError("few-shot prediction expects features [N,C,R,R], "
                           f"got shape {tuple(features.shape)}")
    if in_channels is not None and features.shape[1] != in_channels:
        raise PartsegError(f"few-shot model expects {in_channels} feature channels, got "
                           f"{features.shape[1]}: the features come from other layers or another "
                           "generator than the model was trained on")
    for start in range(0, features.shape[0], batch_size):
        batch = features[start:start + batch_size]
        # np.array copies: a read-only memmap slice cannot back a torch tensor safely
        yield batch if torch.is_tensor(batch) else torch.from_numpy(np.array(batch))


def _in_channels(model: nn.Module) -> int | None:
    config = getattr(model, "config", None)
    if config and "in_channels" in config:
        return int(config["in_channels"])
    first = model.members[0] if isinstance(model, Ensemble) else model
    return getattr(first, "in_channels", None)


@torch.no_grad()
def predict_logits(model: nn.Module, features, batch_size: int = 4) -> torch.Tensor:
    """[N,C,R,R] features -> [N,K,R,R] float32 logits on the CPU."""
    device = model_device(model)
    model.eval()
    outputs = [model(batch.to(device).float()).float().cpu()
               for batch in _batches(features, batch_size, _in_channels(model))]
    return torch.cat(outputs)


@torch.no_grad()
def uncertainty(model: nn.Module, features, batch_size: int = 4) -> torch.Tensor:
    """Per-pixel disagreement of an ensemble's members (JS divergence, nats): [N,R,R] on the CPU."""
    if not isinstance(model, Ensemble) or len(model.members) < 2:
        raise PartsegError("uncertainty needs an ensemble of at least 2 members "
                           "(set train_fewshot.ensemble >= 2 and retrain)")
    device = model_device(model)
    model.eval()
    outputs = [model.uncertainty(batch.to(device).float()).cpu()
               for batch in _batches(features, batch_size, _in_channels(model))]
    return torch.cat(outputs)


def check_features_match(model: nn.Module, cache) -> None:
    """Stop with a clear message if `cache` holds other features than the model was trained on."""
    trained = (getattr(model, "config", None) or {}).get("features")
    if not trained:
        return
    given = feature_signature(cache)
    for key in CHECKED_FEATURE_KEYS:
        if key in trained and key in given and given[key] != trained[key]:
            value = trained[key]
            location = getattr(cache, "path", None) or getattr(cache, "dir", None) or "feature cache"
            raise PartsegError(f"{location}: features differ from those the few-shot model was trained on "
                               f"({key}: model {value!r}, cache {given[key]!r}); recompute the features "
                               "with the same generator and layers, or retrain the model")


@torch.no_grad()
def predict_from_cache(model: nn.Module, cache, batch_size: int = 4) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield (image index, [K,R,R] float32 CPU logits) for every image of a feature cache."""
    check_features_match(model, cache)
    device = model_device(model)
    model.eval()
    for start in range(0, cache.num_images, batch_size):
        indices = range(start, min(start + batch_size, cache.num_images))
        if hasattr(cache, "batch_features"):  # one read for the batch
            batch = cache.batch_features(indices)
        else:
            batch = torch.stack([cache.image_features(i) for i in indices])
        batch = batch.to(device).float()
        logits = model(batch).float().cpu()
        yield from zip(indices, logits)
