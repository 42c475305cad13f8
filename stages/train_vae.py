"""Stage train_vae (experiments): the VAE the representations experiment compares with the GAN.

Its decoder is the demo GAN's generator architecture (partseg.vae): with `train_vae.checkpoint`
(the shipped data/pretrained/demo_vae/vae.pt by default) that VAE is checked against the GAN's
config and the data it was trained on and adopted; with `checkpoint: null` one is trained here
with the section's keys (resuming from --snapshots; about 5 h on one CPU thread for the
default 72800 steps, which match the demo GAN's training FLOPs: src/partseg/vae/flops.py).

Writes experiments/results/train_vae/: vae.pt, record.yaml (how it was trained),
reconstructions.png (test images above, their reconstructions from the encoder's mean below)
and metrics.json (the reconstruction PSNR of the first 50 test images, the steps trained).
"""

from pathlib import Path

from partseg.plumbing.io import atomic_dir, save_json, save_png
from partseg.plumbing.stage import log, run_stage, snapshot_folder, stage_parser

PSNR_IMAGES = 50
SHOWN = 8


def train(args, gan_config: dict, params, trained_on: dict, out: Path):
    """Train (or resume) with the params section's keys, then ship into `out`."""
    from partseg.data.folder import load_split_arrays
    from partseg.plumbing.params import as_dict
    from partseg.vae import load_vae, ship_vae, train_vae, training_options

    section = {k: v for k, v in as_dict(params.train_vae).items() if k != "checkpoint"}
    options = training_options(gan_config, **section)
    images, _, _ = load_split_arrays(args.dataset, "train")
    snapshots = snapshot_folder(args.snapshots, "train_vae", [args.dataset])
    train_vae(images, snapshots, options)
    ship_vae(snapshots, out, "python -m stages.train_vae (train_vae.checkpoint: null)",
             {"trained_on": trained_on})
    (out / "samples.png").unlink(missing_ok=True)  # reconstructions.png below shows test images
    return load_vae(out / "vae.pt")


def build(args, params):
    from partseg.data.folder import load_split_arrays
    from partseg.gan import load_generator
    from partseg.vae import adopt_vae, reconstruction_report

    gan_config = load_generator(Path(args.generator) / "generator.pt").config
    trained_on = {"source": params.data.source, "resolution": params.data.resolution,
                  "seed": params.dataset.seed}
    checkpoint = params.train_vae.checkpoint
    with atomic_dir(args.out) as tmp:
        if checkpoint:
            vae, info = adopt_vae(Path(checkpoint), gan_config, trained_on, tmp)
            log(f"[train_vae] adopted {checkpoint}: step {info['step']} of "
                f"{info['options']['steps']}")
        else:
            vae, info = train(args, gan_config, params, trained_on, tmp)
        images, _, _ = load_split_arrays(args.dataset, "test", limit=PSNR_IMAGES)
        metrics, picture = reconstruction_report(vae, info, images, SHOWN)
        save_png(picture, tmp / "reconstructions.png")
        save_json(metrics, tmp / "metrics.json")
        log(f"[train_vae] step {info['step']}: test reconstruction PSNR "
            f"{metrics['test_psnr_encoder']:.2f} dB (encoder mean, {len(images)} images)")


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--generator", required=True)
    parser.add_argument("--snapshots", required=True)
    parser.add_argument("--out", required=True)
    run_stage("train_vae", parser, build)
