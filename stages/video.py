"""Stage video (experiments): auto-shot and one-shot on the demo clip, frame by frame.

The clip (stage video_clip: exact frames and masks) is segmented three ways, no method
smoothing its labels over time (partseg.video.experiment):
- auto-shot: the trained UNet (--autoshot/model.pt);
- one-shot, warm-started: the first frame inverted into the GAN (--generator) cold
  (video.steps_first steps, the `inversion` settings), every later frame from the previous
  frame's latents and noise maps (video.steps_warm steps, peak lr video.lr_warm), then the
  GAN features (`features`) and the few-shot net (--fewshot/model.pt);
- one-shot, cold (video.cold_baseline): every frame inverted from the mean latent.

Measured (partseg.video.metrics): per-frame mIoU, over all frames, those with the person and
those without; clip-level per-class IoU; temporal flicker. Writes experiments/results/video/:
per_frame.tsv (`step` = frame index), metrics.json, per_class.csv, labels.npz, strip.png
(frames, ground truth, each method), per_frame.png (mIoU over time), overlay_autoshot.mp4,
overlay_oneshot.mp4, comparison.gif, section.md (partseg.video.report).
"""

from pathlib import Path

import numpy as np

from partseg.plumbing.io import atomic_dir, atomic_path
from partseg.plumbing.stage import run_stage, stage_parser


def build(args, params):
    from partseg.experiments.shared import write_results
    from partseg.video import experiment, report

    frames, masks, info = experiment.load_clip(Path(args.clip))
    classes = list(info["classes"])
    runs = experiment.label_clip(frames, classes, params,
                                 autoshot=Path(args.autoshot) / "model.pt",
                                 generator=Path(args.generator) / "generator.pt",
                                 fewshot=Path(args.fewshot) / "model.pt")
    metrics, table = experiment.measure(runs, masks, classes)
    labels = {method: run["labels"] for method, run in runs.items()}
    gone = ~(masks != 0).any(axis=(1, 2))

    with atomic_dir(args.out) as tmp:
        with atomic_path(tmp / "per_frame.tsv") as part:
            table.round(5).to_csv(part, sep="\t", index=False)
        with atomic_path(tmp / "labels.npz") as part:
            np.savez_compressed(part, **labels)
        pictures = {"strip.png": report.strip_picture(frames, masks, labels,
                                                      params.video.strip_frames),
                    "per_frame.png": report.per_frame_picture(table, list(labels), gone)}
        write_results(tmp, metrics=metrics, per_class=report.per_class_table(metrics).round(4),
                      pictures=pictures,
                      section=report.section_markdown(metrics, info, params.video))
        report.write_videos(tmp, frames, masks, labels, info["fps"])


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--clip", required=True)
    parser.add_argument("--generator", required=True)
    parser.add_argument("--fewshot", required=True)
    parser.add_argument("--autoshot", required=True)
    parser.add_argument("--out", required=True)
    run_stage("video", parser, build)
