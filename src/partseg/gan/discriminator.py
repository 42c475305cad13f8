"""StyleGAN2 residual discriminator with minibatch standard deviation.

Keys follow rosinality/stylegan2-pytorch: `convs.0.*` (1x1 fromRGB), `convs.K.conv1/conv2/skip.*`
(residual blocks, each halving the resolution), `final_conv.*`, `final_linear.0/1.*`.
Widths use the same rule as the generator: min(channel_base // resolution, channel_max).

`D(x, return_features=True)` also returns the activations of every block (fromRGB and each
residual block, full resolution down to 4x4): a weights-free perceptual distance for GAN
inversion, since no pretrained VGG/LPIPS weights can be downloaded.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from partseg.gan.generator import channels_at, log2_size
from partseg.gan.layers import (LRELU_GAIN, LRELU_SLOPE, Blur, EqualConv2d, EqualLinear,
                                FusedLeakyReLU, upfirdn2d)


class ConvLayer(nn.Sequential):
    """[Blur], EqualConv2d, [FusedLeakyReLU]; indices in the Sequential match the reference.

    The forward pass is fused: the activation's bias becomes the conv's bias, and the gain
    sqrt(2) (and any output `gain` a caller asks for) is folded into the conv's weight scale,
    since lrelu(a) * g == lrelu(a * g) for g > 0. One conv and one in-place activation instead
    of conv, add, activation, multiply.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
                 downsample: bool = False, blur_kernel: Sequence[float] = (1, 3, 3, 1),
                 bias: bool = True, activate: bool = True):
        layers: list[nn.Module] = []
        if downsample:
            excess = (len(blur_kernel) - 2) + (kernel_size - 1)
            layers.append(Blur(blur_kernel, pad=((excess + 1) // 2, excess // 2)))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel_size // 2
        layers.append(EqualConv2d(in_channels, out_channels, kernel_size, stride=stride,
                                  padding=padding, bias=bias and not activate))
        if activate:
            layers.append(FusedLeakyReLU(out_channels, bias=bias))
        super().__init__(*layers)
        self.downsample = downsample
        self.activate = activate
        self.kernel_size = kernel_size

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        conv: EqualConv2d = self[1] if self.downsample else self[0]
        stride = conv.stride
        if self.downsample:
            blur: Blur = self[0]
            if self.kernel_size == 1:
                # A 1x1 stride-2 conv reads every other blurred pixel: blur with stride 2
                # (a quarter of the work), then convolve with stride 1.
                x = upfirdn2d(x, blur.kernel, down=2, pad=blur.pad)
                stride = 1
            else:
                x = blur(x)
        gain = gain * (LRELU_GAIN if self.activate else 1.0)
        bias = self[-1].bias if self.activate else conv.bias
        out = F.conv2d(x, conv.weight * (conv.scale * gain),
                       None if bias is None else bias * gain, stride=stride, padding=conv.padding)
        return F.leaky_relu(out, LRELU_SLOPE, inplace=True) if self.activate else out


class ResBlock(nn.Module):
    """Two 3x3 convs (the second downsampling) plus a 1x1 downsampling skip, / sqrt(2)."""

    def __init__(self, in_channels: int, out_channels: int,
                 blur_kernel: Sequence[float] = (1, 3, 3, 1)):
        super().__init__()
        self.conv1 = ConvLayer(in_channels, in_channels, 3, blur_kernel=blur_kernel)
        self.conv2 = ConvLayer(in_channels, out_channels, 3, downsample=True,
                               blur_kernel=blur_kernel)
        self.skip = ConvLayer(in_channels, out_channels, 1, downsample=True, activate=False,
                              bias=False, blur_kernel=blur_kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (a + b) / sqrt(2): the 1/sqrt(2) is folded into both convs (see ConvLayer).
        half = 1.0 / math.sqrt(2.0)
        return self.conv2(self.conv1(x), gain=half) + self.skip(x, gain=half)


def residual_trunk(size: int, channel_base: int, channel_max: int,
                   blur_kernel: Sequence[float] = (1, 3, 3, 1)) -> tuple[nn.Sequential, dict]:
    """The discriminator's trunk, `convs`: a 1x1 fromRGB, then residual blocks halving the
    resolution from `size` down to 4x4 (the VAE's encoder has the same). Returns it and the
    width at each resolution {4: ..., 8: ..., size: ...}."""
    log_size = log2_size(size)
    width = {2 ** i: channels_at(2 ** i, channel_base, channel_max)
             for i in range(2, log_size + 1)}
    blocks: list[nn.Module] = [ConvLayer(3, width[size], 1)]
    for log_res in range(log_size, 2, -1):
        blocks.append(ResBlock(width[2 ** log_res], width[2 ** (log_res - 1)], blur_kernel))
    return nn.Sequential(*blocks), width


class Discriminator(nn.Module):
    """StyleGAN2 discriminator: D(x [N, 3, size, size]) -> logits [N, 1]."""

    stddev_group = 4
    stddev_feat = 1

    def __init__(self, size: int, channel_base: int = 32768, channel_max: int = 512,
                 blur_kernel: Sequence[float] = (1, 3, 3, 1)):
        super().__init__()
        self.size = size
        self.config = dict(size=size, channel_base=channel_base, channel_max=channel_max,
                           blur_kernel=list(blur_kernel))
        self.convs, width = residual_trunk(size, channel_base, channel_max, blur_kernel)
        self.final_conv = ConvLayer(width[4] + 1, width[4], 3)
        self.final_linear = nn.Sequential(
            EqualLinear(width[4] * 4 * 4, width[4], activation=True),
            EqualLinear(width[4], 1),
        )

    def _stddev_group(self, batch: int) -> int:
        # The reference needs batch % group == 0; take the largest group <= 4 that divides it.
        group = min(batch, self.stddev_group)
        while batch % group:
            group -= 1
        return group

    def minibatch_stddev(self, x: torch.Tensor) -> torch.Tensor:
        """Append one channel: the mean std over groups of samples (a diversity signal)."""
        batch, channels, height, width = x.shape
        group = self._stddev_group(batch)
        grouped = x.reshape(group, -1, self.stddev_feat, channels // self.stddev_feat, height,
                            width)
        # Population variance over the group, written out: Tensor.var over a leading
        # dimension of a small 6-D view is many times slower on CPU.
        centred = grouped - grouped.mean(dim=0, keepdim=True)
        stddev = torch.sqrt(centred.square().mean(dim=0) + 1e-8)
        stddev = stddev.mean(dim=(2, 3, 4), keepdim=True).squeeze(2)
        stddev = stddev.repeat(group, 1, height, width)
        return torch.cat([x, stddev], dim=1)

    def forward(self, x: torch.Tensor, return_features: bool = False):
        # Channels-last activations: measured 1.2-1.6x faster forward+backward at 32 px on
        # CPU (depthwise blurs on 32x32 planes hit cache-aliasing in the NCHW layout), and
        # no slower at 64-128 px. Returned features are ordinary tensors with those strides.
        x = x.contiguous(memory_format=torch.channels_last)
        features = []
        for block in self.convs:
            x = block(x)
            if return_features:
                features.append(x)
        x = self.final_conv(self.minibatch_stddev(x))
        logits = self.final_linear(x.reshape(x.shape[0], -1))
        return (logits, features) if return_features else logits
