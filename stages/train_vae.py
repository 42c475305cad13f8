"""Stage train_vae (experiments): the VAE the representations experiment compares with the GAN.

Its decoder is the demo GAN's generator architecture (partseg.vae): with `train_vae.checkpoint`
(the shipped data/pretrained/demo_vae/vae.pt by default) that VAE is checked against the GAN's
config and the data it was trained on and adopted; with `checkpoint: null` one is trained here
with the section's keys (resuming from --snapshots; about 5 h on one CPU thread for the
default 72800 steps, which match the demo GAN's training FLOPs: src/partseg/vae_train.py).

Writes experiments/results/train_vae/: vae.pt, record.yaml (how it was trained),
reconstructions.png (test images above, their reconstructions from the encoder's mean below)
and metrics.json (the reconstruction PSNR of the first 50 test images, the steps trained).
"""

from pathlib import Path

from partseg.errors import PartsegError
from partseg.io import atomic_dir, save_json, save_png, save_yaml
from partseg.stage import log, run_stage, snapshot_folder, stage_parser

RECORD_FILE = "record.yaml"
PSNR_IMAGES = 50
SHOWN = 8


def checked_record(path: Path, params) -> dict | None:
    """The shipped VAE's record, refused when it was trained on other data or is another file."""
    import yaml

    from partseg.io import file_sha256

    record_path = path.parent / RECORD_FILE
    if not record_path.is_file():
        return None
    record = yaml.safe_load(record_path.read_text())
    trained_on = record.get("trained_on") or {}
    wanted = {"source": params.data.source, "resolution": params.data.resolution,
              "seed": params.dataset.seed}
    differs = [f"{k} {trained_on[k]} (yours: {v})" for k, v in wanted.items()
               if k in trained_on and trained_on[k] != v]
    if differs:
        raise PartsegError(f"params key train_vae.checkpoint: {path} was trained on other data: "
                           f"{', '.join(differs)} per {record_path}; set train_vae.checkpoint: "
                           "null to train one on your data")
    if record.get("sha256") and record["sha256"] != file_sha256(path):
        raise PartsegError(f"params key train_vae.checkpoint: {path} is not the file "
                           f"{record_path} describes (sha256 differs)")
    return record


def check_decoder(vae_options: dict, gan_config: dict, source: str) -> None:
    from partseg.vae import GENERATOR_KEYS

    differs = [f"{k} {vae_options[k]} (GAN: {gan_config[k]})" for k in GENERATOR_KEYS
               if vae_options[k] != gan_config[k]]
    if differs:
        raise PartsegError(f"params key train_vae.checkpoint: {source}'s decoder is not the GAN's "
                           f"architecture ({', '.join(differs)}); set train_vae.checkpoint: null "
                           "to train a VAE for this GAN")


def adopt(path: Path, gan_config: dict, params, out: Path):
    from partseg.vae_train import load_vae

    if not path.is_file():
        raise PartsegError(f"params key train_vae.checkpoint: {path} does not exist")
    record = checked_record(path, params)
    vae, info = load_vae(path)
    check_decoder(info["options"], gan_config, str(path))
    import shutil

    shutil.copyfile(path, out / "vae.pt")
    save_yaml({"adopted": str(path), "step": info["step"], "options": info["options"],
               "record": record}, out / RECORD_FILE)
    log(f"[train_vae] adopted {path}: step {info['step']} of {info['options']['steps']}")
    return vae, info


def train(args, gan_config: dict, params, out: Path):
    from partseg.data.folder import load_split_arrays
    from partseg.params import as_dict
    from partseg.vae_train import load_vae, ship, train_vae, training_options

    section = {k: v for k, v in as_dict(params.train_vae).items() if k != "checkpoint"}
    options = training_options(gan_config, **section)
    images, _, _ = load_split_arrays(args.dataset, "train")
    snapshots = snapshot_folder(args.snapshots, "train_vae", [args.dataset])
    train_vae(images, snapshots, options)
    trained_on = {"source": params.data.source, "resolution": params.data.resolution,
                  "seed": params.dataset.seed}
    ship(snapshots, out, "python -m stages.train_vae (train_vae.checkpoint: null)",
         {"trained_on": trained_on})
    (out / "samples.png").unlink(missing_ok=True)  # reconstructions.png below shows test images
    return load_vae(out / "vae.pt")


def build(args, params):
    import torch

    from partseg.data.folder import load_split_arrays
    from partseg.gan import load_generator
    from partseg.vae import psnr_of

    gan_config = load_generator(Path(args.generator) / "generator.pt").config
    with atomic_dir(args.out) as tmp:
        if params.train_vae.checkpoint:
            vae, info = adopt(Path(params.train_vae.checkpoint), gan_config, params, tmp)
        else:
            vae, info = train(args, gan_config, params, tmp)
        images, _, _ = load_split_arrays(args.dataset, "test", limit=PSNR_IMAGES)
        targets = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        recon = vae.reconstruct(targets)
        psnr = psnr_of(recon, targets)
        from partseg.vae_train import to_uint8
        from partseg.visualize import image_grid

        save_png(image_grid([list(images[:SHOWN]), list(to_uint8(recon[:SHOWN]))], upscale=3),
                 tmp / "reconstructions.png")
        save_json({"step": info["step"], "target_steps": info["options"]["steps"],
                   "kimg": round(info["step"] * info["options"]["batch_size"] / 1000, 1),
                   "test_psnr_encoder": round(psnr, 3), "test_images": int(len(images))},
                  tmp / "metrics.json")
        log(f"[train_vae] step {info['step']}: test reconstruction PSNR {psnr:.2f} dB "
            f"(encoder mean, {len(images)} images)")


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--dataset", default="data/dataset")
    parser.add_argument("--generator", default="results/train_gan")
    parser.add_argument("--snapshots", default="checkpoints/train_vae")
    parser.add_argument("--out", default="experiments/results/train_vae")
    run_stage("train_vae", parser, build)
