"""Speed of the auto-shot segmenter on this machine: inference images/s and training s/step.

    python bench/bench_autoshot.py            # default config: base 32, depth 3
    python bench/bench_autoshot.py --quick    # fewer repeats
    python bench/bench_autoshot.py --threads 1

Prints one table. Inference: UNet forward (eval, no_grad, float input already on the device),
images per second at 32 px (batch 64) and 256 px (batch 8). Training: seconds per optimiser
step of `train_segmenter` itself (batch 32 at 32 px: batch read, soft-label softmax,
augmentation, forward, backward, Adam), measured as the time difference between a long and a
short run (medians of several runs) so start-up is excluded; plus the same step without augmentation, to show its share.
The machine may be shared: the load average is printed with the table.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from partseg.autoshot.train import train_segmenter
from partseg.autoshot.unet import UNet
from partseg.plumbing.device import resolve_device

NUM_CLASSES = 6
UNET = {"base_channels": 32, "depth": 3}


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up (allocator, kernels)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


@torch.no_grad()
def inference_images_per_second(device, size: int, batch: int, repeats: int) -> float:
    model = UNet(NUM_CLASSES, **UNET).to(device).eval()
    images = torch.rand(batch, 3, size, size, device=device)
    return batch / median_seconds(lambda: model(images), repeats)


def training_seconds_per_step(device, augment: dict | None, steps: int, repeats: int) -> float:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (256, 32, 32, 3), dtype=np.uint8)
    logits = rng.normal(size=(256, NUM_CLASSES, 32, 32)).astype(np.float16)
    common = dict(num_classes=NUM_CLASSES, target_kind="soft", unet_config=UNET, batch_size=32,
                  lr=1e-3, weight_decay=1e-4, augment=augment, seed=0, device=device)
    short = median_seconds(lambda: train_segmenter(images, logits, steps=1, **common), repeats)
    long = median_seconds(lambda: train_segmenter(images, logits, steps=1 + steps, **common),
                          repeats)
    return (long - short) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--device", default=None, help="cpu | cuda (default: PARTSEG_DEVICE/auto)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice, one per core)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    repeats, steps = (3, 5) if args.quick else (5, 10)
    os.environ.setdefault("TQDM_DISABLE", "1")

    rows = [
        ("inference 32 px, batch 64", f"{inference_images_per_second(device, 32, 64, repeats):.0f}",
         "images/s"),
        ("inference 256 px, batch 8", f"{inference_images_per_second(device, 256, 8, repeats):.1f}",
         "images/s"),
        ("training 32 px, batch 32, with augmentation",
         f"{training_seconds_per_step(device, {}, steps, repeats):.3f}", "s/step"),
        ("training 32 px, batch 32, no augmentation",
         f"{training_seconds_per_step(device, None, steps, repeats):.3f}", "s/step"),
    ]
    params = sum(p.numel() for p in UNet(NUM_CLASSES, **UNET).parameters())
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"UNet base {UNET['base_channels']}, depth {UNET['depth']}, {NUM_CLASSES} classes, "
          f"{params / 1e6:.2f} M parameters; device {device}, torch threads "
          f"{torch.get_num_threads()}, load average {load:.2f}")
    width = max(len(name) for name, _, _ in rows)
    print(f"{'measure':<{width}}  {'value':>10}  unit")
    for name, value, unit in rows:
        print(f"{name:<{width}}  {value:>10}  {unit}")


if __name__ == "__main__":
    main()
