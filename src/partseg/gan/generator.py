"""StyleGAN2 generator (config-f): mapping network and skip-architecture synthesis network.

State-dict keys are those of rosinality/stylegan2-pytorch (`style.1.weight`, `input.input`,
`conv1.*`, `to_rgb1.*`, `convs.N.*`, `to_rgbs.K.*`, `noises.noise_I`), so its checkpoints load
directly (see checkpoint.py). Channel widths: min(channel_base // resolution, channel_max);
the defaults (32768, 512) are the published config-f widths (channel multiplier 2), 16384 is
multiplier 1. Small widths (e.g. 1024 / 128) make a 32 px model trainable on a laptop CPU.

Pixel features for segmentation are the outputs of the styled convs, `conv1` and `convs.N`
(after noise, bias and activation); `layer_table()` lists them with their resolution and width,
and a forward hook on the module of that name receives that output.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from partseg.gan.layers import ConstantInput, EqualLinear, PixelNorm, StyledConv, ToRGB


def channels_at(resolution: int, channel_base: int, channel_max: int) -> int:
    """Feature width at a resolution: min(channel_base // resolution, channel_max)."""
    return max(1, min(channel_base // resolution, channel_max))


def log2_size(size: int) -> int:
    log = int(round(math.log2(size))) if size > 0 else 0
    if size < 4 or 2 ** log != size:
        raise ValueError(f"generator size must be a power of two >= 4, got {size}")
    return log


NoiseSpec = str | Sequence[torch.Tensor | None]


class Generator(nn.Module):
    """StyleGAN2 generator. `G(z)` maps z [N, style_dim] to a raw image [N, 3, size, size]."""

    def __init__(self, size: int, style_dim: int = 512, n_mlp: int = 8, channel_base: int = 32768,
                 channel_max: int = 512, lr_mlp: float = 0.01,
                 blur_kernel: Sequence[float] = (1, 3, 3, 1)):
        super().__init__()
        self.log_size = log2_size(size)
        self.size = size
        self.style_dim = style_dim
        self.n_mlp = n_mlp
        self.n_latent = self.log_size * 2 - 2
        self.config = dict(size=size, style_dim=style_dim, n_mlp=n_mlp, channel_base=channel_base,
                           channel_max=channel_max, lr_mlp=lr_mlp, blur_kernel=list(blur_kernel))
        self.channels = {2 ** i: channels_at(2 ** i, channel_base, channel_max)
                         for i in range(2, self.log_size + 1)}
        # Not a buffer: rosinality stores it beside the state dict; set by the loaders.
        self.latent_avg: torch.Tensor | None = None

        self.style = nn.Sequential(PixelNorm(), *[
            EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation=True)
            for _ in range(n_mlp)])

        width = self.channels[4]
        self.input = ConstantInput(width)
        self.conv1 = StyledConv(width, width, 3, style_dim, blur_kernel=blur_kernel)
        self.to_rgb1 = ToRGB(width, style_dim, upsample=False)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        for log_res in range(3, self.log_size + 1):
            out_width = self.channels[2 ** log_res]
            self.convs.append(StyledConv(width, out_width, 3, style_dim, upsample=True,
                                         blur_kernel=blur_kernel))
            self.convs.append(StyledConv(out_width, out_width, 3, style_dim,
                                         blur_kernel=blur_kernel))
            self.to_rgbs.append(ToRGB(out_width, style_dim, blur_kernel=blur_kernel))
            width = out_width

        # One fixed noise image per styled conv: noise_0 is conv1's, noise_{i+1} is convs.i's.
        self.num_layers = 1 + len(self.convs)
        self.noises = nn.Module()
        for index, resolution in enumerate(self._layer_resolutions()):
            self.noises.register_buffer(f"noise_{index}", torch.randn(1, 1, resolution, resolution))

    # ---- description -------------------------------------------------------------------

    def _layer_resolutions(self) -> list[int]:
        return [4] + [2 ** (3 + i // 2) for i in range(len(self.convs))]

    def layer_table(self) -> list[dict]:
        """The styled convs in forward order: {name, resolution, channels}."""
        names = ["conv1"] + [f"convs.{i}" for i in range(len(self.convs))]
        return [dict(name=name, resolution=res, channels=self.channels[res])
                for name, res in zip(names, self._layer_resolutions())]

    def noise_maps(self) -> list[torch.Tensor]:
        """The stored (const) noise buffers, one per styled conv, in forward order."""
        return [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]

    # ---- latents -----------------------------------------------------------------------

    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        """z [N, style_dim] -> w [N, style_dim]."""
        return self.style(z)

    @torch.no_grad()
    def mean_latent(self, n: int = 4096, seed: int = 0) -> torch.Tensor:
        """Mean w of n seeded z's, [1, style_dim] (the truncation centre)."""
        generator = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.style_dim, generator=generator)
        device = self.input.input.device
        return self.mapping(z.to(device)).mean(0, keepdim=True)

    def _noise_list(self, noise: NoiseSpec) -> list[torch.Tensor | None]:
        if isinstance(noise, str):
            if noise == "const":
                return self.noise_maps()
            if noise == "random":
                return [None] * self.num_layers
            raise ValueError(f"noise must be 'const', 'random' or a list of tensors, got {noise!r}")
        noise = list(noise)
        if len(noise) != self.num_layers:
            raise ValueError(f"expected {self.num_layers} noise maps, got {len(noise)}")
        return noise

    # ---- image synthesis ---------------------------------------------------------------

    def synthesis(self, ws: torch.Tensor, noise: NoiseSpec = "const") -> torch.Tensor:
        """W+ latents [N, n_latent, style_dim] -> raw image [N, 3, size, size] (no clamp)."""
        if ws.ndim != 3 or ws.shape[1] != self.n_latent:
            raise ValueError(f"ws must be [N, {self.n_latent}, {self.style_dim}], "
                             f"got {list(ws.shape)}")
        noises = self._noise_list(noise)
        x = self.input(ws.shape[0])
        x = self.conv1(x, ws[:, 0], noise=noises[0])
        image = self.to_rgb1(x, ws[:, 1])
        for k, to_rgb in enumerate(self.to_rgbs):
            i = 2 * k
            x = self.convs[i](x, ws[:, i + 1], noise=noises[i + 1])
            x = self.convs[i + 1](x, ws[:, i + 2], noise=noises[i + 2])
            image = to_rgb(x, ws[:, i + 3], image)
        return image

    def truncate(self, w: torch.Tensor, truncation: float,
                 truncation_latent: torch.Tensor | None = None) -> torch.Tensor:
        """w_avg + psi * (w - w_avg); the centre defaults to latent_avg, else mean_latent()."""
        if truncation >= 1.0:
            return w
        if truncation_latent is None:
            truncation_latent = self.latent_avg if self.latent_avg is not None \
                else self.mean_latent()
        truncation_latent = truncation_latent.to(w.device, w.dtype).reshape(1, -1)
        return truncation_latent + truncation * (w - truncation_latent)

    def forward(self, z: torch.Tensor, noise: NoiseSpec = "const", truncation: float = 1.0,
                truncation_latent: torch.Tensor | None = None,
                mixing_z: torch.Tensor | None = None) -> torch.Tensor:
        """z [N, style_dim] -> raw image [N, 3, size, size].

        With `mixing_z`, layers from a random crossover index on (torch's global RNG) take
        the style of mixing_z (style mixing regularisation).
        """
        w = self.truncate(self.mapping(z), truncation, truncation_latent)
        ws = w.unsqueeze(1).repeat(1, self.n_latent, 1)
        if mixing_z is not None:
            w2 = self.truncate(self.mapping(mixing_z), truncation, truncation_latent)
            crossover = int(torch.randint(1, self.n_latent, ()).item())
            ws = torch.cat([ws[:, :crossover],
                            w2.unsqueeze(1).expand(-1, self.n_latent - crossover, -1)], dim=1)
        return self.synthesis(ws, noise=noise)
