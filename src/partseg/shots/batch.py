"""Shots: annotated images that travel together (the candidates too, before they have masks).

    shots = Shots(stems, images, wplus, masks=masks)     # parallel, one entry per image
    shots.first(1), shots.select([3, 0])                 # the same fields, those images only
    shots.save_pictures(out); shots.save_latents(out / "latents.pt")
    Shots.load(folder)                                   # what the annotate stage wrote

stems: list of names; images: HxWx3 uint8; masks: HxW uint8 label ids (None before anyone
annotated them); wplus: float32 [k, n_latent, style_dim]; for inverted images also noises
(per-image noise maps, each [k, 1, h, w], in the generator's order) and psnr (dB per image).

On disk (the annotate and shots stages): images/<stem>.png, masks/<stem>.png and latents.pt
{"stems", "wplus"[, "noises"]}.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from partseg.plumbing.errors import PartsegError
from partseg.plumbing.io import load_weights, read_image, read_mask, save_png, save_torch

LATENTS_FILE = "latents.pt"


@dataclass
class Shots:
    stems: list[str]
    images: list[np.ndarray]
    wplus: torch.Tensor
    masks: list[np.ndarray] | None = None
    noises: list[torch.Tensor] | None = None
    psnr: list[float] | None = None

    def __len__(self) -> int:
        return len(self.stems)

    def select(self, indices: Sequence[int]) -> "Shots":
        """These images only, in this order (every field taken alike)."""
        indices = list(indices)

        def pick(values):
            return None if values is None else [values[i] for i in indices]

        return Shots(stems=pick(self.stems), images=pick(self.images),
                     wplus=self.wplus[indices], masks=pick(self.masks),
                     noises=None if self.noises is None else [n[indices] for n in self.noises],
                     psnr=pick(self.psnr))

    def first(self, k: int) -> "Shots":
        return self.select(range(k))

    def with_masks(self, masks: list[np.ndarray]) -> "Shots":
        return dataclasses.replace(self, masks=list(masks))

    # ------------------------------------------------------------------ files

    def save_pictures(self, folder: Path) -> None:
        """images/<stem>.png and masks/<stem>.png (uint8 label ids)."""
        for stem, image, mask in zip(self.stems, self.images, self.masks):
            save_png(image, folder / "images" / f"{stem}.png")
            save_png(mask.astype(np.uint8), folder / "masks" / f"{stem}.png")

    def save_latents(self, path: Path, *, noises: bool = True) -> None:
        """{"stems", "wplus", "noises"} (None for generated images); without "noises" when
        `noises` is False."""
        latents = {"stems": self.stems, "wplus": self.wplus.cpu()}
        if noises:
            latents["noises"] = self.noises
        save_torch(latents, path)

    @classmethod
    def load(cls, folder: Path) -> "Shots":
        """Shots as save_pictures and save_latents wrote them into `folder`."""
        folder = Path(folder)
        path = folder / LATENTS_FILE
        latents = load_weights(path)  # weights only: a tampered file is refused, named
        if not (isinstance(latents, dict) and {"stems", "wplus"} <= set(latents)):
            raise PartsegError(f"{path}: not the shots' latents (no stems/wplus); rerun the "
                               "stage that wrote them")
        stems = list(latents["stems"])
        return cls(stems=stems, wplus=latents["wplus"], noises=latents.get("noises"),
                   images=[read_image(folder / "images" / f"{stem}.png") for stem in stems],
                   masks=[read_mask(folder / "masks" / f"{stem}.png") for stem in stems])
