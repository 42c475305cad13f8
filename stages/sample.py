"""Stage sample: the k generated images a person annotates, with their z and W+ latents.

Writes results/sample/images/sample_NNN.png and latents.pt ({z, wplus, seeds, truncation}).
Sample i depends only on (sample.seed, i): asking for more samples keeps the first ones.
"""

from pathlib import Path


from partseg.plumbing.io import atomic_dir, save_png, save_torch
from partseg.plumbing.stage import log, run_stage, stage_parser


def build(args, params):
    from partseg.plumbing.device import resolve_device
    from partseg.gan import load_generator
    from partseg.gan import sample_images

    device = resolve_device()
    generator = load_generator(Path(args.generator) / "generator.pt", device=device)
    options = params.sample
    samples = sample_images(generator, options.n, seed=options.seed,
                            truncation=options.truncation, device=device)
    with atomic_dir(args.out) as tmp:
        stems = [f"sample_{i:03d}" for i in range(options.n)]
        for stem, image in zip(stems, samples["images"]):
            save_png(image, tmp / "images" / f"{stem}.png")
        save_torch({"stems": stems, "z": samples["z"].cpu(), "wplus": samples["wplus"].cpu(),
                    "seed": options.seed, "truncation": options.truncation},
                   tmp / "latents.pt")
    log(f"[sample] {options.n} samples written to {args.out}/images")


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--generator", required=True)
    parser.add_argument("--out", required=True)
    run_stage("sample", parser, build)
