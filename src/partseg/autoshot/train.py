"""Training the UNet segmenter (saving, loading and running it: partseg.autoshot.segmenter).

One trainer serves three jobs: auto-shot (soft labels: the few-shot net's fp16 logits on
generated images), the supervised baselines and the simulated annotator (hard labels: uint8
masks with 255 = ignore). Hard masks become one-hot vectors with all-zero vectors at ignored
pixels, so both kinds go through the same augmentation and the same soft-target cross-entropy
(for a one-hot target it is ordinary cross-entropy).

Choices:
- Optimiser: Adam with (L2) weight decay, gradient-norm clipping.
- Learning rate: linear warm-up over the first 5% of steps (at most 100), then cosine decay to
  1% of the peak at `steps`. The paper used ReduceLROnPlateau; with a fixed step budget and a
  loss that is a noisy per-batch estimate, a schedule that is a pure function of the step is
  simpler, needs no state to resume and is reproducible.
- Randomness: the batch of step s and its augmentation come from generators seeded by
  (seed, s) (batches are epoch-wise permutations seeded by (seed, epoch)), so the step number
  *is* the RNG state: a run resumed from a snapshot draws exactly what an uninterrupted run
  would have, and gives the same weights on the same machine.
- Memory: images and targets can be numpy memmaps or lists of shard arrays; each step reads
  only its batch from them (sorted indices, one read per shard).
- Speed (bench/bench_unet.py measures it): the model and its input are channels_last, where
  oneDNN's CPU convolutions are much faster than on NCHW; Adam is the fused kernel; the
  per-step accuracy uses max(dim).indices, not argmax (a slow strided reduction on NCHW).
  None of this changes the maths: weights, schedule and random draws are those of NCHW.
- Resume: `snapshot_dir` holds the model, the optimiser, the step and the loss history, written
  atomically every `snapshot_every` steps. A rerun with the same arguments continues from it;
  a snapshot made with different arguments (including `steps`, which shapes the schedule) is
  ignored with a message, so a result never mixes two configurations (partseg.plumbing.snapshots).
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from partseg.autoshot.augment import color_jitter, random_geometric
from partseg.autoshot.unet import UNet
from partseg.plumbing.device import mixed_precision_dtype, resolve_device
from partseg.plumbing.distributed import Ranks, convert_batchnorm, sum_over_ranks, unwrap, wrap
from partseg.plumbing.distributed import barrier as ranks_barrier
from partseg.plumbing.distributed import current as current_ranks
from partseg.plumbing.errors import PartsegError
from partseg.imaging import images_to_unit_tensor
from partseg.plumbing.io import atomic_path
from partseg.plumbing.progress import progress
from partseg.plumbing.snapshots import load_snapshot
from partseg.plumbing.snapshots import save as save_snapshot

IGNORE = 255
SNAPSHOT_NAME = "segmenter_snapshot.pt"
AUGMENT_DEFAULTS = {"scale_min": 0.5, "scale_max": 2.0, "rotation": 10.0, "translate": 0.25,
                    "flip": True, "color_jitter": 0.1, "outside": "background"}


# ----------------------------------------------------------------------------- data access

class ArrayStack:
    """Several arrays (e.g. one memmap per synthesized shard) seen as one, indexed by batch."""

    def __init__(self, parts: np.ndarray | Sequence[np.ndarray], name: str):
        self.parts = [parts] if isinstance(parts, np.ndarray) else list(parts)
        if not self.parts:
            raise PartsegError(f"{name}: no arrays given")
        self.item_shape = tuple(self.parts[0].shape[1:])
        for i, part in enumerate(self.parts):
            if tuple(part.shape[1:]) != self.item_shape or part.dtype != self.parts[0].dtype:
                raise PartsegError(f"{name}: shard {i} has shape {tuple(part.shape)} {part.dtype}, "
                                   f"expected [*, {', '.join(map(str, self.item_shape))}] "
                                   f"{self.parts[0].dtype} like shard 0")
        self.dtype = self.parts[0].dtype
        self.offsets = np.cumsum([0] + [len(p) for p in self.parts])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def take(self, indices: np.ndarray) -> np.ndarray:
        """Rows `indices` (any order), reading each shard once in increasing index order."""
        indices = np.asarray(indices, dtype=np.int64)
        out = np.empty((len(indices),) + self.item_shape, dtype=self.dtype)
        part_of = np.searchsorted(self.offsets, indices, side="right") - 1
        for part in np.unique(part_of):
            rows = np.nonzero(part_of == part)[0]
            local = indices[rows] - self.offsets[part]
            order = np.argsort(local, kind="stable")
            out[rows[order]] = self.parts[part][local[order]]
        return out


def _check_data(images: ArrayStack, targets: ArrayStack, target_kind: str, num_classes: int) -> None:
    if len(images.item_shape) != 3 or images.item_shape[2] != 3 or images.dtype != np.uint8:
        raise PartsegError(f"images: expected uint8 [N,H,W,3], got [*, "
                           f"{', '.join(map(str, images.item_shape))}] {images.dtype}")
    height, width = images.item_shape[:2]
    if len(targets) != len(images):
        raise PartsegError(f"targets: {len(targets)} entries for {len(images)} images")
    if target_kind == "soft":
        expected = (num_classes, height, width)
        if targets.item_shape != expected or not np.issubdtype(targets.dtype, np.floating):
            raise PartsegError(f"targets (soft): expected float logits [N,{num_classes},{height},"
                               f"{width}], got [*, {', '.join(map(str, targets.item_shape))}] "
                               f"{targets.dtype}")
    elif target_kind == "hard":
        if targets.item_shape != (height, width) or targets.dtype != np.uint8:
            raise PartsegError(f"targets (hard): expected uint8 masks [N,{height},{width}], got "
                               f"[*, {', '.join(map(str, targets.item_shape))}] {targets.dtype}")
        for start in range(0, len(targets), 256):  # chunked: masks may be a large memmap
            chunk = targets.take(np.arange(start, min(start + 256, len(targets))))
            bad = (chunk >= num_classes) & (chunk != IGNORE)
            if bad.any():
                image = start + int(np.nonzero(bad.reshape(len(chunk), -1).any(1))[0][0])
                raise PartsegError(f"targets (hard): mask {image} has label id "
                                   f"{int(chunk[bad].max())}, but there are {num_classes} classes "
                                   f"(ids 0..{num_classes - 1}, {IGNORE} = ignore)")
    else:
        raise PartsegError(f"target_kind must be 'soft' or 'hard', got {target_kind!r}")


def targets_to_probabilities(targets: np.ndarray, target_kind: str, num_classes: int,
                             device: torch.device | str = "cpu") -> torch.Tensor:
    """Soft: logits -> softmax. Hard: ids -> one-hot, all-zero vectors where ignored."""
    tensor = torch.from_numpy(np.require(targets, requirements=["C", "W"])).to(device)
    if target_kind == "soft":
        return torch.softmax(tensor.float(), dim=1)
    ids = tensor.long()
    ignored = ids == IGNORE
    one_hot = F.one_hot(ids.masked_fill(ignored, 0), num_classes).permute(0, 3, 1, 2).float()
    return one_hot * (~ignored).unsqueeze(1)


# ----------------------------------------------------------------------------- randomness

def _seed_for(*keys: int) -> int:
    """A well-mixed 63-bit seed from integer keys (seed, purpose, step...)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1, np.uint64)[0] >> 1)


class BatchSampler:
    """Batch of step s: positions [s*B, (s+1)*B) of a stream of epoch permutations."""

    def __init__(self, num_items: int, batch_size: int, seed: int):
        self.num_items, self.batch_size, self.seed = num_items, batch_size, seed
        self._epoch, self._permutation = -1, None

    def indices(self, step: int) -> np.ndarray:
        positions = np.arange(step * self.batch_size, (step + 1) * self.batch_size)
        out = np.empty(len(positions), dtype=np.int64)
        for i, position in enumerate(positions):
            epoch = int(position // self.num_items)
            if epoch != self._epoch:
                generator = torch.Generator().manual_seed(_seed_for(self.seed, 1, epoch))
                self._permutation = torch.randperm(self.num_items, generator=generator).numpy()
                self._epoch = epoch
            out[i] = self._permutation[position % self.num_items]
        return out


# ----------------------------------------------------------------------------- training

def warmup_cosine_decay_lr(step: int, steps: int, peak: float) -> float:
    """The UNet's schedule: linear warm-up (5% of steps, at most 100), then cosine decay
    over all remaining steps to 1% of the peak."""
    warmup = min(100, max(1, steps // 20))
    if step < warmup:
        return peak * (step + 1) / warmup
    progress_fraction = (step - warmup) / max(1, steps - warmup)
    return peak * (0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * progress_fraction)))


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor,
                       class_weights: torch.Tensor | None = None,
                       valid_total: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over valid pixels of -sum_k w_k p_k log softmax(logits)_k (w_k = 1 by default).

    valid_total: the number of valid pixels to divide by (default: this batch's), e.g. the
    global batch's when the batch is split across processes.
    """
    log_probs = F.log_softmax(logits.float(), dim=1)
    if class_weights is not None:
        log_probs = log_probs * class_weights.view(1, -1, 1, 1)
    per_pixel = -(targets * log_probs).sum(dim=1)
    weight = valid.float()
    total = weight.sum() if valid_total is None else valid_total
    return (per_pixel * weight).sum() / total.clamp_min(1.0)


# Frequencies for class balancing are counted on at most this many training images: enough
# for a stable estimate, and bounded at paper scale (5000 soft targets at 512 px are 26 GB).
BALANCE_SAMPLE_IMAGES = 256


def balanced_class_weights(target_stack: "ArrayStack", target_kind: str, num_classes: int,
                           power: float, seed: int = 0) -> torch.Tensor | None:
    """Loss weight of each class, proportional to (1 / its pixel frequency) ** power over the
    targets' argmax labels, normalised to mean 1 over the classes present; None for power 0.

    power 0.5 (the square root) lifts a class at 0.1% of the pixels about 25x over one at
    60%: enough for a distilled UNet to predict eyes and mouths from noisy generated labels,
    without the full inverse's 600x that paints them everywhere (README, "Results").
    """
    if power == 0:
        return None
    from partseg.fewshot.train import class_weights

    rng = np.random.default_rng(seed)
    count = min(len(target_stack), BALANCE_SAMPLE_IMAGES)
    sample = np.asarray(target_stack.take(np.sort(rng.choice(len(target_stack), count,
                                                                replace=False))))
    labels = sample.argmax(1).astype(np.uint8) if target_kind == "soft" else sample
    return class_weights(labels, num_classes, power)


def undo_class_weights(model: torch.nn.Module, class_weights: torch.Tensor,
                       strength: float = 1.0) -> list[float]:
    """Fold -strength * log(w) into the UNet head's bias, w the loss's class weights.

    A net trained on cross-entropy weighted by w_c predicts, at best, p(c|x) * w_c up to a
    normaliser: the weights that let it learn rare classes also tilt every prediction towards
    them (the demo's UNet paints eyebrows and mouths too wide). Subtracting log w_c from the
    logits (strength 1) removes that tilt and leaves what was learned (logit adjustment: Menon
    et al., "Long-tail learning via logit adjustment", ICLR 2021). Folded into the bias, the
    saved model, its ONNX export and `partseg segment` all predict with it. A class of weight
    0 (absent from the targets) is left alone. Returns the offset added to each class's logit.
    """
    offsets = torch.zeros(len(class_weights), dtype=torch.float64)
    present = class_weights > 0
    offsets[present] = -strength * torch.log(class_weights[present].double())
    with torch.no_grad():
        model.head.bias.add_(offsets.to(model.head.bias))
    return [round(float(offset), 6) for offset in offsets]


def _normalise_augment(augment: dict | None) -> dict | None:
    if augment is None:
        return None
    unknown = set(augment) - set(AUGMENT_DEFAULTS)
    if unknown:
        raise PartsegError(f"augment: unknown key(s) {', '.join(sorted(unknown))} "
                           f"(known: {', '.join(AUGMENT_DEFAULTS)})")
    merged = {**AUGMENT_DEFAULTS, **augment}
    if merged["scale_min"] <= 0 or merged["scale_min"] > merged["scale_max"]:
        raise PartsegError(f"augment.scale_min/scale_max: need 0 < scale_min <= scale_max, got "
                           f"{merged['scale_min']}, {merged['scale_max']}")
    return merged


def _augment_batch(images: torch.Tensor, targets: torch.Tensor, augment: dict | None,
                   flip_permutation: Sequence[int] | None, generator: torch.Generator,
                   part: tuple[int, slice] | None = None):
    if augment is None:
        return images, targets, targets.sum(dim=1) >= 0.5
    images, targets, valid = random_geometric(
        images, targets, scale=(augment["scale_min"], augment["scale_max"]),
        rotation_deg=augment["rotation"], translate=augment["translate"], flip=augment["flip"],
        flip_permutation=flip_permutation, outside=augment["outside"], generator=generator,
        part=part)
    images = color_jitter(images, augment["color_jitter"], generator=generator, part=part)
    return images, targets, valid


def _training_batch(image_stack: ArrayStack, target_stack: ArrayStack, indices: np.ndarray,
                    target_kind: str, num_classes: int, augment: dict | None,
                    flip_permutation: Sequence[int] | None, generator: torch.Generator,
                    device: torch.device, ranks: Ranks = Ranks()):
    """The augmented (images, targets, valid) of one step: this process's rows of the global
    batch `indices` (all of them with one process)."""
    part = None
    if ranks.active:
        rows = ranks.part(len(indices))
        part, indices = (len(indices), rows), indices[rows]
    images = images_to_unit_tensor(image_stack.take(indices), device)
    targets = targets_to_probabilities(target_stack.take(indices), target_kind, num_classes, device)
    return _augment_batch(images, targets, augment, flip_permutation, generator, part)


def training_step(model: UNet, optimizer: torch.optim.Optimizer, images: torch.Tensor,
                  targets: torch.Tensor, valid: torch.Tensor, *, lr: float, grad_clip: float,
                  autocast=None, class_weights: torch.Tensor | None = None,
                  scaler: torch.amp.GradScaler | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimiser step on an augmented batch -> (loss, accuracy on valid pixels), as
    0-d tensors on the model's device (reading them is left to the caller: a host sync).

    The model is expected in channels_last (train_segmenter puts it there): oneDNN's convs,
    the bulk of the step, run markedly faster on NHWC than on NCHW tensors on CPU. Under DDP
    (`model` wrapped by partseg.plumbing.distributed.wrap) the batch is this process's rows of the
    global batch: the loss is normalised by the global count of valid pixels and multiplied
    by the process count, which DDP's gradient averaging divides out again, so the gradient
    is the global batch's. scaler: fp16 loss scaling (CUDA; None for bf16 or fp32).
    """
    ranks = current_ranks()
    for group in optimizer.param_groups:
        group["lr"] = lr
    with autocast or contextlib.nullcontext():
        logits = model(images.contiguous(memory_format=torch.channels_last))
    valid_total = sum_over_ranks(valid.sum().float()) if ranks.active else None
    loss = soft_cross_entropy(logits, targets, valid, class_weights, valid_total) * ranks.world
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
    else:
        loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip, foreach=True)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    global_loss = sum_over_ranks(loss.detach()) / ranks.world
    return global_loss, _agreement(logits.detach(), targets, valid)


def train_segmenter(images, targets, *, num_classes: int, target_kind: str = "soft",
                    unet_config: dict | None = None, steps: int = 2000, batch_size: int = 32,
                    lr: float = 1e-3, weight_decay: float = 1e-4, augment: dict | None = None,
                    seed: int = 0, device: str | torch.device | None = None,
                    log_path: str | os.PathLike | None = None,
                    snapshot_dir: str | os.PathLike | None = None, snapshot_every: int = 500,
                    flip_permutation: Sequence[int] | None = None, grad_clip: float = 1.0,
                    log_every: int = 10, class_balance_power: float = 0.0
                    ) -> tuple[UNet, list[dict]]:
    """Train a UNet on images uint8 [N,H,W,3] and targets; return (model in eval mode, history).

    targets: target_kind="soft": float (fp16) logits [N,K,H,W]; "hard": uint8 ids [N,H,W] with
    255 = ignore. images and targets may be arrays, memmaps or lists of shard arrays.
    unet_config: UNet keyword arguments (base_channels, depth). augment: None for no
    augmentation, else a dict with any of scale_min, scale_max, rotation, translate, flip,
    color_jitter, outside (missing keys take AUGMENT_DEFAULTS, the params.yaml defaults).
    history: a list of rows {step, loss, accuracy (agreement of the argmax with the target's
    argmax on valid pixels), lr}, one per `log_every` steps (means over them); also written to
    `log_path` (TSV, those columns) as training goes. class_balance_power > 0 weights the loss
    of each class by (1 / its frequency) ** power (balanced_class_weights).
    """
    image_stack, target_stack = ArrayStack(images, "images"), ArrayStack(targets, "targets")
    _check_data(image_stack, target_stack, target_kind, num_classes)
    augment = _normalise_augment(augment)
    device = resolve_device(None if device is None else str(device))
    unet_kwargs = {k: v for k, v in (unet_config or {}).items() if k not in ("num_classes",)}
    fingerprint = {"num_classes": num_classes, "target_kind": target_kind, "unet": unet_kwargs,
                   "steps": steps, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
                   "augment": augment, "seed": seed, "grad_clip": grad_clip,
                   "flip_permutation": list(flip_permutation) if flip_permutation else None,
                   "data": [len(image_stack), *image_stack.item_shape],
                   "class_balance_power": class_balance_power}
    class_weights = balanced_class_weights(target_stack, target_kind, num_classes,
                                           class_balance_power, seed)
    if class_weights is not None:
        class_weights = class_weights.to(device)

    ranks = current_ranks()
    with torch.random.fork_rng(devices=[]):  # initialise from `seed` without touching global RNG
        torch.manual_seed(seed)
        model = UNet(num_classes, **unet_kwargs)
    if ranks.active:  # BatchNorm over the global batch, as with one process
        convert_batchnorm(model)
    model.to(device, memory_format=torch.channels_last)
    optimizer = _adam(model, lr, weight_decay, device)
    history: list[dict] = []
    start = _resume(snapshot_dir, fingerprint, model, optimizer, history)
    if start >= steps:  # resumed a finished run: its outputs, log included, are written again
        if log_path is not None and ranks.is_main:
            _write_history(history, log_path)
        return model.eval(), history

    sampler = BatchSampler(len(image_stack), batch_size, seed)
    precision = mixed_precision_dtype(device)
    autocast = torch.autocast(device.type, dtype=precision or torch.bfloat16,
                              enabled=precision is not None)
    scaler = torch.amp.GradScaler(device.type) if precision == torch.float16 else None
    trained = wrap(model, device)
    window: list[tuple[torch.Tensor, torch.Tensor]] = []
    trained.train()
    writes = ranks.is_main  # rank 0 writes the log and the snapshots; every rank reads them
    bar = progress(total=steps, initial=start, desc="train segmenter", unit="step",
                   disable=not writes)
    for step in range(start, steps):
        batch_images, batch_targets, valid = _training_batch(
            image_stack, target_stack, sampler.indices(step), target_kind, num_classes, augment,
            flip_permutation, torch.Generator().manual_seed(_seed_for(seed, 2, step)), device,
            ranks)
        current_lr = warmup_cosine_decay_lr(step, steps, lr)
        window.append(training_step(trained, optimizer, batch_images, batch_targets, valid,
                                    lr=current_lr, grad_clip=grad_clip, autocast=autocast,
                                    class_weights=class_weights, scaler=scaler))
        bar.update(1)
        done = step + 1
        if done % log_every == 0 or done == steps:
            # The one host sync of the loop, every log_every steps.
            mean_loss, mean_accuracy = torch.stack([torch.stack(w) for w in window]).mean(0).tolist()
            history.append({"step": done, "loss": float(mean_loss),
                            "accuracy": float(mean_accuracy), "lr": current_lr})
            window.clear()
            bar.set_postfix(loss=f"{mean_loss:.4f}", acc=f"{mean_accuracy:.3f}", refresh=False)
            if log_path is not None and writes:
                _write_history(history, log_path)
        if snapshot_dir is not None and (done % snapshot_every == 0 or done == steps):
            if writes:
                _save_snapshot(snapshot_dir, fingerprint, done, model, optimizer, history)
            ranks_barrier()
    bar.close()
    if log_path is not None and writes:
        _write_history(history, log_path)
    return unwrap(trained).eval(), history


def _adam(model: torch.nn.Module, lr: float, weight_decay: float, device: torch.device):
    """Adam, fused where torch has a fused kernel for the device: one pass over all parameters
    instead of a dozen small ops per tensor (the UNet has ~60 small tensors)."""
    fused = device.type in ("cpu", "cuda")
    return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay, fused=fused)


@torch.no_grad()
def _agreement(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor) -> float:
    """Share of valid pixels whose argmax agrees with the target's argmax.

    max(dim).indices rather than argmax: on [B,K,H,W] tensors torch's argmax over dim 1 is
    several times slower (a strided reduction), and this runs every step.
    """
    agree = (logits.max(1).indices == targets.max(1).indices) & valid
    counts = sum_over_ranks(torch.stack([agree.sum(), valid.sum()]).float())
    return counts[0] / counts[1].clamp_min(1.0)


def _write_history(history: list[dict], path: str | os.PathLike) -> None:
    frame = pd.DataFrame(history, columns=["step", "loss", "accuracy", "lr"])
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, sep="\t", index=False, float_format="%.6g")


def _save_snapshot(snapshot_dir, fingerprint, step, model, optimizer, history) -> None:
    save_snapshot({"fingerprint": fingerprint, "step": step, "model": model.state_dict(),
                   "optimizer": optimizer.state_dict(), "history": history},
                  Path(snapshot_dir) / SNAPSHOT_NAME)


def _resume(snapshot_dir, fingerprint, model, optimizer, history) -> int:
    """Load the snapshot if it matches this run; return the step to start from. A snapshot
    is a cache: a broken one or another run's is skipped with a line saying so."""
    if snapshot_dir is None:
        return 0
    path = Path(snapshot_dir) / SNAPSHOT_NAME
    snapshot = load_snapshot(path, fingerprint, on_problem="restart")
    if snapshot is None:
        return 0
    model.load_state_dict(snapshot["model"])
    optimizer.load_state_dict(snapshot["optimizer"])
    history.extend(snapshot["history"])
    print(f"{path}: resuming at step {snapshot['step']}", file=sys.stderr)
    return int(snapshot["step"])
