"""Few-shot training: time per step of each network, and peak RSS against the cache size.

    python bench/bench_fewshot.py --threads 1     # full tables (about 6 minutes on 2 cores)
    python bench/bench_fewshot.py --quick         # fewer steps and smaller caches
    python bench/bench_fewshot.py --large         # adds C=5056 caches: k=1, R=32 (10 MiB) and
                                                  # k=16, R=128 (2.5 GiB)
    python bench/bench_fewshot.py --memory-only --quick --large --threads 1   # the RSS table only
    python bench/bench_fewshot.py --compare-mmap  # adds a column read through a memory map

Caches are random fp16 features in the features stage's format (C = 736 channels, the demo
GAN's size; R = 32, k = 1, 5, 10 annotated images), written to a temporary folder.

Time per step: the median gap between consecutive steps' batch reads (one read per step),
which includes reading the batch from disk and leaves out the fixed start-up cost.

Peak memory: each row trains in a fresh subprocess and reports
resource.getrusage(RUSAGE_SELF).ru_maxrss (the parent has not imported torch: a child's
ru_maxrss starts from the peak of the process it was forked from). "before" is VmHWM after
importing torch and opening the cache. The main column reads through partseg's FeatureCache
(os.pread: the pages read stay in the OS page cache, outside the process); with --compare-mmap a
second column does the same reads through a memory map (`MappedReads`, below: FeatureCache's
reads before it switched), which makes the file pages a read touches part of the process's RSS
(the kernel maps whole page-cache folios around each random pixel), so it grows with the cache.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHANNELS = 736
PAPER_CHANNELS = 5056  # 1024 px FFHQ StyleGAN2, convs.0..15
NUM_CLASSES = 10


class RandomFeatures:
    """Random fp16-valued features [N,R,R,C] made one image at a time when indexed, so that
    write_cache_from_arrays can write a cache larger than RAM."""

    def __init__(self, images: int, resolution: int, channels: int, seed: int = 0):
        self.shape = (images, resolution, resolution, channels)
        self.seed = seed

    def __getitem__(self, index: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, index])
        return rng.standard_normal(self.shape[1:], np.float32).astype(np.float16)


def write_random_cache(folder: Path, images: int, resolution: int, channels: int = CHANNELS,
                       seed: int = 0) -> Path:
    """A cache folder of random fp16 features [N,R,R,C], in the features stage's format."""
    from partseg.features.cache import write_cache_from_arrays

    write_cache_from_arrays(folder, RandomFeatures(images, resolution, channels, seed),
                            layers=["random"], channels_per_layer=[channels]).close()
    return folder


def random_masks(images: int, resolution: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, NUM_CLASSES, (images, resolution, resolution)).astype(np.uint8)


class CacheWrapper:
    """Forwards everything to a FeatureCache; subclasses override the batch reads."""

    def __init__(self, cache):
        self.cache = cache

    def __getattr__(self, name):
        return getattr(self.cache, name)


class StepClock(CacheWrapper):
    """Timestamps every batch read: training reads one batch per step, so the gaps between reads
    are the step times (the feature-statistics reads at the start are skipped)."""

    def __init__(self, cache):
        super().__init__(cache)
        self.reads: list[float] = []

    def random_pixels(self, n, rng):
        self.reads.append(time.perf_counter())
        return self.cache.random_pixels(n, rng)

    def pixels(self, image, y, x):
        self.reads.append(time.perf_counter())
        return self.cache.pixels(image, y, x)

    def random_tiles(self, n, size, rng):
        self.reads.append(time.perf_counter())
        return self.cache.random_tiles(n, size, rng)


class MappedReads(CacheWrapper):
    """For comparison only: the batch reads done through a memory map of the whole file, as
    FeatureCache did before it switched to os.pread. The kernel maps whole page-cache folios
    around each random pixel into the process, so RSS grows with the cache size."""

    def _mapped(self):
        return np.memmap(self.features_path, dtype=np.float16, mode="r", shape=self.shape)

    def pixels(self, image, y, x):
        import torch

        return torch.from_numpy(np.asarray(self._mapped()[image, y, x], np.float32))

    def random_pixels(self, n, rng):
        where = (rng.integers(0, self.num_images, n), rng.integers(0, self.resolution, n),
                 rng.integers(0, self.resolution, n))
        return self.pixels(*where), where

    def random_tiles(self, n, size, rng):
        import torch

        image = rng.integers(0, self.num_images, n)
        top, left = (rng.integers(0, self.resolution - size + 1, n) for _ in range(2))
        features = self._mapped()
        out = np.stack([features[i, t:t + size, l:l + size].transpose(2, 0, 1)
                        for i, t, l in zip(image, top, left)]).astype(np.float32)
        return torch.from_numpy(out), (image, top, left)


def seconds_per_step(cache_dir: Path, network: str, steps: int) -> float:
    """Median time between consecutive training steps (robust to other jobs' load spikes)."""
    from partseg.features.cache import FeatureCache
    from partseg.fewshot import train_fewshot
    from partseg.fewshot.train import STATISTICS_BATCHES

    clock = StepClock(FeatureCache(cache_dir))
    train_fewshot(clock, random_masks(clock.num_images, clock.resolution), num_classes=NUM_CLASSES,
                  network=network, steps=steps, device="cpu")
    step_starts = clock.reads[STATISTICS_BATCHES:]
    return float(np.median(np.diff(step_starts)))


def vm_hwm_mib() -> float:
    """Peak resident set of this process so far, from /proc (NaN where there is none)."""
    status = Path("/proc/self/status")
    for line in status.read_text().splitlines() if status.exists() else ():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(cache_dir: str, network: str, steps: int, reads: str) -> None:
    """Runs in the subprocess: train, then print its memory figures as JSON."""
    from partseg.features.cache import FeatureCache
    from partseg.fewshot import train_fewshot

    cache = FeatureCache(cache_dir)
    if reads == "mmap":
        cache = MappedReads(cache)
    masks = random_masks(cache.num_images, cache.resolution)
    before = vm_hwm_mib()
    train_fewshot(cache, masks, num_classes=NUM_CLASSES, network=network, steps=steps, device="cpu")
    print(json.dumps({"before_mib": before,
                      "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def measure_rss(cache_dir: Path, network: str, steps: int, reads: str, threads: int | None) -> dict:
    env = dict(os.environ, TQDM_DISABLE="1")
    command = [sys.executable, __file__, "--child", str(cache_dir), network, str(steps), reads]
    if threads:
        command += ["--threads", str(threads)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def folder_mib(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.iterdir()) / 2**20


def set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def memory_table(tmp: Path, steps: int, quick: bool, large: bool, threads: int | None,
                 compare_mmap: bool) -> None:
    print(f"## peak RSS of training ({steps} steps, 5 at C = {PAPER_CHANNELS}; a fresh process each)\n")
    print("| network | k | R | C | cache on disk MiB | before training MiB | "
          "peak RSS, FeatureCache MiB |" + (" peak RSS, memory-mapped reads MiB |" if compare_mmap else ""))
    print("|---|---|---|---|---|---|---|" + ("---|" if compare_mmap else ""))
    sizes = [(10, 32, CHANNELS), (100, 32, CHANNELS), (10, 128, CHANNELS)]
    sizes += [] if quick else [(30, 128, CHANNELS)]
    # At C = 5056 the network and its batch are wider; a 10 MiB cache at that width separates
    # their cost from the cache size's.
    sizes += [(1, 32, PAPER_CHANNELS), (16, 128, PAPER_CHANNELS)] if large else []
    for k, resolution, channels in sizes:
        folder = tmp / f"k{k}_r{resolution}_c{channels}"
        # Written by a child too: this process stays free of torch and of a large image buffer.
        subprocess.run([sys.executable, __file__, "--write-cache", str(folder), str(k),
                        str(resolution), str(channels)], check=True)
        for network in ("mlp2", "cnn"):
            row_steps = steps if channels == CHANNELS else 5  # C = 5056 steps are slow on a CPU
            ours = measure_rss(folder, network, row_steps, "cache", threads)
            mapped = (f" {measure_rss(folder, network, row_steps, 'mmap', threads)['peak_mib']:.0f} |"
                      if compare_mmap else "")
            print(f"| {network} | {k} | {resolution} | {channels} | {folder_mib(folder):.0f} | "
                  f"{ours['before_mib']:.0f} | {ours['peak_mib']:.0f} |{mapped}", flush=True)
        shutil.rmtree(folder)


def time_table(tmp: Path, steps: int) -> None:
    print("\n## seconds per training step (R = 32; median over steps)\n")
    print("| network | k=1 | k=5 | k=10 |")
    print("|---|---|---|---|")
    caches = {k: write_random_cache(tmp / f"k{k}_r32", k, 32) for k in (1, 5, 10)}
    for network in ("linear", "mlp", "mlp2", "cnn"):
        cells = [f"{seconds_per_step(caches[k], network, steps):.3f}" for k in (1, 5, 10)]
        print(f"| {network} | " + " | ".join(cells) + " |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps, smaller caches")
    parser.add_argument("--large", action="store_true",
                        help="also measure memory on paper-width caches (C=5056: k=1, R=32 and "
                             "k=16, R=128: 2.5 GiB)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice); 1 is faster on a "
                             "loaded machine")
    parser.add_argument("--compare-mmap", action="store_true",
                        help="also measure the same reads through a memory map (the old reader)")
    parser.add_argument("--memory-only", action="store_true", help="skip the timing table")
    parser.add_argument("--write-cache", nargs=4, metavar=("FOLDER", "K", "R", "C"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--child", nargs=4, metavar=("CACHE", "NETWORK", "STEPS", "READS"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.write_cache:
        folder, *sizes = args.write_cache
        write_random_cache(Path(folder), *map(int, sizes))
        return
    if args.child:
        set_threads(args.threads)
        child(args.child[0], args.child[1], int(args.child[2]), args.child[3])
        return

    print(f"# few-shot training, C={CHANNELS}, batch_pixels=4096, tile=32, threads="
          f"{args.threads or 'default'}, cores={os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.1f}\n")
    with tempfile.TemporaryDirectory(prefix="bench_fewshot_") as tmp:
        # Memory first, while this process is small (see the module docstring).
        memory_table(Path(tmp), 10 if args.quick else 20, args.quick, args.large, args.threads,
                     args.compare_mmap)
        if not args.memory_only:
            set_threads(args.threads)
            time_table(Path(tmp), 8 if args.quick else 20)
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
