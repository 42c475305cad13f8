"""The VAE's file, apart from its training: vae.pt = {"vae": weights, "options": the training
options, "step": steps trained}, and the record.yaml shipped beside it (partseg.vae.ship).

Loading refuses what is not a VAE checkpoint with the path named; adopting a shipped VAE also
refuses one trained on other data, one whose file is not the one its record describes, and one
whose decoder is not the GAN's architecture (the representations experiment reads both with
the same layers).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from partseg.plumbing.errors import PartsegError
from partseg.plumbing.io import file_sha256, load_weights, save_torch, save_yaml
from partseg.vae.model import GENERATOR_KEYS, GeneratorVAE

RECORD_FILE = "record.yaml"


def save_vae(weights: dict, options: dict, step: int, path: str | Path) -> None:
    """The shipped form: the weights and their options, no optimiser state."""
    save_torch({"vae": weights, "options": options, "step": step}, path)


def load_vae(path: str | Path) -> tuple[GeneratorVAE, dict]:
    """A shipped vae.pt (or a snapshot) -> (GeneratorVAE in eval mode, its info dict)."""
    path = Path(path)
    if not path.is_file():
        raise PartsegError(f"{path}: VAE checkpoint not found")
    checkpoint = load_weights(path)  # weights only: a tampered file is refused, named
    try:
        options = checkpoint["options"]
        vae = GeneratorVAE.from_options(options)
        vae.load_state_dict(checkpoint["vae"])
    except (KeyError, TypeError, RuntimeError, EOFError) as error:
        raise PartsegError(f"{path}: not a partseg VAE checkpoint ({error})") from None
    info = {"step": int(checkpoint["step"]), "options": options}
    return vae.eval().requires_grad_(False), info


def checked_record(path: Path, trained_on: dict) -> dict | None:
    """The shipped VAE's record, refused when it was trained on other data (its `trained_on`
    differs from ours) or describes another file (sha256); None when there is no record."""
    record_path = path.parent / RECORD_FILE
    if not record_path.is_file():
        return None
    record = yaml.safe_load(record_path.read_text())
    recorded = record.get("trained_on") or {}
    differs = [f"{k} {recorded[k]} (yours: {v})" for k, v in trained_on.items()
               if k in recorded and recorded[k] != v]
    if differs:
        raise PartsegError(f"params key train_vae.checkpoint: {path} was trained on other data: "
                           f"{', '.join(differs)} per {record_path}; set train_vae.checkpoint: "
                           "null to train one on your data")
    if record.get("sha256") and record["sha256"] != file_sha256(path):
        raise PartsegError(f"params key train_vae.checkpoint: {path} is not the file "
                           f"{record_path} describes (sha256 differs)")
    return record


def check_decoder(vae_options: dict, gan_config: dict, source: str) -> None:
    """The decoder must be the GAN's architecture, or their features are not comparable."""
    differs = [f"{k} {vae_options[k]} (GAN: {gan_config[k]})" for k in GENERATOR_KEYS
               if vae_options[k] != gan_config[k]]
    if differs:
        raise PartsegError(f"params key train_vae.checkpoint: {source}'s decoder is not the GAN's "
                           f"architecture ({', '.join(differs)}); set train_vae.checkpoint: null "
                           "to train a VAE for this GAN")


def adopt_vae(path: Path, gan_config: dict, trained_on: dict, out: Path
              ) -> tuple[GeneratorVAE, dict]:
    """Check a shipped VAE (see the module docstring), then copy it to out/vae.pt with a
    record.yaml saying where it came from. Returns what load_vae returns."""
    if not path.is_file():
        raise PartsegError(f"params key train_vae.checkpoint: {path} does not exist")
    record = checked_record(path, trained_on)
    vae, info = load_vae(path)
    check_decoder(info["options"], gan_config, str(path))
    shutil.copyfile(path, out / "vae.pt")
    save_yaml({"adopted": str(path), "step": info["step"], "options": info["options"],
               "record": record}, out / RECORD_FILE)
    return vae, info
