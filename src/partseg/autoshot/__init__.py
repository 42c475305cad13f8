"""Auto-shot: distil the few-shot net into a fast UNet that segments real images directly.

    synthesize.synthesize_shard   generated images + the few-shot net's fp16 logits (soft labels)
    train.train_segmenter         UNet trained with soft-target cross-entropy (or hard masks)
    augment                       geometry applied identically to image and labels, colour jitter
    unet.UNet                     the segmenter
Inference on user images: partseg.segment (`partseg segment`).
"""

from partseg.autoshot.train import (load_segmenter, predict_labels, save_segmenter,
                                    train_segmenter)
from partseg.autoshot.unet import UNet

__all__ = ["UNet", "load_segmenter", "predict_labels", "save_segmenter", "train_segmenter"]
