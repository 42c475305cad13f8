"""Feature extraction and the disk cache: speed, bytes per image, peak memory, paper-scale sums.

    python bench/bench_features.py                       # demo config, random or trained G
    python bench/bench_features.py --checkpoint results/train_gan/generator.pt
    python bench/bench_features.py --quick               # fewer images
    python bench/bench_features.py --threads 1           # on a shared machine

Prints three tables.
1. Speed at the demo config (32 px generator, all styled convs, features at 32 px): images/s of
   the extractor alone (fp32, in memory) and of `write_feature_cache` (fp16 to disk), and the
   bytes each image takes on disk.
2. Peak RSS (resource.getrusage in a fresh subprocess per row) while writing a cache of 10,
   100 and 1000 images, against an in-RAM variant that keeps every image's features, as
   DatasetGAN does. Ours should be flat in N; the in-RAM one grows by N x bytes per image.
3. On paper, the paper's scale: 16 images, 5056 channels at 512 x 512 - disk and RAM of this
   cache against DatasetGAN's in-RAM arrays (fp16 plus an fp32 copy).
The machine may be shared: the load average is printed with the tables.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

DEMO = dict(size=32, style_dim=128, n_mlp=4, channel_base=1024, channel_max=128)
DEFAULT_CHECKPOINT = Path("results/train_gan/generator.pt")
GiB = 1024 ** 3


def load_or_build_generator(checkpoint: str | None):
    from partseg.gan import Generator, load_generator

    path = Path(checkpoint) if checkpoint else DEFAULT_CHECKPOINT
    if path.is_file():
        return load_generator(path).eval(), str(path)
    torch.manual_seed(0)
    return Generator(**DEMO).eval(), "random demo-size generator (no trained checkpoint)"


def latents(G, count: int, seed: int = 0) -> torch.Tensor:
    from partseg.gan import seeded_z

    with torch.no_grad():
        w = G.mapping(seeded_z(seed, range(count), G.style_dim))
    return w[:, None].repeat(1, G.n_latent, 1)


def speed_table(G, description: str, count: int, batch_size: int, repeats: int) -> None:
    from partseg.features import FeatureExtractor, write_feature_cache

    extractor = FeatureExtractor(G, "all", G.size)
    ws = latents(G, count)
    tmp = Path(tempfile.mkdtemp())

    def render_only():
        with torch.no_grad():
            for i in range(0, count, batch_size):
                G.synthesis(ws[i:i + batch_size])

    def extract_in_memory():
        for i in range(0, count, batch_size):
            extractor(ws[i:i + batch_size])

    def write_to_disk():
        write_feature_cache(tmp / "cache", extractor, ws, batch_size=batch_size,
                            generator_checksum="bench", params={}, show_progress=False)

    paths = {"generator only (G.synthesis, no hooks)": render_only,
             "extractor (hooks, resize, fp32 in memory)": extract_in_memory,
             "write_feature_cache (fp16 to disk)": write_to_disk}
    extractor(ws[:batch_size])  # warm-up
    # Interleaved repeats: on a shared machine the load drifts; the best run is the least disturbed.
    rates = {name: [] for name in paths}
    for _ in range(repeats):
        for name, run in paths.items():
            start = time.perf_counter()
            run()
            rates[name].append(count / (time.perf_counter() - start))
    feature_bytes = (tmp / "cache" / "features.f16").stat().st_size / count
    image_bytes = (tmp / "cache" / "images.npy").stat().st_size / count
    shutil.rmtree(tmp)
    print(f"\n## Extraction speed ({description}; {G.size} px, layers 'all' = "
          f"{len(extractor.layers)} convs, {extractor.num_channels} channels, features at "
          f"{extractor.resolution} px, batch {batch_size}, {count} images, {repeats} interleaved "
          "repeats)\n")
    print("| path | images/s best | images/s median |")
    print("|---|---:|---:|")
    for name, values in rates.items():
        print(f"| {name} | {max(values):.1f} | {statistics.median(values):.1f} |")
    print(f"\nBytes per image on disk: {feature_bytes:,.0f} (features, fp16 = channels x R^2 x 2) "
          f"+ {image_bytes:,.0f} (uint8 image).")


def child(count: int, mode: str, checkpoint: str | None) -> None:
    """Run in a fresh process: extract `count` images, print peak RSS in MiB."""
    from partseg.features import FeatureExtractor, write_feature_cache

    torch.set_num_threads(1)
    G, _ = load_or_build_generator(checkpoint)
    extractor = FeatureExtractor(G, "all", G.size)
    ws = latents(G, count)
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if mode == "cache":
        with tempfile.TemporaryDirectory() as tmp:
            write_feature_cache(Path(tmp) / "cache", extractor, ws, batch_size=10,
                                generator_checksum="bench", params={}, show_progress=False)
    else:  # in RAM, as DatasetGAN: every image's features kept, fp16 plus an fp32 copy
        kept = []
        for i in range(0, count, 10):
            features, _ = extractor(ws[i:i + 10])
            kept.append(features.half())
        all_fp32 = torch.cat(kept).float()  # noqa: F841 -- the copy is the point
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(f"{baseline / 1024:.1f} {peak / 1024:.1f}")


def rss_table(counts: list[int], checkpoint: str | None, bytes_per_image: float) -> None:
    print("\n## Peak RSS while extracting N images (fresh process each, 1 thread, batch 10)\n")
    print("| N | cache on disk: peak RSS MiB | in RAM (fp16 + fp32 copy): peak RSS MiB | "
          "features on disk MiB |")
    print("|---:|---:|---:|---:|")
    for count in counts:
        row = []
        for mode in ("cache", "ram"):
            out = subprocess.run([sys.executable, __file__, "--child", str(count), "--mode", mode]
                                 + (["--checkpoint", checkpoint] if checkpoint else []),
                                 capture_output=True, text=True, check=True).stdout.split()
            row.append(float(out[-1]))
        print(f"| {count} | {row[0]:.0f} | {row[1]:.0f} | {count * bytes_per_image / 2**20:.1f} |")


def paper_scale_table() -> None:
    images, size, channels, channels_dg = 16, 512, 5056, 5088
    pixels = size * size
    per_image = pixels * channels * 2
    largest_layer = 512 * pixels * 4  # an fp32 512-channel map upsampled to 512 px, if unchunked
    rows = [
        ("cache on disk (fp16, all 16 images)", images * per_image, "disk"),
        ("extraction, RAM: one image's fp16 buffer (batch 1)", per_image, "RAM"),
        ("extraction, RAM: resize temporary (64 MiB channel chunks)", 64 * 2**20, "RAM"),
        ("  (same without chunking: a 512-channel layer in fp32)", largest_layer, "RAM"),
        ("few-shot training, RAM: 4096 random pixels, fp32", 4096 * channels * 4, "RAM"),
        ("few-shot training, RAM: 8 tiles of 32x32, fp32", 8 * 32 * 32 * channels * 4, "RAM"),
        ("few-shot inference, RAM: one image's features, fp32", pixels * channels * 4, "RAM"),
        ("DatasetGAN: 16 images in RAM, fp16 + fp32 copy (5088 ch)",
         images * pixels * channels_dg * (2 + 4), "RAM"),
    ]
    print("\n## On paper: 16 images x 5056 channels x 512 x 512 (1024 px StyleGAN2)\n")
    print("| what | where | GiB | GB |")
    print("|---|---|---:|---:|")
    for what, amount, where in rows:
        print(f"| {what} | {where} | {amount / GiB:.2f} | {amount / 1e9:.2f} |")
    print("\nOurs peaks at about one image's fp16 features plus the generator during extraction "
          f"(~{(per_image + 64 * 2**20) / GiB:.1f} GiB + G) and reads pixels/tiles of MiB size "
          "during training; DatasetGAN holds every image at once.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (1 is faster on a machine shared with other jobs)")
    parser.add_argument("--quick", action="store_true", help="fewer images")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="cache", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child is not None:
        child(args.child, args.mode, args.checkpoint)
        return
    from partseg.features import FeatureExtractor

    G, description = load_or_build_generator(args.checkpoint)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores, "
          f"torch threads {torch.get_num_threads()}")
    speed_table(G, description, 40 if args.quick else 100, 20, 2 if args.quick else 3)
    bytes_per_image = FeatureExtractor(G, "all", G.size).num_channels * G.size ** 2 * 2
    rss_table([10, 100] if args.quick else [10, 100, 1000], args.checkpoint, bytes_per_image)
    paper_scale_table()


if __name__ == "__main__":
    main()
