"""Train the few-shot net on some shots and score it on labelled test images, in one call.

The paper's experiments compare many variants of the same recipe (other representations,
other class protocols, other part definitions): each is "train the same few-shot network on
the shots' features, predict the test images' features, compare with their masks". This
module is that recipe once, so every experiment runs it the same way.

Features come from any feature cache (`partseg.features.FeatureCache`): the GAN's, or
another representation's written with `write_cache_from_arrays`. Masks are label ids
(255 = ignore); the shots' masks at the cache's resolution, the test masks at any size (the
logits are upsampled bilinearly to it, as predict_oneshot does).
"""

from __future__ import annotations

import numpy as np
import torch

from partseg.plumbing.errors import PartsegError
from partseg.metrics import ConfusionMatrix


def predict_cache_labels(model: torch.nn.Module, cache, size: int, batch_size: int = 16
                         ) -> np.ndarray:
    """uint8 [N, size, size]: the few-shot net's argmax on every image of a feature `cache`,
    logits upsampled bilinearly from the feature resolution to `size`. (A trained UNet's
    labels of images: partseg.autoshot.segmenter.predict_labels.)"""
    from partseg.fewshot.predict import predict_from_cache

    labels = []
    for _, logits in predict_from_cache(model, cache, batch_size):
        upsampled = torch.nn.functional.interpolate(logits[None].float(), size=(size, size),
                                                    mode="bilinear", align_corners=False)
        labels.append(upsampled[0].argmax(0).to(torch.uint8).numpy())
    return np.stack(labels) if labels else np.zeros((0, size, size), np.uint8)


def fewshot_scores(shot_cache, shot_masks: np.ndarray, test_cache, test_masks: np.ndarray, *,
                   num_classes: int, settings: dict, device=None
                   ) -> tuple[ConfusionMatrix, np.ndarray]:
    """Train the few-shot net (`settings`: the train_fewshot params) on (shot_cache,
    shot_masks), segment every test image, and return (confusion matrix over the test set,
    the predicted labels uint8 [N, H, W])."""
    from partseg.fewshot.train import train_fewshot

    if test_cache.num_images != len(test_masks):
        raise PartsegError(f"{test_cache.dir}: {test_cache.num_images} images but "
                           f"{len(test_masks)} test masks")
    model, _ = train_fewshot(shot_cache, shot_masks, num_classes=num_classes, device=device,
                             **settings)
    predicted = predict_cache_labels(model, test_cache, test_masks.shape[-1])
    return ConfusionMatrix(num_classes).update(predicted, test_masks), predicted


class _FirstImages:
    """The first `count` images of a cache, read one at a time (NCHW), for
    write_cache_from_arrays: the k-shot subset of a larger set of shots, never all in RAM."""

    def __init__(self, cache, count: int):
        self.cache, self.count = cache, count
        self.shape = (count, cache.num_channels, cache.resolution, cache.resolution)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.cache.image_features(index)


def first_images_cache(cache, count: int, out_dir):
    """A new cache at `out_dir` holding the first `count` images of `cache` (the shots of
    k = count when the cache holds more), with the same layers; returns it opened."""
    from partseg.features import write_cache_from_arrays

    if not 1 <= count <= cache.num_images:
        raise PartsegError(f"{cache.dir}: {count} shots asked for, the cache holds "
                           f"{cache.num_images} images")
    return write_cache_from_arrays(out_dir, _FirstImages(cache, count), layers=cache.layers,
                                   channels_per_layer=cache.channels_per_layer,
                                   params=cache.manifest.get("params"), layout="NCHW")
