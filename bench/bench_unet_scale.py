"""Auto-shot UNet training speed at paper scale (512 px), for the paper-scale presets.

    python bench/bench_unet_scale.py --device cuda                       # 512 px, batch 32
    python bench/bench_unet_scale.py --device cuda --resolution 256
    PARTSEG_AMP=off python bench/bench_unet_scale.py --device cuda       # fp32 instead of bf16
    python bench/bench_unet_scale.py --resolution 64 --batch-size 4      # a CPU smoke run

Times whole `training_step`s of partseg.autoshot.train (augmentation included, soft targets of
10 classes, the UNet of --params' train_autoshot section, mixed precision per PARTSEG_AMP) on
random data already on the device, so it measures the GPU's work, not the disk. Reports
s/step after warm-up, images/s and the peak GPU memory.
"""

from __future__ import annotations

import argparse
import time

import torch

from partseg.autoshot.train import (AUGMENT_DEFAULTS, _adam, _augment_batch, training_step,
                                    warmup_cosine_decay_lr)
from partseg.autoshot.unet import UNet
from partseg.plumbing.device import mixed_precision_dtype
from partseg.plumbing.params import as_dict, load_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--resolution", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--steps", type=int, default=30, help="timed steps (after 5 warm-up)")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    device = torch.device(args.device)
    unet = as_dict(load_params(args.params).train_autoshot.unet)
    model = UNet(args.classes, **unet).to(device, memory_format=torch.channels_last).train()
    optimizer = _adam(model, 1e-3, 1e-4, device)
    precision = mixed_precision_dtype(device)
    autocast = torch.autocast(device.type, dtype=precision or torch.bfloat16,
                              enabled=precision is not None)
    scaler = torch.amp.GradScaler(device.type) if precision == torch.float16 else None
    shape = (args.batch_size, 3, args.resolution, args.resolution)
    images = torch.rand(shape, device=device)
    targets = torch.softmax(torch.randn(args.batch_size, args.classes, *shape[2:],
                                        device=device), 1)
    generator = torch.Generator().manual_seed(0)

    def step(number: int):
        batch = _augment_batch(images, targets, dict(AUGMENT_DEFAULTS), None, generator)
        lr = warmup_cosine_decay_lr(number, 1000, 1e-3)
        return training_step(model, optimizer, *batch, lr=lr, grad_clip=1.0, autocast=autocast,
                             scaler=scaler)

    for number in range(5):
        step(number)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    started = time.perf_counter()
    for number in range(args.steps):
        loss, _ = step(5 + number)
    float(loss)  # waits for the device
    seconds = (time.perf_counter() - started) / args.steps
    print(f"UNet {unet} at {args.resolution} px, batch {args.batch_size}, {args.classes} classes, "
          f"device {device}, precision {precision or 'fp32'}")
    print(f"  {seconds:.3f} s/step, {args.batch_size / seconds:.1f} images/s")
    if device.type == "cuda":
        print(f"  peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
