"""How good are self-training's pseudo-labels, per class, under each way of choosing pixels?

The demo's `train` split has masks, which self-training never reads: here they score the
teacher's labels of those images. For each selection rule, per class: precision (of the
pixels labelled as the class, the share that is that class) and coverage (of the class's
true pixels, the share labelled as it and kept).

    python bench/pseudo_label_quality.py checkpoints/train_autoshot/inputs-*/segmenter_snapshot.pt
    python bench/pseudo_label_quality.py results/train_autoshot/model.pt --images 2000

The first is the teacher of the default run (its training snapshot, kept in checkpoints/);
any saved segmenter works too. Rules: every pixel; confidence >= 0.9 (the default); that or
each class's surest fraction p (train_autoshot.self_train_class_portion = p).
"""

from __future__ import annotations

import argparse

import torch

from partseg.autoshot.segmenter import load_segmenter
from partseg.autoshot.self_training import IGNORE, pseudo_labels
from partseg.autoshot.unet import UNet
from partseg.data.folder import load_classes, load_split_arrays


def load_model(path: str, num_classes: int) -> torch.nn.Module:
    """A saved segmenter (model.pt) or a train_autoshot training snapshot."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    if "fingerprint" not in checkpoint:
        return load_segmenter(path, "cpu")
    model = UNet(num_classes, **checkpoint["fingerprint"]["unet"])
    model.load_state_dict(checkpoint["model"])
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--dataset", default="data/dataset")
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--confidence", type=float, default=0.9)
    parser.add_argument("--portions", type=float, nargs="*", default=[0.25, 0.5])
    args = parser.parse_args()
    classes = load_classes(args.dataset)
    images, masks, _ = load_split_arrays(args.dataset, "train", limit=args.images)
    teacher = load_model(args.model, len(classes))
    # Each rule is a call of self-training's own pseudo_labels: what is scored is what it keeps.
    rules = {"every pixel": (0.0, 0.0), f"confidence >= {args.confidence}": (args.confidence, 0.0),
             **{f"that, or each class's surest {portion:.0%}": (args.confidence, portion)
                for portion in args.portions}}
    chosen_labels = {name: pseudo_labels(teacher, images, confidence, portion).labels
                     for name, (confidence, portion) in rules.items()}
    print(f"{len(images)} train images; precision / coverage per class\n")
    print("| rule | kept | " + " | ".join(classes) + " |")
    print("|---" * (len(classes) + 2) + "|")
    for name, labels in chosen_labels.items():
        cells = []
        for index in range(len(classes)):
            chosen, truth = labels == index, masks == index
            right = (chosen & truth).sum()
            cells.append(f"{right / max(chosen.sum(), 1):.2f} / {right / max(truth.sum(), 1):.2f}")
        print(f"| {name} | {(labels != IGNORE).mean():.1%} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
