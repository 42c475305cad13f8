"""GAN speed on this machine: generator forward vs conv throughput, vs the grouped-conv
formulation (rosinality's fused modulated conv), sampling images/s, training s/step.

    python bench/bench_gan.py                   # demo config (32 px, widths 128/128/64/32)
    python bench/bench_gan.py --threads 1       # intra-op threads (default: torch's)
    python bench/bench_gan.py --config 64px     # rosinality 64 px, multiplier 1 (REFERENCES.md)
    python bench/bench_gan.py --config published256 --device cuda   # PARTSEG_AMP=off for fp32

The demo config also times the forward at the batches the pipeline runs it at (sample 32,
synthesize 50), each against the same convs at that batch.

Timings are the minimum over interleaved repeats, so a machine shared with other jobs biases
all columns alike. GFLOP counts come from torch's FlopCounterMode (convs, matmuls).
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from partseg.gan import Generator, sample_images, train_gan
from partseg.gan.layers import LRELU_GAIN, LRELU_SLOPE
from partseg.plumbing.io import save_png

# The batches the pipeline runs the generator at without autograd (params.yaml): the sample
# stage's 32 and the synthesize stage's 50 (2000 images, the bulk of its forwards).
PIPELINE_BATCHES = {32: "sample stage", 50: "synthesize stage"}

CONFIGS = {
    "demo": dict(size=32, style_dim=128, n_mlp=4, channel_base=1024, channel_max=128, batch=16),
    "64px": dict(size=64, style_dim=64, n_mlp=2, channel_base=16384, channel_max=512, batch=4),
    "published256": dict(size=256, style_dim=512, n_mlp=8, channel_base=32768, channel_max=512,
                         batch=16),
}


# ---- the reference formulation: one grouped convolution with per-sample weights ---------

def grouped_modconv(conv, x, style):
    """rosinality's fused path: modulate and demodulate a weight per sample, grouped conv."""
    batch, c_in, height, width = x.shape
    styles = conv.modulation(style).view(batch, 1, c_in, 1, 1)
    weight = conv.scale * conv.weight * styles                        # [N, out, in, k, k]
    if conv.demodulate:
        weight = weight * torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8).view(batch, -1, 1, 1, 1)
    k = conv.kernel_size
    x = x.reshape(1, batch * c_in, height, width)
    if conv.upsample:
        weight = weight.transpose(1, 2).reshape(batch * c_in, conv.out_channels, k, k)
        out = F.conv_transpose2d(x, weight, stride=2, groups=batch)
        out = conv.blur(out.view(batch, conv.out_channels, out.shape[2], out.shape[3]))
        return out
    out = F.conv2d(x, weight.reshape(batch * conv.out_channels, c_in, k, k),
                   padding=conv.padding, groups=batch)
    return out.view(batch, conv.out_channels, height, width)


def grouped_styled(layer, x, style, noise):
    out = grouped_modconv(layer.conv, x, style)
    out = out + layer.noise.weight * noise
    return F.leaky_relu(out + layer.activate.bias.view(1, -1, 1, 1), LRELU_SLOPE) * LRELU_GAIN


def grouped_to_rgb(layer, x, style, skip):
    out = grouped_modconv(layer.conv, x, style) + layer.bias
    return out if skip is None else out + layer.upsample(skip)


def grouped_forward(generator: Generator, z: torch.Tensor) -> torch.Tensor:
    w = generator.mapping(z)
    noises = generator.noise_maps()
    x = generator.input.input.repeat(z.shape[0], 1, 1, 1)
    x = grouped_styled(generator.conv1, x, w, noises[0])
    image = grouped_to_rgb(generator.to_rgb1, x, w, None)
    for k, to_rgb in enumerate(generator.to_rgbs):
        x = grouped_styled(generator.convs[2 * k], x, w, noises[2 * k + 1])
        x = grouped_styled(generator.convs[2 * k + 1], x, w, noises[2 * k + 2])
        image = grouped_to_rgb(to_rgb, x, w, image)
    return image


# ---- measuring ------------------------------------------------------------------------------

def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def interleaved_min(functions: dict, rounds: int, device) -> dict:
    """Minimum wall time of each function, calling them in turn `rounds` times."""
    for fn in functions.values():
        fn(), fn()
    best = {name: math.inf for name in functions}
    for _ in range(rounds):
        for name, fn in functions.items():
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def count_flops(fn) -> int:
    counter = FlopCounterMode(display=False)
    with counter:  # grad mode on: the module tracker needs it
        fn()
    return counter.get_total_flops()


def plain_conv_shapes(generator: Generator, batch: int):
    """(N, C_in, C_out, H) of every 3x3 styled conv as an ordinary conv2d of equal FLOPs.

    An upsampling conv is a stride-2 transposed conv: its FLOPs are those of a plain conv at
    its input resolution, so that is the shape it is compared with.
    """
    shapes, c_in, res_in = [], generator.channels[4], 4
    for row in generator.layer_table():
        shapes.append((batch, c_in, row["channels"], res_in))
        c_in, res_in = row["channels"], row["resolution"]
    return shapes


def plain_conv_workload(generator: Generator, batch: int, device):
    """Inputs and weights of the plain convs of equal FLOPs, their FLOPs, and a runner."""
    convs = []
    for n, c_in, c_out, res in plain_conv_shapes(generator, batch):
        x = torch.randn(n, c_in, res, res, device=device)
        w = torch.randn(c_out, c_in, 3, 3, device=device)
        convs.append((x, w, 2 * n * c_in * c_out * 9 * res * res))

    def plain_convs():
        for x, w, _ in convs:
            F.conv2d(x, w, padding=1)

    return convs, sum(f for _, _, f in convs), plain_convs


def bench_pipeline_batches(config: dict, device, rounds: int) -> list[tuple]:
    """The forward at each batch the pipeline uses, as a share of plain conv at that batch."""
    torch.manual_seed(0)
    generator = Generator(**{k: v for k, v in config.items() if k != "batch"}).to(device).eval()
    rows = []
    for batch, stage in PIPELINE_BATCHES.items():
        z = torch.randn(batch, generator.style_dim, device=device)
        flops = count_flops(lambda: generator(z))
        _, conv_flops, plain_convs = plain_conv_workload(generator, batch, device)
        with torch.no_grad():
            times = interleaved_min({"ours": lambda: generator(z), "plain": plain_convs},
                                    rounds, device)
        ours, machine = flops / times["ours"] / 1e9, conv_flops / times["plain"] / 1e9
        rows.append((f"Generator forward, batch {batch} ({stage})",
                     f"{times['ours'] * 1e3:.1f} ms", f"{ours:.1f}", f"{ours / machine:.0%}"))
    return rows


def bench_forward(config: dict, device, rounds: int) -> list[tuple]:
    torch.manual_seed(0)
    arch = {k: v for k, v in config.items() if k != "batch"}
    generator = Generator(**arch).to(device).eval()
    batch = config["batch"]
    z = torch.randn(batch, generator.style_dim, device=device)
    flops = count_flops(lambda: generator(z))
    ref_flops = count_flops(lambda: grouped_forward(generator, z))
    with torch.no_grad():
        torch.testing.assert_close(grouped_forward(generator, z), generator(z), rtol=1e-3, atol=1e-3)
    convs, conv_flops, plain_convs = plain_conv_workload(generator, batch, device)

    # The same convs in the channels-last layout: on some CPUs oneDNN runs them faster than
    # NCHW. The NCHW row stays the machine's figure (the README's time budgets scale by it).
    convs_last = [(x.contiguous(memory_format=torch.channels_last),
                   w.contiguous(memory_format=torch.channels_last)) for x, w, _ in convs]

    def plain_convs_channels_last():
        for x, w in convs_last:
            F.conv2d(x, w, padding=1)

    with torch.no_grad():
        times = interleaved_min({"ours": lambda: generator(z),
                                 "grouped": lambda: grouped_forward(generator, z),
                                 "plain": plain_convs,
                                 "plain_last": plain_convs_channels_last}, rounds, device)
    machine = conv_flops / times["plain"] / 1e9
    ours = flops / times["ours"] / 1e9
    grouped = ref_flops / times["grouped"] / 1e9
    last = conv_flops / times["plain_last"] / 1e9
    return [
        ("plain conv2d, the same 3x3 convs (machine)", f"{times['plain'] * 1e3:.1f} ms",
         f"{machine:.1f}", "100%"),
        ("the same convs, channels-last (reference)", f"{times['plain_last'] * 1e3:.1f} ms",
         f"{last:.1f}", f"{last / machine:.0%}"),
        (f"partseg.gan Generator forward, batch {batch}", f"{times['ours'] * 1e3:.1f} ms",
         f"{ours:.1f}", f"{ours / machine:.0%}"),
        ("grouped-conv formulation (rosinality fused)", f"{times['grouped'] * 1e3:.1f} ms",
         f"{grouped:.1f}", f"{grouped / machine:.0%}"),
        ("speed-up of ours over grouped", f"{times['grouped'] / times['ours']:.2f}x", "", ""),
        ("GFLOP per image (ours / grouped)", f"{flops / batch / 1e9:.3f} / "
         f"{ref_flops / batch / 1e9:.3f}", "", ""),
    ]


def bench_sampling(config: dict, device, n: int) -> float:
    torch.manual_seed(0)
    generator = Generator(**{k: v for k, v in config.items() if k != "batch"}).to(device).eval()
    sample_images(generator, 32, seed=0, device=device)  # warm-up
    start = time.perf_counter()
    sample_images(generator, n, seed=0, batch_size=32, device=device)
    return n / (time.perf_counter() - start)


def bench_training(config: dict, device, steps: int) -> tuple[float, float]:
    """Seconds per step of the last logged window (train_gan reads its values every
    LOG_FLUSH = 20 steps, so with more than 20 steps the warm-up is left out) and the mean
    over all steps (r1 every 16 steps included, path length off)."""
    size = config["size"]
    with tempfile.TemporaryDirectory() as tmp:
        images = Path(tmp) / "images"
        rng = np.random.default_rng(0)
        for i in range(64):
            save_png(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), images / f"{i}.png")
        train_gan(images_dir=images, out_dir=Path(tmp) / "out", snapshot_dir=Path(tmp) / "snap",
                  size=size, style_dim=config["style_dim"], n_mlp=config["n_mlp"],
                  channel_base=config["channel_base"], channel_max=config["channel_max"],
                  batch_size=16, steps=steps, snapshot_every=10 ** 6, device=device)
        log = np.genfromtxt(Path(tmp) / "out" / "training_log.tsv", names=True, delimiter="\t")
    seconds = log["seconds_per_step"]
    return float(seconds[-1]), float(np.mean(seconds))


def print_table(title: str, header: tuple, rows: list[tuple]) -> None:
    print(f"\n{title}")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="demo")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=20, help="interleaved timing rounds")
    parser.add_argument("--train-steps", type=int, default=34, help="0 skips the training bench")
    parser.add_argument("--samples", type=int, default=512)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    config = CONFIGS[args.config]
    print(f"config {args.config}: {config}; device {device}, torch threads "
          f"{torch.get_num_threads()}, torch {torch.__version__}")

    forward_rows = bench_forward(config, device, args.rounds)
    if args.config == "demo":
        forward_rows += bench_pipeline_batches(config, device, args.rounds)
    print_table("Generator forward (min over interleaved rounds)",
                ("what", "time", "GFLOP/s", "of machine"), forward_rows)
    rows = [("sampling (sample_images, batch 32, uint8 out)",
             f"{bench_sampling(config, device, args.samples):.0f} images/s")]
    if args.train_steps:
        last, mean = bench_training(config, device, args.train_steps)
        rows.append((f"training, batch 16 ({args.train_steps} steps, R1 every 16)",
                     f"{last:.3f} s/step after warm-up, {mean:.3f} mean"))
        rows.append(("training per thousand images", f"{last * 1000 / 16:.1f} s/kimg"))
    if device.type == "cuda":
        rows.append(("peak GPU memory", f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB"))
    print_table("Sampling and training", ("what", "speed"), rows)


if __name__ == "__main__":
    main()
