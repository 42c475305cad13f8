"""Ablations of the one-shot path on a built pipeline: shots k x few-shot network x layers.

For each combination: the first k generated samples (labelled like the `annotate` stage's
simulated annotator, i.e. by results/baselines/unet_full.pt), their features from the chosen
layers, a few-shot net trained from a disk cache, and its mIoU on the inverted test images
(results/invert_test/<split>: the same latents the pipeline's one-shot path uses). One table.

    python bench/ablations.py --k 1 5 10 --networks linear mlp mlp2 cnn --layers all
    python bench/ablations.py --k 1 --networks cnn --layers low mid high all

Each run of the full pipeline per combination is also possible (and reruns auto-shot too):
    dvc exp run --queue -S annotate.k=5 -S train_fewshot.network=mlp && dvc queue start
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from partseg.autoshot.segmenter import load_segmenter, predict_labels
from partseg.data.folder import load_classes, load_split_arrays
from partseg.features import FeatureExtractor, write_feature_cache
from partseg.fewshot.predict import predict_logits
from partseg.fewshot.train import train_fewshot
from partseg.gan import load_generator
from partseg.plumbing.io import read_image
from partseg.metrics import ConfusionMatrix
from partseg.report import markdown_table


def resize_labels(masks: np.ndarray, size: int) -> np.ndarray:
    tensor = torch.from_numpy(masks).unsqueeze(1).float()
    return torch.nn.functional.interpolate(tensor, size=(size, size), mode="nearest")[:, 0] \
        .to(torch.uint8).numpy()


def simulated_shots(results: Path, k_max: int):
    """The first k_max samples and their masks from the simulated annotator."""
    latents = torch.load(results / "sample/latents.pt", weights_only=True)
    stems = latents["stems"][:k_max]
    images = np.stack([read_image(results / "sample/images" / f"{s}.png") for s in stems])
    annotator = load_segmenter(results / "baselines/unet_full.pt", "cpu")
    masks = np.stack([labels for labels, _ in predict_labels(annotator, images)])
    return latents["wplus"][:k_max], masks


def evaluate_oneshot(model, test_features, test_masks, num_classes) -> ConfusionMatrix:
    logits = predict_logits(model, test_features)
    size = test_masks.shape[-1]
    labels = torch.nn.functional.interpolate(logits, size=(size, size), mode="bilinear",
                                             align_corners=False).argmax(1).numpy()
    matrix = ConfusionMatrix(num_classes)
    matrix.update(labels, test_masks)
    return matrix


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", default="results")
    parser.add_argument("--dataset", default="data/dataset")
    parser.add_argument("--split", default="test")
    parser.add_argument("--k", type=int, nargs="+", default=[1, 5, 10])
    parser.add_argument("--networks", nargs="+", default=["linear", "mlp", "mlp2", "cnn"])
    parser.add_argument("--layers", nargs="+", default=["all"])
    parser.add_argument("--resolution", type=int, default=32, help="feature resolution")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--out", default="results/ablations")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    results, out = Path(args.results), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    classes = load_classes(args.dataset)
    generator = load_generator(results / "train_gan/generator.pt")
    shot_ws, shot_masks = simulated_shots(results, max(args.k))
    inverted = torch.load(results / "invert_test" / args.split / "latents.pt", weights_only=True)
    count = len(inverted["stems"])
    _, test_masks, _ = load_split_arrays(args.dataset, args.split, limit=count)
    rows = []
    for layers in args.layers:
        extractor = FeatureExtractor(generator, layers, args.resolution)
        with torch.no_grad():
            test_features, _ = extractor(inverted["wplus"], noise=inverted.get("noises"))
        for k in args.k:
            with tempfile.TemporaryDirectory() as scratch:
                cache = write_feature_cache(Path(scratch) / "cache", extractor, shot_ws[:k],
                                            batch_size=8, generator_checksum="ablation",
                                            params={"layers": layers}, show_progress=False)
                for network in args.networks:
                    model, _ = train_fewshot(cache, resize_labels(shot_masks[:k], args.resolution),
                                             num_classes=len(classes), network=network,
                                             steps=args.steps, seed=0, device="cpu")
                    matrix = evaluate_oneshot(model, test_features, test_masks, len(classes))
                    rows.append({"layers": layers, "k": k, "network": network,
                                 "channels": extractor.num_channels, "mIoU": matrix.miou(),
                                 **dict(zip(classes, matrix.iou()))})
                    print(f"layers={layers} k={k} network={network}: mIoU {matrix.miou():.3f}",
                          flush=True)
    table = pd.DataFrame(rows)
    table.to_csv(out / "ablations.csv", index=False, float_format="%.4f")
    (out / "ablations.md").write_text(
        f"One-shot mIoU (%) on the {count} inverted `{args.split}` images, "
        f"simulated annotations, {args.steps} few-shot steps.\n\n"
        + markdown_table(table[["layers", "k", "network", "channels", "mIoU"]]) + "\n")
    print((out / "ablations.md").read_text())


if __name__ == "__main__":
    main()
