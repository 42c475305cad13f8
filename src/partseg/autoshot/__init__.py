"""Auto-shot: distil the few-shot net into a fast UNet that segments real images directly.

    synthesize.synthesize_shard   generated images + the few-shot net's fp16 logits (soft labels)
    train.train_segmenter         UNet trained with soft-target cross-entropy (or hard masks)
    segmenter                     a trained UNet saved, loaded and run (save/load_segmenter,
                                  predict_labels)
    augment                       geometry applied identically to image and labels, colour jitter
    unet.UNet                     the segmenter
Inference on user images: segmenter.Segmenter, behind `partseg segment` (partseg.segment).
"""

from partseg import lazy_exports

# name -> submodule; imported on first use (see partseg.lazy_exports)
_EXPORTS = {
    "Segmenter": "segmenter",
    "UNet": "unet",
    "load_segmenter": "segmenter",
    "predict_labels": "segmenter",
    "predict_probabilities": "segmenter",
    "save_segmenter": "segmenter",
    "train_segmenter": "train",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
