"""Stage invert_test: GAN inversion of real test images, then their pixel features.

For each split in invert_test.splits, the first invert_test.n_images images are optimised
into W+ (or W) with the `inversion` settings; writes latents.pt, psnr.csv (per-image
reconstruction PSNR), reconstructions.png (originals above, reconstructions below) and the
feature cache of the inverted latents (same layers and resolution as the few-shot net's).
"""

from pathlib import Path

import numpy as np
import pandas as pd

from partseg.plumbing.io import atomic_dir, atomic_path, save_json, save_png, save_torch
from partseg.plumbing.stage import available_splits, log, run_stage, stage_parser


def invert_split(out_dir: Path, images, stems, generator, discriminator,
                 checksum, params, device) -> float:
    from partseg.features import cache_latent_features
    from partseg.inversion import invert_images
    from partseg.plumbing.params import as_dict
    from partseg.visualize import image_grid

    result = invert_images(generator, images, D=discriminator, device=device,
                           seed=params.dataset.seed, **as_dict(params.inversion))
    out_dir.mkdir(parents=True)
    save_torch({"stems": stems, "wplus": result["wplus"].cpu(), "noises": result.get("noises")},
               out_dir / "latents.pt")
    save_json({"stems": stems}, out_dir / "stems.json")
    with atomic_path(out_dir / "psnr.csv") as tmp:
        pd.DataFrame({"stem": stems, "psnr": result["psnr"]}).to_csv(tmp, index=False)
    shown = min(8, len(stems))
    grid = image_grid([list(images[:shown]), list(result["reconstructions"][:shown])])
    save_png(grid, out_dir / "reconstructions.png")
    cache_latent_features(out_dir / "cache", generator, result["wplus"], params.features,
                          batch_size=16, noises=result.get("noises"), checksum=checksum)
    return float(np.mean(result["psnr"]))


def build(args, params):
    from partseg.data.folder import load_split_arrays
    from partseg.plumbing.device import resolve_device
    from partseg.features import generator_checksum
    from partseg.gan import load_discriminator, load_generator

    device = resolve_device()
    checkpoint = Path(args.generator) / "generator.pt"
    generator = load_generator(checkpoint, device=device)
    discriminator = load_discriminator(checkpoint, device=device)
    checksum = generator_checksum(checkpoint)
    with atomic_dir(args.out) as tmp:
        for split in available_splits(args.dataset, params.invert_test.splits, "invert_test"):
            images, _, stems = load_split_arrays(args.dataset, split,
                                                 limit=params.invert_test.n_images)
            psnr = invert_split(tmp / split, images, list(stems),
                                generator, discriminator, checksum, params, device)
            log(f"[invert_test] {split}: {len(stems)} images, mean PSNR {psnr:.2f} dB")


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--generator", required=True)
    parser.add_argument("--out", required=True)
    run_stage("invert_test", parser, build)
