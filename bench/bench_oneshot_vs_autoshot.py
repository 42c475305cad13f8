"""One-shot (inversion) versus auto-shot (UNet) segmentation speed, in one run.

One-shot segments a real image by optimising its latent (params.yaml `inversion`), reading
the generator's features and applying the few-shot net; auto-shot runs the distilled UNet.
Needs a built pipeline (results/train_gan, train_fewshot, train_autoshot).

    python bench/bench_oneshot_vs_autoshot.py --images 20
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from partseg.autoshot.segmenter import load_segmenter, predict_labels
from partseg.data.folder import load_split_arrays
from partseg.features import FeatureExtractor
from partseg.fewshot.predict import predict_logits
from partseg.fewshot.train import load_fewshot_model
from partseg.gan import load_discriminator, load_generator
from partseg.inversion import invert_images
from partseg.plumbing.params import as_dict, load_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", default="results")
    parser.add_argument("--dataset", default="data/dataset")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    params, results = load_params(args.params), Path(args.results)
    images, _, _ = load_split_arrays(args.dataset, "test", limit=args.images)
    checkpoint = results / "train_gan/generator.pt"
    generator, discriminator = load_generator(checkpoint), load_discriminator(checkpoint)
    fewshot = load_fewshot_model(results / "train_fewshot/model.pt")
    extractor = FeatureExtractor(generator, params.features.layers, params.features.resolution)
    unet = load_segmenter(results / "train_autoshot/model.pt", "cpu")

    started = time.perf_counter()
    inverted = invert_images(generator, images, D=discriminator, device="cpu",
                             show_progress=False, **as_dict(params.inversion))
    with torch.no_grad():
        features, _ = extractor(inverted["wplus"], noise=inverted["noises"])
    predict_logits(fewshot, features)
    oneshot = (time.perf_counter() - started) / len(images)

    predict_labels(unet, images[:2])  # warm-up
    started = time.perf_counter()
    predict_labels(unet, images, batch_size=64)
    autoshot = (time.perf_counter() - started) / len(images)

    print(f"| path | seconds per image | images/s |\n|---|---|---|\n"
          f"| one-shot (inversion, {params.inversion.steps} steps) | {oneshot:.3f} | {1 / oneshot:.2f} |\n"
          f"| auto-shot (UNet) | {autoshot:.5f} | {1 / autoshot:.0f} |\n\n"
          f"auto-shot is {oneshot / autoshot:.0f}x faster per image "
          f"({len(images)} test images, {torch.get_num_threads()} threads, CPU)")


if __name__ == "__main__":
    main()
