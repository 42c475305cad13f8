"""Pixel representations: the generator's activations, resized to one grid and concatenated.

The paper's representation of a generated pixel is the vector of every synthesis layer's
activation along its computation path: F = U(a_1) ⊕ ... ⊕ U(a_n). `FeatureExtractor` puts a
forward hook on each selected layer of a `partseg.gan.Generator` (ours, or one loaded from a
rosinality checkpoint: the layer names are the same), resizes the layer's output to the feature
resolution as soon as the hook fires and writes it into its channel slice of one preallocated
buffer. Holding no list of raw maps and no concatenation copy keeps the peak memory at one
output buffer plus one resized layer chunk, which matters at paper scale (5056 x 512 x 512).

Layer selection (`select_layers`):
- "all" (the default, as the paper's public code): every styled conv `convs.0`, `convs.1`, ...
  taken after noise, bias and activation. The 4x4 `conv1` and the toRGB layers are left out;
  name `conv1` explicitly (e.g. ["conv1", "convs.0", ...]) to include it, as some unofficial
  versions do.
- "low" / "mid" / "high": the styled convs grouped by resolution, the distinct resolutions split
  into thirds (coarse, middle, fine). A 32 px generator has 8, 16 and 32 px convs: one each.
- a list of layer names (or one comma-separated string): any rows of `G.layer_table()`.
Layers always come back in forward order, so the channel layout does not depend on how the
user ordered the names.
"""

from __future__ import annotations

import functools
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from partseg.plumbing.errors import PartsegError

LAYER_GROUPS = ("all", "low", "mid", "high")
STYLED_PREFIX = "convs."

# Upsampling a coarse layer to the feature grid makes an fp32 temporary of
# channels x R x R per image; resizing in channel chunks keeps it under this many bytes.
RESIZE_CHUNK_BYTES = 64 << 20


def select_layers(layer_table: Sequence[dict], spec: str | Sequence[str] = "all") -> list[str]:
    """Names of the layers selected by `spec`, in forward order (see the module docstring)."""
    names = [row["name"] for row in layer_table]
    styled = [row for row in layer_table if row["name"].startswith(STYLED_PREFIX)]
    if isinstance(spec, str) and spec.strip().lower() in LAYER_GROUPS:
        return _select_group(styled, spec.strip().lower())
    wanted = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else [str(s) for s in spec]
    wanted = [name for name in wanted if name]
    unknown = [name for name in wanted if name not in names]
    if unknown or not wanted:
        problem = f"unknown layer(s) {', '.join(map(repr, unknown))}" if unknown else "no layer named"
        raise PartsegError(f"features.layers: {problem}; use one of {', '.join(LAYER_GROUPS)} "
                           f"or a list of names from: {', '.join(names)}")
    wanted_set = set(wanted)
    return [name for name in names if name in wanted_set]


def _select_group(styled: list[dict], group: str) -> list[str]:
    if group == "all":
        return [row["name"] for row in styled]
    resolutions = sorted({int(row["resolution"]) for row in styled})
    thirds = dict(zip(("low", "mid", "high"), np.array_split(np.array(resolutions), 3)))
    chosen = set(thirds[group].tolist())
    if not chosen:
        raise PartsegError(f"features.layers: {group!r} is empty for a generator whose styled convs "
                           f"have only resolutions {resolutions}; use 'all' or name the layers")
    return [row["name"] for row in styled if int(row["resolution"]) in chosen]


def resize_feature_map(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize [N, C, h, w] to size x size: bilinear (align_corners=True) up, area down."""
    if x.shape[-2:] == (size, size):
        return x
    if x.shape[-1] < size:
        # Bilinear interpolation is separable: rows then columns, each a small matrix product.
        # The same values as F.interpolate(mode="bilinear", align_corners=True) up to fp32
        # rounding, and about 10x faster on CPU for the 8 -> 32 px maps of the demo.
        rows = _bilinear_matrix(x.shape[-2], size, x.device, x.dtype)
        cols = _bilinear_matrix(x.shape[-1], size, x.device, x.dtype)
        return rows @ x @ cols.T
    return F.interpolate(x, size=(size, size), mode="area")


@functools.lru_cache(maxsize=64)
def _bilinear_matrix(n_in: int, n_out: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """[n_out, n_in] weights of 1-D linear interpolation with aligned corners."""
    position = torch.arange(n_out, dtype=torch.float64) * (n_in - 1) / max(n_out - 1, 1)
    low = position.floor().long().clamp(max=n_in - 1)
    high = (low + 1).clamp(max=n_in - 1)
    fraction = position - low
    matrix = torch.zeros(n_out, n_in, dtype=torch.float64)
    matrix[torch.arange(n_out), low] += 1 - fraction
    matrix[torch.arange(n_out), high] += fraction
    return matrix.to(device=device, dtype=dtype)


class FeatureExtractor:
    """Per-pixel features of generated images: `features, images = extractor(ws)`.

    `layers` is a `select_layers` spec or list of names; `resolution` (default: the generator's
    size) is the feature grid, at most the generator's size. Runs under torch.no_grad on the
    generator's device; the batch is whatever `ws` holds.
    """

    def __init__(self, G: torch.nn.Module, layers: str | Sequence[str] = "all",
                 resolution: int | None = None):
        self.G = G
        table = G.layer_table()
        self.layers = select_layers(table, layers)
        self.resolution = int(G.size if resolution is None else resolution)
        if not 1 <= self.resolution <= G.size:
            raise PartsegError(f"features.resolution: {self.resolution} must be between 1 and the "
                               f"generator's image size {G.size}")
        rows = {row["name"]: row for row in table}
        self.layer_resolutions = [int(rows[name]["resolution"]) for name in self.layers]
        self.channels_per_layer = [int(rows[name]["channels"]) for name in self.layers]
        self.num_channels = int(sum(self.channels_per_layer))
        self.channel_offsets = np.concatenate([[0], np.cumsum(self.channels_per_layer)]).tolist()

    @property
    def device(self) -> torch.device:
        return next(self.G.parameters()).device

    def describe(self) -> dict:
        """The bookkeeping a cache manifest records."""
        return {"layers": list(self.layers), "channels_per_layer": list(self.channels_per_layer),
                "layer_resolutions": list(self.layer_resolutions), "resolution": self.resolution,
                "num_channels": self.num_channels}

    def __call__(self, ws: torch.Tensor, noise="const") -> tuple[torch.Tensor, torch.Tensor]:
        """Features float32 [N, C, R, R] and raw images [N, 3, H, W] for latents `ws`.

        `ws` is [N, n_latent, style_dim] (W+) or [N, style_dim] (W, broadcast to every layer).
        `noise`: "const" (the generator's fixed maps: the same latents give the same features on
        every call), "random", or a list of per-image noise maps as `invert_images` returns them.
        """
        return self.extract(ws, noise)

    def extract(self, ws: torch.Tensor, noise="const", *, dtype: torch.dtype = torch.float32,
                channels_last: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """As `__call__`, with the output dtype and layout chosen: the cache writes fp16 [N, R, R, C]
        straight from the hooks, without an fp32 copy of the whole batch."""
        ws = self.as_wplus(ws)
        size = self.resolution
        shape = (len(ws), size, size, self.num_channels) if channels_last else \
            (len(ws), self.num_channels, size, size)
        out = torch.empty(shape, dtype=dtype, device=self.device)
        filled: set[str] = set()
        handles = [self.G.get_submodule(name).register_forward_hook(
            self._make_hook(name, out, index, channels_last, filled))
            for index, name in enumerate(self.layers)]
        try:
            with torch.no_grad():
                images = self.G.synthesis(ws, noise=noise)
        finally:
            for handle in handles:
                handle.remove()
        missing = [name for name in self.layers if name not in filled]
        if missing:
            raise RuntimeError(f"layers {missing} did not run in G.synthesis; layer_table and the "
                               "forward pass disagree")
        return out, images

    def as_wplus(self, ws: torch.Tensor) -> torch.Tensor:
        """Latents as float32 W+ [N, n_latent, style_dim] on the generator's device."""
        ws = torch.as_tensor(ws, dtype=torch.float32, device=self.device)
        if ws.dim() == 2:
            ws = ws[:, None, :].expand(-1, self.G.n_latent, -1)
        if ws.dim() != 3 or ws.shape[1:] != (self.G.n_latent, self.G.style_dim):
            raise PartsegError(f"latents: expected shape [N, {self.G.n_latent}, {self.G.style_dim}] "
                               f"(W+) or [N, {self.G.style_dim}] (W), got {list(ws.shape)}")
        return ws

    def _make_hook(self, name: str, out: torch.Tensor, index: int, channels_last: bool,
                   filled: set[str]):
        start = self.channel_offsets[index]
        channels = self.channels_per_layer[index]
        size = self.resolution

        def hook(module, inputs, output):
            if output.shape[1] != channels:
                raise RuntimeError(f"layer {name}: layer_table says {channels} channels, "
                                   f"forward gave {output.shape[1]}")
            # Resize a few channels at a time so the fp32 temporary stays small.
            step = max(1, RESIZE_CHUNK_BYTES // (output.shape[0] * size * size * 4))
            for c0 in range(0, channels, step):
                c1 = min(channels, c0 + step)
                # Convert before the strided channel-last copy: casting inside it is ~20x slower.
                resized = resize_feature_map(output[:, c0:c1].float(), size).to(out.dtype)
                if channels_last:
                    out[..., start + c0:start + c1] = resized.permute(0, 2, 3, 1)
                else:
                    out[:, start + c0:start + c1] = resized
            filled.add(name)

        return hook
