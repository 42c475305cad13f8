"""Few-shot part segmentation: small classifiers on GAN pixel features.

Networks (one per file): `PixelMLP` (linear / mlp [2000] / mlp2 [2000, 200], mlp.py),
`DilatedCNN` (the paper's dilated CNN, dilated_cnn.py) and `Ensemble` (mean probabilities and
JS-divergence uncertainty, ensemble.py); `build_network(kind, in_channels, num_classes)` picks one.
`train_fewshot` trains from the on-disk feature cache with bounded memory (train.py);
`predict_logits`, `predict_from_cache` and `uncertainty` apply a trained model (predict.py).
"""

from partseg.fewshot.dilated_cnn import DilatedCNN
from partseg.fewshot.ensemble import Ensemble
from partseg.fewshot.mlp import PixelMLP
from partseg.fewshot.networks import NETWORKS, build_network
from partseg.fewshot.predict import predict_from_cache, predict_logits, uncertainty
from partseg.fewshot.train import load_fewshot_model, save_fewshot_model, train_fewshot

__all__ = ["DilatedCNN", "Ensemble", "NETWORKS", "PixelMLP", "build_network", "load_fewshot_model",
           "predict_from_cache", "predict_logits", "save_fewshot_model", "train_fewshot", "uncertainty"]
