"""Ship a trained VAE: the newest snapshot of a training folder -> a folder others adopt
(data/pretrained/demo_vae/ for the demo; stage train_vae adopts it):

  vae.pt            the weights and options (partseg.vae.checkpoint), no optimiser state;
  record.yaml       what it is: steps, wall time, final PSNR, the options, the retrain command,
                    the file's sha256, its compute beside the GAN's (partseg.vae.flops), and
                    any notes (e.g. `trained_on`, which train_vae checks against its data);
  samples.png       the snapshot's reconstruction grid, enlarged;
  training_log.tsv  how training went;
  snapshot.pt       the full snapshot when it is small, so that training can be resumed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
import yaml

from partseg.plumbing.errors import PartsegError
from partseg.gan.ship import machine
from partseg.plumbing.snapshots import snapshot_path, snapshot_steps
from partseg.plumbing.io import file_sha256, read_image, save_png
from partseg.vae.checkpoint import RECORD_FILE, save_vae
from partseg.vae.flops import compute_record
from partseg.visualize import enlarge

SHIP_SNAPSHOT_LIMIT = 20 << 20  # ship the resumable snapshot only below this size
GAN_RECORD = "data/pretrained/demo_gan/record.yaml"


def resume_instructions(snapshot_dir: Path, out: Path, step: int, resumable: bool) -> str:
    if not resumable:
        return f"rerun the command: it continues from {snapshot_dir} if that folder is kept"
    return (f"mkdir -p {snapshot_dir} && cp {out}/snapshot.pt "
            f"{snapshot_path(snapshot_dir, step)} and rerun the command (without "
            "--max-minutes, or with more): training continues from step "
            f"{step} with the same Adam state and RNG")


def ship_vae(snapshot_dir: str | Path, out: str | Path, command: str, notes: dict | None = None,
             gan_record: str | Path = GAN_RECORD) -> dict:
    """The newest snapshot -> out/ (see the module docstring); returns the record."""
    snapshot_dir, out = Path(snapshot_dir), Path(out)
    steps = snapshot_steps(snapshot_dir)
    if not steps:
        raise PartsegError(f"{snapshot_dir}: no snapshot-<step>.pt to ship")
    step = steps[-1]
    source = snapshot_path(snapshot_dir, step)
    snapshot = torch.load(source, map_location="cpu", weights_only=True)
    out.mkdir(parents=True, exist_ok=True)
    save_vae(snapshot["vae"], snapshot["options"], step, out / "vae.pt")
    save_png(enlarge(read_image(snapshot_dir / f"grid-{step:06d}.png"), 3), out / "samples.png")
    shutil.copyfile(snapshot_dir / "training_log.tsv", out / "training_log.tsv")
    resumable = source.stat().st_size < SHIP_SNAPSHOT_LIMIT
    if resumable:
        shutil.copyfile(source, out / "snapshot.pt")
    options, rows = snapshot["options"], snapshot["log_rows"]
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
        "resume": resume_instructions(snapshot_dir, out, step, resumable),
        "sha256": file_sha256(out / "vae.pt"),
        "compute": compute_record(options, step, Path(gan_record)),
    }
    record.update(notes or {})
    (out / RECORD_FILE).write_text(yaml.safe_dump(record, sort_keys=False))
    return record
