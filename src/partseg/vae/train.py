"""Training the GeneratorVAE on the demo images, resumable, under a wall-clock budget.

Every `snapshot_every` steps, every `snapshot_minutes` of wall time and when it stops (steps
reached or the max_minutes budget spent), a full snapshot (model, Adam state, CPU RNG state,
step, log rows, options) is written atomically to `<snapshots>/snapshot-<step>.pt` with a
reconstruction grid and training_log.tsv beside it; the newest two are kept. Training again
into the same folder continues from the newest snapshot at or below the target steps with the
same optimiser state and RNG, so a run stopped by its budget is finished by rerunning it. A
snapshot made with other defining options (model, loss, lr, batch, seed) is refused with a
message rather than mixed in. The run folder's format is the GAN trainer's (partseg.plumbing.snapshots'
numbered layout).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from partseg.plumbing.errors import PartsegError
from partseg.gan.train import write_log
from partseg.imaging import uint8_to_signed
from partseg.plumbing.io import save_png
from partseg.plumbing.progress import progress
from partseg.plumbing.snapshots import (fingerprint, load_snapshot, newest_snapshot, save_numbered,
                               snapshot_steps)
from partseg.vae.evaluate import reconstruction_grid
from partseg.vae.model import GENERATOR_KEYS, GeneratorVAE

# Options that may change between a run and its resume (they do not change the weights).
RESUME_FREE = ("steps", "snapshot_every", "snapshot_minutes")
KEEP_SNAPSHOTS = 2
LOG_EVERY = 50
LOG_COLUMNS = ("step", "images_seen", "seconds_per_step", "loss", "nll", "kl", "psnr",
               "elapsed_s")
GRID_IMAGES = 8             # training images shown with their reconstructions
DEFAULTS = dict(sigma=0.1, kl_weight=1.0, batch_size=16, steps=72800, lr=0.002, seed=0,
                snapshot_every=2000, snapshot_minutes=5.0)


def training_options(config: dict, **overrides) -> dict:
    """Generator architecture (from a Generator config) + the training defaults, overridden."""
    options = {k: config[k] for k in GENERATOR_KEYS}
    options.update(DEFAULTS)
    unknown = set(overrides) - set(options)
    if unknown:
        raise PartsegError(f"train_vae: unknown option(s) {sorted(unknown)}")
    options.update({k: v for k, v in overrides.items() if v is not None})
    return options


class VAETraining:
    """Everything a snapshot holds."""

    def __init__(self, options: dict):
        self.options = dict(options)
        torch.manual_seed(options["seed"])
        self.vae = GeneratorVAE.from_options(options)
        # beta1 0.9 (the GAN uses 0): a reconstruction loss has no adversary to chase, and
        # momentum steadies the encoder's noisy reparameterised gradients.
        self.optimizer = torch.optim.Adam(self.vae.parameters(), lr=options["lr"],
                                          betas=(0.9, 0.99), eps=1e-8)
        self.step = 0
        self.log_rows: list[dict] = []

    def state_dict(self) -> dict:
        return {"vae": self.vae.state_dict(), "optimizer": self.optimizer.state_dict(),
                "step": self.step, "log_rows": self.log_rows, "options": self.options,
                "cpu_rng": torch.get_rng_state()}

    def load_state_dict(self, state: dict) -> None:
        self.vae.load_state_dict(state["vae"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self.log_rows = list(state["log_rows"])
        torch.set_rng_state(state["cpu_rng"])

    @property
    def elapsed(self) -> float:
        return float(self.log_rows[-1]["elapsed_s"]) if self.log_rows else 0.0


# ---- snapshots ----------------------------------------------------------------------------

def save_snapshot(state: VAETraining, folder: Path, grid_images: torch.Tensor) -> None:
    """Grid and log first, the snapshot last: an existing snapshot is complete."""
    save_png(reconstruction_grid(state.vae, grid_images), folder / f"grid-{state.step:06d}.png")
    write_log(state.log_rows, folder / "training_log.tsv", LOG_COLUMNS)
    save_numbered(state.state_dict(), folder, state.step, KEEP_SNAPSHOTS)


def resume(state: VAETraining, folder: Path) -> bool:
    """Load the newest snapshot at or below the target steps; False when there is none."""
    snapshot = load_snapshot(newest_snapshot(folder, state.options["steps"]),
                             fingerprint(state.options, RESUME_FREE), key="options",
                             free=RESUME_FREE, on_problem="refuse", what="VAE snapshot")
    if snapshot is None:
        return False
    state.load_state_dict(snapshot)
    return True


# ---- training -----------------------------------------------------------------------------

def train_step(state: VAETraining, images: torch.Tensor) -> dict:
    """One Adam step on a batch drawn (with replacement) from the uint8 images [N, 3, H, W]."""
    index = torch.randint(images.shape[0], (state.options["batch_size"],))
    batch = uint8_to_signed(images[index])
    loss, parts = state.vae.loss(batch)
    state.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    state.optimizer.step()
    state.step += 1
    return parts


def log_row(state: VAETraining, parts: list[dict], seconds: float) -> dict:
    means = {k: float(torch.stack([p[k] for p in parts]).mean()) for k in parts[0]}
    return dict(step=state.step, images_seen=state.step * state.options["batch_size"],
                seconds_per_step=seconds / len(parts), elapsed_s=state.elapsed + seconds, **means)


def check_inputs(images: np.ndarray, options: dict) -> None:
    if images.ndim != 4 or images.shape[1:3] != (options["size"], options["size"]):
        raise PartsegError(f"train_vae: images are {list(images.shape)}, the decoder makes "
                           f"{options['size']} px images")
    for key in ("batch_size", "steps", "snapshot_every"):
        if int(options[key]) < 1:
            raise PartsegError(f"train_vae.{key}: must be at least 1, got {options[key]}")


def train_vae(images: np.ndarray, snapshot_dir: str | Path, options: dict,
              max_minutes: float | None = None) -> VAETraining:
    """Train (or continue) until options["steps"] or max_minutes of wall time; the state ends
    in a snapshot either way. images: uint8 [N, H, W, 3] at the decoder's size."""
    check_inputs(images, options)
    folder = Path(snapshot_dir)
    folder.mkdir(parents=True, exist_ok=True)
    data = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    grid_images = uint8_to_signed(data[:GRID_IMAGES])
    state = VAETraining(options)
    resume(state, folder)
    state.vae.train()
    start = last_snapshot = time.monotonic()
    budget = None if max_minutes is None else 60.0 * max_minutes
    pending: list[dict] = []
    window = time.monotonic()
    bar = progress(total=options["steps"], initial=state.step, desc="train_vae", unit="step")
    while state.step < options["steps"]:
        pending.append(train_step(state, data))
        bar.update(1)
        now = time.monotonic()
        if len(pending) == LOG_EVERY or state.step == options["steps"]:
            state.log_rows.append(log_row(state, pending, now - window))
            bar.set_postfix(loss=f"{state.log_rows[-1]['loss']:.4f}",
                            psnr=f"{state.log_rows[-1]['psnr']:.2f}")
            pending, window = [], now
        out_of_time = budget is not None and now - start >= budget
        if (state.step % options["snapshot_every"] == 0
                or now - last_snapshot >= 60.0 * options["snapshot_minutes"] or out_of_time):
            if pending:  # the log must cover every step the snapshot holds
                state.log_rows.append(log_row(state, pending, now - window))
                pending, window = [], now
            save_snapshot(state, folder, grid_images)
            last_snapshot = time.monotonic()  # the snapshot's own time does not count
        if out_of_time:
            break
    bar.close()
    if state.step not in snapshot_steps(folder):
        save_snapshot(state, folder, grid_images)
    return state
