"""GAN inversion: seconds per image and reconstruction PSNR, for the default settings and variants.

    python bench/bench_inversion.py                    # demo config, random or trained G
    python bench/bench_inversion.py --checkpoint results/train_gan/generator.pt \
        --dataset data/dataset --split test           # PSNR on real test images too
    python bench/bench_inversion.py --quick            # 50 steps
    python bench/bench_inversion.py --threads 1        # on a shared machine

Rows: the default (`inversion` section of params.yaml: W+, 200 steps, lr 0.05, noise maps
optimised, discriminator-feature perceptual term when a discriminator exists) and variants
that each change one thing. Columns: seconds per image (the whole batch inverted together,
divided by its size), mean PSNR on the GAN's own samples (what a perfect inverter recovers),
on random-noise images (the floor), and on real test images when --dataset is given.
The machine may be shared: the load average is printed with the table.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

DEMO = dict(size=32, style_dim=128, n_mlp=4, channel_base=1024, channel_max=128)
DEFAULT_CHECKPOINT = Path("results/train_gan/generator.pt")
DEFAULTS = dict(space="wplus", steps=200, lr=0.05, pixel_weight=1.0, perceptual_weight=0.1,
                noise_reg_weight=1e5)


def load_models(checkpoint: str | None):
    from partseg.gan import Discriminator, Generator, load_discriminator, load_generator

    path = Path(checkpoint) if checkpoint else DEFAULT_CHECKPOINT
    if path.is_file():
        return load_generator(path).eval(), load_discriminator(path), str(path)
    torch.manual_seed(0)
    G = Generator(**DEMO).eval()
    D = Discriminator(DEMO["size"], channel_base=DEMO["channel_base"], channel_max=DEMO["channel_max"])
    return G, D, "random demo-size G and D (no trained checkpoint)"


def test_images(dataset: str | None, split: str, count: int, size: int):
    if not dataset:
        return None
    from partseg.data.folder import load_split_arrays

    images, _, _ = load_split_arrays(dataset, split, limit=count)
    images = np.asarray(images)
    if images.shape[1] != size:
        raise SystemExit(f"{dataset}/{split}: images are {images.shape[1]} px, the generator {size} px")
    return images


def main() -> None:
    from partseg.gan import sample_images
    from partseg.inversion import invert_images

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--dataset", default=None, help="folder dataset root (e.g. data/dataset)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--images", type=int, default=10, help="images per kind")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (1 is faster on a machine shared with other jobs)")
    parser.add_argument("--quick", action="store_true", help="50 steps instead of 200")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    G, D, description = load_models(args.checkpoint)
    steps = 50 if args.quick else DEFAULTS["steps"]
    kinds = {"own": sample_images(G, args.images, seed=123)["images"],
             "random": np.random.default_rng(0).integers(0, 256, (args.images, G.size, G.size, 3),
                                                         dtype=np.uint8)}
    real = test_images(args.dataset, args.split, args.images, G.size)
    if real is not None:
        kinds[args.split] = real
    batch = np.concatenate(list(kinds.values()))
    variants = {
        "default (W+, noise optimised, D features)" if D is not None else "default (W+, noise optimised)": {},
        "no perceptual term": dict(perceptual_weight=0.0),
        "noise maps kept constant": dict(optimize_noise=False),
        "W instead of W+": dict(space="w"),
    }
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores, "
          f"torch threads {torch.get_num_threads()}")
    print(f"\n## Inversion ({description}; {G.size} px; {steps} steps, lr {DEFAULTS['lr']}; "
          f"one batch of {len(batch)} images: {', '.join(f'{len(v)} {k}' for k, v in kinds.items())})\n")
    print("| variant | s / image | " + " | ".join(f"PSNR {k} (dB)" for k in kinds) + " |")
    print("|---|---:|" + "---:|" * len(kinds))
    for name, change in variants.items():
        options = {**DEFAULTS, "steps": steps, **change}
        start = time.perf_counter()
        result = invert_images(G, batch, D=D, batch_size=len(batch), show_progress=False, **options)
        per_image = (time.perf_counter() - start) / len(batch)
        psnr = np.split(result["psnr"], len(kinds))
        print(f"| {name} | {per_image:.2f} | " + " | ".join(f"{p.mean():.1f}" for p in psnr) + " |")


if __name__ == "__main__":
    main()
