"""Stage predict_oneshot: segment the inverted test images with the few-shot net.

The one-shot path of the paper: features of each image's inversion -> few-shot classifier ->
logits at the feature resolution, upsampled (bilinear) to the image size. Writes per split
labels.npy (uint8 [N,H,W]), logits.npy (fp16 [N,K,R,R]) and stems.json.
"""

from pathlib import Path

import numpy as np
import torch

from partseg.plumbing.io import atomic_dir, atomic_path, load_json, save_json
from partseg.plumbing.stage import log, run_stage, stage_parser


def build(args, params):
    from partseg.plumbing.device import resolve_device
    from partseg.features import FeatureCache
    from partseg.fewshot.predict import predict_from_cache
    from partseg.fewshot.train import load_fewshot_model

    device = resolve_device()
    model = load_fewshot_model(Path(args.fewshot) / "model.pt", device)
    size = params.data.resolution
    with atomic_dir(args.out) as tmp:
        for split_dir in sorted(p for p in Path(args.inversions).iterdir() if p.is_dir()):
            cache = FeatureCache(split_dir / "cache")
            logits = torch.stack([l.cpu() for _, l in predict_from_cache(model, cache, 16)])
            upsampled = torch.nn.functional.interpolate(logits.float(), size=(size, size),
                                                        mode="bilinear", align_corners=False)
            out = tmp / split_dir.name
            out.mkdir()
            for name, array in (("labels", upsampled.argmax(1).to(torch.uint8).numpy()),
                                ("logits", logits.half().numpy())):
                with atomic_path(out / f"{name}.npy") as part:
                    np.save(part, array)
            save_json(load_json(split_dir / "stems.json"), out / "stems.json")
            log(f"[predict_oneshot] {split_dir.name}: {len(logits)} images segmented")


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--inversions", required=True)
    parser.add_argument("--fewshot", required=True)
    parser.add_argument("--out", required=True)
    run_stage("predict_oneshot", parser, build)
