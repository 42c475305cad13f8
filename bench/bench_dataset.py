"""Benchmark the embedded synthetic dataset: time and size of the default dataset, and the
generator's speed per resolution.

    python bench/bench_dataset.py                 # default dataset (32 px, 10k/500/500/300)
    python bench/bench_dataset.py --workers 1     # single process
    python bench/bench_dataset.py --keep data/x   # keep the generated folder

Prints two tables: the full dataset write (wall time, CPU time, images/s, bytes on disk per
split), then render-only speed (one process, no file writing) at several resolutions. On a
shared machine the wall time depends on the load; the CPU time does not.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd

from partseg.data.synthetic import generate_synthetic_dataset, render_face_sample


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _folder_allocated(folder: Path) -> int:
    """Bytes the file system allocates (whole blocks), as `du` reports."""
    return sum(p.stat().st_blocks * 512 for p in folder.rglob("*") if p.is_file())


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (the worker processes)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def bench_full_dataset(out: Path, workers: int | None, sizes: dict) -> pd.DataFrame:
    cpu_before = _cpu_seconds()
    started = time.perf_counter()
    summary = generate_synthetic_dataset(out, resolution=32, seed=0, show_progress=False,
                                         workers=workers, **sizes)
    seconds = time.perf_counter() - started
    cpu = _cpu_seconds() - cpu_before
    total = sum(sizes.values())
    rows = []
    for split in ("train", "labeled", "test", "test_shifted"):
        folder = out / split
        rows.append({"what": split, "images": len(list((folder / "images").iterdir())),
                     "MB (files)": _folder_bytes(folder) / 1e6,
                     "MB (du)": _folder_allocated(folder) / 1e6})
    rows.append({"what": "whole dataset (incl. preview)", "images": total,
                 "MB (files)": _folder_bytes(out) / 1e6, "MB (du)": _folder_allocated(out) / 1e6,
                 "wall s": seconds,
                 "images/s": total / seconds, "CPU s": cpu, "images/CPU-s": total / cpu,
                 "workers": summary["workers"]})
    return pd.DataFrame(rows)


def bench_render(resolutions: list[int], count: int) -> pd.DataFrame:
    rows = []
    for resolution in resolutions:
        count_here = max(10, count * 32 // resolution)  # fewer of the big ones
        for split in ("train", "test_shifted"):
            render_face_sample(0, split, 0, resolution)  # warm caches
            wall, cpu = time.perf_counter(), time.process_time()
            for index in range(count_here):
                render_face_sample(0, split, index, resolution)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            rows.append({"resolution": resolution, "split": split, "images": count_here,
                         "ms/image (wall)": 1000 * wall / count_here,
                         "ms/image (cpu)": 1000 * cpu / count_here,
                         "images/s (1 process)": count_here / wall})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all CPUs)")
    parser.add_argument("--n-train", type=int, default=10000)
    parser.add_argument("--render-count", type=int, default=200, help="images per render timing")
    parser.add_argument("--keep", type=Path, default=None,
                        help="write the dataset here and keep it")
    args = parser.parse_args()
    sizes = {"n_train": args.n_train, "n_labeled": 500, "n_test": 500, "n_test_shifted": 300}
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    pd.set_option("display.float_format", "{:.2f}".format)
    if args.keep is not None:
        table = bench_full_dataset(args.keep, args.workers, sizes)
    else:
        scratch = Path(tempfile.mkdtemp(prefix="bench_dataset_"))
        try:
            table = bench_full_dataset(scratch / "dataset", args.workers, sizes)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    print("\nDefault synthetic dataset (32 px), written to disk:")
    print(table.astype(object).where(table.notna(), "").to_string(index=False))
    print("\nGenerator alone (render only, one process):")
    print(bench_render([32, 64, 128, 256], args.render_count).to_string(index=False))


if __name__ == "__main__":
    main()
