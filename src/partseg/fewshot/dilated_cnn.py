"""The paper's small dilated CNN few-shot classifier, and its version scaled to the resolution.

A 1x1 convolution reduces the C feature channels to 128, then eight 3x3 convolutions with
dilations 2, 4, 8, 1, 2, 4, 8, 1 ('same' padding, leaky ReLU between layers) let each pixel's
label depend on a 61 px neighbourhood: receptive field = 1 + 2 x (2+4+8+1+2+4+8+1) = 61.
Unlike the per-pixel MLPs it sees context, so it is trained on random tiles of the feature maps
rather than on isolated pixels, and it only takes maps [N,C,H,W].

61 px is an eighth of the paper's 512 px image. At the demo's 32 px the same net sees the whole
image, and from one shot it learns that shot's layout (it paints the shot's short hair on every
face). `scaled_dilations(resolution)` keeps the eighth: each dilation times resolution / 512,
rounded, a layer whose dilation rounds to 0 being a 1x1 convolution (no context). Receptive
field: 5 px at 32, 9 at 64, 17 at 128, 33 at 256, the paper's 61 at 512.
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


PAPER_DILATIONS = tuple(dilation for _, _, dilation in DILATED_LAYERS)
PAPER_RESOLUTION = 512


def scaled_dilations(resolution: int) -> tuple[int, ...]:
    """The paper's dilations scaled by resolution / 512 and rounded half up; 0 = a 1x1 conv."""
    scale = resolution / PAPER_RESOLUTION
    return tuple(int(dilation * scale + 0.5) for dilation in PAPER_DILATIONS)


def receptive_field(dilations=PAPER_DILATIONS) -> int:
    """Side of the square of input pixels that one output pixel depends on."""
    return 1 + sum(2 * dilation for dilation in dilations)


class DilatedCNN(nn.Module):
    """[N,C,H,W] features -> [N,K,H,W] logits, same spatial size.

    dilations: one per 3x3 layer of DILATED_LAYERS (the paper's by default); 0 makes that
    layer a 1x1 convolution.
    """

    def __init__(self, in_channels: int, num_classes: int,
                 dilations: tuple[int, ...] = PAPER_DILATIONS):
        super().__init__()
        if len(dilations) != len(DILATED_LAYERS) or min(dilations) < 0:
            raise ValueError(f"DilatedCNN: need {len(DILATED_LAYERS)} dilations >= 0, got {dilations}")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.dilations = tuple(int(d) for d in dilations)
        self.input_norm = ChannelStandardize(in_channels)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, 128, kernel_size=1)]
        for (in_width, out_width, _), dilation in zip(DILATED_LAYERS, self.dilations):
            layers.append(nn.LeakyReLU(LEAKY_SLOPE, inplace=True))
            kernel = 3 if dilation else 1
            layers.append(nn.Conv2d(in_width, out_width or num_classes, kernel_size=kernel,
                                    dilation=max(dilation, 1), padding=dilation))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"DilatedCNN expects [N,C,H,W] maps, got shape {tuple(x.shape)}")
        return self.layers(self.input_norm(x))
