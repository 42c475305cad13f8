"""Stage features: the pixel representations of the k shots, cached on disk in fp16.

Every pixel of each annotated image gets the concatenated activations of the selected
generator layers (features.layers) at features.resolution. The cache streams to a
memory-mapped file, so memory does not grow with k; the shots' masks are stored beside it
at the feature resolution (nearest neighbour) for train_fewshot.
"""

from pathlib import Path

import numpy as np

from partseg.plumbing.io import atomic_dir
from partseg.plumbing.stage import log, run_stage, stage_parser


def build(args, params):
    from partseg.plumbing.device import resolve_device
    from partseg.features import cache_latent_features
    from partseg.imaging import resize_masks
    from partseg.shots.batch import Shots

    device = resolve_device()
    shots = Shots.load(Path(args.annotations))
    options = params.features
    masks = resize_masks(shots.masks, options.resolution)
    with atomic_dir(args.out) as tmp:
        cache = cache_latent_features(tmp / "cache", Path(args.generator) / "generator.pt",
                                      shots.wplus, options, batch_size=8,
                                      noises=shots.noises, device=device)
        np.save(tmp / "masks.npy", masks)
    log(f"[features] {len(shots)} images x {cache.num_channels} channels at "
        f"{options.resolution} px cached in {args.out}")


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--generator", required=True)
    parser.add_argument("--annotations", required=True)
    parser.add_argument("--out", required=True)
    run_stage("features", parser, build)
