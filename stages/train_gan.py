"""Stage train_gan: train StyleGAN2 on the unlabelled split, or adopt a pretrained one.

With `train_gan.checkpoint: <path>` the pretrained generator (a rosinality/stylegan2-pytorch
or partseg checkpoint, or an NVlabs stylegan2-ada / stylegan3-repo .pkl) is validated and re-saved as results/train_gan/generator.pt; nothing
is trained. Otherwise training resumes from the newest snapshot in --snapshots (kept outside
the stage's outputs so a crash or a rerun with more steps loses nothing). `--processes N`
trains data-parallel on N processes (GPUs, or CPU processes with gloo) with the same global
batch; rank 0 writes the snapshots and the outputs.
"""

from pathlib import Path

from partseg.plumbing.io import atomic_dir, save_yaml
from partseg.plumbing.params import as_dict
from partseg.plumbing.stage import log, run_stage, snapshot_folder, stage_parser


RECORD_FILE = "record.yaml"  # beside a generator this project trained and ships


def check_record(checkpoint: Path, params) -> dict | None:
    """A shipped generator's training record, checked against the data it is asked to serve.

    The record says which data the generator was trained on; a generator of other faces or
    another resolution would run, but every feature it gives would be meaningless, so it is
    refused with what to do instead.
    """
    import yaml

    from partseg.plumbing.errors import PartsegError

    record_path = checkpoint.parent / RECORD_FILE
    if not record_path.is_file():
        return None
    record = yaml.safe_load(record_path.read_text())
    trained_on = record["trained_on"]
    wanted = {"source": params.data.source, "resolution": params.data.resolution,
              "seed": params.dataset.seed}
    differs = [f"{key} {trained_on[key]} (yours: {value})" for key, value in wanted.items()
               if trained_on.get(key) != value]
    if differs:
        raise PartsegError(
            f"params key train_gan.checkpoint: {checkpoint} was trained on other data: "
            f"{', '.join(differs)} per {record_path}. Set train_gan.checkpoint: null to train a "
            f"generator on your data (see README, 'Your own data'), or point it at a generator "
            f"trained on it")
    from partseg.plumbing.io import file_sha256

    if record.get("sha256") and record["sha256"] != file_sha256(checkpoint):
        raise PartsegError(
            f"params key train_gan.checkpoint: {checkpoint} is not the file {record_path} "
            f"describes (sha256 differs). Restore it (git checkout {checkpoint}), or delete the "
            f"record if you replaced the generator on purpose")
    return record


def adopt_pretrained(checkpoint: str, out_dir: Path, params) -> None:
    from partseg.plumbing.errors import PartsegError
    from partseg.gan import load_discriminator, load_generator, save_checkpoint
    from partseg.plumbing.io import file_sha256

    path = Path(checkpoint)
    if not path.is_file():
        raise PartsegError(f"params key train_gan.checkpoint: {checkpoint} does not exist")
    record = check_record(path, params)
    generator = load_generator(path)
    discriminator = load_discriminator(path)
    log(f"[train_gan] pretrained generator {checkpoint}: {generator.config}; "
        f"discriminator {'found' if discriminator is not None else 'absent'}"
        + (f"; trained {record['kimg']} kimg by this project" if record else ""))
    if generator.size < params.data.resolution:
        log(f"[train_gan] note: generator size {generator.size} < data.resolution "
            f"{params.data.resolution}; images are compared at the generator's size")
    save_checkpoint(out_dir / "generator.pt", g_ema=generator, d=discriminator)
    save_yaml({"pretrained_checkpoint": str(path), "sha256": file_sha256(path),
               "config": generator.config, "record": record}, out_dir / "training_options.yaml")
    grid = path.parent / "samples.png"
    if grid.is_file():  # the report shows the adopted generator's samples
        import shutil

        shutil.copyfile(grid, out_dir / "samples.png")


def train(args, params, out_dir: Path) -> None:
    from partseg.plumbing.device import resolve_device
    from partseg.gan.train import ImageFolderData, train_gan

    settings = as_dict(params.train_gan)
    settings.pop("checkpoint")
    data = ImageFolderData.from_dataset(args.dataset, "train", params.data.resolution)
    snapshots = snapshot_folder(args.snapshots, "train_gan", [args.dataset])
    train_gan(data=data, out_dir=out_dir, snapshot_dir=snapshots,
              size=params.data.resolution, device=resolve_device(), **settings)


def build(args, params):
    from partseg.plumbing.distributed import current

    options = params.train_gan
    if not current().is_main:  # the other ranks train; rank 0 writes
        if not options.checkpoint:
            train(args, params, Path(args.out))
        return
    with atomic_dir(args.out) as tmp:
        if options.checkpoint:
            adopt_pretrained(options.checkpoint, tmp, params)
            return
        train(args, params, tmp)


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--snapshots", required=True)
    parser.add_argument("--out", required=True)
    run_stage("train_gan", parser, build, distributed=True)
