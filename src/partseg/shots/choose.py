"""Choosing the shots among the generated candidates, as a person would.

The candidates are the sample stage's images and W+ latents, as `Shots` without masks
(partseg.shots.batch); `Shots.select` takes some of them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from partseg.plumbing.errors import PartsegError
from partseg.plumbing.io import load_weights, read_image
from partseg.shots.batch import Shots

# A part "shows" in a mask when it covers at least this many pixels: a 2x2 patch is the least
# a person can paint and a few-shot net can learn a part from.
MIN_PART_PIXELS = 4
# The automatic pick, as a person would choose: a face that shows every part, and among those
# the clearest, i.e. the one the annotator is surest about (an unclear face, e.g. dark hair
# on a dark background, is one it hesitates on). A tiebreak on the smallest part's size was
# tried and dropped: one pixel more of eyebrow picked the least clear face of all.
AUTO_PICK_ORDER = ("parts_shown", "confidence")


def load_candidates(sample_dir: Path) -> Shots:
    """All generated candidates: stems, images (list of HxWx3 uint8) and W+ latents."""
    path = sample_dir / "latents.pt"
    latents = load_weights(path)  # weights only; a tampered file is refused, named
    if not (isinstance(latents, dict) and {"stems", "wplus"} <= set(latents)):
        raise PartsegError(f"{path}: not the sample stage's latents (no stems/wplus); rerun "
                           "stage sample")
    stems = list(latents["stems"])
    images = [read_image(sample_dir / "images" / f"{stem}.png") for stem in stems]
    return Shots(stems=stems, images=images, wplus=latents["wplus"])


def named_indices(stems: list[str], wanted: list[str], k: int) -> list[int]:
    """The candidates annotate.pick names, checked: k of them, each a sample stem."""
    unknown = [stem for stem in wanted if stem not in stems]
    if unknown:
        raise PartsegError(f"params key annotate.pick: {', '.join(unknown)} is not a generated "
                           f"sample; the candidates are {', '.join(stems)}")
    if len(wanted) != k:
        raise PartsegError(f"params key annotate.pick: names {len(wanted)} samples but "
                           f"annotate.k is {k}")
    return [stems.index(stem) for stem in wanted]


def coverage_scores(masks: list[np.ndarray], confidence: list[float]) -> list[dict]:
    """Per candidate: how many part classes its mask shows, the pixels of its smallest shown
    part, and the annotator's confidence."""
    scores = []
    for mask, sure in zip(masks, confidence):
        parts = np.bincount(mask[mask != 255].ravel(), minlength=1)[1:]  # background not counted
        shown = parts[parts >= MIN_PART_PIXELS]
        scores.append({"parts_shown": int(shown.size),
                       "smallest_part_pixels": int(shown.min()) if shown.size else 0,
                       "confidence": round(float(sure), 4)})
    return scores


def rank(scores: list[dict], keys: tuple[str, ...]) -> list[int]:
    """Candidate indices, best first by `keys` (higher is better); ties keep sample order."""
    return sorted(range(len(scores)), key=lambda i: tuple(-scores[i][key] for key in keys))


def realism_scores(images: list[np.ndarray], generator_dir: Path) -> list[dict] | None:
    """The discriminator's logit per image (higher = more like the training data), or None
    when the checkpoint has no discriminator."""
    from partseg.plumbing.device import resolve_device
    from partseg.gan import load_discriminator
    from partseg.imaging import images_to_signed_tensor

    device = resolve_device()
    discriminator = load_discriminator(generator_dir / "generator.pt", device)
    if discriminator is None:
        return None
    batch = images_to_signed_tensor(np.stack(images), device)
    with torch.no_grad():
        logits = discriminator(batch).reshape(-1).cpu().tolist()
    return [{"realism": round(float(v), 4)} for v in logits]
