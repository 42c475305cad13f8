"""Segmenter speed on the CPU: PyTorch vs ONNX Runtime (`partseg export`), images/s.

    python bench/bench_export.py                        # 32 and 512 px, 1 thread each
    python bench/bench_export.py --threads 2 --sizes 32 128

Times the network alone (float [B,3,S,S] in, logits out), which is the only part that
differs between `partseg segment --model x.pt` and `--model x.onnx`: resizing and the argmax
are the same code on both paths. PyTorch runs the model as Segmenter does (eval, fp32, NCHW,
no_grad), and, for reference, in channels_last (the layout training uses, faster in oneDNN);
ONNX Runtime runs the exported file (CPU provider, all graph optimisations). Both
get the same thread count (torch.set_num_threads = intra_op_num_threads; one inter-op
thread). One thread by default: on a small machine shared with other jobs, a second
thread that waits for a busy core stalls the whole op (PyTorch at 2 threads ran 5x slower
than at 1 while a test suite ran beside it). The UNet is the default run's (params.yaml train_autoshot.unet, 10 classes of face10)
with random weights: speed does not depend on them. Rounds of the two runtimes alternate and
the median round counts, so load from other jobs on a shared machine hits both alike.
Prints a markdown table with the CPU model and the thread count.
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from partseg.autoshot.segmenter import load_segmenter, save_segmenter
from partseg.autoshot.unet import UNet
from partseg.export import export_segmenter
from partseg.plumbing.params import as_dict, load_params


def cpu_model() -> str:
    """The CPU's name from /proc/cpuinfo (platform's answer elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def build_models(params: str, classes: int, threads: int, folder: Path):
    """The default run's UNet (random weights) as PyTorch model and ONNX Runtime session."""
    import onnxruntime

    unet = as_dict(load_params(params).train_autoshot.unet)
    torch.manual_seed(0)
    checkpoint = folder / "model.pt"
    save_segmenter(checkpoint, UNet(classes, **unet).eval(),
                   {"class_names": [f"class{k}" for k in range(classes)], "resolution": 32})
    report = export_segmenter(checkpoint, folder / "model.onnx")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(folder / "model.onnx"), options,
                                           providers=["CPUExecutionProvider"])
    return load_segmenter(checkpoint, "cpu"), session, unet, report["max_logit_gap"]


def images_per_second(run, batch: int, min_seconds: float) -> float:
    """One round: call run() until min_seconds have passed -> images/s."""
    count, started = 0, time.perf_counter()
    while True:
        run()
        count += batch
        elapsed = time.perf_counter() - started
        if elapsed >= min_seconds:
            return count / elapsed


def bench_size(model, session, size: int, batch: int, rounds: int, min_seconds: float):
    """-> (PyTorch NCHW, PyTorch channels_last, ONNX Runtime images/s, max logit difference)."""
    images = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(size))
    feed = {"images": images.numpy()}
    channels_last = copy.deepcopy(model).to(memory_format=torch.channels_last)
    images_last = images.contiguous(memory_format=torch.channels_last)

    def run_torch():
        with torch.no_grad():
            model(images)

    def run_torch_last():
        with torch.no_grad():
            channels_last(images_last)

    def run_onnx():
        session.run(None, feed)

    with torch.no_grad():
        gap = float(np.abs(session.run(None, feed)[0] - model(images).numpy()).max())
    runs = (run_torch, run_torch_last, run_onnx)
    for run in runs:  # warm-up: oneDNN primitive caches, ORT's first-run allocations
        run()
    rates = [[] for _ in runs]
    for _ in range(rounds):  # alternating, so background load affects all alike
        for run, rate in zip(runs, rates):
            rate.append(images_per_second(run, batch, min_seconds))
    return (*(statistics.median(rate) for rate in rates), gap)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 512])
    parser.add_argument("--batch", type=int, nargs="+", default=None,
                        help="images per call, one per size (default 16 at <=64 px, else 1)")
    parser.add_argument("--threads", type=int, default=1, help="for each runtime")
    parser.add_argument("--classes", type=int, default=10, help="face10: 10")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--min-seconds", type=float, default=1.0, help="per round")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    import onnxruntime

    batches = args.batch or [16 if size <= 64 else 1 for size in args.sizes]
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        model, session, unet, _ = build_models(args.params, args.classes, args.threads,
                                                 Path(folder))
        rows = [(size, batch, *bench_size(model, session, size, batch, args.rounds,
                                          args.min_seconds))
                for size, batch in zip(args.sizes, batches)]
    print(f"CPU: {cpu_model()}; {args.threads} thread(s) for each runtime; torch "
          f"{torch.__version__}, onnxruntime {onnxruntime.__version__}; UNet "
          f"base_channels={unet['base_channels']}, depth={unet['depth']}, {args.classes} "
          f"classes, fp32; median of {args.rounds} alternating rounds\n")
    print("| input | batch | PyTorch NCHW, as partseg segment (img/s) | PyTorch channels_last "
          "(img/s) | ONNX Runtime (img/s) | ONNX / PyTorch NCHW | max logit difference |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for size, batch, torch_rate, last_rate, onnx_rate, gap in rows:
        print(f"| {size}x{size} | {batch} | {torch_rate:.3g} | {last_rate:.3g} "
              f"| {onnx_rate:.3g} | {onnx_rate / torch_rate:.2f}x | {gap:.1e} |")


if __name__ == "__main__":
    main()
