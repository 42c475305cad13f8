"""`partseg convert in.pkl out.pt`: an NVlabs StyleGAN2 pickle as a rosinality checkpoint.

The output holds `g_ema`, `latent_avg`, `args` (an argparse.Namespace with size, latent, n_mlp,
lr_mlp) and, when the discriminator maps, `d`: the layout of rosinality/stylegan2-pytorch, so
its tools (and partseg, with `torch.load(weights_only=True)`) read it without NVlabs' code.
The pickle is read by partseg.gan.nvlabs, which never runs the source code stored in it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from partseg.plumbing.errors import PartsegError

ROSINALITY_KEYS = ("g_ema", "latent_avg", "args", "d")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="NVlabs network pickle (stylegan2-ada-pytorch or the "
                                      "stylegan3 repository's stylegan2 config), e.g. ffhq.pkl")
    parser.add_argument("output", help="rosinality-layout checkpoint to write, e.g. ffhq.pt")


def convert(source: str | Path, target: str | Path) -> dict:
    """Convert and write atomically; returns the note on the discriminator and the config."""
    from partseg.gan.checkpoint import load_generator
    from partseg.gan.nvlabs import is_network_pickle, load_as_rosinality
    from partseg.plumbing.io import save_torch

    source, target = Path(source), Path(target)
    if not source.is_file():
        raise PartsegError(f"{source}: network pickle not found")
    if not is_network_pickle(source):
        raise PartsegError(f"{source}: not a pickle (a PyTorch zip or legacy checkpoint?); "
                           "rosinality and partseg .pt files load as they are")
    if target.suffix.lower() in (".pkl", ".pickle"):
        raise PartsegError(f"{target}: the output is a PyTorch checkpoint, not a pickle; "
                           "name it .pt")
    ckpt = load_as_rosinality(source)
    note = ckpt["nvlabs"]["discriminator"]
    save_torch({k: ckpt[k] for k in ROSINALITY_KEYS if k in ckpt}, target)
    # Read it back the rosinality way: the file must load without this module.
    config = load_generator(target).config
    return {"discriminator": note, "config": config}


def run(args: argparse.Namespace) -> int:
    result = convert(args.input, args.output)
    print(f"{args.output}: rosinality checkpoint written (generator {result['config']}; "
          f"{result['discriminator']})")
    return 0
