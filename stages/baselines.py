"""Stage baselines: UNets trained with full supervision on real labelled images.

unet_k<n>.pt for each n in baselines.label_counts (the first n images of the labelled
pool — the supervised alternative to annotating n GAN samples) and unet_full.pt on the
whole pool (the upper bound; on the demo data it is also the simulated annotator). Same
architecture, optimiser and augmentation as auto-shot (train_autoshot's settings): a weak
baseline proves nothing.
"""

from pathlib import Path

from partseg.io import atomic_dir
from partseg.stage import log, run_stage, stage_parser


def build(args, params):
    from partseg.autoshot.train import save_segmenter, train_segmenter
    from partseg.data.folder import load_classes, load_split_arrays
    from partseg.device import resolve_device
    from partseg.params import as_dict

    autoshot, options = params.train_autoshot, params.baselines
    images, masks, _ = load_split_arrays(args.dataset, "labeled")
    classes = load_classes(args.dataset)
    runs = {f"unet_k{n}": n for n in options.label_counts} | {"unet_full": len(images)}
    with atomic_dir(args.out) as tmp:
        for name, count in runs.items():
            log(f"[baselines] {name}: {count} labelled images")
            model, _ = train_segmenter(
                images[:count], masks[:count], num_classes=len(classes), target_kind="hard",
                unet_config=as_dict(autoshot.unet), augment=as_dict(autoshot.augment),
                steps=options.steps, batch_size=autoshot.batch_size, lr=autoshot.lr,
                weight_decay=autoshot.weight_decay, seed=options.seed, device=resolve_device(),
                log_path=tmp / f"{name}_log.tsv",
                snapshot_dir=Path(args.snapshots) / name)
            save_segmenter(tmp / f"{name}.pt", model,
                           {"classes": classes, "resolution": params.data.resolution,
                            "trained_on": f"{count} real labelled images"})


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--dataset", default="data/dataset")
    parser.add_argument("--snapshots", default="checkpoints/baselines")
    parser.add_argument("--out", default="results/baselines")
    run_stage("baselines", parser, build)
