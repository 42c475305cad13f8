"""Make one shard of the auto-shot training set: generated images with soft labels.

For each image i of a shard: z_i ~ N(0, I) from a stream keyed by (seed, i) alone
(`partseg.gan.seeded_z`, as the `sample` stage), so a shard is reproducible whatever the batch
size and any image can be regenerated on its own; w = mapping(z), truncated with
`generator.truncate` when truncation < 1; the feature extractor runs the
synthesis network and returns the per-pixel features and the image; the few-shot net turns the
features into logits, which are upsampled (bilinear) to the image size and stored as fp16.
Logits, never argmax: the segmenter learns from the few-shot net's uncertainty too.

Features live one batch at a time (never cached): the shard's files are written batch by batch
into memory-mapped .npy files, so memory is bounded by the batch whatever the shard size.

Output folder (replaced atomically as a whole, so a killed job leaves no finished-looking shard):
    images.npy   uint8 [M, H, W, 3]
    logits.npy   float16 [M, K, H, W]
    meta.json    seed, counts generated/kept/dropped, kept indices, uncertainty stats, sizes
With drop_uncertain = x > 0 the few-shot model must be an ensemble with `.uncertainty(features)
-> [N, R, R]`; the round(x * M) images with the highest mean uncertainty are dropped and M
minus that many are kept (num_images counts generated images).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from partseg.plumbing.device import resolve_device
from partseg.fewshot.predict import predict_logits
from partseg.gan.sampling import seeded_z
from partseg.imaging import signed_tensor_to_images
from partseg.plumbing.io import atomic_dir, save_json
from partseg.plumbing.progress import progress


def _broadcast_ws(w: torch.Tensor, n_latent: int) -> torch.Tensor:
    """mapping() may return [N, style_dim] (one w) or [N, n_latent, style_dim] already."""
    return w.unsqueeze(1).repeat(1, n_latent, 1) if w.dim() == 2 else w


@torch.no_grad()
def synthesize_shard(out_dir: str | os.PathLike, *, generator, extractor, fewshot_model,
                     num_images: int, seed: int, batch_size: int = 50, truncation: float = 1.0,
                     drop_uncertain: float = 0.0, device: str | torch.device | None = None,
                     extra_meta: dict | None = None) -> dict:
    """Generate `num_images` labelled images into `out_dir` (see the module docstring).

    generator: partseg.gan.Generator (mapping, style_dim, n_latent); extractor:
    partseg.features.FeatureExtractor, extractor(ws, noise="const") -> (features, images);
    fewshot_model: features [N,C,R,R] -> logits [N,K,R,R]. The modules are moved to `device`
    and put in eval mode. Returns the meta dict (also written to meta.json).
    """
    if num_images < 1:
        raise ValueError(f"num_images must be at least 1, got {num_images}")
    if not 0.0 <= drop_uncertain < 1.0:
        raise ValueError(f"drop_uncertain must be in [0, 1), got {drop_uncertain}")
    if drop_uncertain > 0 and not hasattr(fewshot_model, "uncertainty"):
        raise ValueError("drop_uncertain > 0 needs an ensemble few-shot model (with .uncertainty)")
    device = resolve_device(None if device is None else str(device))
    for module in (generator, extractor, fewshot_model):
        if isinstance(module, torch.nn.Module):
            module.to(device).eval()
    began = time.perf_counter()

    with atomic_dir(out_dir) as tmp:
        writer = _ShardWriter(tmp, num_images)
        uncertainty = np.zeros(num_images, dtype=np.float64)
        bar = progress(total=num_images, desc=f"synthesize {Path(out_dir).name}", unit="img")
        for start in range(0, num_images, batch_size):
            indices = range(start, min(start + batch_size, num_images))
            z = seeded_z(seed, indices, generator.style_dim).to(device)
            w = generator.mapping(z)
            if truncation < 1.0:
                w = generator.truncate(w, truncation)
            ws = _broadcast_ws(w, generator.n_latent)
            features, raw_images = extractor(ws, noise="const")
            logits = predict_logits(fewshot_model, features).to(device)
            if logits.shape[-2:] != raw_images.shape[-2:]:
                logits = F.interpolate(logits, size=raw_images.shape[-2:], mode="bilinear",
                                       align_corners=False)
            if drop_uncertain > 0:
                per_pixel = fewshot_model.uncertainty(features)
                uncertainty[start:start + len(indices)] = per_pixel.float().mean((-2, -1)).cpu().numpy()
            writer.write(start, signed_tensor_to_images(raw_images), logits.half().cpu().numpy())
            bar.update(len(indices))
        bar.close()

        dropped = _most_uncertain(uncertainty, drop_uncertain)
        kept = np.setdiff1d(np.arange(num_images), dropped)
        writer.finish(kept)
        meta = {
            "seed": int(seed), "latents": "partseg.gan.seeded_z(seed, i)",
            "generated": int(num_images), "kept": int(len(kept)), "dropped": int(len(dropped)),
            "kept_indices": kept.tolist(), "truncation": float(truncation),
            "drop_uncertain": float(drop_uncertain), "image_size": list(writer.image_shape[:2]),
            "num_classes": int(writer.num_classes), "seconds": round(time.perf_counter() - began, 3),
            "uncertainty": _uncertainty_stats(uncertainty, kept, dropped) if drop_uncertain > 0
            else None,
            **(extra_meta or {}),
        }
        save_json(meta, tmp / "meta.json")
    return meta


def _most_uncertain(uncertainty: np.ndarray, fraction: float) -> np.ndarray:
    count = int(round(fraction * len(uncertainty)))
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(-uncertainty, kind="stable")  # ties: lower index dropped first
    return np.sort(order[:count])


def _uncertainty_stats(uncertainty: np.ndarray, kept: np.ndarray, dropped: np.ndarray) -> dict:
    stats = {"mean_all": float(uncertainty.mean()), "mean_kept": float(uncertainty[kept].mean())}
    if len(dropped):
        stats["mean_dropped"] = float(uncertainty[dropped].mean())
        stats["threshold"] = float(uncertainty[dropped].min())
    return stats


class _ShardWriter:
    """Writes batches into memmapped .npy files; `finish` keeps the chosen rows.

    Without dropping, the batches go straight into images.npy / logits.npy. With dropping, they
    go to all_*.npy first and the kept rows are copied in chunks (memory stays one chunk).
    """

    def __init__(self, folder: Path, num_images: int):
        self.folder, self.num_images = folder, num_images
        self.images = self.logits = None

    def write(self, start: int, images: np.ndarray, logits: np.ndarray) -> None:
        if self.images is None:
            self.image_shape, self.num_classes = images.shape[1:], logits.shape[1]
            self.images = np.lib.format.open_memmap(self.folder / "all_images.npy", mode="w+",
                                                    dtype=np.uint8,
                                                    shape=(self.num_images, *images.shape[1:]))
            self.logits = np.lib.format.open_memmap(self.folder / "all_logits.npy", mode="w+",
                                                    dtype=np.float16,
                                                    shape=(self.num_images, *logits.shape[1:]))
        self.images[start:start + len(images)] = images
        self.logits[start:start + len(logits)] = logits

    def finish(self, kept: np.ndarray) -> None:
        for name, array in (("images", self.images), ("logits", self.logits)):
            array.flush()
            source = self.folder / f"all_{name}.npy"
            target = self.folder / f"{name}.npy"
            if len(kept) == self.num_images:
                os.replace(source, target)
                continue
            out = np.lib.format.open_memmap(target, mode="w+", dtype=array.dtype,
                                            shape=(len(kept), *array.shape[1:]))
            for chunk_start in range(0, len(kept), 256):
                chunk = kept[chunk_start:chunk_start + 256]
                out[chunk_start:chunk_start + len(chunk)] = array[chunk]
            out.flush()
            source.unlink()
        self.images = self.logits = None
