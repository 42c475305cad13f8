"""`partseg check`: validate params.yaml (and the dataset folder it names) up front."""

from __future__ import annotations

import argparse
from pathlib import Path

from partseg.plumbing.errors import PartsegError

# Params keys naming a file a stage adopts (null = train it there instead).
CHECKPOINT_KEYS = ("train_gan.checkpoint", "train_annotator.checkpoint", "train_vae.checkpoint")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", default="params.yaml", help="params file (default params.yaml)")


def check_checkpoints(params) -> None:
    """Each checkpoint key names an existing file (relative to the folder the stages run in,
    as they read it), or null."""
    for key in CHECKPOINT_KEYS:
        section, name = key.split(".")
        value = getattr(getattr(params, section), name)
        if value is not None and not Path(value).is_file():
            raise PartsegError(f"params key {key}: {value} is not a file (from {Path.cwd()}); "
                               f"name an existing checkpoint, or null to train one")


def check_before_running(params_path: str | Path = "params.yaml"):
    """What the pipeline checks as it loads, before any job starts or any output is removed
    (the Snakefile calls it): params.yaml is valid, its checkpoints and its data folder exist.
    The folder's images are checked by `partseg check` and the dataset stage (too slow here)."""
    from partseg.plumbing.params import load_params

    params = load_params(params_path)
    check_checkpoints(params)
    if params.data.source == "folder" and not Path(params.data.path).is_dir():
        raise PartsegError(f"params key data.path: {params.data.path} is not a folder "
                           f"(from {Path.cwd()}); name your dataset folder (see README, "
                           "'Your own data')")
    return params


def check_folder_splits(params, root: str | Path) -> None:
    """The splits evaluate/invert_test name exist in the folder dataset (the standard names may
    be absent: those stages skip them with a note)."""
    from partseg.plumbing.params import STANDARD_SPLITS

    present = sorted(p.name for p in Path(root).iterdir() if (p / "images").is_dir())
    for key in ("evaluate.splits", "invert_test.splits"):
        section, name = key.split(".")
        for split in getattr(getattr(params, section), name):
            if split not in present and split not in STANDARD_SPLITS:
                raise PartsegError(f"params key {key}: {split!r} is not a split of {root} "
                                   f"(its splits: {', '.join(present)})")


def run(args: argparse.Namespace) -> int:
    from partseg.plumbing.params import load_params

    params = load_params(args.params)
    check_checkpoints(params)
    print(f"{args.params}: ok (data.source={params.data.source}, "
          f"resolution={params.data.resolution}, annotate.source={params.annotate.source})")
    if params.data.source == "folder":
        from partseg.data.folder import validate_folder_dataset

        summary = validate_folder_dataset(params.data.path)
        check_folder_splits(params, params.data.path)
        print(f"{params.data.path}: ok ({summary})")
    return 0
