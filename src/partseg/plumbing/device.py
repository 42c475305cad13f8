"""Choosing the torch device.

The device is an execution setting, like `--cores`, not a result-defining parameter, so it
is read from the environment (PARTSEG_DEVICE=auto|cpu|cuda|cuda:N) rather than params.yaml:
moving a run to a GPU must not invalidate every cached stage.
"""

from __future__ import annotations

import os

import torch

from partseg.plumbing.errors import PartsegError


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


PRECISIONS = {"auto": torch.bfloat16, "bf16": torch.bfloat16, "fp16": torch.float16, "off": None}


def mixed_precision_dtype(device: torch.device) -> torch.dtype | None:
    """The autocast dtype for training and inference on `device`, None for fp32.

    CUDA only (CPU autocast is slower than fp32 for these models); PARTSEG_AMP=auto|bf16|fp16|
    off switches it, like PARTSEG_DEVICE an execution setting rather than a param. bf16 is the
    default: fp32's range, so no loss scaling; fp16 (older GPUs) trains with a GradScaler.
    """
    name = os.environ.get("PARTSEG_AMP", "auto").strip().lower()
    if name not in PRECISIONS:
        raise PartsegError(f"unknown mixed precision {name!r} (PARTSEG_AMP): use "
                           f"{', '.join(PRECISIONS)}")
    return PRECISIONS[name] if device.type == "cuda" else None


def use_mixed_precision(device: torch.device) -> bool:
    """Whether autocast is on for `device` (mixed_precision_dtype)."""
    return mixed_precision_dtype(device) is not None
