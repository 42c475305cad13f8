"""The auto-shot segmenter: a plain UNet trained from scratch (no pretrained weights).

As in the paper: each level is two conv-BatchNorm-ReLU blocks, max-pooling goes down, bilinear
upsampling (not transposed convolutions) comes back up, and skip connections are concatenated.
Channels double at every level: base, 2*base, ..., base * 2**depth at the bottom.

The network accepts images of any size: the input is padded to a multiple of 2**depth (so every
pooling halves exactly and every skip lines up) and the logits are cropped back. Inputs are RGB
floats in [0, 1]; the model centres them itself, so callers cannot feed the wrong range silently.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvBlock(nn.Sequential):
    """Two 3x3 conv -> BatchNorm -> ReLU layers (bias-free convs: BatchNorm has the shift)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class UpBlock(nn.Module):
    """Bilinear x2 upsampling, concatenation with the skip, then a ConvBlock."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int):
        super().__init__()
        self.conv = ConvBlock(in_channels + skip_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv(torch.cat([x, skip], dim=1))


class UNet(nn.Module):
    """UNet(num_classes, base_channels=32, depth=3, in_channels=3): images [B,3,H,W] in [0,1]
    -> logits [B,num_classes,H,W], for any H, W."""

    def __init__(self, num_classes: int, base_channels: int = 32, depth: int = 3,
                 in_channels: int = 3):
        super().__init__()
        if num_classes < 1 or base_channels < 1 or depth < 1 or in_channels < 1:
            raise ValueError(f"UNet: invalid configuration num_classes={num_classes}, "
                             f"base_channels={base_channels}, depth={depth}, in_channels={in_channels}")
        self.config = {"num_classes": int(num_classes), "base_channels": int(base_channels),
                       "depth": int(depth), "in_channels": int(in_channels)}
        widths = [base_channels * 2**level for level in range(depth + 1)]
        self.stem = ConvBlock(in_channels, widths[0])
        self.down = nn.ModuleList(ConvBlock(widths[i], widths[i + 1]) for i in range(depth))
        self.up = nn.ModuleList(UpBlock(widths[i + 1], widths[i], widths[i])
                                for i in reversed(range(depth)))
        self.head = nn.Conv2d(widths[0], num_classes, 1)

    @property
    def num_classes(self) -> int:
        return self.config["num_classes"]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2:]
        x = self._pad_to_multiple(images * 2.0 - 1.0)
        skips = [self.stem(x)]
        for block in self.down:
            skips.append(block(F.max_pool2d(skips[-1], 2)))
        x = skips.pop()
        for block in self.up:
            x = block(x, skips.pop())
        return self.head(x)[..., :height, :width]

    def _pad_to_multiple(self, x: torch.Tensor) -> torch.Tensor:
        """Pad bottom/right to a multiple of 2**depth. Replicate padding (not zeros) so the
        padded strip looks like the image edge instead of inventing a dark border."""
        multiple = 2 ** self.config["depth"]
        pad_h = -x.shape[-2] % multiple
        pad_w = -x.shape[-1] % multiple
        if pad_h == 0 and pad_w == 0:
            return x
        return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
