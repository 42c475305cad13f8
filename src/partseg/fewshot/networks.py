"""Choosing a few-shot network by name, and rebuilding a saved one from its config.

A name is one kind ("mlp", "cnn_scaled", ...) or kinds joined by "+" ("mlp+cnn"): an ensemble
whose members differ in kind. `ensemble` copies of each kind are trained, each from its own seed.
"""

from __future__ import annotations

from typing import Any, Mapping

from torch import nn

from partseg.plumbing.errors import PartsegError
from partseg.fewshot.dilated_cnn import DilatedCNN, scaled_dilations
from partseg.fewshot.ensemble import Ensemble
from partseg.fewshot.mlp import PixelMLP

# Hidden widths of the paper's per-pixel networks.
MLP_HIDDEN = {"linear": (), "mlp": (2000,), "mlp2": (2000, 200)}
KINDS = (*MLP_HIDDEN, "cnn", "cnn_scaled")
# The names params.yaml accepts: one kind, or the mixed ensembles worth comparing.
NETWORKS = (*KINDS, "mlp+cnn", "mlp+cnn_scaled")


def member_kinds(network: str, ensemble: int = 1) -> list[str]:
    """The kind of each member: `ensemble` copies of every kind in the "+"-joined name."""
    kinds = network.split("+")
    unknown = [kind for kind in kinds if kind not in KINDS]
    if unknown or not network:
        raise PartsegError(f"train_fewshot.network: unknown network {network!r}; "
                           f"choose one of {', '.join(NETWORKS)}")
    return [kind for _ in range(ensemble) for kind in kinds]


def build_network(kind: str, in_channels: int, num_classes: int,
                  resolution: int | None = None) -> nn.Module:
    """A fresh network of one kind: "linear", "mlp" ([2000]), "mlp2" ([2000, 200]), "cnn" (the
    paper's dilations) or "cnn_scaled" (dilations scaled to `resolution`, needed for it)."""
    member_kinds(kind)  # raises the message that names the choices
    if kind in MLP_HIDDEN:
        network: nn.Module = PixelMLP(in_channels, num_classes, MLP_HIDDEN[kind])
    elif kind == "cnn":
        network = DilatedCNN(in_channels, num_classes)
    elif kind == "cnn_scaled" and resolution:
        network = DilatedCNN(in_channels, num_classes, scaled_dilations(int(resolution)))
    elif kind == "cnn_scaled":
        raise PartsegError("cnn_scaled needs the feature resolution")
    else:
        raise PartsegError(f"{kind!r} is a mixed ensemble; build it with build_model")
    network.kind = kind
    return network


def is_pixel_network(kind: str) -> bool:
    """Pixel networks train on random pixels; the CNNs need tiles (they see context)."""
    return kind in MLP_HIDDEN


def build_model(config: Mapping[str, Any]) -> nn.Module:
    """The (untrained) model a saved config describes: one network, or an Ensemble of them."""
    kinds = config.get("members") or [config["network"]] * int(config.get("ensemble", 1))
    resolution = config.get("resolution") or config.get("features", {}).get("resolution")
    members = [build_network(kind, int(config["in_channels"]), int(config["num_classes"]),
                             resolution) for kind in kinds]
    return members[0] if len(members) == 1 else Ensemble(members)
