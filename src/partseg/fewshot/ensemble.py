"""An ensemble of few-shot classifiers and its per-pixel uncertainty.

Prediction averages the members' class probabilities; `forward` returns log(mean softmax) so
that, like a single network, its output is "logits": softmax(log p) = p, and argmax is the
ensemble's most probable class.

Uncertainty is the Jensen-Shannon divergence among the members' predictions (as in
DatasetGAN), also known as the ensemble's mutual information:

    JS = H(mean_m p_m) - mean_m H(p_m)          (entropies in nats)

It is 0 when all members predict the same distribution, whatever that distribution, and grows
when members are confident about different classes; it is at most log(min(M, K)). So it
measures disagreement, not the ambiguity every member agrees on (a pixel on a part boundary that
all members call 50/50 has high entropy but zero JS).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn


class Ensemble(nn.Module):
    """Members with the same input and output; output = log of their mean probabilities."""

    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    def member_log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """[M, N, K, ...] log-softmax of each member (class axis 1 of each member's output)."""
        return torch.stack([member(x).float().log_softmax(dim=1) for member in self.members])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        log_probs = self.member_log_probs(x)
        return torch.logsumexp(log_probs, dim=0) - math.log(len(self.members))

    def uncertainty(self, x: torch.Tensor) -> torch.Tensor:
        """Per-pixel JS divergence among members: [N,...] (the class axis removed), in nats."""
        return js_divergence(self.member_log_probs(x))


def entropy(log_probs: torch.Tensor, dim: int) -> torch.Tensor:
    """Shannon entropy in nats along `dim`; 0 * log 0 counts as 0."""
    return -(log_probs.exp() * log_probs).nan_to_num(0.0).sum(dim=dim)


def js_divergence(member_log_probs: torch.Tensor) -> torch.Tensor:
    """JS divergence of [M, N, K, ...] member log-probabilities -> [N, ...]."""
    members = member_log_probs.shape[0]
    mean_log_probs = torch.logsumexp(member_log_probs, dim=0) - math.log(members)
    divergence = entropy(mean_log_probs, dim=1) - entropy(member_log_probs, dim=2).mean(dim=0)
    return divergence.clamp_min(0.0)  # rounding can make an exact 0 slightly negative
