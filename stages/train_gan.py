"""Stage train_gan: train StyleGAN2 on the unlabelled split, or adopt a pretrained one.

With `train_gan.checkpoint: <path>` the pretrained generator (a rosinality/stylegan2-pytorch
or partseg checkpoint) is validated and re-saved as results/train_gan/generator.pt; nothing
is trained. Otherwise training resumes from the newest snapshot in --snapshots (kept outside
the stage's outputs so a crash or a rerun with more steps loses nothing).
"""

from pathlib import Path

from partseg.io import atomic_dir, save_yaml
from partseg.params import as_dict
from partseg.stage import log, run_stage, stage_parser


def adopt_pretrained(checkpoint: str, out_dir: Path, data_resolution: int) -> None:
    from partseg.errors import PartsegError
    from partseg.gan import load_discriminator, load_generator, save_checkpoint

    if not Path(checkpoint).is_file():
        raise PartsegError(f"params key train_gan.checkpoint: {checkpoint} does not exist")
    generator = load_generator(checkpoint)
    discriminator = load_discriminator(checkpoint)
    log(f"[train_gan] pretrained generator {checkpoint}: {generator.config}; "
        f"discriminator {'found' if discriminator is not None else 'absent'}")
    if generator.size < data_resolution:
        log(f"[train_gan] note: generator size {generator.size} < data.resolution "
            f"{data_resolution}; images are compared at the generator's size")
    save_checkpoint(out_dir / "generator.pt", g_ema=generator, d=discriminator)
    save_yaml({"pretrained_checkpoint": str(Path(checkpoint).resolve()),
               "config": generator.config}, out_dir / "training_options.yaml")


def build(args, params):
    from partseg.device import resolve_device

    options = params.train_gan
    with atomic_dir(args.out) as tmp:
        if options.checkpoint:
            adopt_pretrained(options.checkpoint, tmp, params.data.resolution)
            return
        from partseg.gan.train import train_gan

        settings = as_dict(options)
        settings.pop("checkpoint")
        train_gan(images_dir=Path(args.dataset) / "train" / "images", out_dir=tmp,
                  snapshot_dir=Path(args.snapshots), size=params.data.resolution,
                  device=resolve_device(), **settings)


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--dataset", default="data/dataset")
    parser.add_argument("--snapshots", default="checkpoints/train_gan")
    parser.add_argument("--out", default="results/train_gan")
    run_stage("train_gan", parser, build)
