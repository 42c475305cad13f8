"""Stage evaluate: every method on every test split, against the ground-truth masks.

Methods: one-shot (the few-shot net through inversion; on the inverted subset only, since
inversion is slow), auto-shot, and the supervised UNet baselines. For each split: per-class
IoU, mIoU and pixel accuracy. On the demo data also the GAN-features link alone: the few-shot
net's labels of generated images against the simulated annotator's (split "generated"), and
the annotator's own test mIoU. Writes metrics.json (DVC metrics), per_class.csv, and per split
a confusion matrix of auto-shot and a qualitative grid (image, ground truth, each method).
The method is partseg.evaluation.

--protocol NAME scores in another part definition than the dataset's classes
(partseg.data.protocols: face10, face4, or a partition of the face such as grid4 / bands3):
the ground truth is the split's masks under it (merged, or drawn by the demo generator), and
each method is scored when its classes are that protocol's or merge into them (a face10 model
under face4); a method in other classes is skipped, and says so. Without it, the dataset's
own classes, as in the default run.
"""

from pathlib import Path

from partseg.plumbing.errors import PartsegError
from partseg.plumbing.io import atomic_dir, atomic_path, load_json, save_json
from partseg.plumbing.stage import available_splits, log, run_stage, stage_parser


def build(args, params):
    from partseg import evaluation

    protocol = getattr(args, "protocol", None)
    classes = evaluation.evaluated_classes(args.dataset, protocol)
    splits = available_splits(args.dataset, params.evaluate.splits, "evaluate")
    if not splits:  # metrics without any test score would pass for a finished evaluation
        raise PartsegError(f"params key evaluate.splits: none of {', '.join(params.evaluate.splits)} "
                           f"is a split with masks in {args.dataset}; name at least one")
    annotations = load_json(Path(args.annotations) / "annotations.json")
    shot_classes = annotations.get("classes")
    models = evaluation.model_paths(Path(args.autoshot), Path(args.baselines))
    metrics, rows = {}, []
    with atomic_dir(args.out) as tmp:
        for split in splits:
            evaluation.evaluate_split(
                split, args.dataset, classes=classes, protocol=protocol, models=models,
                oneshot_dir=Path(args.oneshot) / split, shot_classes=shot_classes,
                network=params.train_fewshot.network, n_qualitative=params.evaluate.n_qualitative,
                out=tmp, metrics=metrics, rows=rows, flip=params.evaluate.flip)
            log(f"[evaluate] {split}: " + (", ".join(
                f"{m} {v['miou']:.3f}" for m, v in metrics.get(split, {}).items())
                or "no method predicts these classes"))
        shards = sorted(Path(args.shards).glob("shard_*"))
        if (args.annotator and Path(args.annotator).is_file() and shards
                and evaluation.annotator_link_applies(protocol, shot_classes, classes)):
            matrix = evaluation.fewshot_against_annotator(shards[0], Path(args.annotator), classes)
            evaluation.record({"fewshot_vs_annotator": matrix}, "generated", classes, metrics, rows)
            log(f"[evaluate] few-shot net vs the annotator on {evaluation.GENERATED_IMAGES} "
                f"generated images: mIoU {matrix.miou():.3f}")
        annotator_miou = evaluation.annotator_test_miou(args.annotator)
        if annotator_miou is not None:
            metrics["annotator_test_miou"] = annotator_miou
        metrics["inversion_psnr_db"] = evaluation.inversion_psnr(Path(args.inversions))
        metrics["annotation_source"] = annotations["source"]
        if protocol is not None:
            metrics["protocol"] = {"name": protocol, "classes": classes}
        save_json(metrics, tmp / "metrics.json")
        with atomic_path(tmp / "per_class.csv") as part:
            evaluation.per_class_frame(rows).to_csv(part, index=False, float_format="%.4f")


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--annotations", required=True)
    parser.add_argument("--oneshot", required=True)
    parser.add_argument("--inversions", required=True)
    parser.add_argument("--autoshot", required=True)
    parser.add_argument("--baselines", required=True)
    parser.add_argument("--shards", required=True)
    parser.add_argument("--annotator", required=True,
                        help="the simulated annotator ('' when a person annotated)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--protocol", default=None,
                        help="score in this protocol (face10, face4, grid4, bands3) instead of "
                             "the dataset's classes")
    run_stage("evaluate", parser, build)
