"""The demo's simulated annotator: a UNet trained on procedurally rendered, pixel-exact faces.

On the built-in demo data no person paints the k shots; this network does, standing in for a
careful annotator. It must be good, and it must not be one of the methods it is compared with:
it never sees the labelled split (that pool of 500 images belongs to the baselines). Instead
it learns from as many freshly rendered faces as it needs: the synthetic generator draws
unlimited images with exact masks. Those images are taken from the generator's `train` stream
at indices from ANNOTATOR_FIRST_INDEX on, far beyond any dataset split, so they are new faces
of the same distribution as the GAN's training data.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from partseg.plumbing.errors import PartsegError

ANNOTATOR_FIRST_INDEX = 1_000_000  # dataset splits use indices 0..n-1 of their own streams
CHUNK = 250


def _render_chunk(seed: int, start: int, stop: int, resolution: int):
    from partseg.data.synthetic import render_face_sample

    pairs = [render_face_sample(seed, "train", ANNOTATOR_FIRST_INDEX + i, resolution)
             for i in range(start, stop)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def render_training_faces(count: int, *, seed: int, resolution: int, workers: int = 1
                          ) -> tuple[np.ndarray, np.ndarray]:
    """`count` new demo faces with their masks: uint8 [N,H,W,3], uint8 [N,H,W].

    A pure function of (count, seed, resolution): `workers` only changes the speed.
    """
    from partseg.plumbing.progress import progress

    jobs = [(start, min(start + CHUNK, count)) for start in range(0, count, CHUNK)]
    images, masks = [], []
    bar = progress(total=count, desc="render annotator faces", unit="img")
    if workers <= 1:
        results = (_render_chunk(seed, a, b, resolution) for a, b in jobs)
    else:
        pool = ProcessPoolExecutor(max_workers=workers)
        results = pool.map(_render_chunk, *zip(*[(seed, a, b, resolution) for a, b in jobs]))
    for (start, stop), (chunk_images, chunk_masks) in zip(jobs, results):
        images.append(chunk_images)
        masks.append(chunk_masks)
        bar.update(stop - start)
    bar.close()
    if workers > 1:
        pool.shutdown()
    return np.concatenate(images), np.concatenate(masks)


def annotator_labels(model, images, classes: list[str], **predict_options) -> list:
    """The annotator's (labels, probabilities) per image, labels in the dataset's `classes`.

    The shipped annotator paints the 10 face classes; under data.protocol face4 the dataset
    has 4, so its labels are merged exactly as the dataset stage merged the ground truth (a
    no-op when the classes agree). Probabilities stay the annotator's own.
    """
    from partseg.autoshot.segmenter import predict_labels
    from partseg.data.protocols import merge_labels

    own = list(model.meta["class_names"])
    return [(merge_labels(labels, own, classes), probs)
            for labels, probs in predict_labels(model, images, **predict_options)]


def score_on_split(model, images: np.ndarray, masks: np.ndarray, classes: list[str]) -> dict:
    """The annotator's own quality on a labelled split: mIoU, pixel accuracy, per-class IoU."""
    from partseg.metrics import ConfusionMatrix

    matrix = ConfusionMatrix(len(classes))
    for (labels, _), mask in zip(annotator_labels(model, images, classes, batch_size=64), masks):
        matrix.update(labels, mask)
    iou = {name: (None if np.isnan(v) else round(float(v), 4))
           for name, v in zip(classes, matrix.iou())}
    return {"miou": round(matrix.miou(), 4), "pixel_accuracy": round(matrix.pixel_accuracy(), 4),
            "per_class_iou": iou, "images": int(len(images))}


def check_annotator(model, checkpoint: str | os.PathLike, classes: list[str],
                    resolution: int) -> None:
    """Refuse an annotator that does not fit the data: other classes or another resolution."""
    from partseg.data.protocols import merges_face_classes
    from partseg.data.synthetic import FACE_CLASSES

    meta = model.meta
    # A 10-class face annotator also serves a protocol that merges those classes (face4).
    mergeable = list(meta["class_names"]) == list(FACE_CLASSES) and merges_face_classes(classes)
    if list(meta["class_names"]) != list(classes) and not mergeable:
        raise PartsegError(
            f"{checkpoint}: this annotator labels {meta['class_names']}, but the dataset's classes "
            f"are {classes}. Set train_annotator.checkpoint: null to train one for this data")
    if meta["resolution"] != resolution:
        raise PartsegError(
            f"{checkpoint}: this annotator was trained at {meta['resolution']} px, but "
            f"data.resolution is {resolution}. Set train_annotator.checkpoint: null to train one "
            f"at {resolution} px")
