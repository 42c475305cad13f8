"""Training a StyleGAN2 on a folder of images, resumable at any point.

Losses as in StyleGAN2: non-saturating logistic loss, lazy R1 on reals (every `r1_every`
steps, weighted by that interval), optional lazy path-length regularisation, style mixing,
an EMA copy of the generator (half-life `ema_kimg` thousand images) that is the one exported.
DiffAugment on both real and fake images when `augment="diffaugment"`. Mixed precision on CUDA
only (bf16 where supported, else fp16 with loss scaling); the regularisers run in fp32.

Resuming: every `snapshot_every` steps (and at the last step) a snapshot with G, D, the EMA
generator, both optimisers, the RNG states, the path-length mean and the log rows is written
atomically to `snapshot_dir/<run id>/`, where the run id hashes every option that defines the
result except `steps` (and the data's fingerprint). A rerun with the same options continues
from the newest snapshot at or below `steps`, so raising `steps` extends a finished run, and a
killed run loses only the steps since its last snapshot. A resumed run produces the same
weights as an uninterrupted one (same device and threads).

Several processes (torchrun; partseg.plumbing.distributed): every random draw (real indices, z, style
mixing, noise maps, path-length probes) is made for the global batch on every rank, which
keeps its rows, chosen so that the discriminator's minibatch-stddev groups are those of the
1-process run; the gradients are averaged over ranks after each backward pass, so the losses'
batch means, R1 and the path-length term are those of the global batch, and G, D and the
EMA stay identical on every rank. Rank 0 writes the snapshots, every rank reads them. The
loop reads its logged values from the device every LOG_FLUSH steps, not every step.

Besides the full snapshots (the newest two are kept), every snapshot leaves a sample grid and
the EMA generator alone (`g_ema-<step>.pt`), the record of how training went.

Outputs in `out_dir`: generator.pt (partseg checkpoint with g_ema, g and d), training_log.tsv,
samples.png, training_options.yaml, snapshots/grid-<step>.png.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import hashlib
import json
import math
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from partseg.plumbing import distributed
from partseg.plumbing.device import mixed_precision_dtype, resolve_device
from partseg.plumbing.errors import PartsegError
from partseg.gan.checkpoint import save_checkpoint
from partseg.gan.diffaugment import diff_augment
from partseg.gan.discriminator import Discriminator
from partseg.gan.generator import Generator
from partseg.gan.sampling import seeded_z
from partseg.imaging import signed_tensor_to_images, uint8_to_signed
from partseg.plumbing.io import atomic_path, list_images, read_image, save_png, save_torch, save_yaml
from partseg.plumbing.progress import progress
from partseg.plumbing.snapshots import (fingerprint, load_snapshot, newest_snapshot, save_numbered,
                               snapshot_steps)

# Options that do not change what is trained: they may differ between a run and its resume.
RESUME_FREE_OPTIONS = ("steps", "snapshot_every", "device")
KEEP_SNAPSHOTS = 2              # older snapshot weights are deleted; their grids are kept
PRELOAD_LIMIT_BYTES = 2 << 30   # datasets up to this size are held in memory as uint8
PL_DECAY = 0.01                 # path-length mean: exponential moving average rate
LOG_FLUSH = 20                  # steps between reads of the logged values (host syncs)
LOG_COLUMNS = ("step", "images_seen", "seconds_per_step", "d_loss", "g_loss", "real_score",
               "fake_score", "r1_penalty", "pl_penalty", "elapsed_s")


# ---- data ---------------------------------------------------------------------------------

class ImageFolderData:
    """The training images of one folder, as float batches in [-1, 1]."""

    def __init__(self, folder: str | Path, size: int):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise PartsegError(f"{self.folder}: training image folder not found")
        self.paths = list_images(self.folder)
        if not self.paths:
            raise PartsegError(f"{self.folder}: no PNG/JPEG images to train the GAN on")
        self.size = size
        listing = "\n".join(f"{p.name}\t{p.stat().st_size}" for p in self.paths)
        self.fingerprint = hashlib.sha1(listing.encode()).hexdigest()[:16]
        self.images = None
        if len(self.paths) * 3 * size * size <= PRELOAD_LIMIT_BYTES:
            self.images = torch.from_numpy(np.stack([self._read(p) for p in self.paths]))

    @classmethod
    def from_dataset(cls, root: str | Path, split: str, size: int) -> "ImageFolderData":
        """The images of one split of a dataset (the `dataset` stage's packed output, or a
        folder dataset), read through the one dataset loader and held in memory."""
        from partseg.data.folder import load_split_arrays
        from partseg.data.packed import split_fingerprint

        images, _, stems = load_split_arrays(root, split)
        if images.shape[1:3] != (size, size):
            raise PartsegError(f"{root}/{split}: images are {images.shape[2]}x{images.shape[1]} "
                               f"px, the GAN trains at {size}x{size}; rebuild the dataset "
                               "or set data.resolution")
        data = cls.__new__(cls)
        data.folder, data.size = Path(root) / split, size
        data.paths = [data.folder / stem for stem in stems]  # names only: len() and messages
        # The packed layout's pixel fingerprint (a folder's: names and sizes of its files).
        data.fingerprint = split_fingerprint(root, split)
        data.images = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
        return data

    def _read(self, path: Path) -> np.ndarray:
        image = read_image(path)
        if image.shape[:2] != (self.size, self.size):
            raise PartsegError(f"{path}: image is {image.shape[1]}x{image.shape[0]} px, "
                               f"the GAN trains at {self.size}x{self.size}; resize the dataset "
                               "or set data.resolution")
        return image.transpose(2, 0, 1)

    def __len__(self) -> int:
        return len(self.paths)

    def batch(self, indices: torch.Tensor, device: torch.device) -> torch.Tensor:
        if self.images is not None:
            uint8 = self.images[indices]
        else:
            uint8 = torch.from_numpy(np.stack([self._read(self.paths[i]) for i in indices.tolist()]))
        return uint8_to_signed(uint8.to(device))


# ---- grids --------------------------------------------------------------------------------

def image_grid(images: np.ndarray, columns: int) -> np.ndarray:
    """uint8 [n, H, W, 3] -> one uint8 image with `columns` tiles per row."""
    n, height, width, _ = images.shape
    rows = math.ceil(n / columns)
    grid = np.zeros((rows * height, columns * width, 3), np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        grid[r * height:(r + 1) * height, c * width:(c + 1) * width] = image
    return grid


def grid_size(size: int) -> int:
    """Tiles per side of the sample grids: 8x8 up to 64 px, 4x4 above."""
    return 8 if size <= 64 else 4


@torch.no_grad()
def render_grid(generator: Generator, z: torch.Tensor) -> np.ndarray:
    device = generator.input.input.device
    images = [signed_tensor_to_images(generator(z[i:i + 16].to(device), noise="const"))
              for i in range(0, len(z), 16)]
    return image_grid(np.concatenate(images), grid_size(generator.size))


# ---- mixed precision ----------------------------------------------------------------------

class Precision:
    """Autocast + (for fp16) loss scaling on CUDA; plain fp32 elsewhere."""

    def __init__(self, device: torch.device):
        wanted = mixed_precision_dtype(device)  # PARTSEG_AMP: auto (bf16) | bf16 | fp16 | off
        self.enabled = wanted is not None
        bf16 = self.enabled and wanted == torch.bfloat16 and torch.cuda.is_bf16_supported()
        self.dtype = torch.bfloat16 if bf16 else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.enabled and not bf16)

    def autocast(self):
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=self.dtype)

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        distributed.average_gradients(p for group in optimizer.param_groups
                                      for p in group["params"])
        self.scaler.step(optimizer)
        self.scaler.update()


# ---- the training state -------------------------------------------------------------------

def lazy_adam(params, lr: float, interval: int | None) -> torch.optim.Adam:
    """Adam with StyleGAN2's correction for a regulariser applied every `interval` steps
    (None: no regulariser, plain Adam(0, 0.99))."""
    ratio = interval / (interval + 1) if interval else 1.0
    return torch.optim.Adam(params, lr=lr * ratio, betas=(0.0, 0.99 ** ratio), eps=1e-8)


class TrainingState:
    """Everything a snapshot holds: models, optimisers, RNG, step, log rows."""

    def __init__(self, options: dict, device: torch.device):
        self.options = options
        self.device = device
        arch = {k: options[k] for k in ("size", "style_dim", "n_mlp", "channel_base",
                                        "channel_max")}
        torch.manual_seed(options["seed"])
        self.g = Generator(**arch).to(device)
        self.d = Discriminator(options["size"], options["channel_base"],
                               options["channel_max"]).to(device)
        self.g_ema = copy.deepcopy(self.g).eval().requires_grad_(False)
        self.g_optim = lazy_adam(self.g.parameters(), options["lr"],
                                 options["pl_every"] if options["pl_weight"] > 0 else None)
        self.d_optim = lazy_adam(self.d.parameters(), options["lr"],
                                 options["r1_every"] if options["r1_gamma"] > 0 else None)
        self.step = 0
        self.pl_mean = torch.zeros((), device=device)
        self.log_rows: list[dict] = []

    def state_dict(self) -> dict:
        cuda_rng = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        return {
            "g": self.g.state_dict(), "d": self.d.state_dict(), "g_ema": self.g_ema.state_dict(),
            "g_optim": self.g_optim.state_dict(), "d_optim": self.d_optim.state_dict(),
            "step": self.step, "pl_mean": self.pl_mean.cpu(), "log_rows": self.log_rows,
            "options": self.options, "cpu_rng": torch.get_rng_state(), "cuda_rng": cuda_rng,
        }

    def load_state_dict(self, state: dict) -> None:
        for name in ("g", "d", "g_ema", "g_optim", "d_optim"):
            getattr(self, name).load_state_dict(state[name])
        self.step = int(state["step"])
        self.pl_mean = state["pl_mean"].to(self.device)
        self.log_rows = list(state["log_rows"])
        torch.set_rng_state(state["cpu_rng"])
        if self.device.type == "cuda" and state["cuda_rng"] is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)


# ---- snapshots ----------------------------------------------------------------------------

def run_id(options: dict) -> str:
    """Hash of the run's fingerprint: every option that defines the result, except those free
    to change on resume (the folder name is how a GAN snapshot is matched to its run)."""
    defining = fingerprint(options, RESUME_FREE_OPTIONS)
    return hashlib.sha1(json.dumps(defining, sort_keys=True).encode()).hexdigest()[:12]


def write_log(rows: list[dict], path: Path, columns=LOG_COLUMNS) -> None:
    """The training log as TSV (a DVC plot), floats to 6 significant digits, written atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns, delimiter="\t")
            writer.writeheader()
            for row in rows:
                writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v)
                                 for k, v in row.items()})


def save_snapshot(state: TrainingState, run_dir: Path, grid_z: torch.Tensor) -> None:
    """Grid, EMA weights and log first, the full snapshot last: a snapshot file that exists
    is complete together with everything that belongs to its step."""
    save_png(render_grid(state.g_ema, grid_z), run_dir / f"grid-{state.step:06d}.png")
    # The EMA generator alone (a fifth of a snapshot) is kept for every snapshot, so that
    # quality can be tracked across training afterwards (bench/gan_probe.py).
    save_torch({"g_ema": state.g_ema.state_dict(), "options": state.options, "step": state.step},
               run_dir / f"g_ema-{state.step:06d}.pt")
    write_log(state.log_rows, run_dir / "training_log.tsv")
    # Keep the newest few full snapshots only (grids and EMA weights stay: the record).
    save_numbered(state.state_dict(), run_dir, state.step, KEEP_SNAPSHOTS)


def resume(state: TrainingState, run_dir: Path, steps: int) -> bool:
    """Load the newest snapshot at or below `steps`; False when there is none."""
    # A damaged snapshot: say so, do not silently restart. No fingerprint check: the run
    # folder's name (run_id) is the fingerprint.
    snapshot = load_snapshot(newest_snapshot(run_dir, steps), on_problem="refuse",
                             what="training snapshot", map_location=state.device)
    if snapshot is None:
        return False
    state.load_state_dict(snapshot)
    return True


def generator_from_snapshot(path: str | Path, device: str | torch.device = "cpu"
                            ) -> tuple[Generator, int]:
    """The EMA generator of a snapshot or g_ema-<step>.pt file (eval mode) and its step."""
    snapshot = torch.load(path, map_location="cpu", weights_only=True)
    options = snapshot["options"]
    generator = Generator(**{k: options[k] for k in ("size", "style_dim", "n_mlp",
                                                      "channel_base", "channel_max")})
    generator.load_state_dict(snapshot["g_ema"])
    return generator.to(device).eval(), int(snapshot["step"])


# ---- losses -------------------------------------------------------------------------------

def batch_rows(batch: int, group: int, ranks: distributed.Ranks) -> torch.Tensor | None:
    """The rows of a global batch that this rank computes (None: all of them).

    The discriminator's minibatch stddev groups sample n with the samples n + k * batch/group;
    each rank takes whole groups (columns of the [group, batch/group] layout), in the order
    that rebuilds them, so its D sees the 1-process groups.
    """
    if not ranks.active:
        return None
    if batch % (group * ranks.world):
        raise PartsegError(f"train_gan.batch_size: {batch} images cannot be split over "
                           f"{ranks.world} processes in whole minibatch-stddev groups of "
                           f"{group}; use a multiple of {group * ranks.world}")
    columns = ranks.part(batch // group)
    return torch.arange(batch).view(group, batch // group)[:, columns].reshape(-1)


def mine(tensor: torch.Tensor, rows: torch.Tensor | slice | None) -> torch.Tensor:
    """This rank's rows of a tensor drawn for the global batch."""
    return tensor if rows is None else tensor[rows.to(tensor.device)
                                              if isinstance(rows, torch.Tensor) else rows]


def make_z(state: TrainingState, batch: int, rows=None
           ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Latents for a step: z, and a second z for style mixing with probability mixing_prob."""
    z = mine(torch.randn(batch, state.g.style_dim, device=state.device), rows)
    if torch.rand(()) < state.options["mixing_prob"]:
        return z, mine(torch.randn(batch, state.g.style_dim, device=state.device), rows)
    return z, None


def random_noise(state: TrainingState, batch: int, rows=None) -> list[torch.Tensor]:
    """Per-sample noise maps for every styled conv, drawn for the global batch."""
    return [mine(torch.randn(batch, 1, *buffer.shape[-2:], device=state.device), rows)
            for buffer in state.g.noise_maps()]


def augment_fn(options: dict):
    return diff_augment if options["augment"] == "diffaugment" else (lambda x: x)


def discriminator_step(state, real, precision, augment, rows=None) -> dict:
    batch = state.options["batch_size"]
    z, mixing_z = make_z(state, batch, rows)
    noise = random_noise(state, batch, rows)
    with torch.no_grad(), precision.autocast():
        fake = state.g(z, noise=noise, mixing_z=mixing_z)
    with precision.autocast():
        fake_pred = state.d(augment(fake.float())).float()
        real_pred = state.d(augment(real)).float()
        loss = F.softplus(fake_pred).mean() + F.softplus(-real_pred).mean()
    precision.step(loss, state.d_optim)
    return dict(d_loss=loss.detach(), real_score=real_pred.detach().mean(),
                fake_score=fake_pred.detach().mean())


def r1_step(state, real, precision, augment) -> float:
    """Lazy R1: gamma/2 * E|grad_x D(x)|^2 on reals, times the interval."""
    real = real.detach().requires_grad_(True)
    real_pred = state.d(augment(real))
    (grad,) = torch.autograd.grad(real_pred.sum(), real, create_graph=True)
    penalty = grad.square().flatten(1).sum(1).mean()
    loss = state.options["r1_gamma"] / 2 * penalty * state.options["r1_every"]
    precision.step(loss + 0 * real_pred[0, 0], state.d_optim)
    return penalty.detach()


def generator_step(state, batch, precision, augment, rows=None) -> torch.Tensor:
    z, mixing_z = make_z(state, batch, rows)
    noise = random_noise(state, batch, rows)
    state.d.requires_grad_(False)
    with precision.autocast():
        fake = state.g(z, noise=noise, mixing_z=mixing_z)
        loss = F.softplus(-state.d(augment(fake)).float()).mean()
    precision.step(loss, state.g_optim)
    state.d.requires_grad_(True)
    return loss.detach()


def path_length_step(state, batch, precision) -> torch.Tensor:
    """Lazy path-length regularisation: keep |J_w^T y| close to its running mean."""
    ranks = distributed.current()
    pl_batch = max(1, batch // 2)
    rows = ranks.part(pl_batch) if ranks.active else None
    z = mine(torch.randn(pl_batch, state.g.style_dim, device=state.device), rows)
    ws = state.g.mapping(z).unsqueeze(1).repeat(1, state.g.n_latent, 1)
    fake = state.g.synthesis(ws, noise=random_noise(state, pl_batch, rows))
    probe = mine(torch.randn(pl_batch, *fake.shape[1:], device=state.device), rows)
    noise = probe / math.sqrt(fake.shape[2] * fake.shape[3])
    (grad,) = torch.autograd.grad((fake * noise).sum(), ws, create_graph=True)
    lengths = grad.square().sum(2).mean(1).sqrt()
    mean_length = distributed.sum_over_ranks(lengths.mean().detach()) / ranks.world
    state.pl_mean = state.pl_mean.detach() + PL_DECAY * (mean_length - state.pl_mean)
    penalty = (lengths - state.pl_mean).square().mean()
    loss = state.options["pl_weight"] * state.options["pl_every"] * penalty
    precision.step(loss + 0 * fake[0, 0, 0, 0], state.g_optim)
    return penalty.detach()


@torch.no_grad()
def update_ema(state: TrainingState, batch: int) -> None:
    kimg = state.options["ema_kimg"]
    beta = 0.5 ** (batch / (kimg * 1000)) if kimg > 0 else 0.0
    for p_ema, p in zip(state.g_ema.parameters(), state.g.parameters()):
        p_ema.lerp_(p, 1.0 - beta)
    for b_ema, b in zip(state.g_ema.buffers(), state.g.buffers()):
        b_ema.copy_(b)


def train_step(state: TrainingState, data: ImageFolderData, precision: Precision, augment,
               last: dict, rows: torch.Tensor | None = None) -> dict:
    """One step (1-based number state.step + 1): D, lazy R1, G, lazy PL, EMA.

    Returns the step's logged values as 0-d tensors on the device (read them in batches:
    each read is a host sync). rows: this rank's rows of the global batch (batch_rows).
    """
    options = state.options
    batch = options["batch_size"]
    step = state.step + 1
    real = data.batch(mine(torch.randint(len(data), (batch,)), rows), state.device)
    row = discriminator_step(state, real, precision, augment, rows)
    if options["r1_gamma"] > 0 and step % options["r1_every"] == 0:
        last["r1_penalty"] = r1_step(state, real, precision, augment)
    row["g_loss"] = generator_step(state, batch, precision, augment, rows)
    if options["pl_weight"] > 0 and step % options["pl_every"] == 0:
        last["pl_penalty"] = path_length_step(state, batch, precision)
    update_ema(state, batch)
    state.step = step
    # Regularisers run every few steps: the log carries their latest value forward.
    nan = torch.tensor(float("nan"), device=state.device)
    row.update(r1_penalty=last.get("r1_penalty", nan), pl_penalty=last.get("pl_penalty", nan))
    return row


VALUE_COLUMNS = ("d_loss", "g_loss", "real_score", "fake_score", "r1_penalty", "pl_penalty")


def read_rows(pending: list[dict], seconds: float, state: TrainingState) -> list[dict]:
    """The log rows of the steps in `pending`: their values averaged over ranks, read from the
    device in one go; each row is given the window's mean time per step."""
    values = torch.stack([torch.stack([row[k].float() for k in VALUE_COLUMNS]) for row in pending])
    values = (distributed.sum_over_ranks(values) / distributed.current().world).tolist()
    elapsed = state.log_rows[-1]["elapsed_s"] if state.log_rows else 0.0
    per_step = seconds / len(pending)
    rows = []
    for row, numbers in zip(pending, values):
        elapsed += per_step
        rows.append(dict(step=row["step"], images_seen=row["step"] * state.options["batch_size"],
                         seconds_per_step=per_step, elapsed_s=elapsed,
                         **dict(zip(VALUE_COLUMNS, numbers))))
    return rows


# ---- the entry point ----------------------------------------------------------------------

def _check_options(options: dict) -> None:
    if options["augment"] not in ("none", "diffaugment"):
        raise PartsegError(f"train_gan.augment: {options['augment']!r} is not one of none, diffaugment")
    for key in ("batch_size", "steps", "r1_every", "pl_every", "snapshot_every"):
        if int(options[key]) < 1:
            raise PartsegError(f"train_gan.{key}: must be at least 1, got {options[key]}")


def train_gan(*, images_dir=None, out_dir, snapshot_dir, size: int, data=None, style_dim: int = 128,
              n_mlp: int = 4, channel_base: int = 1024, channel_max: int = 128,
              batch_size: int = 16, steps: int = 1500, lr: float = 0.002, r1_gamma: float = 0.05,
              r1_every: int = 16, pl_weight: float = 0.0, pl_every: int = 4,
              mixing_prob: float = 0.9, ema_kimg: float = 2.5, augment: str = "none",
              snapshot_every: int = 250, seed: int = 0, device=None) -> dict:
    """Train (or resume training) a StyleGAN2 on the images in `images_dir` (a folder of
    PNG/JPEG files), or on `data` (an ImageFolderData, e.g. from_dataset); see the module doc.

    Returns a summary: dict(step, resumed_from, seconds, run_dir).
    """
    device = device if isinstance(device, torch.device) else resolve_device(device)
    data = data if data is not None else ImageFolderData(images_dir, size)
    options = dict(size=size, style_dim=style_dim, n_mlp=n_mlp, channel_base=channel_base,
                   channel_max=channel_max, batch_size=batch_size, steps=steps, lr=lr,
                   r1_gamma=r1_gamma, r1_every=r1_every, pl_weight=pl_weight, pl_every=pl_every,
                   mixing_prob=mixing_prob, ema_kimg=ema_kimg, augment=augment,
                   snapshot_every=snapshot_every, seed=seed, data_fingerprint=data.fingerprint)
    _check_options(options)
    ranks = distributed.current()
    run_dir = Path(snapshot_dir) / run_id(options)
    if ranks.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_yaml({k: v for k, v in options.items() if k not in RESUME_FREE_OPTIONS},
                  run_dir / "options.yaml")
    distributed.barrier()

    state = TrainingState({**options, "device": str(device)}, device)
    rows = batch_rows(batch_size, state.d._stddev_group(batch_size), ranks)
    resumed_from = state.step if resume(state, run_dir, steps) else None
    if resumed_from is not None and ranks.is_main:
        print(f"train_gan: resuming from snapshot step {resumed_from} in {run_dir}", flush=True)
    state.options = {**options, "device": str(device)}
    grid_z = seeded_z(seed, range(grid_size(size) ** 2), style_dim)
    precision, augment = Precision(device), augment_fn(options)
    last_reg: dict = {}
    if state.log_rows:  # carry the regularisers' last values across a resume
        last_reg = {k: torch.tensor(float(state.log_rows[-1][k]), device=device)
                    for k in ("r1_penalty", "pl_penalty")}
    started = time.perf_counter()

    bar = progress(total=steps, initial=state.step, desc="train_gan", unit="step",
                   disable=not ranks.is_main)
    pending, window_start = [], time.perf_counter()
    while state.step < steps:
        row = train_step(state, data, precision, augment, last_reg, rows)
        pending.append({"step": state.step, **row})
        bar.update(1)
        snapshot_due = state.step % snapshot_every == 0 or state.step == steps
        if snapshot_due or len(pending) == LOG_FLUSH:
            state.log_rows.extend(read_rows(pending, time.perf_counter() - window_start, state))
            pending, window_start = [], time.perf_counter()
            last = state.log_rows[-1]
            bar.set_postfix(d=f"{last['d_loss']:.3f}", g=f"{last['g_loss']:.3f}", refresh=False)
        if snapshot_due:
            if ranks.is_main:
                save_snapshot(state, run_dir, grid_z)
            distributed.barrier()
    bar.close()
    if not ranks.is_main:
        return dict(step=state.step, resumed_from=resumed_from, run_dir=str(run_dir),
                    seconds=time.perf_counter() - started)
    if not snapshot_steps(run_dir) or snapshot_steps(run_dir)[-1] < state.step:
        save_snapshot(state, run_dir, grid_z)  # e.g. resumed exactly at `steps`
    write_outputs(state, Path(out_dir), run_dir, grid_z)
    return dict(step=state.step, resumed_from=resumed_from, run_dir=str(run_dir),
                seconds=time.perf_counter() - started)


def write_outputs(state: TrainingState, out_dir: Path, run_dir: Path, grid_z: torch.Tensor) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    options = {k: v for k, v in state.options.items() if k != "device"}
    save_checkpoint(out_dir / "generator.pt", g_ema=state.g_ema, d=state.d, g=state.g,
                    extra={"step": state.step, "options": options})
    write_log(state.log_rows, out_dir / "training_log.tsv")
    save_png(render_grid(state.g_ema, grid_z), out_dir / "samples.png")
    save_yaml({**options, "device": state.options["device"], "images_seen":
               state.step * options["batch_size"], "run_dir": str(run_dir)},
              out_dir / "training_options.yaml")
    snapshots = out_dir / "snapshots"
    snapshots.mkdir(exist_ok=True)
    for old in snapshots.glob("grid-*.png"):
        old.unlink()
    for grid in sorted(run_dir.glob("grid-*.png")):
        if int(grid.stem.split("-")[1]) <= state.step:
            with atomic_path(snapshots / grid.name) as tmp:
                shutil.copyfile(grid, tmp)
