"""A trained UNet segmenter: saved, loaded and run (the training loop is autoshot/train.py).

    save_segmenter(path, model, meta)      weights + architecture + meta (class_names, resolution)
    load_segmenter(path, device)           -> UNet in eval mode, its meta as `model.meta`
    predict_probabilities(model, batch)    float [B,3,H,W] in [0,1] -> softmax [B,K,H,W]
    predict_labels(model, images)          uint8 images of any sizes -> (labels, probabilities)

The file is a plain dict loadable with torch.load(weights_only=True): format
SEGMENTER_FORMAT, version, config (UNet arguments), state_dict, meta.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from partseg.autoshot.unet import UNet
from partseg.device import mixed_precision_dtype, resolve_device, use_mixed_precision
from partseg.errors import PartsegError
from partseg.imaging import images_to_unit_tensor
from partseg.io import save_torch

SEGMENTER_FORMAT = "partseg-segmenter"


# ----------------------------------------------------------------------------- files

def save_segmenter(path: str | os.PathLike, model: UNet, meta: dict) -> None:
    """Save weights + architecture + meta. meta needs `class_names` (one per class; `classes`
    is accepted as an alias) and `resolution` (training image size, px); other plain values
    (str, numbers, lists, dicts) are kept. Loadable with torch.load(weights_only=True)."""
    names = meta.get("class_names", meta.get("classes"))
    if not isinstance(names, (list, tuple)) or len(names) != model.num_classes:
        raise ValueError(f"save_segmenter: meta['class_names'] must list {model.num_classes} names")
    if not isinstance(meta.get("resolution"), int):
        raise ValueError("save_segmenter: meta['resolution'] (training image size) is required")
    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    save_torch({"format": SEGMENTER_FORMAT, "version": 1, "config": dict(model.config),
                "state_dict": state, "meta": {**{k: v for k, v in meta.items() if k != "classes"},
                                              "class_names": list(names)}}, path)


def load_segmenter(path: str | os.PathLike, device: str | torch.device | None = None) -> UNet:
    """Load a saved segmenter -> model in eval mode on `device`; its meta (class_names,
    resolution, ...) is `model.meta`."""
    path = Path(path)
    if not path.is_file():
        raise PartsegError(f"{path}: segmenter model not found")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise PartsegError(f"{path}: not a readable model file ({type(error).__name__})") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != SEGMENTER_FORMAT:
        raise PartsegError(f"{path}: not a partseg segmenter (expected a file written by "
                           f"save_segmenter, e.g. results/train_autoshot/model.pt)")
    try:
        model = UNet(**checkpoint["config"])
        model.load_state_dict(checkpoint["state_dict"])
        model.meta = dict(checkpoint["meta"])
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        # e.g. a state dict of other shapes than its config: one line, not torch's page of them
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        detail = " ".join(lines[:2]) or type(error).__name__
        raise PartsegError(f"{path}: its weights do not fit its architecture ({detail}); "
                           "retrain it or name another model file") from None
    target = resolve_device(None if device is None else str(device))
    return model.to(target).eval()


# ----------------------------------------------------------------------------- inference

def _model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def predict_probabilities(model: UNet, batch: torch.Tensor) -> torch.Tensor:
    """Images float [B,3,H,W] in [0,1] (on the model's device) -> softmax [B,K,H,W] float32."""
    device = batch.device
    with torch.autocast(device.type, dtype=mixed_precision_dtype(device) or torch.bfloat16,
                        enabled=use_mixed_precision(device)):
        logits = model(batch)
    return torch.softmax(logits.float(), dim=1)


@torch.no_grad()
def predict_labels(model: UNet, images: np.ndarray | Sequence[np.ndarray], batch_size: int = 16,
                   device: str | torch.device | None = None, return_probs: bool = False
                   ) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """Segment uint8 images ([N,H,W,3] or a list of HxWx3 of any sizes) at their own size.

    Returns one (labels HxW uint8, probabilities [K,H,W] float32 or None) per image, in order.
    Consecutive images of the same size are batched together.
    """
    if device is not None:
        model.to(resolve_device(str(device)))
    model.eval()
    target = _model_device(model)
    images = list(images)
    results: list[tuple[np.ndarray, np.ndarray | None]] = []
    start = 0
    while start < len(images):
        shape = images[start].shape
        stop = start + 1
        while stop < len(images) and stop - start < batch_size and images[stop].shape == shape:
            stop += 1
        batch = np.stack(images[start:stop])
        if batch.ndim != 4 or batch.shape[-1] != 3 or batch.dtype != np.uint8:
            raise ValueError(f"predict_labels: expected uint8 HxWx3 images, got {batch.shape[1:]} "
                             f"{batch.dtype}")
        probs = predict_probabilities(model, images_to_unit_tensor(batch, target))
        labels = probs.argmax(1).to(torch.uint8).cpu().numpy()
        probs_np = probs.cpu().numpy() if return_probs else None
        for i in range(len(batch)):
            results.append((labels[i], None if probs_np is None else probs_np[i]))
        start = stop
    return results

