"""GAN quality across training, with no downloaded weights: the linear part probe.

    python bench/gan_probe.py --dataset data/synthetic --run-dir results/gan_snapshots/<run id>
    python bench/gan_probe.py --dataset data/synthetic --checkpoint results/train_gan/generator.pt
    python bench/gan_probe.py --dataset data/dataset --run-dir <run> --annotator data/pretrained/annotator/annotator.pt

A small segmenter is trained on the dataset's `labeled` split (its mIoU on `test` is printed:
the ceiling of what the probe can see), then for every EMA generator saved during training
(`g_ema-<step>.pt`) a linear per-pixel classifier is fitted on the generator's features of
generated images labelled by that segmenter, and scored on other generated images. `rgb`
is the same probe on raw pixels; the margin is what the GAN's features add. See
partseg/gan/probe.py.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import torch

from partseg.data import load_classes, load_split_arrays
from partseg.gan import load_generator
from partseg.gan.probe import iou_scores, linear_probe, train_labeler
from partseg.gan.train import generator_from_snapshot


def segmenter_labeler(path: str, classes: list[str]):
    """A saved partseg segmenter as the probe's labeler: uint8 images -> label ids in `classes`
    (a 10-class face annotator's labels are merged under data.protocol face4)."""
    import numpy as np

    from partseg.shots.simulated_annotator import annotator_labels
    from partseg.autoshot.segmenter import load_segmenter

    model = load_segmenter(path)
    return lambda images: np.stack([labels for labels, _ in
                                    annotator_labels(model, images, classes, batch_size=64)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, help="folder dataset with labeled/ and test/")
    parser.add_argument("--run-dir", help="a train_gan snapshot folder (g_ema-<step>.pt files)")
    parser.add_argument("--checkpoint", nargs="*", default=[], help="generator checkpoints")
    parser.add_argument("--n-train", type=int, default=64, help="generated images to fit on")
    parser.add_argument("--n-test", type=int, default=64, help="generated images to score on")
    parser.add_argument("--labeler-steps", type=int, default=500)
    parser.add_argument("--annotator", help="label with this segmenter (e.g. the shipped "
                        "data/pretrained/annotator/annotator.pt) instead of training one")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", help="write the table as TSV here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    classes = load_classes(args.dataset)
    images, masks, _ = load_split_arrays(args.dataset, "labeled")
    test_images, test_masks, _ = load_split_arrays(args.dataset, "test")
    start = time.perf_counter()
    if args.annotator:
        labeler, what = segmenter_labeler(args.annotator, classes), args.annotator
    else:
        labeler = train_labeler(images, masks, len(classes), steps=args.labeler_steps)
        what = f"SmallSegmenter, {len(images)} labelled images, {args.labeler_steps} steps"
    ceiling = iou_scores(labeler(test_images), test_masks, len(classes))
    print(f"labeler ({what}, {time.perf_counter() - start:.0f} s): test mIoU "
          f"{ceiling['miou']:.3f}, pixel accuracy {ceiling['pixel_accuracy']:.3f}")

    sources = []
    if args.run_dir:
        sources += [("snapshot", p) for p in sorted(Path(args.run_dir).glob("g_ema-*.pt"))]
    sources += [("checkpoint", Path(p)) for p in args.checkpoint]
    rows = []
    header = ("step", "probe_miou", "rgb_miou", "margin", "probe_pixel_acc", "seconds", "source")
    print("\n" + "\t".join(header))
    for kind, path in sources:
        start = time.perf_counter()
        if kind == "snapshot":
            generator, step = generator_from_snapshot(path)
        else:
            generator = load_generator(path)
            step = -1
        result = linear_probe(generator, labeler, len(classes), n_train=args.n_train,
                              n_test=args.n_test)
        row = (step, f"{result['miou']:.3f}", f"{result['rgb_miou']:.3f}",
               f"{result['miou'] - result['rgb_miou']:+.3f}", f"{result['pixel_accuracy']:.3f}",
               f"{time.perf_counter() - start:.1f}", path.name)
        rows.append(row)
        print("\t".join(map(str, row)), flush=True)
    if args.out:
        with open(args.out, "w", newline="") as handle:
            writer = csv.writer(handle, delimiter="\t")
            writer.writerow(header)
            writer.writerows(rows)


if __name__ == "__main__":
    main()
