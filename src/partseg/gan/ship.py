"""Ship a generator this project trained: a small checkpoint and the record beside it.

    python -m partseg.gan.ship --run-dir /path/to/checkpoints/train_gan/<run id> \
        --out data/pretrained/demo_gan --command "the command that trained it" \
        [--params its_params.yaml] [--probe probe.tsv] [--seconds N] [--resumable]

From the newest full snapshot of a `train_gan` run folder it writes, into --out:
  generator.pt   the EMA generator and the discriminator (a partseg checkpoint; a few MB).
                 The discriminator is kept because inversion's perceptual term and the
                 manual shot suggestion read its features.
  record.yaml    what it is: the training options, kimg, steps, wall time, machine, the data
                 it was trained on (train_gan refuses it for other data), the retrain command,
                 the file's sha256.
  samples.png    the run's sample grid at that step, enlarged for reading.
  training_log.tsv, probe.tsv (if given)   how training went.
and, with --resumable, snapshot.pt: the full snapshot (optimisers, RNG), so that training can
continue in a later session from exactly there (see record.yaml's `resume`).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image

from partseg.gan.checkpoint import save_checkpoint
from partseg.gan.discriminator import Discriminator
from partseg.gan.generator import Generator
from partseg.plumbing.snapshots import snapshot_path, snapshot_steps
from partseg.plumbing.io import file_sha256, save_png
from partseg.visualize import enlarge

ARCH_KEYS = ("size", "style_dim", "n_mlp", "channel_base", "channel_max")


def models_from_snapshot(snapshot: dict) -> tuple[Generator, Discriminator]:
    options = snapshot["options"]
    generator = Generator(**{k: options[k] for k in ARCH_KEYS})
    generator.load_state_dict(snapshot["g_ema"])
    discriminator = Discriminator(options["size"], options["channel_base"], options["channel_max"])
    discriminator.load_state_dict(snapshot["d"])
    return generator.eval(), discriminator.eval()


def machine(note: str | None) -> str:
    model = platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]
        model = names[0] if names else model
    text = f"{model}, {os.cpu_count()} cores, {platform.system()}, torch {torch.__version__}"
    return f"{text}; {note}" if note else text


def enlarged_grid(path: Path, factor: int = 3) -> np.ndarray:
    return enlarge(np.asarray(Image.open(path).convert("RGB")), factor)


def resume_instructions(out: Path, run_id: str, step: int) -> str:
    """How to continue training from the shipped snapshot (the trainer finds it by run id)."""
    return (f"mkdir -p checkpoints/demo_gan/{run_id} && cp {out}/snapshot.pt "
            f"checkpoints/demo_gan/{run_id}/snapshot-{step:06d}.pt, raise train_gan.steps in a "
            f"copy of {out}/train_params.yaml, and run the command with --params pointing at "
            f"that copy: training continues from step {step} with the same optimiser state and "
            "RNG (the run id hashes the options and the dataset's pixel fingerprint, so the "
            "same params on the same demo data find it)")


def ship(run_dir: Path, out: Path, command: str, trained_on: dict, seconds: float | None,
         probe: Path | None, resumable: bool, params: Path | None = None,
         machine_note: str | None = None) -> dict:
    steps = snapshot_steps(run_dir)
    if not steps:
        raise SystemExit(f"{run_dir}: no complete snapshot-<step>.pt to ship")
    step = steps[-1]
    snapshot = torch.load(snapshot_path(run_dir, step), map_location="cpu", weights_only=True)
    generator, discriminator = models_from_snapshot(snapshot)
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out / "generator.pt", g_ema=generator, d=discriminator,
                    extra={"step": step, "kimg": step * snapshot["options"]["batch_size"] / 1000})
    save_png(enlarged_grid(run_dir / f"grid-{step:06d}.png"), out / "samples.png")
    shutil.copyfile(run_dir / "training_log.tsv", out / "training_log.tsv")
    if probe is not None:
        shutil.copyfile(probe, out / "probe.tsv")
    if resumable:
        shutil.copyfile(snapshot_path(run_dir, step), out / "snapshot.pt")
    if params is not None:  # as trained, stopping at the shipped step: the retrain command
        settings = yaml.safe_load(params.read_text())
        settings["train_gan"].update(checkpoint=None, steps=step)
        (out / "train_params.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    rows = snapshot["log_rows"]
    elapsed = seconds if seconds is not None else (rows[-1].get("elapsed_s") if rows else None)
    options = dict(snapshot["options"])
    record = {
        "what": "partseg demo StyleGAN2 (EMA generator + discriminator)",
        "trained_on": trained_on,
        "steps": step,
        "kimg": round(step * options["batch_size"] / 1000, 1),
        "wall_hours": None if elapsed is None else round(float(elapsed) / 3600, 2),
        "machine": machine(machine_note),
        "options": options,
        "command": command,
        "run_id": run_dir.name,
        "resume": resume_instructions(out, run_dir.name, step) if resumable else None,
        "sha256": file_sha256(out / "generator.pt"),
    }
    (out / "record.yaml").write_text(yaml.safe_dump(record, sort_keys=False))
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--command", required=True, help="the command that trained it")
    parser.add_argument("--source", default="synthetic")
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--dataset-seed", type=int, default=0)
    parser.add_argument("--seconds", type=float, help="training wall time (default: from its log)")
    parser.add_argument("--probe", type=Path, help="bench/gan_probe.py's TSV, kept beside it")
    parser.add_argument("--resumable", action="store_true", help="also keep the full snapshot")
    parser.add_argument("--params", type=Path, help="the params file it was trained with")
    parser.add_argument("--machine-note", help="e.g. the conv GFLOP/s of bench/bench_gan.py")
    args = parser.parse_args()
    trained_on = {"source": args.source, "resolution": args.resolution, "seed": args.dataset_seed}
    record = ship(args.run_dir, args.out, args.command, trained_on, args.seconds, args.probe,
                  args.resumable, args.params, args.machine_note)
    print(yaml.safe_dump({k: record[k] for k in ("steps", "kimg", "wall_hours", "sha256")}))


if __name__ == "__main__":
    main()
