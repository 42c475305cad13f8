"""StyleGAN2 building blocks in plain PyTorch (no compiled extensions).

Module and parameter names follow the rosinality/stylegan2-pytorch layout so that its
checkpoints load key for key (`modulation.weight`, `activate.bias`, `blur.kernel`, ...), and
the arithmetic is the same, so the same weights give the same images.

Conventions of that layout, kept here:
- Equalised learning rate: weights are stored as N(0, 1) (divided by the learning-rate
  multiplier) and scaled by 1/sqrt(fan_in) (times the multiplier) at run time.
- "Fused" leaky ReLU: add a per-channel bias, leaky ReLU with slope 0.2, multiply by sqrt(2).
- FIR resampling (`upfirdn2d`): zero-insertion upsampling, padding (negative = cropping), a true
  convolution with the kernel (flipped, then correlated), then keeping every `down`-th sample.
  Blur kernels are stored as 2-D buffers, normalised to sum 1 (times factor² when upsampling).

Speed: a modulated convolution is computed in the non-fused form, which is mathematically the
same as the per-sample grouped convolution: scale the input channels by the style, run ONE
ordinary convolution with the shared weight for the whole batch, and multiply the output
channels by the demodulation coefficients. The coefficients come from a small matrix product
(squared styles x squared weight sums) instead of materialising a per-sample weight tensor.
Without autograd (sampling, feature extraction), two more savings that keep the values:
- The upsampling conv's stride-2 transposed convolution and the blur after it run in the
  channels-last layout: on CPU, PyTorch runs a float NCHW transposed conv ~2x slower, through
  layout conversions, and the depthwise blur is 2-4x faster channels-last. The layer's output
  returns to NCHW in the bias/noise pass that follows. The FIR upsampling of the RGB skip path
  inserts its zeros channels-last for the same blur speed. On the CPUs measured these kernels
  give the NCHW kernels' bits (`bench/generator_bits.py` checks a machine), except in the two
  cases where PyTorch runs other kernels, which therefore stay NCHW: under autograd (the
  backward kernels round differently) and for a batch of one image.
- Terms of the parameters alone (scaled weights, weight energies, flipped blur kernels, the
  bias + constant-noise map) are computed once and reused while the parameters are unchanged
  (`DerivedTerms`): a forward is a few hundred small ops, whose dispatch costs about as much
  as a conv at the demo's sizes.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)
DEMOD_EPS = 1e-8


def make_blur_kernel(taps: Sequence[float]) -> torch.Tensor:
    """A 2-D FIR kernel from 1-D taps (outer product), normalised to sum 1."""
    kernel = torch.tensor(list(taps), dtype=torch.float32)
    if kernel.ndim == 1:
        kernel = kernel[None, :] * kernel[:, None]
    return kernel / kernel.sum()


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
              pad: tuple[int, int] = (0, 0), flipped: torch.Tensor | None = None
              ) -> torch.Tensor:
    """Upsample (zero insertion), pad or crop, filter with `kernel`, downsample; per channel.

    `pad` = (before, after), the same on both axes; negative values crop. The kernel is
    flipped so that this is a true convolution, as in the reference op (`flipped`: that
    flipped kernel, when the caller keeps it).
    """
    batch, channels, height, width = x.shape
    if up > 1:
        x = insert_zeros(x, up)
    before, after = pad
    if flipped is None:
        flipped = torch.flip(kernel, [0, 1])
    weight = flipped.to(x.dtype).expand(channels, 1, *kernel.shape)
    if before == after >= 0:
        # Symmetric zero padding: let the convolution pad, saving a padded copy.
        return F.conv2d(x, weight, stride=down, padding=before, groups=channels)
    x = F.pad(x, (max(before, 0), max(after, 0), max(before, 0), max(after, 0)))
    if before < 0 or after < 0:
        x = x[:, :, max(-before, 0):x.shape[2] - max(-after, 0),
              max(-before, 0):x.shape[3] - max(-after, 0)]
    # A depthwise convolution; stride = down keeps exactly every down-th output sample.
    return F.conv2d(x, weight, stride=down, groups=channels)


def autograd_records(*tensors: torch.Tensor) -> bool:
    """Whether autograd records an op on these tensors."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def reference_layout(x: torch.Tensor, *parameters: torch.Tensor) -> bool:
    """Whether an op on x must run NCHW, as the reference does (module docstring): under
    autograd, or for a batch of one, where channels-last runs a kernel that rounds otherwise."""
    return x.shape[0] == 1 or autograd_records(x, *parameters)


class DerivedTerms:
    """Terms computed from parameters and buffers alone, reused while those are unchanged.

    Calls that autograd records recompute them, so gradients flow as before. A term's key
    is each source's identity, storage, dtype and version counter: in-place updates
    (optimiser steps, EMA lerp_, copy_, load_state_dict) advance the counter and `.to()`
    changes the storage. A write through `tensor.data` changes neither: call `clear()`.
    """

    def __init__(self):
        self._terms: dict[str, tuple] = {}

    def get(self, name: str, sources: Sequence[torch.Tensor],
            compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        if autograd_records(*sources) or any(t.is_inference() for t in sources):
            return compute()  # (an inference tensor has no version counter)
        key = [(t._version, t.data_ptr(), t.dtype) for t in sources]
        stored = self._terms.get(name)
        if stored is not None and stored[1] == key and \
                all(kept is source for kept, source in zip(stored[0], sources)):
            return stored[2]
        value = compute()
        self._terms[name] = (tuple(sources), key, value)
        return value

    def clear(self) -> None:
        self._terms.clear()


def insert_zeros(x: torch.Tensor, up: int) -> torch.Tensor:
    """Each sample at the top-left of an up x up cell of zeros.

    Without autograd the padding copy writes the channels-last layout at no extra cost, and
    the depthwise FIR conv that follows is several times faster on it (NCHW planes of 32 px
    alias in the CPU cache). Where `reference_layout` says so: NCHW, the reference's bits.
    """
    batch, channels, height, width = x.shape
    if reference_layout(x):
        x = x.reshape(batch, channels, height, 1, width, 1)
        x = F.pad(x, (0, up - 1, 0, 0, 0, up - 1))
        return x.reshape(batch, channels, height * up, width * up)
    x = x.permute(0, 2, 3, 1).reshape(batch, height, 1, width, 1, channels)
    x = F.pad(x, (0, 0, 0, up - 1, 0, 0, 0, up - 1))
    return x.reshape(batch, height * up, width * up, channels).permute(0, 3, 1, 2)


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """leaky_relu(x + bias, 0.2) * sqrt(2), bias per channel (dim 1)."""
    if bias is not None:
        x = x + bias.view(1, -1, *([1] * (x.ndim - 2))).to(x.dtype)
    return F.leaky_relu(x, LRELU_SLOPE) * LRELU_GAIN


class PixelNorm(nn.Module):
    """Normalise each latent vector to unit root-mean-square."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(torch.mean(x * x, dim=1, keepdim=True) + 1e-8)


class FusedLeakyReLU(nn.Module):
    """Bias + leaky ReLU (0.2) + gain sqrt(2); parameter `bias` [channels]."""

    def __init__(self, channels: int, bias: bool = True):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias)


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate and an optional fused leaky ReLU."""

    def __init__(self, in_dim: int, out_dim: int, bias: bool = True, bias_init: float = 0.0,
                 lr_mul: float = 1.0, activation: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init))) if bias else None
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activation = activation
        self.derived = DerivedTerms()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.derived.get("weight", [self.weight], lambda: self.weight * self.scale)
        bias = None if self.bias is None else \
            self.derived.get("bias", [self.bias], lambda: self.bias * self.lr_mul)
        if self.activation:
            return fused_leaky_relu(F.linear(x, weight), bias)
        return F.linear(x, weight, bias)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[1]}, {self.weight.shape[0]}, lr_mul={self.lr_mul}"


class EqualConv2d(nn.Module):
    """Conv2d with equalised learning rate."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size ** 2)
        self.stride = stride
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, stride=self.stride,
                        padding=self.padding)

    def extra_repr(self) -> str:
        out_c, in_c, k, _ = self.weight.shape
        return f"{in_c}, {out_c}, {k}, stride={self.stride}, padding={self.padding}"


def flipped_kernel(fir: nn.Module) -> torch.Tensor:
    """The FIR module's `kernel` flipped (upfirdn2d convolves), kept in its `derived` terms."""
    return fir.derived.get("flipped", [fir.kernel], lambda: torch.flip(fir.kernel, [0, 1]))


class Blur(nn.Module):
    """FIR filter with padding; buffer `kernel` (times factor² when it follows an upsampling)."""

    def __init__(self, taps: Sequence[float], pad: tuple[int, int], upsample_factor: int = 1):
        super().__init__()
        self.register_buffer("kernel", make_blur_kernel(taps) * upsample_factor ** 2)
        self.pad = pad
        self.derived = DerivedTerms()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad, flipped=flipped_kernel(self))


class Upsample(nn.Module):
    """2x FIR upsampling (the skip path of the generator's ToRGB layers)."""

    def __init__(self, taps: Sequence[float], factor: int = 2):
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_blur_kernel(taps) * factor ** 2)
        excess = self.kernel.shape[0] - factor
        self.pad = ((excess + 1) // 2 + factor - 1, excess // 2)
        self.derived = DerivedTerms()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad, flipped=flipped_kernel(self))


class ModulatedConv2d(nn.Module):
    """Convolution whose input channels are scaled per sample by a style (StyleGAN2).

    Parameters: `weight` [1, out, in, k, k] (N(0,1), scaled by 1/sqrt(in*k*k)),
    `modulation` (EqualLinear style_dim -> in, bias initialised to 1), `blur.kernel` when
    upsampling or downsampling. Upsampling is a stride-2 transposed convolution followed by a
    blur, as in the reference; downsampling blurs then convolves with stride 2.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, style_dim: int,
                 demodulate: bool = True, upsample: bool = False, downsample: bool = False,
                 blur_kernel: Sequence[float] = (1, 3, 3, 1)):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.demodulate = demodulate
        self.upsample = upsample
        self.downsample = downsample
        factor = 2
        if upsample:
            excess = (len(blur_kernel) - factor) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((excess + 1) // 2 + factor - 1, excess // 2 + 1),
                             upsample_factor=factor)
        if downsample:
            excess = (len(blur_kernel) - factor) + (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((excess + 1) // 2, excess // 2))
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size ** 2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size,
                                               kernel_size))
        self.modulation = EqualLinear(style_dim, in_channels, bias_init=1.0)
        self.derived = DerivedTerms()

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, {self.kernel_size}, "
                f"upsample={self.upsample}, downsample={self.downsample}, "
                f"demodulate={self.demodulate}")

    def modulated(self, x: torch.Tensor, style: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The convolution of the style-scaled input, and the demodulation coefficients.

        Returns (out, dcoefs) with dcoefs [N, out] (None without demodulation); the layer's
        output is out * dcoefs[..., None, None]. Callers fuse that product with what follows.
        """
        # The equalised-lr scale is folded into the styles: conv(x * s * scale, W) equals
        # conv(x * s, W * scale) and saves writing a scaled copy of the weight every call.
        weight = self.weight[0]                                       # [out, in, k, k], shared
        styles = self.modulation(style) * self.scale                  # [N, in]
        dcoefs = None
        if self.demodulate:
            # sum over (in, k, k) of (W * s)^2 = (s^2) @ (sum over k of W^2)^T.
            energy = self.derived.get("energy", [self.weight], self._weight_energy)  # [out, in]
            dcoefs = torch.rsqrt(styles.square() @ energy.t() + DEMOD_EPS)
        styles = styles.to(x.dtype)[:, :, None, None]
        weight = weight.to(x.dtype)
        if self.upsample:
            return self.blur(self._transposed_conv(x, styles, weight)), dcoefs
        x = x * styles
        if self.downsample:
            out = F.conv2d(self.blur(x), weight, stride=2)
        else:
            out = F.conv2d(x, weight, padding=self.padding)
        return out, dcoefs

    def _transposed_conv(self, x: torch.Tensor, styles: torch.Tensor, weight: torch.Tensor
                         ) -> torch.Tensor:
        """The stride-2 transposed conv of x * styles; channels-last where allowed."""
        if reference_layout(x, styles, weight):
            return F.conv_transpose2d(x * styles, weight.transpose(0, 1), stride=2)
        # The product is written channels-last in its one pass, and the conv would copy its
        # [in, out, k, k] weight into that layout every call: the copy is kept instead.
        x = torch.mul(x, styles, out=torch.empty_like(x, memory_format=torch.channels_last))
        transposed = self.derived.get(f"transposed-{x.dtype}", [self.weight], lambda: weight
                                      .transpose(0, 1).contiguous(memory_format=torch.channels_last))
        return F.conv_transpose2d(x, transposed, stride=2)

    def _weight_energy(self) -> torch.Tensor:
        """sum over the kernel taps of W^2, [out, in]: one read of the weight, no squared copy."""
        return torch.linalg.vector_norm(self.weight[0], dim=(2, 3)).square()

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        out, dcoefs = self.modulated(x, style)
        if dcoefs is not None:
            out = out * dcoefs.to(out.dtype)[:, :, None, None]
        # The upsampling path computes in channels-last; callers get the usual layout back.
        return out.contiguous()


class NoiseInjection(nn.Module):
    """Add a single-channel noise image times a learned strength (`weight` [1])."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        if noise is None:
            noise = x.new_empty(x.shape[0], 1, x.shape[2], x.shape[3]).normal_()
        return x + self.weight * noise


class ConstantInput(nn.Module):
    """The learned 4x4 input of the synthesis network (`input` [1, C, 4, 4])."""

    def __init__(self, channels: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.input.expand(batch, -1, -1, -1)


class StyledConv(nn.Module):
    """Modulated conv + noise + bias + leaky ReLU. Its output is a pixel-feature layer.

    Keys: `conv.*` (ModulatedConv2d), `noise.weight`, `activate.bias`.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, style_dim: int,
                 upsample: bool = False, blur_kernel: Sequence[float] = (1, 3, 3, 1),
                 demodulate: bool = True):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, kernel_size, style_dim,
                                    demodulate=demodulate, upsample=upsample,
                                    blur_kernel=blur_kernel)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channels)
        self.derived = DerivedTerms()

    def forward(self, x: torch.Tensor, style: torch.Tensor,
                noise: torch.Tensor | None = None) -> torch.Tensor:
        out, dcoefs = self.conv.modulated(x, style)
        if noise is None:
            noise = out.new_empty(out.shape[0], 1, out.shape[2], out.shape[3]).normal_()
        # lrelu(a) * g == lrelu(a * g) for g > 0, so the gain sqrt(2) is folded into the
        # demodulation and the additive terms: one multiply-add and one activation pass
        # instead of four element-wise passes over the feature map.
        additive = self.derived.get(f"additive-{out.dtype}", [self.noise.weight, noise,
                                    self.activate.bias], lambda: self._additive(noise, out.dtype))
        if dcoefs is None:
            # additive first: it makes the result NCHW when `out` is channels-last (module
            # docstring), as addcmul's first operand does below.
            out = additive + out * LRELU_GAIN
        else:
            out = torch.addcmul(additive, out, (dcoefs * LRELU_GAIN).to(out.dtype)[:, :, None, None])
        return F.leaky_relu(out, LRELU_SLOPE, inplace=True)

    def _additive(self, noise: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """(noise strength * noise + bias) * gain: one map for a fixed noise image."""
        return (self.noise.weight * LRELU_GAIN) * noise.to(dtype) \
            + (self.activate.bias * LRELU_GAIN).view(1, -1, 1, 1).to(dtype)


class ToRGB(nn.Module):
    """1x1 modulated conv to RGB (no demodulation) + bias, added to the upsampled skip image.

    Keys: `conv.*`, `bias` [1, 3, 1, 1], `upsample.kernel` (all but the first).
    """

    def __init__(self, in_channels: int, style_dim: int, upsample: bool = True,
                 blur_kernel: Sequence[float] = (1, 3, 3, 1)):
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ModulatedConv2d(in_channels, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor,
                skip: torch.Tensor | None = None) -> torch.Tensor:
        # Without demodulation a 1x1 modulated conv is a per-sample 3 x C matrix: fold the
        # style into that small matrix rather than scaling the whole input feature map.
        batch, channels, height, width = x.shape
        styles = self.conv.modulation(style) * self.conv.scale                 # [N, C]
        weight = self.conv.weight[0, :, :, 0, 0]                               # [3, C]
        per_sample = (weight[None] * styles[:, None, :]).to(x.dtype)           # [N, 3, C]
        out = torch.bmm(per_sample, x.reshape(batch, channels, height * width))
        out = out.view(batch, 3, height, width) + self.bias.to(x.dtype)
        if skip is not None:
            out = out + self.upsample(skip)
        return out
