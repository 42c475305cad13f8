"""Stage evaluate: every method on every test split, against the ground-truth masks.

Methods: one-shot (the few-shot net through inversion; on the inverted subset only, since
inversion is slow), auto-shot, and the supervised UNet baselines. For each split: per-class
IoU, mIoU and pixel accuracy. On the demo data also the GAN-features link alone: the few-shot
net's labels of generated images against the simulated annotator's (split "generated"), and
the annotator's own test mIoU. Writes metrics.json (DVC metrics), per_class.csv, and per split
a confusion matrix of auto-shot and a qualitative grid (image, ground truth, each method).

--protocol NAME scores in another part definition than the dataset's classes
(partseg.data.protocols: face10, face4, or a partition of the face such as grid4 / bands3):
the ground truth is the split's masks under it (merged, or drawn by the demo generator), and
each method is scored when its classes are that protocol's or merge into them (a face10 model
under face4); a method in other classes is skipped, and says so. Without it, the dataset's
own classes, as in the default run.
"""

from pathlib import Path

import numpy as np
import pandas as pd

from partseg.errors import PartsegError
from partseg.io import atomic_dir, atomic_path, load_json, save_json, save_png
from partseg.stage import available_splits, log, run_stage, stage_parser

SUBSET_SUFFIX = "_inverted_subset"


def segmenter_predictions(model_paths: dict[str, Path], images: np.ndarray,
                          classes: list[str] | None = None) -> dict:
    """Each model's labels of `images`; with `classes` (--protocol) re-expressed in them, and a
    model whose classes do not merge into them left out."""
    from partseg.autoshot.train import load_segmenter, predict_labels
    from partseg.device import resolve_device

    device = resolve_device()
    predictions = {}
    for method, path in model_paths.items():
        model = load_segmenter(path, device)
        labels = predict_labels(model, images, batch_size=64, device=device)
        predictions[method] = np.stack([label for label, _ in labels])
        if classes is not None:
            predictions[method] = in_classes(method, predictions[method],
                                             list(model.meta["class_names"]), classes)
    return {method: labels for method, labels in predictions.items() if labels is not None}


def in_classes(method: str, labels: np.ndarray, own: list[str], classes: list[str]):
    """`labels` (in the method's `own` classes) in the evaluated `classes`, or None (logged)."""
    from partseg.data.protocols import relabel

    converted = relabel(labels, own, classes)
    if converted is None:
        log(f"[evaluate] {method} skipped: it predicts {own}, which do not merge into {classes}")
    return converted


def score(predictions: dict, masks: np.ndarray, num_classes: int):
    from partseg.metrics import ConfusionMatrix

    matrices = {}
    for method, labels in predictions.items():
        matrix = ConfusionMatrix(num_classes)
        matrix.update(labels, masks)
        matrices[method] = matrix
    return matrices


COLUMN_TITLES = {"autoshot": "auto-shot", "unet_full": "UNet all"}
GENERATED_IMAGES = 300  # generated images on which the few-shot net meets the annotator


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


def fewshot_against_annotator(shard_dir: Path, annotator: Path, classes: list[str]):
    """The GAN-features link alone: on generated images the few-shot net never saw, how far
    its labels (argmax of the shard's logits) are from the annotator's labels of the same
    images. A low score here means the features (or the shots) lose the parts, before any
    inversion or distillation."""
    from partseg.annotator import annotator_labels
    from partseg.autoshot.train import load_segmenter
    from partseg.metrics import ConfusionMatrix

    images = np.load(shard_dir / "images.npy", mmap_mode="r")[:GENERATED_IMAGES]
    fewshot = np.load(shard_dir / "logits.npy", mmap_mode="r")[:GENERATED_IMAGES].argmax(1)
    # The annotator's 10 face classes, merged to the dataset's under data.protocol face4.
    reference = annotator_labels(load_segmenter(annotator), np.asarray(images), classes,
                                 batch_size=64)
    matrix = ConfusionMatrix(len(classes))
    matrix.update(fewshot.astype(np.uint8), np.stack([labels for labels, _ in reference]))
    return matrix


def record(matrices: dict, split: str, classes: list[str], metrics: dict, rows: list) -> None:
    for method, matrix in matrices.items():
        metrics.setdefault(split, {})[method] = {
            "miou": round(float(matrix.miou()), 4),
            "pixel_accuracy": round(float(matrix.pixel_accuracy()), 4)}
        rows.append({"split": split, "method": method, "miou": matrix.miou(),
                     **dict(zip(classes, matrix.iou()))})


def evaluate_split(split, args, params, classes, model_paths, out, metrics, rows):
    from partseg.data.folder import load_split_arrays
    from partseg.metrics import confusion_png

    protocol = getattr(args, "protocol", None)
    images, masks, stems = load_split_arrays(args.dataset, split)
    if protocol is not None:
        from partseg.data.protocols import split_masks

        masks, _ = split_masks(args.dataset, split, protocol, key="--protocol")
    predictions = segmenter_predictions(model_paths, images, classes if protocol else None)
    record(score(predictions, masks, len(classes)), split, classes, metrics, rows)
    oneshot_dir = Path(args.oneshot) / split
    if oneshot_dir.is_dir():
        # One-shot covers only the inverted subset: compare every method on that subset too.
        count = len(load_json(oneshot_dir / "stems.json")["stems"])
        oneshot = np.load(oneshot_dir / "labels.npy")
        if protocol is not None:  # the few-shot net learnt the shots' classes
            shots = load_json(Path(args.annotations) / "annotations.json")["classes"]
            oneshot = in_classes("one-shot", oneshot, shots, classes)
        subset = {} if oneshot is None else {f"oneshot_{params.train_fewshot.network}": oneshot}
        subset |= {method: labels[:count] for method, labels in predictions.items()}
        record(score(subset, masks[:count], len(classes)), split + SUBSET_SUFFIX, classes,
               metrics, rows)
        predictions = subset
        images, masks = images[:count], masks[:count]
    if "autoshot" in predictions:  # always, but under a --protocol it may not fit
        autoshot = score({"autoshot": predictions["autoshot"]}, masks, len(classes))["autoshot"]
        confusion_png(autoshot, classes, out / f"confusion_{split}.png")
    save_png(qualitative_grid(images, masks, predictions, params.evaluate.n_qualitative, classes),
             out / f"qualitative_{split}.png")
    save_json({"columns": ["image", "ground truth", *predictions]}, out / f"qualitative_{split}.json")


def evaluated_classes(dataset, protocol: str | None) -> list[str]:
    """The dataset's classes, or those of --protocol (an unknown name stops here, first)."""
    from partseg.data.folder import load_classes
    from partseg.data.protocols import classes_under

    classes = load_classes(dataset)
    return classes if protocol is None else classes_under(protocol, classes, key="--protocol")


def build(args, params):
    protocol = getattr(args, "protocol", None)
    classes = evaluated_classes(args.dataset, protocol)
    baselines = Path(args.baselines)
    model_paths = {"autoshot": Path(args.autoshot) / "model.pt"}
    model_paths |= {p.stem: p for p in sorted(baselines.glob("unet_*.pt"))}
    metrics, rows = {}, []
    splits = available_splits(args.dataset, params.evaluate.splits, "evaluate")
    if not splits:  # metrics without any test score would pass for a finished evaluation
        raise PartsegError(f"params key evaluate.splits: none of {', '.join(params.evaluate.splits)} "
                           f"is a split with masks in {args.dataset}; name at least one")
    with atomic_dir(args.out) as tmp:
        for split in splits:
            evaluate_split(split, args, params, classes, model_paths, tmp, metrics, rows)
            log(f"[evaluate] {split}: " + (", ".join(
                f"{m} {v['miou']:.3f}" for m, v in metrics.get(split, {}).items())
                or "no method predicts these classes"))
        shards = sorted(Path(args.shards).glob("shard_*"))
        # The annotator paints face classes: it is no reference for a partition of the face.
        comparable = protocol is None or protocol_merges_face_classes(protocol, args)
        if args.annotator and Path(args.annotator).is_file() and shards and comparable:
            matrix = fewshot_against_annotator(shards[0], Path(args.annotator), classes)
            record({"fewshot_vs_annotator": matrix}, "generated", classes, metrics, rows)
            log(f"[evaluate] few-shot net vs the annotator on {GENERATED_IMAGES} generated "
                f"images: mIoU {matrix.miou():.3f}")
        scores_file = Path(args.annotator).parent / "metrics.json" if args.annotator else None
        annotator_scores = load_json(scores_file)["test"] if scores_file and scores_file.is_file() else None
        if annotator_scores:
            metrics["annotator_test_miou"] = annotator_scores["miou"]
        psnr = {split.name: float(pd.read_csv(split / "psnr.csv")["psnr"].mean())
                for split in Path(args.inversions).iterdir() if split.is_dir()}
        metrics["inversion_psnr_db"] = {k: round(v, 2) for k, v in psnr.items()}
        metrics["annotation_source"] = load_json(Path(args.annotations) / "annotations.json")["source"]
        if protocol is not None:
            metrics["protocol"] = {"name": protocol, "classes": classes}
        save_json(metrics, tmp / "metrics.json")
        with atomic_path(tmp / "per_class.csv") as part:
            pd.DataFrame(rows).to_csv(part, index=False, float_format="%.4f")


def protocol_merges_face_classes(protocol: str, args) -> bool:
    """Under --protocol, whether the generated-images check applies: the protocol is a class
    merge and the few-shot net (whose logits the shards hold) learnt exactly its classes."""
    from partseg.data.protocols import is_partition

    shots = load_json(Path(args.annotations) / "annotations.json")["classes"]
    return not is_partition(protocol) and shots == evaluated_classes(args.dataset, protocol)


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--dataset", default="data/dataset")
    parser.add_argument("--annotations", default="results/annotate")
    parser.add_argument("--oneshot", default="results/predict_oneshot")
    parser.add_argument("--inversions", default="results/invert_test")
    parser.add_argument("--autoshot", default="results/train_autoshot")
    parser.add_argument("--baselines", default="results/baselines")
    parser.add_argument("--shards", default="results/synthesize")
    parser.add_argument("--annotator", default="results/train_annotator/annotator.pt",
                        help="the simulated annotator ('' when a person annotated)")
    parser.add_argument("--out", default="results/evaluate")
    parser.add_argument("--protocol", default=None,
                        help="score in this protocol (face10, face4, grid4, bands3) instead of "
                             "the dataset's classes")
    run_stage("evaluate", parser, build)
