"""Few-shot training: time per step of each network, and peak RSS against the cache size.

    python bench/bench_fewshot.py --threads 1     # full tables (about 6 minutes on 2 cores)
    python bench/bench_fewshot.py --quick         # fewer steps and smaller caches
    python bench/bench_fewshot.py --large         # adds a 2.5 GiB cache: k=16, C=5056, R=128

Caches are random fp16 features in the features stage's format (C = 736 channels, the demo
GAN's size; R = 32, k = 1, 5, 10 annotated images), written to a temporary folder.

Time per step: the median gap between consecutive steps' batch reads (one read per step),
which includes reading the batch from disk and leaves out the fixed start-up cost.

Peak memory: each row trains in a fresh subprocess and reports
resource.getrusage(RUSAGE_SELF).ru_maxrss (the parent has not imported torch: a child's
ru_maxrss starts from the peak of the process it was forked from). "before" is VmHWM after
importing torch and opening the cache. Two columns: reads through partseg's FeatureCache, and
the same reads done with os.pread (`PreadReads`, below), which never maps the file. A memory map
makes the file pages a read touches part of the process's RSS while the read runs (the kernel
maps whole page-cache folios around each random pixel), so that column shows how much of the
peak is mapped cache pages and how much is training itself.
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


def write_random_cache(folder: Path, images: int, resolution: int, channels: int = CHANNELS,
                       seed: int = 0) -> Path:
    """A cache folder of random fp16 features [N,R,R,C] (written one image at a time)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    with open(folder / "features.f16", "wb") as out:
        for _ in range(images):
            out.write(rng.standard_normal((resolution, resolution, channels), np.float32)
                      .astype(np.float16).tobytes())
    manifest = {"num_images": images, "num_channels": channels, "resolution": resolution,
                "features_file": "features.f16", "layers": ["random"], "channels_per_layer": [channels]}
    (folder / "manifest.json").write_text(json.dumps(manifest))
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


class PreadReads(CacheWrapper):
    """The cache's batch reads done with os.pread (one read per pixel or per tile row) instead of
    a memory map: the pages read stay in the OS page cache, outside the process's RSS."""

    def __init__(self, cache):
        super().__init__(cache)
        self.fd = os.open(cache.features_path, os.O_RDONLY)
        self.pixel_bytes = cache.num_channels * 2

    def _offset(self, image, y, x) -> int:
        return ((int(image) * self.resolution + int(y)) * self.resolution + int(x)) * self.pixel_bytes

    def pixels(self, image, y, x):
        import torch

        out = np.empty((len(image), self.num_channels), np.float16)
        for row, where in zip(out, zip(image, y, x)):
            row[:] = np.frombuffer(os.pread(self.fd, self.pixel_bytes, self._offset(*where)), np.float16)
        return torch.from_numpy(out.astype(np.float32))

    def random_pixels(self, n, rng):
        where = (rng.integers(0, self.num_images, n), rng.integers(0, self.resolution, n),
                 rng.integers(0, self.resolution, n))
        return self.pixels(*where), where

    def random_tiles(self, n, size, rng):
        import torch

        image = rng.integers(0, self.num_images, n)
        top, left = (rng.integers(0, self.resolution - size + 1, n) for _ in range(2))
        out = np.empty((n, self.num_channels, size, size), np.float32)
        for k in range(n):
            for r in range(size):
                offset = self._offset(image[k], top[k] + r, left[k])
                data = os.pread(self.fd, size * self.pixel_bytes, offset)
                out[k, :, r, :] = np.frombuffer(data, np.float16).reshape(size, self.num_channels).T
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
    if reads == "pread":
        cache = PreadReads(cache)
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


def memory_table(tmp: Path, steps: int, quick: bool, large: bool, threads: int | None) -> None:
    print(f"## peak RSS of training ({steps} steps, a fresh process each)\n")
    print("| network | k | R | C | cache on disk MiB | before training MiB | "
          "peak RSS, FeatureCache reads MiB | peak RSS, pread reads MiB |")
    print("|---|---|---|---|---|---|---|---|")
    sizes = [(10, 32, CHANNELS), (100, 32, CHANNELS), (10, 128, CHANNELS)]
    sizes += [] if quick else [(30, 128, CHANNELS)]
    sizes += [(16, 128, PAPER_CHANNELS)] if large else []
    for k, resolution, channels in sizes:
        folder = write_random_cache(tmp / f"k{k}_r{resolution}_c{channels}", k, resolution, channels)
        for network in ("mlp2", "cnn"):
            row_steps = steps if channels == CHANNELS else 5  # C = 5056 steps are slow on a CPU
            mapped = measure_rss(folder, network, row_steps, "cache", threads)
            pread = measure_rss(folder, network, row_steps, "pread", threads)
            print(f"| {network} | {k} | {resolution} | {channels} | {folder_mib(folder):.0f} | "
                  f"{mapped['before_mib']:.0f} | {mapped['peak_mib']:.0f} | {pread['peak_mib']:.0f} |",
                  flush=True)
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
                        help="also measure memory on a paper-width cache (k=16, C=5056, R=128: 2.5 GiB)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice); 1 is faster on a "
                             "loaded machine")
    parser.add_argument("--child", nargs=4, metavar=("CACHE", "NETWORK", "STEPS", "READS"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        set_threads(args.threads)
        child(args.child[0], args.child[1], int(args.child[2]), args.child[3])
        return

    print(f"# few-shot training, C={CHANNELS}, batch_pixels=4096, tile=32, threads="
          f"{args.threads or 'default'}, cores={os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.1f}\n")
    with tempfile.TemporaryDirectory(prefix="bench_fewshot_") as tmp:
        # Memory first, while this process is small (see the module docstring).
        memory_table(Path(tmp), 10 if args.quick else 20, args.quick, args.large, args.threads)
        set_threads(args.threads)
        time_table(Path(tmp), 8 if args.quick else 20)
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
