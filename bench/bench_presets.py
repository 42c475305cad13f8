"""Expected disk, RAM, GPU memory and GPU-hours of each paper-scale preset (presets/*.yaml).

    python bench/bench_presets.py                 # at an assumed 100 TFLOP/s sustained
    python bench/bench_presets.py --tflops 250    # your GPU's measured figure

Sizes are exact sums of what the stages write (uint8 images and masks, fp16 features and
logits). Compute is counted, not timed: torch's FlopCounterMode over the real models on the
meta device (no memory, no GPU needed), per stage, divided by a sustained throughput. The
default 100 TFLOP/s is an assumption (about a third of an A100's dense bf16 peak, a common
figure for convnets in bf16), not a measurement: replace it with the s/step of
`bench/bench_unet_scale.py --device cuda` and `bench/bench_gan.py --device cuda` on your GPU.
"""

from __future__ import annotations

import argparse

import torch
from torch.utils.flop_counter import FlopCounterMode

from partseg.autoshot.unet import UNet
from partseg.features.extract import FeatureExtractor
from partseg.fewshot.dilated_cnn import DilatedCNN
from partseg.gan import Generator
from partseg.plumbing.params import parse_params
from partseg.presets import apply_preset, preset_names

GIB = 2 ** 30
CLASSES = 10


def flops(fn) -> float:
    with torch.device("meta"), FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def estimate(params) -> dict:
    gan, R, F = params.train_gan, params.data.resolution, params.features.resolution
    with torch.device("meta"):
        generator = Generator(size=_gan_size(R),
                              style_dim=gan.style_dim, n_mlp=gan.n_mlp,
                              channel_base=gan.channel_base, channel_max=gan.channel_max)
        channels = FeatureExtractor(generator, params.features.layers, F).num_channels
        fewshot = DilatedCNN(channels, CLASSES)
        unet = UNet(CLASSES, **vars(params.train_autoshot.unet))
    g_forward = flops(lambda: generator(torch.randn(1, gan.style_dim)))
    cnn_forward = flops(lambda: fewshot(torch.randn(1, channels, F, F)))
    unet_step = flops(lambda: unet(torch.randn(1, 3, R, R)).sum().backward())
    synth_images = len(params.synthesize.shards) * params.synthesize.images_per_shard
    dataset_images = params.dataset.n_train + params.dataset.n_labeled + params.dataset.n_test
    base = params.baselines
    compute = {
        "synthesize": synth_images * (g_forward + cnn_forward),
        "train_fewshot": params.train_fewshot.steps * 3 * cnn_forward
        * (params.train_fewshot.tile / F) ** 2,
        "invert_test": len(params.invert_test.splits) * params.invert_test.n_images
        * params.inversion.steps * 3 * g_forward,
        "train_autoshot": params.train_autoshot.steps * params.train_autoshot.batch_size * unet_step,
        "baselines": (base.steps * params.train_autoshot.batch_size
                      + len(base.label_counts) * base.steps_few * base.batch_size_few) * unet_step,
    }
    return {
        "channels": channels,
        "disk": {"dataset": dataset_images * 4 * R * R,
                 "features (k shots, fp16)": params.annotate.k * channels * F * F * 2,
                 "synthesize (images + fp16 logits)": synth_images * (3 + 2 * CLASSES) * R * R},
        # One image's features in fp32 is the largest single array any stage holds on the host
        # (extraction writes them to the disk cache image by image); 2 GiB for the rest.
        "ram": channels * F * F * 4 + 2 * GIB,
        # synthesize: a batch's features in bf16 on the GPU, with the CNN's activations.
        "gpu_memory": params.synthesize.batch_size * channels * F * F * 2 * 1.5 + 2 * GIB,
        "compute": compute,
    }


def _gan_size(resolution: int) -> int:
    """The generator size of a preset: its checkpoint's (1024 for 512 px data, as the paper)."""
    return 1024 if resolution == 512 else resolution


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tflops", type=float, default=100.0, help="sustained TFLOP/s of the GPU")
    args = parser.parse_args()
    for name in preset_names():
        params = parse_params(apply_preset(name), source=name)
        result = estimate(params)
        print(f"\n## {name}: data {params.data.resolution} px, features "
              f"{params.features.resolution} px x {result['channels']} channels\n")
        print("| what | amount |\n|---|---|")
        for what, size in result["disk"].items():
            print(f"| disk: {what} | {size / GIB:.1f} GiB |")
        print(f"| disk: total | {sum(result['disk'].values()) / GIB:.1f} GiB |")
        print(f"| peak host RAM | {result['ram'] / GIB:.1f} GiB |")
        print(f"| peak GPU memory (synthesize) | {result['gpu_memory'] / GIB:.1f} GiB |")
        for stage, total in result["compute"].items():
            print(f"| GPU-hours: {stage} | {total / (args.tflops * 1e12) / 3600:.2f} |")
        hours = sum(result["compute"].values()) / (args.tflops * 1e12) / 3600
        print(f"| GPU-hours: total at {args.tflops:.0f} TFLOP/s | {hours:.1f} |")


if __name__ == "__main__":
    main()
