"""The paper's small dilated CNN few-shot classifier.

A 1x1 convolution reduces the C feature channels to 128, then eight 3x3 convolutions with
dilations 2, 4, 8, 1, 2, 4, 8, 1 ('same' padding, leaky ReLU between layers) let each pixel's
label depend on a 61 px neighbourhood: receptive field = 1 + 2 x (2+4+8+1+2+4+8+1) = 61.
Unlike the per-pixel MLPs it sees context, so it is trained on random tiles of the feature maps
rather than on isolated pixels, and it only takes maps [N,C,H,W].
"""

from __future__ import annotations

import torch
from torch import nn

from partseg.fewshot.normalize import ChannelStandardize

# (in, out, dilation) of the 3x3 convolutions after the 1x1 reduction to 128 channels;
# the last one's output width is the number of classes.
DILATED_LAYERS = ((128, 64, 2), (64, 64, 4), (64, 64, 8), (64, 64, 1),
                  (64, 64, 2), (64, 64, 4), (64, 32, 8), (32, None, 1))
LEAKY_SLOPE = 0.2


def receptive_field(layers=DILATED_LAYERS) -> int:
    """Side of the square of input pixels that one output pixel depends on."""
    return 1 + sum(2 * dilation for _, _, dilation in layers)


class DilatedCNN(nn.Module):
    """[N,C,H,W] features -> [N,K,H,W] logits, same spatial size."""

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.input_norm = ChannelStandardize(in_channels)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, 128, kernel_size=1)]
        for in_width, out_width, dilation in DILATED_LAYERS:
            layers.append(nn.LeakyReLU(LEAKY_SLOPE, inplace=True))
            layers.append(nn.Conv2d(in_width, out_width or num_classes, kernel_size=3,
                                    dilation=dilation, padding=dilation))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"DilatedCNN expects [N,C,H,W] maps, got shape {tuple(x.shape)}")
        return self.layers(self.input_norm(x))
