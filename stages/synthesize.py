"""Stage synthesize (one job per shard): the auto-shot dataset made by the GAN.

Shard --shard generates synthesize.images_per_shard images (seed synthesize.seed + shard),
computes their features on the fly (never cached: only the labels are kept) and stores each
image with the few-shot net's fp16 logits — soft labels, never argmax. With an ensemble,
synthesize.drop_uncertain drops the most uncertain fraction of the images.
"""

from pathlib import Path

from partseg.plumbing.stage import log, run_stage, stage_parser


def build(args, params):
    from partseg.autoshot.synthesize import synthesize_shard
    from partseg.plumbing.device import resolve_device
    from partseg.features import FeatureExtractor
    from partseg.fewshot.train import load_fewshot_model
    from partseg.gan import load_generator

    device = resolve_device()
    generator = load_generator(Path(args.generator) / "generator.pt", device=device)
    fewshot = load_fewshot_model(Path(args.fewshot) / "model.pt", device)
    extractor = FeatureExtractor(generator, params.features.layers, params.features.resolution)
    options = params.synthesize
    # synthesize_shard writes the shard folder atomically itself.
    summary = synthesize_shard(args.out, generator=generator, extractor=extractor,
                               fewshot_model=fewshot, num_images=options.images_per_shard,
                               seed=options.seed + args.shard, batch_size=options.batch_size,
                               truncation=options.truncation,
                               drop_uncertain=options.drop_uncertain, device=device)
    log(f"[synthesize] shard {args.shard}: " + ", ".join(
        f"{key}={value}" for key, value in summary.items() if not isinstance(value, (list, dict))))


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--shard", type=int, required=True)
    parser.add_argument("--generator", required=True)
    parser.add_argument("--fewshot", required=True)
    parser.add_argument("--out", required=True, help="results/synthesize/shard_<shard>")
    run_stage("synthesize", parser, build)
