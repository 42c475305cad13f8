"""Stage partitions (experiments): parts of any shape, from one shot.

Each protocol in partitions.names is one definition of the parts of the same pictures: face10
(the face classes) and partitions of the face that no class merge gives (grid4, a 2x2 grid
over the face; bands3, concentric bands), drawn by the demo generator in each face's own
coordinates (partseg.data.partitions).

The shot is a real image of the `labeled` split inverted into the GAN (inversion settings),
with its exact mask under every protocol. partitions.shot: auto inverts the first
partitions.candidates labelled images and takes the best inverted one (PSNR) among those that
show every part of every protocol (each at least a 2x2 patch); or a named stem. For each
protocol the few-shot net (train_fewshot's settings) learns the shot's GAN features and
segments the inverted `test` images (invert_test's feature cache), scored against their masks
under that protocol: mIoU, per-class IoU, the IoU of the face as a whole and the share of the
face found that lands in the right part (partseg.experiments.partitions).

Writes experiments/results/partitions/: metrics.json, per_class.csv, section.md, shots.png (the
shot, its inversion and its mask under each protocol) and predictions.png (test images, then
per protocol the ground truth and the prediction).
"""

import shutil
from pathlib import Path

from partseg.plumbing.io import atomic_dir
from partseg.plumbing.stage import log, run_stage, stage_parser


def build(args, params):
    from partseg.plumbing.device import resolve_device
    from partseg.experiments import partitions as experiment
    from partseg.experiments.shared import write_results
    from partseg.features import FeatureCache
    from partseg.plumbing.params import as_dict

    names = params.partitions.names
    dataset, generator = Path(args.dataset), Path(args.generator)
    inversions = Path(args.inversions) / "test"
    classes = experiment.class_lists(dataset, names)
    images, stems, test_masks = experiment.test_set(dataset, inversions, names)
    test_cache = FeatureCache(inversions / "cache")
    shots, candidates = experiment.choose_shot(dataset, generator, params)
    stem = shots.stems[0]
    shot_masks = experiment.shot_masks(dataset, names, stem)
    head = experiment.shot_head(dataset, stem)
    log(f"[partitions] the shot: labelled image {stem} (inversion PSNR "
        f"{shots.psnr[0]:.2f} dB)")
    with atomic_dir(args.out) as tmp:
        shot_cache = experiment.shot_features(shots, generator, params, test_cache,
                                              tmp / "scratch" / "shot_cache")
        reconstructions = shot_cache.images()
        scores, predicted = experiment.score_protocols(
            shot_cache, shot_masks, test_cache, test_masks, classes,
            as_dict(params.train_fewshot), resolve_device())
        shot_cache.close()
        shutil.rmtree(tmp / "scratch")
        pictures = {
            "shots.png": experiment.shots_picture(shots, reconstructions, shot_masks, classes),
            "predictions.png": experiment.predictions_picture(images, test_masks, predicted,
                                                              classes)}
        count, settings = len(stems), as_dict(params.train_fewshot)
        write_results(tmp, metrics=experiment.metrics(shots, head, candidates, count, scores),
                      per_class=experiment.per_class_frame(scores), pictures=pictures,
                      section=experiment.section_markdown(scores, shots, head, candidates, count,
                                                          settings),
                      index=False, float_format="%.4f")


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--generator", required=True)
    parser.add_argument("--inversions", required=True)
    parser.add_argument("--out", required=True)
    run_stage("partitions", parser, build)
