"""Per-pixel MLP classifiers: linear (no hidden layer), "mlp" [2000] and "mlp2" [2000, 200].

The paper's pixel classifiers are Linear+ReLU stacks applied to each pixel's feature vector
independently. `PixelMLP` takes either a batch of vectors [N,C] (training draws random pixels
from the feature cache) or whole feature maps [N,C,H,W] (prediction). On maps every layer is a
1x1 convolution, which is the same per-pixel linear map; we run it as a matrix product over
chunks of rows so that the hidden activations of a large map (2000 channels x 512² pixels would be
2 GB in fp32) stay bounded.

BatchNorm is off by default (`batch_norm=False`), as in the paper: the network's first layer
standardises each input channel with statistics measured on the training pixels (see
`normalize.py`), which fixes the main reason one would add BatchNorm (feature channels of very
different scales) without making predictions depend on batch statistics. `batch_norm=True`
inserts BatchNorm1d after every hidden Linear (the DatasetGAN style) for users who want it.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from partseg.fewshot.normalize import ChannelStandardize

# Pixels per chunk when a map is classified without gradients: 16k pixels x 2000 hidden
# channels x 4 bytes = 128 MiB of activations at most.
PIXELS_PER_CHUNK = 16384


class PixelMLP(nn.Module):
    """Linear+ReLU layers with the given hidden widths, then a Linear to class logits."""

    def __init__(self, in_channels: int, num_classes: int, hidden: Sequence[int] = (),
                 *, batch_norm: bool = False):
        super().__init__()
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.hidden = tuple(int(width) for width in hidden)
        self.input_norm = ChannelStandardize(in_channels)
        layers: list[nn.Module] = []
        width = in_channels
        for next_width in self.hidden:
            layers.append(nn.Linear(width, next_width))
            if batch_norm:
                layers.append(nn.BatchNorm1d(next_width))
            layers.append(nn.ReLU(inplace=True))
            width = next_width
        layers.append(nn.Linear(width, num_classes))
        self.layers = nn.Sequential(*layers)

    def classify_vectors(self, vectors: torch.Tensor) -> torch.Tensor:
        """[N,C] feature vectors -> [N,K] logits."""
        return self.layers(self.input_norm(vectors))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N,C] -> [N,K] logits, or [N,C,H,W] -> [N,K,H,W] logits."""
        if x.dim() == 2:
            return self.classify_vectors(x)
        if x.dim() != 4:
            raise ValueError(f"PixelMLP expects [N,C] or [N,C,H,W], got shape {tuple(x.shape)}")
        if torch.is_grad_enabled():
            return self._classify_map_at_once(x)
        return self._classify_map_in_chunks(x)

    def _classify_map_at_once(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        vectors = x.permute(0, 2, 3, 1).reshape(n * h * w, c)
        logits = self.classify_vectors(vectors)
        return logits.reshape(n, h, w, self.num_classes).permute(0, 3, 1, 2).contiguous()

    def _classify_map_in_chunks(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        out = x.new_empty((n, self.num_classes, h, w), dtype=torch.float32)
        rows = max(1, PIXELS_PER_CHUNK // w)
        for image in range(n):
            for top in range(0, h, rows):
                chunk = x[image, :, top:top + rows]  # [C, rows, W]
                vectors = chunk.reshape(c, -1).t().float()
                logits = self.classify_vectors(vectors)  # [rows*W, K]
                out[image, :, top:top + rows] = logits.t().reshape(self.num_classes, -1, w)
        return out
