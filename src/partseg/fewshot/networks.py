"""Choosing a few-shot network by name, and rebuilding a saved one from its config."""

from __future__ import annotations

from typing import Any, Mapping

from torch import nn

from partseg.errors import PartsegError
from partseg.fewshot.dilated_cnn import DilatedCNN
from partseg.fewshot.ensemble import Ensemble
from partseg.fewshot.mlp import PixelMLP

# Hidden widths of the paper's per-pixel networks.
MLP_HIDDEN = {"linear": (), "mlp": (2000,), "mlp2": (2000, 200)}
NETWORKS = (*MLP_HIDDEN, "cnn")


def build_network(kind: str, in_channels: int, num_classes: int) -> nn.Module:
    """A fresh network: "linear", "mlp" ([2000]), "mlp2" ([2000, 200]) or "cnn" (dilated)."""
    if kind in MLP_HIDDEN:
        return PixelMLP(in_channels, num_classes, MLP_HIDDEN[kind])
    if kind == "cnn":
        return DilatedCNN(in_channels, num_classes)
    raise PartsegError(f"train_fewshot.network: unknown network {kind!r}; "
                       f"choose one of {', '.join(NETWORKS)}")


def is_pixel_network(kind: str) -> bool:
    """Pixel networks train on random pixels; the CNN needs tiles (it sees context)."""
    return kind in MLP_HIDDEN


def build_model(config: Mapping[str, Any]) -> nn.Module:
    """The (untrained) model a saved config describes: one network, or an Ensemble of them."""
    members = [build_network(config["network"], int(config["in_channels"]), int(config["num_classes"]))
               for _ in range(int(config.get("ensemble", 1)))]
    return members[0] if len(members) == 1 else Ensemble(members)
