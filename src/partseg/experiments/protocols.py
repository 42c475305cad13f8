"""The face task in the paper's two labellings (stage protocols), for k = 1 and 10 shots.

face10: background, skin, hair, eye, eyebrow, nose, mouth, ear, neck, cloth; face4:
background, eye, mouth, nose (every other part merged into background). For each protocol and
each k, the first k shared shots (stage shots), their masks merged into the protocol, train the
few-shot net on their GAN features; it then segments the inverted test images, scored against
their masks merged the same way. Beside the tables, the paper's published numbers, which are
on other data at another resolution.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from partseg.plumbing.errors import PartsegError
from partseg.experiments.shared import SHOWN_TEST_IMAGES, inverted_test_set
from partseg.plumbing.stage import log

# The paper's published face numbers (IoU %; CelebAMask-HQ photos, features at 512 px).
PAPER = {
    ("face10", 10): {"background": 84.7, "skin": 90.0, "hair": 84.0, "eye": 75.4,
                     "eyebrow": 68.2, "nose": 84.6, "mouth": 86.5, "ear": 37.3, "neck": 80.3,
                     "cloth": 15.5, "mean": 69.9},
    ("face4", 1): {"eye": 57.8, "mouth": 71.1, "nose": 76.0},
}


def test_set(dataset_dir: Path, inversions: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The inverted test images, their masks (in the dataset's classes) and stems."""
    images, masks, stems = inverted_test_set(dataset_dir, inversions)
    if masks is None:
        raise PartsegError(f"{dataset_dir}/test: no masks to score the protocols against")
    return images, masks, stems


def score_protocol(protocol: str, k: int, shots_dir: Path, test_cache, test_masks, classes,
                   scratch: Path, settings: dict, device):
    """(per-class IoU dict with its mean, predicted labels) of the few-shot net trained on the
    first k shots, everything in `protocol`'s classes."""
    from partseg.data.protocols import merge_labels, protocol_classes
    from partseg.features import FeatureCache
    from partseg.fewshot.evaluate import first_images_cache, fewshot_scores

    target = protocol_classes(protocol, classes)
    shot_cache = first_images_cache(FeatureCache(shots_dir / "cache"), k, scratch / f"k{k}")
    shot_masks = merge_labels(np.load(shots_dir / "masks.npy")[:k], classes, target)
    confusion, predicted = fewshot_scores(shot_cache, shot_masks, test_cache,
                                          merge_labels(test_masks, classes, target),
                                          num_classes=len(target), settings=settings,
                                          device=device)
    iou = dict(zip(target, confusion.iou().tolist()))
    return {**iou, "mean": confusion.miou()}, predicted


def score_protocols(names: list[str], ks: list[int], shots_dir: Path, test_cache, test_masks,
                    classes: list[str], scratch: Path, settings: dict, device
                    ) -> tuple[dict, dict]:
    """scores[protocol][k] (score_protocol's IoUs) and predicted[protocol, k] (labels)."""
    scores, predicted = {}, {}
    for protocol in names:
        scores[protocol] = {}
        for k in ks:
            scores[protocol][k], predicted[protocol, k] = score_protocol(
                protocol, k, shots_dir, test_cache, test_masks, classes, scratch, settings,
                device)
            log(f"[protocols] {protocol}, k = {k}: mIoU {100 * scores[protocol][k]['mean']:.1f}")
    return scores, predicted


def metrics(scores: dict) -> dict:
    """metrics.json: per protocol, per k (as "k1", "k10"), the IoUs and their mean."""
    return {p: {f"k{k}": iou for k, iou in by_k.items()} for p, by_k in scores.items()}


def protocol_masks(masks: np.ndarray, classes: list[str], names: list[str]) -> dict:
    """The test masks merged into each protocol."""
    from partseg.data.protocols import merge_labels, protocol_classes

    return {p: merge_labels(masks, classes, protocol_classes(p, classes)) for p in names}


def comparison_tables(scores: dict) -> dict[str, pd.DataFrame]:
    """Per protocol: one row per k (IoU %), and the paper's row where it published one."""
    tables = {}
    for protocol, by_k in scores.items():
        rows = {f"partseg, k = {k}": {c: round(100 * v, 1) for c, v in iou.items()}
                for k, iou in by_k.items()}
        for (paper_protocol, k), published in PAPER.items():
            if paper_protocol == protocol:
                rows[f"paper, k = {k} (CelebAMask-HQ, 512 px: other data)"] = published
        frame = pd.DataFrame.from_dict(rows, orient="index")
        columns = [c for c in frame.columns if c != "mean"] + ["mean"]
        tables[protocol] = frame.reindex(columns=columns)
    return tables


def per_class_frame(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """per_class.csv: the comparison tables stacked, indexed by (protocol, run)."""
    return pd.concat(tables, names=["protocol", "run"])


def reading(scores: dict) -> list[str]:
    """The numbers in words: what the most shots change against the fewest, per protocol and
    for the three parts that changed most (computed, whatever their sign)."""
    lines = []
    for protocol, by_k in scores.items():
        ks = sorted(by_k)
        if len(ks) < 2:
            continue
        low, high = by_k[ks[0]], by_k[ks[-1]]
        gains = {c: high[c] - low[c] for c in high if c not in ("mean", "background")}
        best = sorted(gains, key=gains.get, reverse=True)[:3]
        lines.append(f"- {protocol}: k = {ks[-1]} instead of {ks[0]} moves the mean from "
                     f"{100 * low['mean']:.1f} to {100 * high['mean']:.1f}; the largest gains are "
                     + ", ".join(f"{c} {100 * gains[c]:+.1f}" for c in best) + ".")
    return lines


def section_markdown(tables: dict[str, pd.DataFrame], count: int, size: int, settings: dict,
                     scores: dict) -> str:
    """The report's section: the method in two sentences, the tables, the reading, the picture
    (`count` test images of `size` px)."""
    from partseg.report import markdown_table

    lines = ["## Both face protocols", "",
             f"One-shot (the few-shot {settings['network']} net on inverted features), IoU % on "
             f"the {count} inverted `test` images, trained on the first k shared shots (stage "
             "`shots`) with their masks merged into each protocol. The paper's rows are "
             "CelebAMask-HQ photographs with a 1024 px FFHQ StyleGAN2 and features at 512 px: "
             "other data at another resolution, printed for orientation, not as a comparable "
             f"score (the test images here are {size} px).", ""]
    for protocol, frame in tables.items():
        lines += [f"### {protocol}", "", markdown_table(frame.reset_index(names="run")), ""]
    lines += reading(scores) + [""]
    lines += ["![test images, ground truth and predictions per protocol and k](predictions.png)", ""]
    return "\n".join(lines)


def predictions_picture(images, truth: dict, predicted: dict, classes: list[str]) -> np.ndarray:
    """Rows: test images; columns: the image, then per protocol its ground truth and each k.
    Every protocol's labels are drawn in the colours of the dataset's classes of the same name
    (face4's eye is face10's eye colour), so one legend serves all columns."""
    from partseg.data.protocols import protocol_classes
    from partseg.visualize import colorize, titled_grid

    def drawn(protocol: str, labels: np.ndarray) -> np.ndarray:
        names = protocol_classes(protocol, classes)
        table = np.full(256, 255, np.uint8)
        table[:len(names)] = [classes.index(name) for name in names]
        return colorize(table[labels])

    titles, rows = ["image"], []
    for protocol in truth:
        titles += [f"{protocol} truth"] + [f"{protocol} k={k}" for p, k in predicted if p == protocol]
    for i in range(min(SHOWN_TEST_IMAGES, len(images))):
        row = [images[i]]
        for protocol, masks in truth.items():
            row.append(drawn(protocol, masks[i]))
            row += [drawn(p, labels[i]) for (p, _), labels in predicted.items() if p == protocol]
        rows.append(row)
    return titled_grid(rows, titles, classes, upscale=max(1, 96 // images.shape[1]))
