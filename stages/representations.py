"""Stage representations (experiments): the same few-shot net on four pixel representations.

Is it the GAN's *training* that makes its pixel features good for few-shot part segmentation?
The few-shot net (train_fewshot's settings), trained on the first k shared shots (stage
`shots`, k in shots.ks) and scored on invert_test's inverted `test` images, reads each
representation in representations.names: gan (the demo GAN's features), vae (the decoder of
stage train_vae's VAE, whose decoder is the GAN's generator architecture), random (that
architecture untrained) and rgbxy (the pixels and their coordinates). The method is in
partseg.experiments.representations.

Writes experiments/results/representations/: metrics.json (per representation and k: mIoU,
per-class IoU; per representation: the test reconstruction PSNR), per_class.csv, section.md
(the per-class table, the mIoU table with PSNRs, a reading of the numbers), predictions.png
(test images, ground truth, each representation's prediction at each k) and
reconstructions.png (test images and each generator's reconstruction of them).
"""

from pathlib import Path

from partseg.plumbing.io import atomic_dir
from partseg.plumbing.stage import run_stage, stage_parser


def build(args, params):
    from partseg.experiments.representations import Inputs, run_representations

    inputs = Inputs(dataset=Path(args.dataset), generator=Path(args.generator),
                    shots=Path(args.shots), inversions=Path(args.inversions), vae=Path(args.vae))
    with atomic_dir(args.out) as tmp:
        run_representations(inputs, params, tmp)


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--generator", required=True)
    parser.add_argument("--shots", required=True)
    parser.add_argument("--inversions", required=True)
    parser.add_argument("--vae", required=True)
    parser.add_argument("--out", required=True)
    run_stage("representations", parser, build)
