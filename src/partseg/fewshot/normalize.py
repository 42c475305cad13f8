"""Per-channel standardisation of GAN features, the first step of every few-shot network.

The concatenated features mix layers whose activations differ in scale by an order of magnitude
or more (early 512-channel maps vs. late high-resolution ones). Left as they are, the
large-scale channels dominate the first layer's pre-activations and training is ill-conditioned.
Each network therefore starts with `ChannelStandardize`: (x - mean) / std per channel, with the
statistics measured on a sample of training pixels (see `train.py`) and stored as buffers, so
they are saved with the weights and applied identically at prediction time. Until they are set
it is the identity.

This is used instead of BatchNorm: it adds no batch dependence (a prediction never depends on
which other pixels share its batch) and costs nothing to train.
"""

from __future__ import annotations

import torch
from torch import nn


class ChannelStandardize(nn.Module):
    """(x - mean) / std over the channel axis (dim 1) of [N,C] vectors or [N,C,H,W] maps."""

    def __init__(self, channels: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(channels))
        self.register_buffer("std", torch.ones(channels))

    @torch.no_grad()
    def set_statistics(self, mean: torch.Tensor, std: torch.Tensor, *, min_std: float = 1e-4) -> None:
        """Store the statistics; a dead (constant) channel keeps a floor std, not a division by 0."""
        self.mean.copy_(mean.to(self.mean))
        self.std.copy_(std.to(self.std).clamp_min(min_std))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return (x - self.mean.view(shape)) / self.std.view(shape)
