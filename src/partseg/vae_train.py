"""Training the GeneratorVAE (partseg.vae) on the demo images, resumable, under a wall-clock budget.

    python -m partseg.vae_train --dataset data/dataset --gan results/train_gan/generator.pt \
        --snapshots checkpoints/demo_vae --steps 72800 --max-minutes 100 --threads 1 \
        --ship-to data/pretrained/demo_vae

Every `snapshot_every` steps, every `snapshot_minutes` of wall time and when it stops (steps
reached or the --max-minutes budget spent), a full snapshot (model, Adam state, CPU RNG state,
step, log rows, options) is written atomically to `<snapshots>/snapshot-<step>.pt` with a
reconstruction grid and training_log.tsv beside it; the newest two are kept. Rerunning the same
command continues from the newest snapshot at or below --steps with the same optimiser state
and RNG, so a run stopped by its budget is finished by rerunning it (raise --max-minutes or
drop it). A snapshot made with other defining options (model, loss, lr, batch, seed) is
refused with a message rather than mixed in.

`ship()` turns the newest snapshot into data/pretrained/demo_vae/ (vae.pt, record.yaml,
samples.png, training_log.tsv and, when small, snapshot.pt): see `--ship-to` / `--ship-only`.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from partseg.errors import PartsegError
from partseg.gan.ship import machine
from partseg.gan.train import snapshot_steps, write_log  # the GAN's run folder format
from partseg.io import atomic_path, file_sha256, read_image, save_png, save_torch
from partseg.progress import progress
from partseg.vae import GENERATOR_KEYS, GeneratorVAE
from partseg.visualize import enlarge

# Options that may change between a run and its resume (they do not change the weights).
RESUME_FREE = ("steps", "snapshot_every", "snapshot_minutes")
KEEP_SNAPSHOTS = 2
LOG_EVERY = 50
LOG_COLUMNS = ("step", "images_seen", "seconds_per_step", "loss", "nll", "kl", "psnr",
               "elapsed_s")
GRID_IMAGES = 8             # training images shown with their reconstructions
SHIP_SNAPSHOT_LIMIT = 20 << 20  # ship the resumable snapshot only below this size
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
        self.vae = GeneratorVAE(options, sigma=options["sigma"], kl_weight=options["kl_weight"])
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

def snapshot_path(folder: Path, step: int) -> Path:
    return folder / f"snapshot-{step:06d}.pt"


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[N, 3, H, W] in [-1, 1] -> uint8 [N, H, W, 3]."""
    scaled = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return scaled.permute(0, 2, 3, 1).cpu().numpy()


def reconstruction_grid(vae: GeneratorVAE, images: torch.Tensor) -> np.ndarray:
    """Two rows: the images, then their reconstructions (decoded posterior means)."""
    was_training = vae.training
    vae.eval()
    recon = vae.reconstruct(images)
    vae.train(was_training)
    rows = [np.concatenate(list(to_uint8(batch)), axis=1) for batch in (images, recon)]
    return np.concatenate(rows, axis=0)


def save_snapshot(state: VAETraining, folder: Path, grid_images: torch.Tensor) -> None:
    """Grid and log first, the snapshot last: an existing snapshot is complete."""
    save_png(reconstruction_grid(state.vae, grid_images), folder / f"grid-{state.step:06d}.png")
    write_log(state.log_rows, folder / "training_log.tsv", LOG_COLUMNS)
    save_torch(state.state_dict(), snapshot_path(folder, state.step))
    for old in snapshot_steps(folder)[:-KEEP_SNAPSHOTS]:
        snapshot_path(folder, old).unlink(missing_ok=True)


def defining(options: dict) -> dict:
    return {k: v for k, v in options.items() if k not in RESUME_FREE}


def resume(state: VAETraining, folder: Path) -> bool:
    """Load the newest snapshot at or below the target steps; False when there is none."""
    candidates = [s for s in snapshot_steps(folder) if s <= state.options["steps"]]
    if not candidates:
        return False
    path = snapshot_path(folder, candidates[-1])
    try:
        snapshot = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise PartsegError(f"{path}: unreadable VAE snapshot ({error}); delete it to resume "
                           "from an older one") from None
    if defining(snapshot["options"]) != defining(state.options):
        changed = sorted(k for k in defining(state.options)
                         if snapshot["options"].get(k) != state.options[k])
        raise PartsegError(f"{folder}: its snapshots were trained with other options "
                           f"({', '.join(changed)}); use another snapshot folder")
    state.load_state_dict(snapshot)
    return True


# ---- training -----------------------------------------------------------------------------

def train_step(state: VAETraining, images: torch.Tensor) -> dict:
    """One Adam step on a batch drawn (with replacement) from the uint8 images [N, 3, H, W]."""
    index = torch.randint(images.shape[0], (state.options["batch_size"],))
    batch = images[index].float() / 127.5 - 1.0
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


def train_vae(images: np.ndarray, snapshot_dir: str | Path, options: dict,
              max_minutes: float | None = None) -> VAETraining:
    """Train (or continue) until options["steps"] or max_minutes of wall time; the state ends
    in a snapshot either way. images: uint8 [N, H, W, 3] at the decoder's size."""
    if images.ndim != 4 or images.shape[1:3] != (options["size"], options["size"]):
        raise PartsegError(f"train_vae: images are {list(images.shape)}, the decoder makes "
                           f"{options['size']} px images")
    for key in ("batch_size", "steps", "snapshot_every"):
        if int(options[key]) < 1:
            raise PartsegError(f"train_vae.{key}: must be at least 1, got {options[key]}")
    folder = Path(snapshot_dir)
    folder.mkdir(parents=True, exist_ok=True)
    data = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    grid_images = data[:GRID_IMAGES].float() / 127.5 - 1.0
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
            last_snapshot = time.monotonic()
        if out_of_time:
            break
    bar.close()
    if state.step not in snapshot_steps(folder):
        save_snapshot(state, folder, grid_images)
    return state


# ---- loading and shipping -----------------------------------------------------------------

def load_vae(path: str | Path) -> tuple[GeneratorVAE, dict]:
    """A shipped vae.pt (or a snapshot) -> (GeneratorVAE in eval mode, its info dict)."""
    from partseg.io import load_weights

    path = Path(path)
    if not path.is_file():
        raise PartsegError(f"{path}: VAE checkpoint not found")
    checkpoint = load_weights(path)  # weights only: a tampered file is refused, named
    try:
        options = checkpoint["options"]
        vae = GeneratorVAE(options, sigma=options["sigma"], kl_weight=options["kl_weight"])
        vae.load_state_dict(checkpoint["vae"])
    except (KeyError, TypeError, RuntimeError, EOFError) as error:
        raise PartsegError(f"{path}: not a partseg VAE checkpoint ({error})") from None
    info = {"step": int(checkpoint["step"]), "options": options}
    return vae.eval().requires_grad_(False), info


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


def step_flops(options: dict, gan_options: dict) -> dict:
    """FLOPs (forward + backward, counted by torch's FlopCounterMode) of one VAE training
    step and of one GAN training step (gan_options: the GAN's training options; its lazy R1
    step amortised over r1_every steps). Optimiser updates are not counted in either."""
    from partseg.gan import train as gan_train

    rng = torch.get_rng_state()
    try:
        vae_state = VAETraining(options)
        batch = torch.rand(options["batch_size"], 3, options["size"], options["size"]) * 2 - 1

        def vae_step():
            loss, _ = vae_state.vae.loss(batch)
            loss.backward()

        gan_state = gan_train.TrainingState(dict(gan_options), torch.device("cpu"))
        data, precision = _RandomImages(gan_options["size"]), gan_train.Precision(torch.device("cpu"))
        augment = gan_train.augment_fn(gan_options)

        def gan_step(number: int):
            def run():
                gan_state.step = number - 1
                gan_train.train_step(gan_state, data, precision, augment, {})
            return run

        plain = _counted_flops(gan_step(1))
        every = int(gan_options.get("r1_every", 16))
        with_r1 = _counted_flops(gan_step(every)) if gan_options.get("r1_gamma", 0) > 0 else plain
        return {"vae": _counted_flops(vae_step), "gan": plain + (with_r1 - plain) / every}
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


def ship(snapshot_dir: str | Path, out: str | Path, command: str, notes: dict | None = None,
         gan_record: str | Path = "data/pretrained/demo_gan/record.yaml") -> dict:
    """The newest snapshot -> out/{vae.pt, record.yaml, samples.png, training_log.tsv[, snapshot.pt]}."""
    snapshot_dir, out = Path(snapshot_dir), Path(out)
    steps = snapshot_steps(snapshot_dir)
    if not steps:
        raise PartsegError(f"{snapshot_dir}: no snapshot-<step>.pt to ship")
    step = steps[-1]
    source = snapshot_path(snapshot_dir, step)
    snapshot = torch.load(source, map_location="cpu", weights_only=True)
    out.mkdir(parents=True, exist_ok=True)
    save_torch({"vae": snapshot["vae"], "options": snapshot["options"], "step": step},
               out / "vae.pt")
    grid = read_image(snapshot_dir / f"grid-{step:06d}.png")
    save_png(enlarge(grid, 3), out / "samples.png")
    shutil.copyfile(snapshot_dir / "training_log.tsv", out / "training_log.tsv")
    resumable = source.stat().st_size < SHIP_SNAPSHOT_LIMIT
    if resumable:
        shutil.copyfile(source, out / "snapshot.pt")
    options = snapshot["options"]
    rows = snapshot["log_rows"]
    record = {
        "what": "partseg demo VAE (conv encoder + the demo GAN's StyleGAN2 generator as decoder)",
        "steps": step,
        "kimg": round(step * options["batch_size"] / 1000, 1),
        "target_steps": options["steps"],
        "wall_hours": round(float(rows[-1]["elapsed_s"]) / 3600, 2) if rows else None,
        "final_psnr_db": round(float(rows[-1]["psnr"]), 2) if rows else None,
        "parameters": sum(int(v.numel()) for v in snapshot["vae"].values()),
        "machine": machine(None),
        "options": options,
        "command": command,
        "resume": (f"mkdir -p {snapshot_dir} && cp {out}/snapshot.pt "
                   f"{snapshot_path(snapshot_dir, step)} and rerun the command (without "
                   "--max-minutes, or with more): training continues from step "
                   f"{step} with the same Adam state and RNG") if resumable else
                  f"rerun the command: it continues from {snapshot_dir} if that folder is kept",
        "sha256": file_sha256(out / "vae.pt"),
        "compute": compute_record(options, step, Path(gan_record)),
    }
    record.update(notes or {})
    (out / "record.yaml").write_text(yaml.safe_dump(record, sort_keys=False))
    return record


def main() -> None:
    from partseg.data.folder import load_split_arrays
    from partseg.gan import load_generator

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, default=Path("data/dataset"))
    parser.add_argument("--gan", type=Path, default=Path("results/train_gan/generator.pt"),
                        help="the GAN whose generator config the decoder copies")
    parser.add_argument("--snapshots", type=Path, default=Path("checkpoints/demo_vae"))
    parser.add_argument("--steps", type=int, default=DEFAULTS["steps"])
    parser.add_argument("--max-minutes", type=float, help="wall-clock budget of this run")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--ship-to", type=Path, help="ship the final snapshot here")
    parser.add_argument("--ship-only", action="store_true", help="ship, do not train")
    parser.add_argument("--note", action="append", default=[], metavar="KEY=VALUE",
                        help="extra record.yaml entries (VALUE read as YAML)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # KEY=VALUE with VALUE read as YAML, so that mappings and numbers keep their type.
    notes = {key: yaml.safe_load(value) for key, value in
             (item.split("=", 1) for item in args.note)}
    command = ("python -m partseg.vae_train --dataset {d} --gan {g} --snapshots {s} --steps {n} "
               "--threads 1").format(d=args.dataset, g=args.gan, s=args.snapshots, n=args.steps)
    if not args.ship_only:
        config = load_generator(args.gan).config
        images, _, _ = load_split_arrays(args.dataset, "train")
        options = training_options(config, steps=args.steps)
        state = train_vae(images, args.snapshots, options, max_minutes=args.max_minutes)
        print(f"train_vae: step {state.step}/{options['steps']}, "
              f"{state.elapsed / 3600:.2f} h in all")
    if args.ship_to is not None:
        record = ship(args.snapshots, args.ship_to, command, notes)
        print(yaml.safe_dump({k: record[k] for k in ("steps", "kimg", "wall_hours", "sha256")}))


if __name__ == "__main__":
    main()
