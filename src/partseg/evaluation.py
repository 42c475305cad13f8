"""Every method on every test split, against the ground-truth masks (stage evaluate).

Methods: one-shot (the few-shot net through inversion, whose labels predict_oneshot wrote; on
the inverted subset only), auto-shot and the supervised UNet baselines (saved segmenters, run
here). Per split: per-class IoU, mIoU, pixel accuracy, auto-shot's confusion matrix and a
qualitative grid. On the demo data also the GAN-features link alone: the few-shot net against
the simulated annotator on generated images.

Under a protocol (partseg.data.protocols) the truth is the split's masks under it, and a method
is scored when its classes are the protocol's or merge into them; one in other classes is
skipped, and says so.

Apart from partseg.metrics (the confusion matrix, which training loops import and which runs no
model) and partseg.report (which only reads these results and writes markdown).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from partseg.plumbing.io import load_json, save_json, save_png
from partseg.plumbing.stage import log

SUBSET_SUFFIX = "_inverted_subset"
COLUMN_TITLES = {"autoshot": "auto-shot", "unet_full": "UNet all"}
GENERATED_IMAGES = 300  # generated images on which the few-shot net meets the annotator


def evaluated_classes(dataset, protocol: str | None) -> list[str]:
    """The dataset's classes, or those of --protocol (an unknown name stops here, first)."""
    from partseg.data.folder import load_classes
    from partseg.data.protocols import classes_under

    classes = load_classes(dataset)
    return classes if protocol is None else classes_under(protocol, classes, key="--protocol")


def model_paths(autoshot_dir: Path, baselines_dir: Path) -> dict[str, Path]:
    """The saved segmenters to score, by method name: auto-shot, then each UNet baseline."""
    return {"autoshot": autoshot_dir / "model.pt",
            **{p.stem: p for p in sorted(baselines_dir.glob("unet_*.pt"))}}


def segmenter_predictions(model_paths: dict[str, Path], images: np.ndarray,
                          classes: list[str] | None = None, flip: bool = False) -> dict:
    """Each model's labels of `images`; with `classes` (--protocol) re-expressed in them, and a
    model whose classes do not merge into them left out. flip: test-time flip (segmenter_labels)."""
    from partseg.autoshot.segmenter import load_segmenter
    from partseg.plumbing.device import resolve_device

    device = resolve_device()
    predictions = {}
    for method, path in model_paths.items():
        model = load_segmenter(path, device)
        predictions[method] = segmenter_labels(model, images, device, flip)
        if classes is not None:
            predictions[method] = in_classes(method, predictions[method],
                                             list(model.meta["class_names"]), classes)
    return {method: labels for method, labels in predictions.items() if labels is not None}


def segmenter_labels(model, images: np.ndarray, device, flip: bool = False) -> np.ndarray:
    """uint8 labels [N,H,W]; flip: test-time flip (autoshot.segmenter)."""
    from partseg.autoshot.segmenter import predict_labels

    return np.stack([label for label, _ in predict_labels(model, images, batch_size=64,
                                                          device=device, flip=flip)])


def in_classes(method: str, labels: np.ndarray, own: list[str], classes: list[str]):
    """`labels` (in the method's `own` classes) in the evaluated `classes`, or None (logged)."""
    from partseg.data.protocols import relabel

    converted = relabel(labels, own, classes)
    if converted is None:
        log(f"[evaluate] {method} skipped: it predicts {own}, which do not merge into {classes}")
    return converted


def score(predictions: dict, masks: np.ndarray, num_classes: int) -> dict:
    """One confusion matrix per method."""
    from partseg.metrics import ConfusionMatrix

    matrices = {}
    for method, labels in predictions.items():
        matrix = ConfusionMatrix(num_classes)
        matrix.update(labels, masks)
        matrices[method] = matrix
    return matrices


def record(matrices: dict, split: str, classes: list[str], metrics: dict, rows: list) -> None:
    """Add the matrices' scores to metrics.json's dict and per_class.csv's rows."""
    for method, matrix in matrices.items():
        metrics.setdefault(split, {})[method] = {
            "miou": round(float(matrix.miou()), 4),
            "pixel_accuracy": round(float(matrix.pixel_accuracy()), 4)}
        rows.append({"split": split, "method": method, "miou": matrix.miou(),
                     **dict(zip(classes, matrix.iou()))})


def per_class_frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows)


def oneshot_labels(oneshot_dir: Path, network: str, shot_classes: list[str],
                   classes: list[str], protocol: str | None) -> tuple[int, dict]:
    """(how many images were inverted, {"oneshot_<network>": labels} or {} when its classes
    do not merge into the evaluated ones)."""
    count = len(load_json(oneshot_dir / "stems.json")["stems"])
    labels = np.load(oneshot_dir / "labels.npy")
    if protocol is not None:  # the few-shot net learnt the shots' classes
        labels = in_classes("one-shot", labels, shot_classes, classes)
    return count, {} if labels is None else {f"oneshot_{network}": labels}


def evaluate_split(split: str, dataset, *, classes: list[str], protocol: str | None,
                   models: dict[str, Path], oneshot_dir: Path, shot_classes: list[str],
                   network: str, n_qualitative: int, out: Path, metrics: dict, rows: list,
                   flip: bool = False) -> None:
    """Score every method on `split` (and, where one-shot ran, on its inverted subset) into
    metrics and rows; write its confusion matrix and qualitative grid into `out`.
    shot_classes: the classes the shots were annotated in, those of one-shot's labels."""
    from partseg.data.folder import load_split_arrays
    from partseg.metrics import confusion_png

    images, masks, _ = load_split_arrays(dataset, split)
    if protocol is not None:
        from partseg.data.protocols import split_masks

        masks, _ = split_masks(dataset, split, protocol, key="--protocol")
    predictions = segmenter_predictions(models, images, classes if protocol else None, flip)
    record(score(predictions, masks, len(classes)), split, classes, metrics, rows)
    if oneshot_dir.is_dir():
        # One-shot covers only the inverted subset: compare every method on that subset too.
        count, subset = oneshot_labels(oneshot_dir, network, shot_classes, classes, protocol)
        subset |= {method: labels[:count] for method, labels in predictions.items()}
        record(score(subset, masks[:count], len(classes)), split + SUBSET_SUFFIX, classes,
               metrics, rows)
        predictions = subset
        images, masks = images[:count], masks[:count]
    if "autoshot" in predictions:  # always, but under a --protocol it may not fit
        autoshot = score({"autoshot": predictions["autoshot"]}, masks, len(classes))["autoshot"]
        confusion_png(autoshot, classes, out / f"confusion_{split}.png")
    save_png(qualitative_grid(images, masks, predictions, n_qualitative, classes),
             out / f"qualitative_{split}.png")
    save_json({"columns": ["image", "ground truth", *predictions]}, out / f"qualitative_{split}.json")


def column_title(method: str) -> str:
    if method.startswith("oneshot_"):
        return "one-shot"
    if method.startswith("unet_k"):
        return f"UNet {method.removeprefix('unet_k')} lab."
    return COLUMN_TITLES.get(method, method)


def qualitative_grid(images, masks, predictions: dict, count: int, classes: list[str]) -> np.ndarray:
    """Rows of test images: the image, its ground truth, then each method's labels; enlarged
    (nearest neighbour) so that 32 px parts can be judged, with titled columns and the legend."""
    from partseg.visualize import colorize, titled_grid

    columns = [list(images[:count]), [colorize(m) for m in masks[:count]]]
    columns += [[colorize(p) for p in labels[:count]] for labels in predictions.values()]
    titles = ["image", "ground truth", *map(column_title, predictions)]
    upscale = max(1, 96 // images.shape[1])
    return titled_grid([list(row) for row in zip(*columns)], titles, classes, upscale=upscale)


def annotator_link_applies(protocol: str | None, shot_classes: list[str],
                           classes: list[str]) -> bool:
    """Whether the generated-images check applies: always in the dataset's classes; under a
    protocol, when it is a class merge (the annotator paints face classes, no reference for a
    partition) and the few-shot net, whose logits the shards hold, learnt exactly its classes."""
    from partseg.data.protocols import is_partition

    return protocol is None or (not is_partition(protocol) and shot_classes == classes)


def fewshot_against_annotator(shard_dir: Path, annotator: Path, classes: list[str]):
    """The GAN-features link alone: on generated images the few-shot net never saw, how far
    its labels (argmax of the shard's logits) are from the annotator's labels of the same
    images. A low score here means the features (or the shots) lose the parts, before any
    inversion or distillation."""
    from partseg.shots.simulated_annotator import annotator_labels
    from partseg.autoshot.segmenter import load_segmenter
    from partseg.metrics import ConfusionMatrix

    images = np.load(shard_dir / "images.npy", mmap_mode="r")[:GENERATED_IMAGES]
    fewshot = np.load(shard_dir / "logits.npy", mmap_mode="r")[:GENERATED_IMAGES].argmax(1)
    # The annotator's 10 face classes, merged to the dataset's under data.protocol face4.
    reference = annotator_labels(load_segmenter(annotator), np.asarray(images), classes,
                                 batch_size=64)
    matrix = ConfusionMatrix(len(classes))
    matrix.update(fewshot.astype(np.uint8), np.stack([labels for labels, _ in reference]))
    return matrix


def annotator_test_miou(annotator: str) -> float | None:
    """The simulated annotator's own test mIoU (train_annotator's metrics.json), if any."""
    scores_file = Path(annotator).parent / "metrics.json" if annotator else None
    scores = load_json(scores_file)["test"] if scores_file and scores_file.is_file() else None
    return scores["miou"] if scores else None


def inversion_psnr(inversions_dir: Path) -> dict[str, float]:
    """Mean PSNR (dB) of invert_test's reconstructions, per split."""
    psnr = {split.name: float(pd.read_csv(split / "psnr.csv")["psnr"].mean())
            for split in inversions_dir.iterdir() if split.is_dir()}
    return {k: round(v, 2) for k, v in psnr.items()}
