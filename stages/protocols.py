"""Stage protocols (experiments): the face task in the paper's two protocols, k = 1 and 10.

For each protocol in protocols.names (face10, face4) and each k in shots.ks, the first k shared
shots (stage shots), their masks merged into the protocol, train the few-shot net
(train_fewshot's settings) on their GAN features; it segments invert_test's inverted `test`
images, scored against their masks merged the same way (partseg.experiments.protocols).

Writes experiments/results/protocols/: metrics.json (mIoU and per-class IoU per protocol and k),
per_class.csv, section.md (the tables, beside the paper's published numbers, which are on
other data at another resolution) and predictions.png (test images, ground truth and
predictions per protocol and k).
"""

import shutil
from pathlib import Path

from partseg.plumbing.io import atomic_dir
from partseg.plumbing.stage import run_stage, stage_parser


def build(args, params):
    from partseg.data.folder import load_classes
    from partseg.plumbing.device import resolve_device
    from partseg.experiments import protocols as experiment
    from partseg.experiments.shared import write_results
    from partseg.features import FeatureCache
    from partseg.plumbing.params import as_dict

    dataset, inversions = Path(args.dataset), Path(args.inversions) / "test"
    names, settings = params.protocols.names, as_dict(params.train_fewshot)
    classes = load_classes(dataset)
    images, test_masks, stems = experiment.test_set(dataset, inversions)
    test_cache = FeatureCache(inversions / "cache")
    with atomic_dir(args.out) as tmp:
        scores, predicted = experiment.score_protocols(
            names, params.shots.ks, Path(args.shots), test_cache, test_masks, classes,
            tmp / "scratch", settings, resolve_device())
        tables = experiment.comparison_tables(scores)
        truth = experiment.protocol_masks(test_masks, classes, names)
        write_results(
            tmp, metrics=experiment.metrics(scores),
            per_class=experiment.per_class_frame(tables),
            pictures={"predictions.png": experiment.predictions_picture(images, truth, predicted,
                                                                        classes)},
            section=experiment.section_markdown(tables, len(stems), images.shape[1], settings,
                                                scores))
        shutil.rmtree(tmp / "scratch", ignore_errors=True)  # the k-shot feature caches


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--shots", required=True)
    parser.add_argument("--inversions", required=True)
    parser.add_argument("--out", required=True)
    run_stage("protocols", parser, build)
