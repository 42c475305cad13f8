"""A trained UNet segmenter: saved, loaded and run (the training loop is autoshot/train.py).

    save_segmenter(path, model, meta)      weights + architecture + meta (class_names, resolution)
    load_segmenter(path, device)           -> UNet in eval mode, its meta as `model.meta`
    predict_probabilities(model, batch)    float [B,3,H,W] in [0,1] -> softmax [B,K,H,W]
    predict_labels(model, images)          uint8 images of any sizes -> (labels, probabilities)
    Segmenter(path).predict(image)         an image (array or path) -> HxW labels, segmented at
                                           the model's training scale (`partseg segment`)

Each takes flip=True for test-time flip: the mean of the probabilities of the image and of its
mirror image (mirrored back). A mirrored face is a face, and the face classes have no left and
right, so both views are equally valid inputs; evaluate.flip turns it on for every UNet scored.

The file is a plain dict loadable with torch.load(weights_only=True): format
SEGMENTER_FORMAT, version, config (UNet arguments), state_dict, meta.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from partseg.autoshot.unet import UNet
from partseg.plumbing.device import mixed_precision_dtype, resolve_device, use_mixed_precision
from partseg.plumbing.errors import PartsegError
from partseg.imaging import images_to_unit_tensor
from partseg.plumbing.io import read_image, save_torch

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
def predict_probabilities(model: UNet, batch: torch.Tensor, flip: bool = False) -> torch.Tensor:
    """Images float [B,3,H,W] in [0,1] (on the model's device) -> softmax [B,K,H,W] float32;
    with flip, the mean of those of the batch and of its mirror image, mirrored back."""
    probabilities = _softmax(model, batch)
    if flip:
        probabilities = (probabilities + _softmax(model, batch.flip(-1)).flip(-1)) / 2
    return probabilities


def _softmax(model: UNet, batch: torch.Tensor) -> torch.Tensor:
    device = batch.device
    with torch.autocast(device.type, dtype=mixed_precision_dtype(device) or torch.bfloat16,
                        enabled=use_mixed_precision(device)):
        logits = model(batch)
    return torch.softmax(logits.float(), dim=1)


@torch.no_grad()
def predict_labels(model: UNet, images: np.ndarray | Sequence[np.ndarray], batch_size: int = 16,
                   device: str | torch.device | None = None, return_probs: bool = False,
                   flip: bool = False) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """Segment uint8 images ([N,H,W,3] or a list of HxWx3 of any sizes) at their own size.

    Returns one (labels HxW uint8, probabilities [K,H,W] float32 or None) per image, in order.
    Consecutive images of the same size are batched together. flip: test-time flip.
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
        probs = predict_probabilities(model, images_to_unit_tensor(batch, target), flip)
        labels = probs.argmax(1).to(torch.uint8).cpu().numpy()
        probs_np = probs.cpu().numpy() if return_probs else None
        for i in range(len(batch)):
            results.append((labels[i], None if probs_np is None else probs_np[i]))
        start = stop
    return results


# ----------------------------------------------------------------------------- images of any size

# The most pixels an image is segmented at (512x1024; a 16:9 photo at a 512 px model's
# resolution fits): the default UNet's activations take about 750 bytes a pixel, so a 1x3000
# strip scaled to a shorter side of 32 (32x96000) once took 2 GB. Larger working sizes are
# scaled down, whatever the aspect ratio or --size.
MAX_WORKING_PIXELS = 1 << 19


class Segmenter:
    """A loaded segmenter: predict(image) -> HxW uint8 labels at the image's own size.
    flip: test-time flip (twice the work, usually a better segmentation)."""

    def __init__(self, model_path: str | os.PathLike, device: str | torch.device | None = None,
                 size: int | None = None, flip: bool = False):
        self.flip = flip
        self.model = load_segmenter(model_path, device)
        self.meta = self.model.meta
        self.device = next(self.model.parameters()).device
        self.class_names: list[str] = list(self.meta["class_names"])
        self.resolution = int(self.meta["resolution"])
        self.size = self.resolution if size is None else int(size)

    def working_size(self, height: int, width: int) -> tuple[int, int]:
        """The size an HxW image is segmented at (shorter side = self.size; 0 = native), at
        most MAX_WORKING_PIXELS pixels (then scaled down, keeping the aspect ratio)."""
        scale = 1.0 if self.size <= 0 else self.size / min(height, width)
        while True:
            working = max(1, round(height * scale)), max(1, round(width * scale))
            computed = self._padded_pixels(*working)
            if computed <= MAX_WORKING_PIXELS:
                return working
            scale *= 0.98 * (MAX_WORKING_PIXELS / computed) ** 0.5

    def _padded_pixels(self, height: int, width: int) -> int:
        """Pixels the network computes for an HxW input: the UNet pads both sides to a
        multiple of 2**depth (so a 4 px high strip costs as much as an 8 px one)."""
        multiple = 2 ** int(getattr(self.model, "config", {}).get("depth", 3))
        return (-(-height // multiple) * multiple) * (-(-width // multiple) * multiple)

    def predict(self, image: np.ndarray | str | os.PathLike) -> np.ndarray:
        """One image (HxWx3 uint8 array or a path) -> HxW uint8 label ids."""
        if not isinstance(image, np.ndarray):
            image = read_image(image)
        return self.predict_batch([image])[0]

    @torch.no_grad()
    def predict_batch(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Images that share one working size (any native sizes) -> their label maps."""
        sizes = {self.working_size(*image.shape[:2]) for image in images}
        if len(sizes) != 1:
            raise ValueError(f"predict_batch: images map to several working sizes {sorted(sizes)}; "
                             "use predict() per image or group them")
        working = sizes.pop()
        batch = torch.cat([self._resize(images_to_unit_tensor(image[None], self.device), working)
                           for image in images])
        probabilities = predict_probabilities(self.model, batch, self.flip)
        labels = []
        for image, probs in zip(images, probabilities):
            # back to the native size one image at a time: K x H x W floats can be large
            native = self._resize(probs[None], image.shape[:2], antialias=False)[0]
            labels.append(native.argmax(0).to(torch.uint8).cpu().numpy())
        return labels

    @staticmethod
    def _resize(x: torch.Tensor, size: tuple[int, int], antialias: bool = True) -> torch.Tensor:
        if tuple(x.shape[-2:]) == tuple(size):
            return x
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False,
                             antialias=antialias and size[0] < x.shape[-2])
