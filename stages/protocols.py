"""Stage protocols (experiments): the face task in the paper's two protocols, k = 1 and 10.

The paper scores faces in two labellings: 10 classes (background, skin, hair, eye, eyebrow,
nose, mouth, ear, neck, cloth) and 4 (background, eye, mouth, nose; every other part merged
into background). Here, for each protocol in protocols.names and each k in shots.ks: the first
k shared shots (stage shots) with their masks merged into the protocol train the few-shot net
(train_fewshot's settings) on their GAN features, which then segments the inverted test images
(invert_test's `test` split: their GAN features), scored against their masks merged the same
way. One-shot is the path measured: the few-shot net on inverted features, as the paper's
face table.

Writes experiments/results/protocols/: metrics.json (mIoU and per-class IoU per protocol and k),
per_class.csv, section.md (the tables, beside the paper's published numbers, which are on
other data at another resolution) and predictions.png (test images, ground truth and
predictions per protocol and k).
"""

from pathlib import Path

import numpy as np
import pandas as pd

from partseg.errors import PartsegError
from partseg.io import atomic_dir, atomic_path, load_json, save_json, save_png
from partseg.stage import log, run_stage, stage_parser

# The paper's published face numbers (IoU %; CelebAMask-HQ photos, features at 512 px).
PAPER = {
    ("face10", 10): {"background": 84.7, "skin": 90.0, "hair": 84.0, "eye": 75.4,
                     "eyebrow": 68.2, "nose": 84.6, "mouth": 86.5, "ear": 37.3, "neck": 80.3,
                     "cloth": 15.5, "mean": 69.9},
    ("face4", 1): {"eye": 57.8, "mouth": 71.1, "nose": 76.0},
}
SHOWN_TEST_IMAGES = 6


def test_set(dataset_dir: Path, inversions: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The inverted test images (as many as invert_test inverted), their masks and stems."""
    from partseg.data.folder import load_split_arrays

    stems = load_json(inversions / "stems.json")["stems"]
    images, masks, dataset_stems = load_split_arrays(dataset_dir, "test", limit=len(stems))
    if masks is None or list(dataset_stems) != list(stems):
        raise PartsegError(f"{inversions}: its images are not the first {len(stems)} of "
                           f"{dataset_dir}/test (rerun invert_test)")
    return images, masks, stems


def score_protocol(protocol: str, k: int, shots_dir: Path, test_cache, test_masks, classes,
                   scratch: Path, settings: dict, device):
    """(per-class IoU dict, predicted labels) of the few-shot net on k shots in `protocol`."""
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


def reading(scores: dict) -> list[str]:
    """The numbers in words: what ten shots add in each protocol, and to which parts."""
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


def section_markdown(tables: dict[str, pd.DataFrame], count: int, settings: dict,
                     scores: dict) -> str:
    from partseg.report import markdown_table

    lines = ["## Both face protocols", "",
             f"One-shot (the few-shot {settings['network']} net on inverted features), IoU % on "
             f"the {count} inverted `test` images, trained on the first k shared shots (stage "
             "`shots`) with their masks merged into each protocol. The paper's rows are "
             "CelebAMask-HQ photographs with a 1024 px FFHQ StyleGAN2 and features at 512 px: "
             "other data at another resolution, printed for orientation, not as a comparable "
             "score (the demo is 32 px synthetic faces, where an eye is a few pixels).", ""]
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


def build(args, params):
    from partseg.data.folder import load_classes
    from partseg.data.protocols import merge_labels, protocol_classes
    from partseg.device import resolve_device
    from partseg.features import FeatureCache
    from partseg.params import as_dict

    shots_dir, inversions = Path(args.shots), Path(args.inversions) / "test"
    classes = load_classes(Path(args.dataset))
    images, test_masks, stems = test_set(Path(args.dataset), inversions)
    test_cache = FeatureCache(inversions / "cache")
    settings, device = as_dict(params.train_fewshot), resolve_device()
    scores, predicted = {}, {}
    with atomic_dir(args.out) as tmp:
        for protocol in params.protocols.names:
            scores[protocol] = {}
            for k in params.shots.ks:
                iou, predicted[protocol, k] = score_protocol(
                    protocol, k, shots_dir, test_cache, test_masks, classes, tmp / "scratch",
                    settings, device)
                scores[protocol][k] = iou
                log(f"[protocols] {protocol}, k = {k}: mIoU {100 * iou['mean']:.1f}")
        tables = comparison_tables(scores)
        save_json({p: {f"k{k}": iou for k, iou in by_k.items()} for p, by_k in scores.items()},
                  tmp / "metrics.json")
        with atomic_path(tmp / "per_class.csv") as part:
            pd.concat(tables, names=["protocol", "run"]).to_csv(part)
        truth = {p: merge_labels(test_masks, classes, protocol_classes(p, classes))
                 for p in params.protocols.names}
        save_png(predictions_picture(images, truth, predicted, classes), tmp / "predictions.png")
        (tmp / "section.md").write_text(section_markdown(tables, len(stems), settings, scores))
        _remove_tree(tmp / "scratch")


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--dataset", default="data/dataset")
    parser.add_argument("--shots", default="experiments/results/shots")
    parser.add_argument("--inversions", default="results/invert_test")
    parser.add_argument("--out", default="experiments/results/protocols")
    run_stage("protocols", parser, build)
