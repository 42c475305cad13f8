"""Stage train_fewshot: the small per-pixel classifier on GAN features (the few-shot net).

Trains from the disk feature cache in random pixel batches (linear/MLPs) or tiles (CNN),
so memory is bounded whatever k. Writes model.pt (with its config and the feature layout it
expects) and training_log.tsv (loss curve, a DVC plot).
"""

from pathlib import Path

import numpy as np

from partseg.plumbing.io import atomic_dir
from partseg.plumbing.stage import log, run_stage, stage_parser


def build(args, params):
    from partseg.plumbing.device import resolve_device
    from partseg.features import FeatureCache
    from partseg.fewshot.train import save_fewshot_model, train_fewshot
    from partseg.plumbing.io import load_json
    from partseg.plumbing.params import as_dict

    features_dir = Path(args.features)
    cache = FeatureCache(features_dir / "cache")
    masks = np.load(features_dir / "masks.npy")
    classes = load_json(Path(args.annotations) / "annotations.json")["classes"]
    options = params.train_fewshot
    settings = as_dict(options)
    with atomic_dir(args.out) as tmp:
        model, history = train_fewshot(cache, masks, num_classes=len(classes),
                                       device=resolve_device(),
                                       log_path=tmp / "training_log.tsv", **settings)
        save_fewshot_model(tmp / "model.pt", model,
                           {**settings, "classes": classes, "features": cache.manifest})
    log(f"[train_fewshot] {options.network} x{options.ensemble}: final loss "
        f"{history[-1]['loss']:.4f}")


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--features", required=True)
    parser.add_argument("--annotations", required=True)
    parser.add_argument("--out", required=True)
    run_stage("train_fewshot", parser, build)
