"""Does the generator's fast path give this machine the reference path's bits?

    python bench/generator_bits.py                       # the shipped demo GAN, 1 and 2 threads
    python bench/generator_bits.py --checkpoint G.pt --batches 1 4 50 --threads 1

Without autograd the generator runs its upsampling convs and blurs channels-last and reuses
terms of its weights (src/partseg/gan/layers.py). On the CPUs measured that gives the same
bits as the NCHW reference path, which is what runs under autograd, and so the pipeline's
samples, features and scores do not depend on which path made them. oneDNN chooses its kernels
by CPU, so this script checks a machine: for each batch size and thread count it compares the
image and every styled conv's output (the features) of the two paths and prints the largest
difference. Where it is not 0, the pipeline's figures on that machine may differ from the
README's in the last digit (a perturbation of one shot's features at the bit level moved the
default run's auto-shot mIoU by 0.8 in one test, inside its seed spread).
"""

from __future__ import annotations

import argparse

import torch

from partseg.gan.checkpoint import load_generator

SHIPPED = "data/pretrained/demo_gan/generator.pt"


def images_and_features(generator, z: torch.Tensor, autograd: bool) -> list[torch.Tensor]:
    """The image and each styled conv's output, by the reference path (autograd) or not."""
    outputs: list[torch.Tensor] = []
    names = [row["name"] for row in generator.layer_table()]
    handles = [generator.get_submodule(name).register_forward_hook(
        lambda module, args, out: outputs.append(out.detach().clone())) for name in names]
    try:
        with torch.set_grad_enabled(autograd):
            image = generator(z)
    finally:
        for handle in handles:
            handle.remove()
    return [image.detach(), *outputs]


def largest_difference(generator, batch: int, seed: int) -> float:
    z = torch.randn(batch, generator.style_dim, generator=torch.Generator().manual_seed(seed))
    fast = images_and_features(generator, z, autograd=False)
    reference = images_and_features(generator, z, autograd=True)
    return max(float((a - b).abs().max()) for a, b in zip(fast, reference))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=SHIPPED)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 3, 8, 16, 32, 50])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    generator = load_generator(args.checkpoint).eval()
    for parameter in generator.parameters():  # the reference path runs where autograd records
        parameter.requires_grad_(True)
    print(f"{args.checkpoint}: largest |fast - reference| over the image and "
          f"{len(generator.layer_table())} feature layers (0 = the same bits)")
    print("threads  batch  largest difference")
    differ = 0
    for threads in args.threads:
        torch.set_num_threads(threads)
        for batch in args.batches:
            difference = largest_difference(generator, batch, seed=batch)
            differ += difference != 0.0
            print(f"{threads:7d}  {batch:5d}  {difference:.3g}")
    print("the same bits everywhere" if not differ else f"{differ} cases differ")


if __name__ == "__main__":
    main()
