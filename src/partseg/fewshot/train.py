"""Training few-shot classifiers from the on-disk feature cache, and saving/loading them.

Memory stays bounded whatever k and the cache size: the cache is never loaded as a whole.
Each optimiser step reads one random batch from the fp16 cache: `batch_pixels` random labelled
pixels for the per-pixel networks (linear, mlp, mlp2; drawn among the non-255 pixels of the
masks, so sparse annotations waste nothing), or about as many pixels as random square tiles for
the dilated CNN (which needs context). So a step costs the same memory at k = 1 and k = 1000,
and at any resolution; only the masks (one byte per pixel) are held in RAM. A tile is
zero-padded at its edges as a whole map is at the image border; the paper trains on whole maps,
which is what the default tile of 32 is at the demo's R = 32.

The loss is cross-entropy over labelled pixels (255 = ignore), optionally weighted by inverse
class frequency measured on the masks; the optimiser is Adam with weight decay. Everything random
(initial weights, batches) derives from `seed`; each ensemble member gets its own child seed
(numpy SeedSequence.spawn), and member m is the same network whatever the ensemble size.
"""

from __future__ import annotations

import csv
import os
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from partseg.plumbing.errors import PartsegError
from partseg.fewshot.ensemble import Ensemble
from partseg.fewshot.networks import (MLP_HIDDEN, build_model, build_network, is_pixel_network,
                                     member_kinds)
from partseg.plumbing.io import atomic_path, save_torch
from partseg.plumbing.progress import progress

IGNORE = 255
MODEL_FORMAT = "partseg-fewshot"
MODEL_VERSION = 1
# Manifest entries recorded with a model: which features it was trained on.
FEATURE_MANIFEST_KEYS = ("layers", "channels_per_layer", "layer_resolutions", "resolution",
                         "num_channels", "generator_checksum")
# Pixels sampled (in batches) to measure the per-channel mean and std of the features.
STATISTICS_BATCHES = 8
LOG_EVERY = 100
# Upper bound on the candidate positions drawn at once when sampling labelled pixels (24 MiB).
MAX_CANDIDATES = 1 << 20


def train_fewshot(cache, masks: np.ndarray, *, num_classes: int, network: str, ensemble: int = 1,
                  steps: int, batch_pixels: int = 4096, tile: int = 32, lr: float = 1e-3,
                  weight_decay: float = 1e-3, class_balance: bool = False, seed: int = 0,
                  device: str | torch.device | None = None,
                  log_path: str | os.PathLike | None = None) -> tuple[nn.Module, list[dict]]:
    """Train `ensemble` networks of each kind in `network` ("cnn", "mlp+cnn", ...) on (cache
    features, masks).

    masks: uint8 [N,R,R] label ids aligned with the cache's N images (255 = ignore).
    Returns (model in eval mode with a `.config` dict, history: one dict per step with the
    members' mean batch loss and accuracy). The history is also written as TSV to `log_path`.
    """
    kinds = member_kinds(network, ensemble)  # raises the PartsegError that names the choices
    if steps < 1 or ensemble < 1 or batch_pixels < 1 or tile < 1:
        raise PartsegError("train_fewshot: steps, ensemble, batch_pixels and tile must be >= 1")
    labelled_fraction = check_masks(cache, masks, num_classes)
    masks = np.ascontiguousarray(masks)  # flat indexing below must not copy on every step
    device = _torch_device(device)
    seeds = np.random.SeedSequence(seed).spawn(len(kinds) + 1)
    mean, std = feature_statistics(cache, np.random.default_rng(seeds[0]), batch_pixels)
    weights = class_weights(masks, num_classes).to(device) if class_balance else None

    members, optimizers, rngs, draws = [], [], [], []
    for kind, member_seed in zip(kinds, seeds[1:]):
        weights_seed, batches_seed = member_seed.spawn(2)
        member = _init_member(kind, cache.num_channels, num_classes, weights_seed, mean, std,
                              cache.resolution)
        members.append(member.to(device).train())
        optimizers.append(torch.optim.Adam(member.parameters(), lr=lr, weight_decay=weight_decay))
        rngs.append(np.random.default_rng(batches_seed))
        draws.append(_pixel_batch if is_pixel_network(kind) else _tile_batch)

    history: list[dict] = []
    bar = progress(total=steps, desc=f"train_fewshot {network}x{ensemble}", unit="step")
    for step in range(1, steps + 1):
        results = [_train_step(member, optimizer,
                               *draw(cache, masks, rng, batch_pixels, tile, labelled_fraction),
                               weights, device)
                   for member, optimizer, rng, draw in zip(members, optimizers, rngs, draws)]
        history.append({"step": step, "loss": float(np.mean([r[0] for r in results])),
                        "accuracy": float(np.mean([r[1] for r in results]))})
        bar.update(1)
        if step % LOG_EVERY == 0 or step == steps:
            bar.set_postfix(loss=f"{history[-1]['loss']:.4f}", acc=f"{history[-1]['accuracy']:.3f}", refresh=False)
            if log_path is not None:
                write_history(history, log_path)
    bar.close()

    model = members[0] if len(members) == 1 else Ensemble(members)
    model.eval()
    model.config = {
        "network": network, "in_channels": int(cache.num_channels), "num_classes": int(num_classes),
        "ensemble": int(ensemble), "members": kinds, "resolution": int(cache.resolution),
        "hidden": list(MLP_HIDDEN.get(network, ())),
        "features": feature_signature(cache),
        "training": {"steps": steps, "batch_pixels": batch_pixels, "tile": tile, "lr": lr,
                     "weight_decay": weight_decay, "class_balance": bool(class_balance), "seed": seed,
                     "num_images": int(cache.num_images)},
    }
    return model, history


def check_masks(cache, masks: np.ndarray, num_classes: int) -> float:
    """Masks must match the cache (one per image, R x R) and hold ids < num_classes or 255.

    Returns the fraction of pixels that are labelled (not 255).
    """
    expected = (cache.num_images, cache.resolution, cache.resolution)
    if not isinstance(masks, np.ndarray) or masks.shape != expected:
        shape = getattr(masks, "shape", type(masks).__name__)
        raise PartsegError(f"train_fewshot masks: expected shape {expected} (images of the feature "
                           f"cache, resolution {cache.resolution}), got {shape}")
    if not np.issubdtype(masks.dtype, np.integer):
        raise PartsegError(f"train_fewshot masks: expected integer label ids, got dtype {masks.dtype}")
    labelled = masks != IGNORE
    bad = labelled & ((masks < 0) | (masks >= num_classes))
    if bad.any():
        image = int(np.argwhere(bad)[0][0])
        raise PartsegError(f"train_fewshot masks: image {image} has label id {int(masks[bad][0])}, "
                           f"but there are {num_classes} classes (ids 0..{num_classes - 1}, 255 = ignore)")
    if not labelled.any():
        raise PartsegError("train_fewshot masks: every pixel is 255 (ignore); nothing to learn from")
    return float(labelled.mean())


def class_weights(masks: np.ndarray, num_classes: int, power: float = 1.0) -> torch.Tensor:
    """Inverse-frequency weights over labelled pixels, (1 / count) ** power, normalised to mean
    1 over present classes (train_autoshot uses power 0.5: balanced_class_weights).

    A class absent from the masks gets weight 0 (it never occurs as a target anyway).
    """
    counts = np.bincount(masks[masks != IGNORE].ravel().astype(np.int64), minlength=num_classes)
    counts = counts[:num_classes].astype(np.float64)
    present = counts > 0
    weights = np.zeros(num_classes)
    weights[present] = counts[present] ** -power
    weights[present] /= weights[present].mean()
    return torch.tensor(weights, dtype=torch.float32)


@torch.no_grad()
def feature_statistics(cache, rng: np.random.Generator,
                       batch_pixels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of the features, from random pixels read batch by batch."""
    total = torch.zeros(cache.num_channels, dtype=torch.float64)
    total_sq = torch.zeros(cache.num_channels, dtype=torch.float64)
    count = 0
    for _ in range(STATISTICS_BATCHES):
        vectors, _ = cache.random_pixels(batch_pixels, rng)
        vectors = vectors.double()
        total += vectors.sum(dim=0)
        total_sq += (vectors * vectors).sum(dim=0)
        count += vectors.shape[0]
    mean = total / count
    std = (total_sq / count - mean * mean).clamp_min(0.0).sqrt()
    return mean.float(), std.float()


def feature_signature(cache) -> dict[str, Any]:
    """What identifies the features: channels, resolution and the manifest's layer/generator keys."""
    manifest = getattr(cache, "manifest", None) or {}
    signature = {key: manifest[key] for key in FEATURE_MANIFEST_KEYS if key in manifest}
    signature.update(num_channels=int(cache.num_channels), resolution=int(cache.resolution))
    return signature


def write_history(history: list[dict], path: str | os.PathLike) -> None:
    """The loss curve as TSV (step, loss, accuracy), written atomically (a DVC plot)."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(history[0]), delimiter="\t",
                                lineterminator="\n")
        writer.writeheader()
        for row in history:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


def _torch_device(device) -> torch.device:
    if device is None:
        from partseg.plumbing.device import resolve_device

        return resolve_device()
    return torch.device(device)


def _init_member(kind: str, channels: int, num_classes: int, seed: np.random.SeedSequence,
                 mean: torch.Tensor, std: torch.Tensor, resolution: int) -> nn.Module:
    """A fresh network initialised from its own seed, without touching the global torch RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed.generate_state(1)[0]))
        member = build_network(kind, channels, num_classes, resolution)
    member.input_norm.set_statistics(mean, std)
    return member


def labelled_positions(masks: np.ndarray, count: int, rng: np.random.Generator,
                       labelled_fraction: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`count` (image, y, x) positions drawn uniformly among the labelled (non-255) pixels.

    Rejection sampling: draw uniform positions, keep the labelled ones, repeat until enough.
    No index of all labelled pixels is built, so memory stays bounded for any number of masks,
    and sparse annotations (a few painted strokes) still fill every batch with labelled pixels.
    """
    n, height, width = masks.shape
    found: list[np.ndarray] = []
    missing = count
    while missing > 0:
        draws = int(min(max(2 * missing / labelled_fraction, 64), MAX_CANDIDATES))
        flat = rng.integers(0, n * height * width, size=draws)
        keep = flat[masks.reshape(-1)[flat] != IGNORE][:missing]
        found.append(keep)
        missing -= keep.size
    image, rest = np.divmod(np.concatenate(found), height * width)
    y, x = np.divmod(rest, width)
    return image, y, x


def _pixel_batch(cache, masks, rng, batch_pixels, tile, labelled_fraction):
    """Random labelled pixels: [B,C] features and their [B] labels."""
    image, y, x = labelled_positions(masks, batch_pixels, rng, labelled_fraction)
    vectors = cache.pixels(image, y, x)
    return vectors, torch.from_numpy(masks[image, y, x].astype(np.int64))


def _tile_batch(cache, masks, rng, batch_pixels, tile, labelled_fraction):
    """Random tiles, side clipped to R: [T,C,S,S] features, [T,S,S] labels, T*S*S ~ batch_pixels."""
    side = min(tile, cache.resolution)
    count = max(1, batch_pixels // (side * side))
    tiles, (image, top, left) = cache.random_tiles(count, side, rng)
    offsets = np.arange(side)
    rows = (np.asarray(top)[:, None] + offsets)[:, :, None]
    cols = (np.asarray(left)[:, None] + offsets)[:, None, :]
    labels = masks[np.asarray(image)[:, None, None], rows, cols]
    return tiles, torch.from_numpy(labels.astype(np.int64))


def _train_step(member, optimizer, features, labels, weights, device) -> tuple[float, float]:
    """One Adam step on a batch; returns (loss, accuracy) over its labelled pixels."""
    features = features.to(device, non_blocking=True)
    labels = labels.to(device, non_blocking=True)
    valid = labels != IGNORE
    if not bool(valid.any()):
        return float("nan"), float("nan")  # a batch of only unlabelled pixels teaches nothing
    logits = member(features)
    loss = F.cross_entropy(logits, labels, weight=weights, ignore_index=IGNORE)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        accuracy = (logits.argmax(dim=1) == labels)[valid].float().mean()
    return loss.detach().item(), accuracy.item()


def save_fewshot_model(path: str | os.PathLike, model: nn.Module,
                       config: Mapping[str, Any] | None = None) -> None:
    """Save weights and config atomically; `config` entries are added to the model's own config.

    The file is a plain dict (tensors, strings, numbers, lists) so it loads with
    torch.load(weights_only=True).
    """
    merged = {**getattr(model, "config", {}), **(config or {})}
    missing = [key for key in ("network", "in_channels", "num_classes") if key not in merged]
    if missing:
        raise PartsegError(f"{path}: cannot save a few-shot model without config keys {missing}")
    if isinstance(model, Ensemble) and len(model.members) == 1:
        model = model.members[0]  # stored as the plain network it is
    # The architecture is read off the model itself, so the file always matches its weights.
    members = list(model.members) if isinstance(model, Ensemble) else [model]
    merged["members"] = [getattr(member, "kind", merged["network"]) for member in members]
    state = {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}
    save_torch({"format": MODEL_FORMAT, "version": MODEL_VERSION, "config": merged,
                "state_dict": state}, path)


def load_fewshot_model(path: str | os.PathLike, device: str | torch.device | None = "cpu") -> nn.Module:
    """Load a model saved by `save_fewshot_model` (eval mode, `.config` set) onto `device`."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise PartsegError(f"{path}: few-shot model not found; run the train_fewshot stage") from None
    except Exception as error:  # unpickling errors come in many types
        raise PartsegError(f"{path}: not a readable few-shot model ({error})") from None
    if not isinstance(saved, dict) or saved.get("format") != MODEL_FORMAT:
        raise PartsegError(f"{path}: not a partseg few-shot model (no format {MODEL_FORMAT!r})")
    if saved.get("version") != MODEL_VERSION:
        raise PartsegError(f"{path}: few-shot model version {saved.get('version')}; "
                           f"this partseg reads version {MODEL_VERSION}; retrain it")
    config = saved["config"]
    try:
        model = build_model(config)
        model.load_state_dict(saved["state_dict"])
    except (KeyError, RuntimeError, ValueError) as error:
        raise PartsegError(f"{path}: weights do not match their config ({error})") from None
    model.config = dict(config)
    return model.to(_torch_device(device)).eval()
