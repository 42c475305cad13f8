"""UNet training speed on this machine, and how many steps the supervised baselines need.

    python bench/bench_unet.py --threads 1              # speed table (default params.yaml UNet)
    python bench/bench_unet.py --threads 1 --rounds 10  # more interleaved repeats
    python bench/bench_unet.py --convergence            # steps vs test mIoU (slow: minutes)
    python bench/bench_unet.py --convergence --counts 500 10 --steps 250 500 1000 --lr 0.002

Speed table (the baselines' setting: batch 32 of the labelled split, hard masks, the
train_autoshot UNet and augmentation): the machine figure (plain conv2d fwd+bwd of the very
convolutions the UNet runs, same shapes), UNet forward+backward, augmentation alone, batch
sampling alone, and a whole optimiser step of the old trainer (reproduced here: NCHW tensors,
Adam for-loop, argmax accuracy) against `train_segmenter`'s step. "% mach" is against the
faster of the two plain-conv rows (NCHW, channels_last): the machine's figure. Timings are the minimum
over interleaved rounds, so a machine shared with other jobs biases all rows alike; GFLOP
counts come from torch's FlopCounterMode (convs; backward included).

Convergence: for each labelled-image count and each step budget, train a baseline UNet with
exactly the baselines stage's settings (a full cosine schedule of that many steps) and report
its mIoU on the `test` split, with the wall time. The step budget where mIoU stops rising is
the one `baselines.steps` should use.

Measured on the demo data (32 px, 10 classes), test mIoU %, each row a full schedule:

    steps  lr     unet_full (500 images)  unet_k10
      250  0.001  33.6                    23.0
      500  0.001  38.6                    25.7
      500  0.003  40.3                    30.0
     1000  0.003  60.5                    38.4
     1500  0.003  69.7
     2000  0.003  71.8
     3000  0.001  71.0                    38.2   (the old defaults, from issue 11's report)

so the defaults became lr 0.003, 2000 steps (+9.2 from 1000 to 1500, +2.1 from 1500 to 2000):
the old 3000-step quality in two thirds of the steps. The speed table, 1 thread on a shared 2-core machine: old step 1.22-1.39x slower.

With --batch-size 16 (lr 0.003; machine of 163 GFLOP/s plain conv per thread):

    steps  unet_full  unet_k10  unet_k1   s/step
     1000  54.0       38.9      13.1      0.05
     2000  67.5       40.5      14.1      0.05
    (batch 32, 1000 steps: unet_k10 38.4, unet_k1 13.6, at 0.10 s/step)

so the few-label UNets train on batches of 16 (baselines.batch_size_few): the same mIoU
within 0.5 at half the cost; the all-label UNet keeps 32 (67.5 vs 71.8 at 2000 steps).
With baselines.class_balance_power 0.5 the all-label UNet reached 67.2 at 2000 steps (vs 71.8):
clean labels need no class balancing, so the baselines keep 0.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import numpy as np
import torch

from torch.utils.flop_counter import FlopCounterMode

from partseg.autoshot import train as trainer
from partseg.autoshot.segmenter import predict_labels
from partseg.autoshot.train import train_segmenter
from partseg.autoshot.unet import UNet
from partseg.data.folder import load_classes, load_split_arrays
from partseg.imaging import images_to_unit_tensor
from partseg.metrics import ConfusionMatrix
from partseg.plumbing.params import as_dict, load_params


def test_miou(model, dataset: str) -> float:
    images, masks, _ = load_split_arrays(dataset, "test")
    matrix = ConfusionMatrix(model.num_classes)
    for (labels, _), mask in zip(predict_labels(model, images, batch_size=64), masks):
        matrix.update(labels, mask)
    return 100.0 * matrix.miou()


def convergence(args, params) -> None:
    images, masks, _ = load_split_arrays(args.dataset, "labeled")
    classes = load_classes(args.dataset)
    options = params.train_autoshot
    lr = args.lr if args.lr is not None else options.lr
    batch_size = args.batch_size or options.batch_size
    print(f"# test mIoU (%) after a full schedule of `steps` steps; lr {lr}, batch "
          f"{batch_size}, threads {torch.get_num_threads()}", flush=True)
    print("images\tsteps\ttest_miou\tseconds\ts_per_step", flush=True)
    for steps in args.steps:
        for count in args.counts:
            count = min(count, len(images))
            start = time.perf_counter()
            model, _ = train_segmenter(
                images[:count], masks[:count], num_classes=len(classes), target_kind="hard",
                unet_config=as_dict(options.unet), augment=as_dict(options.augment),
                steps=steps, batch_size=batch_size, lr=lr,
                weight_decay=options.weight_decay,
                class_balance_power=params.baselines.class_balance_power,
                seed=params.baselines.seed, device="cpu")
            seconds = time.perf_counter() - start
            print(f"{count}\t{steps}\t{test_miou(model, args.dataset):.1f}\t{seconds:.0f}\t"
                  f"{seconds / steps:.3f}", flush=True)


# ---- measuring ------------------------------------------------------------------------------

def interleaved_min(functions: dict, rounds: int) -> dict:
    """Minimum wall time of each function, calling them in turn `rounds` times."""
    for fn in functions.values():
        fn(), fn()
    best = {name: math.inf for name in functions}
    for _ in range(rounds):
        for name, fn in functions.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def count_flops(fn) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()


def conv_problems(model: UNet, images: torch.Tensor, memory_format=torch.contiguous_format
                  ) -> list[tuple]:
    """(input, weight, padding) of every conv the UNet runs on `images`, as plain tensors."""
    problems = []

    def record(module, inputs, _output):
        x = torch.randn(inputs[0].shape).contiguous(memory_format=memory_format)
        w = torch.randn(module.weight.shape).contiguous(memory_format=memory_format)
        x.requires_grad_(module is not model.stem[0])  # the image needs no gradient
        w.requires_grad_()
        problems.append((x, w, module.padding))

    handles = [m.register_forward_hook(record) for m in model.modules()
               if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        model(images)
    for handle in handles:
        handle.remove()
    return problems


def plain_convs_fwd_bwd(problems) -> None:
    """The machine figure: the same convolutions, forward and backward, nothing else."""
    for x, w, padding in problems:
        out = torch.nn.functional.conv2d(x, w, padding=padding)
        wanted = [t for t in (x, w) if t.requires_grad]
        torch.autograd.grad(out, wanted, torch.ones_like(out))


# ---- the old step (before bench/bench_unet.py existed), kept as the reference --------------

def old_training_step(model, optimizer, images, targets, valid, lr, grad_clip):
    """NCHW tensors, for-loop Adam, default clipping, argmax agreement."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    logits = model(images)
    loss = trainer.soft_cross_entropy(logits, targets, valid)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    with torch.no_grad():
        agree = (logits.argmax(1) == targets.argmax(1)) & valid
        accuracy = agree.sum().item() / max(1, valid.sum().item())
    return loss.item(), accuracy


def speed(args, params) -> None:
    images, masks, _ = load_split_arrays(args.dataset, "labeled")
    num_classes = len(load_classes(args.dataset))
    options = params.train_autoshot
    unet, batch_size = as_dict(options.unet), options.batch_size
    augment = trainer._normalise_augment(as_dict(options.augment))
    image_stack = trainer.ArrayStack(images, "images")
    target_stack = trainer.ArrayStack(masks, "targets")
    sampler = trainer.BatchSampler(len(images), batch_size, seed=0)
    device = torch.device("cpu")

    def batch(step=0, augmented=True):
        return trainer._training_batch(
            image_stack, target_stack, sampler.indices(step), "hard", num_classes,
            augment if augmented else None, None, torch.Generator().manual_seed(step), device)

    def sample_only(step=0):
        indices = sampler.indices(step)
        images_to_unit_tensor(image_stack.take(indices))
        trainer.targets_to_probabilities(target_stack.take(indices), "hard", num_classes)

    raw_images, raw_targets, _ = batch(augmented=False)

    def augment_only():
        trainer._augment_batch(raw_images, raw_targets, augment, None, torch.Generator().manual_seed(0))

    torch.manual_seed(0)
    old_model = UNet(num_classes, **unet).train()
    new_model = UNet(num_classes, **unet).train().to(memory_format=torch.channels_last)
    old_optimizer = torch.optim.Adam(old_model.parameters(), lr=1e-3, weight_decay=1e-4)
    new_optimizer = trainer._adam(new_model, 1e-3, 1e-4, device)
    x, t, v = batch()
    x_last = x.contiguous(memory_format=torch.channels_last)
    problems = conv_problems(old_model, x)
    problems_last = conv_problems(old_model, x, torch.channels_last)
    step_counter = iter(range(10**9))

    def old_step():
        x, t, v = batch(next(step_counter))
        old_training_step(old_model, old_optimizer, x, t, v, 1e-3, 1.0)

    def new_step():
        x, t, v = batch(next(step_counter))
        trainer.training_step(new_model, new_optimizer, x, t, v, lr=1e-3, grad_clip=1.0)

    functions = {
        "machine": lambda: plain_convs_fwd_bwd(problems),
        "machine_last": lambda: plain_convs_fwd_bwd(problems_last),
        "unet_old": lambda: old_model(x).sum().backward(),
        "unet_new": lambda: new_model(x_last).sum().backward(),
        "augment": augment_only,
        "sample": sample_only,
        "step_old": old_step,
        "step_new": new_step,
    }
    times = interleaved_min(functions, args.rounds)
    conv_flops = count_flops(lambda: plain_convs_fwd_bwd(problems))
    unet_flops = count_flops(lambda: old_model(x).sum().backward())
    machine = conv_flops / min(times["machine"], times["machine_last"]) / 1e9  # the better one

    def rate(name, flops=unet_flops):
        gflops = flops / times[name] / 1e9
        return f"{gflops:6.1f}", f"{100 * gflops / machine:5.0f}%"

    rows = [("plain conv2d fwd+bwd, the UNet's convs, NCHW", "machine", *rate("machine", conv_flops)),
            ("plain conv2d fwd+bwd, the same, channels_last", "machine_last",
             *rate("machine_last", conv_flops)),
            ("UNet fwd+bwd, NCHW (old)", "unet_old", *rate("unet_old")),
            ("UNet fwd+bwd, channels_last (new)", "unet_new", *rate("unet_new")),
            ("augmentation alone (geometry + colour)", "augment", "", ""),
            ("batch sampling alone (read, tensor, one-hot)", "sample", "", ""),
            ("train step, old", "step_old", *rate("step_old")),
            ("train step, new (train_segmenter)", "step_new", *rate("step_new"))]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"UNet {unet}, {num_classes} classes, batch {batch_size} at {images.shape[1]} px, "
          f"{unet_flops / 1e9:.2f} GFLOP fwd+bwd; torch {torch.__version__}, threads "
          f"{torch.get_num_threads()}, load average {load:.2f}, min of {args.rounds} rounds")
    width = max(len(row[0]) for row in rows)
    print(f"{'measure':<{width}}  {'ms':>7}  {'GFLOP/s':>7}  {'% mach':>6}  steps/s")
    for label, name, gflops, share in rows:
        per_second = f"{1 / times[name]:7.2f}" if name.startswith("step") else ""
        print(f"{label:<{width}}  {times[name] * 1e3:7.1f}  {gflops:>7}  {share:>6}  {per_second}")
    print(f"speed-up of the step: {times['step_old'] / times['step_new']:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--dataset", default="data/dataset")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    parser.add_argument("--convergence", action="store_true", help="steps vs test mIoU instead")
    parser.add_argument("--counts", type=int, nargs="+", default=[500, 10],
                        help="labelled images per baseline (--convergence)")
    parser.add_argument("--steps", type=int, nargs="+", default=[250, 500, 1000, 2000],
                        help="step budgets (--convergence)")
    parser.add_argument("--lr", type=float, default=None, help="peak lr (default: params.yaml)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="images per step (--convergence; default: params.yaml)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("TQDM_DISABLE", "1")
    params = load_params(args.params)
    if args.convergence:
        convergence(args, params)
    else:
        speed(args, params)


if __name__ == "__main__":
    main()
