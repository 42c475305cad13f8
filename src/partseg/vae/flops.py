"""The VAE's training compute beside the GAN's: FLOPs of one training step of each, counted by
torch's FlopCounterMode (forward + backward, optimiser updates not counted in either), and the
record.yaml entry that says what fraction of the shipped GAN's training compute the VAE got.
The default 72800 VAE steps were chosen from these counts to match the demo GAN's 35000.
"""

from __future__ import annotations

from pathlib import Path

import torch
import yaml

from partseg.vae.train import VAETraining


class _Totals:
    """Stands in for FlopCounterMode's module tracker, which fails on modules run under
    no_grad with frozen parameters (the GAN step's fake images): totals only."""
    parents = {"Global"}

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return False


def _counted_flops(step) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    counter.mod_tracker = _Totals()
    with counter:
        step()
    return int(counter.get_total_flops())


class _RandomImages:
    """Real-image batches for counting a GAN step's FLOPs (values do not matter)."""

    def __init__(self, size: int):
        self.size = size

    def __len__(self) -> int:
        return 64

    def batch(self, indices: torch.Tensor, device) -> torch.Tensor:
        return torch.rand(len(indices), 3, self.size, self.size, device=device) * 2 - 1


def _vae_step_flops(options: dict) -> int:
    state = VAETraining(options)
    batch = torch.rand(options["batch_size"], 3, options["size"], options["size"]) * 2 - 1

    def step():
        loss, _ = state.vae.loss(batch)
        loss.backward()

    return _counted_flops(step)


def _gan_step_flops(gan_options: dict) -> float:
    """A GAN step's FLOPs with its lazy R1 step amortised over r1_every steps. The state is
    seeded by its options, so style mixing (which changes the count) draws the same each time."""
    from partseg.gan import train as gan_train

    state = gan_train.TrainingState(dict(gan_options), torch.device("cpu"))
    data, precision = _RandomImages(gan_options["size"]), gan_train.Precision(torch.device("cpu"))
    augment = gan_train.augment_fn(gan_options)

    def step(number: int):
        def run():
            state.step = number - 1  # the step number decides whether R1 runs
            gan_train.train_step(state, data, precision, augment, {})
        return run

    plain = _counted_flops(step(1))
    every = int(gan_options.get("r1_every", 16))
    with_r1 = _counted_flops(step(every)) if gan_options.get("r1_gamma", 0) > 0 else plain
    return plain + (with_r1 - plain) / every


def step_flops(options: dict, gan_options: dict) -> dict:
    """FLOPs of one VAE training step (options: its training options) and of one GAN
    training step (gan_options: the GAN's). The caller's RNG state is left as it was."""
    rng = torch.get_rng_state()
    try:
        return {"vae": _vae_step_flops(options), "gan": _gan_step_flops(gan_options)}
    finally:
        torch.set_rng_state(rng)


def compute_record(options: dict, step: int, gan_record: Path) -> dict:
    """How the VAE's training FLOPs compare with the shipped GAN's."""
    if not gan_record.is_file():
        return {}
    gan = yaml.safe_load(gan_record.read_text())
    flops = step_flops(options, gan["options"])
    gan_total = flops["gan"] * gan["steps"]
    return {"gflop_per_step": round(flops["vae"] / 1e9, 3),
            "gan_gflop_per_step": round(flops["gan"] / 1e9, 3),
            "gan_steps": gan["steps"],
            "steps_for_gan_compute": int(round(gan_total / flops["vae"])),
            "gan_compute_fraction": round(step * flops["vae"] / gan_total, 4)}
