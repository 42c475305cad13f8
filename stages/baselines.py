"""Stage baselines: UNets trained with full supervision on real labelled images.

unet_k<n>.pt for each n in baselines.label_counts (the first n images of the labelled
pool — the supervised alternative to annotating n GAN samples) and unet_full.pt on the
whole pool (the upper bound; the demo's simulated annotator is another UNet, trained by
the train_annotator stage on rendered faces). Same architecture, optimiser and augmentation
as auto-shot (train_autoshot's settings): a weak baseline proves nothing. Each keeps what suits it best: the few-label UNets their own steps
and batch (baselines.steps_few, batch_size_few), and clean labels no class-balanced loss
(baselines.class_balance_power 0, where auto-shot's noisy generated labels need 0.5).

With --threads N > 1 on the CPU the UNets train side by side, one process per UNet (at most
N, each with N / processes threads): a 32 px UNet step is too small to use several threads
well, while independent runs scale with the cores. The models do not depend on it: each run
is seeded by baselines.seed alone.
"""

from pathlib import Path

from partseg.plumbing.errors import PartsegError
from partseg.plumbing.io import atomic_dir
from partseg.plumbing.stage import log, run_stage, snapshot_folder, stage_parser


def train_one(name: str, count: int, images, masks, classes: list[str], resolution: int,
              settings: dict, snapshot_dir: Path, out_dir: Path, threads: int | None = None
              ) -> str:
    """Train and save one baseline UNet (also the body of a worker process)."""
    import torch

    from partseg.autoshot.segmenter import save_segmenter
    from partseg.autoshot.train import train_segmenter
    from partseg.plumbing.device import resolve_device

    if threads:
        torch.set_num_threads(threads)
    log(f"[baselines] {name}: {count} labelled images")
    # The few-label UNets converge sooner (bench/bench_unet.py --convergence: 10 images reach
    # their plateau by 1000 steps) and on smaller batches (1 or 10 images fill no batch of 32),
    # so they get baselines.steps_few and batch_size_few instead of steps and batch_size.
    few = name != "unet_full"
    settings = {**settings, "steps": settings["steps_few"] if few else settings["steps"],
                "batch_size": settings["batch_size_few"] if few else settings["batch_size"]}
    settings.pop("steps_few"), settings.pop("batch_size_few")
    model, _ = train_segmenter(images[:count], masks[:count], num_classes=len(classes),
                               target_kind="hard", device=resolve_device(),
                               log_path=out_dir / f"{name}_log.tsv",
                               snapshot_dir=snapshot_dir / name, **settings)
    save_segmenter(out_dir / f"{name}.pt", model,
                   {"classes": classes, "resolution": resolution,
                    "trained_on": f"{count} real labelled images"})
    return name


def workers_for(threads: int, runs: int, device_type: str) -> int:
    """Processes to train `runs` UNets with `threads` CPU threads (1: in this process)."""
    if device_type != "cpu" or threads <= 1:
        return 1
    return min(threads, runs)


def build(args, params):
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from partseg.data.folder import load_classes, load_split_arrays
    from partseg.plumbing.device import resolve_device
    from partseg.plumbing.params import as_dict

    autoshot, options = params.train_autoshot, params.baselines
    images, masks, _ = load_split_arrays(args.dataset, "labeled")
    classes = load_classes(args.dataset)
    beyond = [n for n in options.label_counts if n > len(images)]
    if beyond:  # images[:n] would quietly train on all of them under the name unet_k<n>
        raise PartsegError(f"params key baselines.label_counts: {beyond[0]} labelled images, but "
                           f"{args.dataset}/labeled has {len(images)}; use at most that")
    runs = {f"unet_k{n}": n for n in options.label_counts} | {"unet_full": len(images)}
    settings = {"unet_config": as_dict(autoshot.unet), "augment": as_dict(autoshot.augment),
                "steps": options.steps, "steps_few": options.steps_few,
                "batch_size": autoshot.batch_size, "batch_size_few": options.batch_size_few,
                "lr": autoshot.lr, "weight_decay": autoshot.weight_decay,
                "class_balance_power": options.class_balance_power, "seed": options.seed}
    snapshots = snapshot_folder(args.snapshots, "baselines", [args.dataset])
    resolution = params.data.resolution
    threads = args.threads if args.threads > 0 else _cpu_count()
    workers = workers_for(threads, len(runs), resolve_device().type)
    with atomic_dir(args.out) as tmp:
        if workers == 1:
            for name, count in runs.items():
                train_one(name, count, images, masks, classes, resolution, settings, snapshots,
                          tmp)
            return
        log(f"[baselines] {len(runs)} UNets in {workers} processes, "
            f"{max(1, threads // workers)} thread(s) each")
        # spawn, not fork: a forked torch (OpenMP pool already started) can hang.
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            jobs = [pool.submit(train_one, name, count, images[:count], masks[:count], classes,
                                resolution, settings, snapshots, tmp, max(1, threads // workers))
                    for name, count in runs.items()]
            for job in jobs:
                job.result()  # re-raises a worker's error here


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--snapshots", required=True)
    parser.add_argument("--out", required=True)
    run_stage("baselines", parser, build)
