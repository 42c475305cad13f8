"""Stage shots (experiments): the k annotated generated images every few-shot experiment shares.

The experiments compare k = 1 and k = 10 (shots.ks) on the same shots: the simulated annotator
labels the sample.n generated candidates, the candidates are ranked as annotate.pick auto
ranks them (most parts shown, then the annotator's confidence), and the first max(ks) become
the shots. So the shots of a smaller k are the first of the larger, and the first shot is the
default run's. Their GAN pixel features are cached as the features stage caches them.

Writes experiments/results/shots/: images/ and masks/<stem>.png (masks in the dataset's
classes), latents.pt (stems, wplus), annotations.json (stems best first, classes, ks, every
candidate's score), cache/ (the GAN feature cache of the shots, features params), masks.npy
(uint8 masks at the feature resolution, in the cache's order) and shots.png.
"""

from pathlib import Path

import numpy as np

from partseg.plumbing.errors import PartsegError
from partseg.plumbing.io import atomic_dir, save_json, save_png
from partseg.plumbing.stage import log, run_stage, stage_parser


def pick_shots(args, params, classes: list[str]):
    """The max(shots.ks) best candidates, labelled by the simulated annotator."""
    from partseg.shots.choose import load_candidates
    from partseg.shots.sources import simulated_shots

    if params.annotate.source != "simulated":
        raise PartsegError("params key annotate.source: the experiments' shots are labelled by the "
                           "demo's simulated annotator, so they need annotate.source: simulated "
                           f"(got {params.annotate.source!r})")
    k = max(params.shots.ks)
    candidates = load_candidates(Path(args.samples))
    if len(candidates) < k:
        raise PartsegError(f"params key shots.ks: {k} shots need at least {k} generated "
                           f"candidates, but sample.n is {len(candidates)}")
    return simulated_shots(candidates, "auto", k, Path(args.annotator), classes)


def cache_features(out: Path, shots, generator_dir: Path, params) -> None:
    """The shots' GAN features (as stage features caches them) and their masks beside them."""
    from partseg.plumbing.device import resolve_device
    from partseg.features import cache_latent_features
    from partseg.imaging import resize_masks

    cache_latent_features(out / "cache", generator_dir / "generator.pt", shots.wplus,
                          params.features, batch_size=8, device=resolve_device())
    np.save(out / "masks.npy", resize_masks(shots.masks, params.features.resolution))


def build(args, params):
    from partseg.data.folder import load_classes
    from partseg.visualize import shots_picture

    classes = load_classes(Path(args.dataset))
    shots, scores = pick_shots(args, params, classes)
    with atomic_dir(args.out) as tmp:
        shots.save_pictures(tmp)
        shots.save_latents(tmp / "latents.pt", noises=False)
        save_json({"stems": shots.stems, "classes": classes, "ks": params.shots.ks,
                   "simulated": True, "candidates": scores}, tmp / "annotations.json")
        save_png(shots_picture(shots, classes), tmp / "shots.png")
        cache_features(tmp, shots, Path(args.generator), params)
    log(f"[shots] {len(shots)} shots, best first: {', '.join(shots.stems)}")


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--generator", required=True)
    parser.add_argument("--samples", required=True)
    parser.add_argument("--annotator", required=True)
    parser.add_argument("--out", required=True)
    run_stage("shots", parser, build)
