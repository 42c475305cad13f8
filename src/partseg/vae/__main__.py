"""Train the demo VAE (resumable, under a wall-clock budget) and ship it.

    python -m partseg.vae --dataset data/dataset --gan results/train_gan/generator.pt \
        --snapshots checkpoints/demo_vae --steps 72800 --max-minutes 100 --threads 1 \
        --ship-to data/pretrained/demo_vae

Rerunning the same command continues from the newest snapshot in --snapshots (raise
--max-minutes or drop it to finish a run its budget stopped); --ship-only ships without
training. The shipped record.yaml's `command` is this command without the budget.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import yaml

from partseg.vae.ship import ship_vae
from partseg.vae.train import DEFAULTS, train_vae, training_options


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m partseg.vae",
                                     description=__doc__.split("\n\n")[0])
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
    return parser.parse_args()


def train(args: argparse.Namespace) -> None:
    from partseg.data.folder import load_split_arrays
    from partseg.gan import load_generator

    config = load_generator(args.gan).config
    images, _, _ = load_split_arrays(args.dataset, "train")
    options = training_options(config, steps=args.steps)
    state = train_vae(images, args.snapshots, options, max_minutes=args.max_minutes)
    print(f"train_vae: step {state.step}/{options['steps']}, {state.elapsed / 3600:.2f} h in all")


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    # KEY=VALUE with VALUE read as YAML, so that mappings and numbers keep their type.
    notes = {key: yaml.safe_load(value) for key, value in
             (item.split("=", 1) for item in args.note)}
    command = (f"python -m partseg.vae --dataset {args.dataset} --gan {args.gan} "
               f"--snapshots {args.snapshots} --steps {args.steps} --threads 1")
    if not args.ship_only:
        train(args)
    if args.ship_to is not None:
        record = ship_vae(args.snapshots, args.ship_to, command, notes)
        print(yaml.safe_dump({k: record[k] for k in ("steps", "kimg", "wall_hours", "sha256")}))


if __name__ == "__main__":
    main()
