"""Few-shot part segmentation: small classifiers on GAN pixel features.

Networks (one per file): `PixelMLP` (linear / mlp [2000] / mlp2 [2000, 200], mlp.py),
`DilatedCNN` (the paper's dilated CNN, dilated_cnn.py) and `Ensemble` (mean probabilities and
JS-divergence uncertainty, ensemble.py); `build_network(kind, in_channels, num_classes)` picks one.
`train_fewshot` trains from the on-disk feature cache with bounded memory (train.py);
`predict_logits`, `predict_from_cache` and `uncertainty` apply a trained model (predict.py).
"""

from partseg import lazy_exports

# name -> submodule; imported on first use (see partseg.lazy_exports)
_EXPORTS = {
    "DilatedCNN": "dilated_cnn",
    "Ensemble": "ensemble",
    "NETWORKS": "networks",
    "PixelMLP": "mlp",
    "build_network": "networks",
    "load_fewshot_model": "train",
    "predict_from_cache": "predict",
    "predict_logits": "predict",
    "save_fewshot_model": "train",
    "train_fewshot": "train",
    "uncertainty": "predict",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
