"""Choosing the torch device.

The device is an execution setting, like `--cores`, not a result-defining parameter, so it
is read from the environment (PARTSEG_DEVICE=auto|cpu|cuda|cuda:N) rather than params.yaml:
moving a run to a GPU must not invalidate every cached stage.
"""

from __future__ import annotations

import os

import torch

from partseg.errors import PartsegError


def resolve_device(name: str | None = None) -> torch.device:
    """Return the device named by `name` or $PARTSEG_DEVICE; `auto` picks CUDA when present."""
    name = (name or os.environ.get("PARTSEG_DEVICE", "auto")).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise PartsegError(f"device {name!r} requested (PARTSEG_DEVICE) but CUDA is not available")
    try:
        return torch.device(name)
    except RuntimeError:
        raise PartsegError(f"unknown device {name!r} (PARTSEG_DEVICE): use auto, cpu or cuda") from None


def use_mixed_precision(device: torch.device) -> bool:
    """Mixed precision only on CUDA: CPU autocast is slower than fp32 for these models."""
    return device.type == "cuda"
