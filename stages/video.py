"""Stage video (experiments): auto-shot and one-shot on the demo clip, frame by frame.

The clip (stage video_clip: exact frames and masks) is segmented three ways, each frame on
its own (no temporal smoothing):
- auto-shot: the trained UNet (results/train_autoshot/model.pt, partseg.segment.Segmenter);
- one-shot, warm-started: the first frame inverted into the GAN cold (video.steps_first steps
  from the mean latent, the `inversion` settings), every later frame from the previous
  frame's latents and noise maps (video.steps_warm steps, peak lr video.lr_warm), then the
  GAN features (`features` layers and resolution) and the few-shot net
  (results/train_fewshot/model.pt);
- one-shot, cold (video.cold_baseline): every frame inverted from the mean latent with
  steps_first steps, as invert_test does for still images.

Measured (partseg.video.metrics): per-frame mIoU (classes present in the frame's ground truth
or prediction, background included; on frames the person has left, predicting only
background scores 1.0), its mean over all frames, over frames with the person and over those
without, the clip-level per-class IoU, and temporal flicker (the fraction of pixels whose
ground truth is the same in consecutive frames but whose predicted label changes). Writes
experiments/results/video/: per_frame.tsv (`step` = frame index), metrics.json,
per_class.csv, labels.npz, strip.png (frames, ground truth, each method), per_frame.png (mIoU
over time), overlay_autoshot.mp4, overlay_oneshot.mp4, comparison.gif, section.md.
"""

import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from partseg.errors import PartsegError
from partseg.io import atomic_dir, atomic_path, load_json, save_json, save_png
from partseg.stage import log, run_stage, stage_parser

METHODS = {"autoshot": "auto-shot", "oneshot": "one-shot (warm start)",
           "oneshot_cold": "one-shot (cold, every frame)"}
VIDEO_SCALE = 4  # the overlay videos and pictures enlarge the 32 px frames (nearest neighbour)


def load_clip(clip_dir: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """The clip's frames (read as a video: partseg.video), masks and description."""
    from partseg.video import read_video

    info = load_json(clip_dir / "clip.json")
    frames, _ = read_video(clip_dir / "frames", fps=info["fps"])
    masks = np.load(clip_dir / "masks.npy")
    if frames.shape[:3] != masks.shape:
        raise PartsegError(f"{clip_dir}: frames {frames.shape[:3]} and masks.npy {masks.shape} "
                           "disagree; rerun the video_clip stage")
    return frames, masks, info


def check_classes(what: str, path: Path, names, classes: list[str]) -> None:
    if names is not None and list(names) != list(classes):
        raise PartsegError(f"{path}: the {what} segments {list(names)}, but the clip is labelled "
                           f"{classes}; rerun video_clip with the same data.protocol")


def autoshot_labels(model_path: Path, frames: np.ndarray, classes: list[str]) -> tuple[np.ndarray, float]:
    from partseg.segment import Segmenter

    segmenter = Segmenter(model_path)
    check_classes("auto-shot model", model_path, segmenter.class_names, classes)
    started = time.perf_counter()
    labels = np.concatenate([np.stack(segmenter.predict_batch(list(frames[i:i + 32])))
                             for i in range(0, len(frames), 32)])
    return labels, time.perf_counter() - started


def oneshot_labels(args, params, frames: np.ndarray, classes: list[str]) -> dict:
    """{"oneshot": {...}, "oneshot_cold": {...}}, each {"labels", "psnr", "seconds"}."""
    from partseg.params import as_dict
    from partseg.progress import progress
    from partseg.video import OneShotVideo

    settings, inversion = params.video, as_dict(params.inversion)
    fewshot_path = Path(args.fewshot) / "model.pt"
    segmenter = OneShotVideo(Path(args.generator) / "generator.pt", fewshot_path,
                             layers=params.features.layers,
                             feature_resolution=params.features.resolution)
    check_classes("few-shot model", fewshot_path, segmenter.class_names, classes)
    bar = progress(total=len(frames), desc="one-shot, warm start", unit="frame")
    tracked = []
    for result in segmenter.track(frames, steps_first=settings.steps_first,
                                  steps_warm=settings.steps_warm, lr_warm=settings.lr_warm,
                                  inversion=inversion, seed=settings.seed):
        tracked.append(result)
        bar.update(1)
    bar.close()
    results = {"oneshot": {"labels": np.stack([r["labels"] for r in tracked]),
                           "psnr": np.array([r["psnr"] for r in tracked]),
                           "seconds": sum(r["seconds"] for r in tracked)}}
    if settings.cold_baseline:
        log(f"[video] one-shot, cold: {len(frames)} frames x {settings.steps_first} steps")
        results["oneshot_cold"] = segmenter.independent(frames, steps=settings.steps_first,
                                                        inversion=inversion, seed=settings.seed)
    return results


def score(labels: np.ndarray, masks: np.ndarray, classes: list[str]) -> tuple[dict, dict]:
    """(summary numbers, per-frame columns) of one method."""
    from partseg.video import clip_confusion, flicker_per_pair, per_frame_miou, \
        temporal_flicker

    miou = per_frame_miou(labels, masks, len(classes))
    present = (masks != 0).any(axis=(1, 2))
    changed, stable = flicker_per_pair(labels, masks)
    confusion = clip_confusion(labels, masks, len(classes))
    summary = {
        "miou_per_frame_mean": float(np.mean(miou)),
        "miou_with_person": float(np.mean(miou[present])) if present.any() else None,
        "miou_without_person": float(np.mean(miou[~present])) if (~present).any() else None,
        "miou_clip": confusion.miou(),
        "flicker": temporal_flicker(labels, masks),
        "false_person_pixels_when_gone": float((labels[~present] != 0).mean())
        if (~present).any() else None,
        "per_class_iou": dict(zip(classes, map(float, confusion.iou()))),
    }
    flicker = np.concatenate([[np.nan], changed / np.maximum(stable, 1)])
    return summary, {"miou": miou, "flicker": flicker}


# ---------------------------------------------------------------------------- pictures

def strip_picture(frames, masks, labels: dict, count: int) -> np.ndarray:
    from partseg.visualize import colorize, stack_vertical, text_strip, titled_grid

    picks = np.linspace(0, len(frames) - 1, count).round().astype(int)
    rows = [[frames[i] for i in picks], [colorize(masks[i]) for i in picks]]
    rows += [[colorize(method_labels[i]) for i in picks] for method_labels in labels.values()]
    grid = titled_grid(rows, [f"frame {i}" for i in picks], upscale=3)
    names = ", ".join(["frame", "ground truth"] + [METHODS[m] for m in labels])
    return stack_vertical([grid, text_strip(f"rows, top to bottom: {names}", grid.shape[1])])


def per_frame_picture(table: pd.DataFrame, methods: list[str], gone: np.ndarray,
                      width: int = 640, height: int = 220) -> np.ndarray:
    """Per-frame mIoU of each method over time; frames without the person shaded."""
    from PIL import Image, ImageDraw

    from partseg.visualize import palette

    left, right, top, bottom = 36, 150, 10, 24
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    plot_w, plot_h = width - left - right, height - top - bottom
    count = len(table)

    def xy(step, value):
        return (left + plot_w * step / max(1, count - 1), top + plot_h * (1.0 - value))

    for step in np.flatnonzero(gone):
        x0, _ = xy(step - 0.5, 0)
        x1, _ = xy(step + 0.5, 0)
        draw.rectangle([x0, top, x1, top + plot_h], fill=(230, 230, 230))
    for value in (0.0, 0.25, 0.5, 0.75, 1.0):
        _, y = xy(0, value)
        draw.line([left, y, left + plot_w, y], fill=(200, 200, 200))
        draw.text((4, y - 6), f"{value:.2f}", fill=(0, 0, 0))
    colours = palette(len(methods) + 1)[1:]
    for method, colour in zip(methods, colours):
        points = [xy(step, value) for step, value in zip(table["step"], table[f"miou_{method}"])]
        draw.line(points, fill=tuple(int(c) for c in colour), width=2)
    for row, (method, colour) in enumerate(zip(methods, colours)):
        y = top + 14 * row
        draw.rectangle([width - right + 8, y + 3, width - right + 20, y + 9],
                       fill=tuple(int(c) for c in colour))
        draw.text((width - right + 24, y), METHODS[method], fill=(0, 0, 0))
    draw.text((width - right + 8, top + 14 * len(methods) + 4), "grey: no person",
              fill=(90, 90, 90))
    tick = 10 if count <= 150 else 50
    for step in range(0, count, tick):
        x, y = xy(step, 0.0)
        draw.line([x, y, x, y + 3], fill=(0, 0, 0))
        draw.text((x - 6, y + 4), str(step), fill=(0, 0, 0))
    draw.text((width - right + 8, height - bottom + 4), "per-frame mIoU", fill=(0, 0, 0))
    return np.asarray(canvas)


def write_videos(out: Path, frames, masks, labels: dict, fps: float) -> None:
    from partseg.video import write_video
    from partseg.visualize import colorize, enlarge, image_grid, overlay

    for method in ("autoshot", "oneshot"):
        write_video(out / f"overlay_{method}.mp4",
                    (enlarge(overlay(f, l), VIDEO_SCALE) for f, l in zip(frames, labels[method])),
                    fps)
    panels = (image_grid([[frame, colorize(mask)] + [colorize(l[i]) for l in labels.values()]],
                         upscale=3)
              for i, (frame, mask) in enumerate(zip(frames, masks)))
    write_video(out / "comparison.gif", panels, fps)


# ---------------------------------------------------------------------------- the section

def _fixed(value, digits: int = 1, scale: float = 100.0) -> str:
    """A number as table text (report.markdown_table would rescale floats below 1)."""
    return "–" if value is None or np.isnan(value) else f"{scale * value:.{digits}f}"


def results_table(metrics: dict) -> pd.DataFrame:
    rows = []
    for method, name in METHODS.items():
        if method not in metrics["methods"]:
            continue
        m = metrics["methods"][method]
        rows.append({"method": name,
                     "per-frame mIoU": _fixed(m["miou_per_frame_mean"]),
                     "with person": _fixed(m["miou_with_person"]),
                     "without person": _fixed(m["miou_without_person"]),
                     "clip mIoU": _fixed(m["miou_clip"]),
                     "flicker %": _fixed(m["flicker"], 2),
                     "part pixels when gone %": _fixed(m["false_person_pixels_when_gone"]),
                     "ms / frame": _fixed(m["seconds_per_frame"], 1, 1000.0)})
    return pd.DataFrame(rows)


def section_markdown(metrics: dict, info: dict, settings) -> str:
    from partseg.report import markdown_table

    gone = info["frames_without_person"]
    gone_text = f"frames {gone[0]}..{gone[-1]}" if gone else "no frame of this length"
    methods = metrics["methods"]
    lines = [
        "## Video: auto-shot and one-shot frame by frame",
        "",
        f"The demo clip (stage `video_clip`): {info['frames']} frames at {info['resolution']} px, "
        f"{info['fps']:g} fps, one procedural face that turns left and right, rolls, grows, "
        f"shrinks, slides out of the frame (nothing of the person is left in {gone_text}) and "
        "comes back, with exact masks. Each frame is segmented on its own. One-shot inverts "
        f"the first frame cold ({settings.steps_first} steps) and every later one from the "
        f"previous frame's latents and noise maps ({settings.steps_warm} steps); the cold "
        f"baseline inverts every frame from the mean latent ({settings.steps_first} steps).",
        "",
        "Per-frame mIoU is the mean IoU over the classes in the frame's ground truth or "
        "prediction (background included), averaged over frames: a frame without the person "
        "scores 100 when nothing is predicted there and little when a face is hallucinated. "
        "Clip mIoU pools every pixel of the clip. Flicker: the fraction of pixels whose ground "
        "truth is the same in consecutive frames but whose predicted label changes (0 is "
        "steady). Part pixels when gone: pixels labelled as any part in the frames without "
        f"the person. ms / frame: wall time here, {metrics['threads']} torch thread(s) "
        "(inversion dominates one-shot).",
        "",
        markdown_table(results_table(metrics)),
        "",
        "![frames, ground truth and predictions](strip.png)",
        "",
        "![per-frame mIoU](per_frame.png)",
        "",
        reading(methods["autoshot"], methods["oneshot"], methods.get("oneshot_cold")),
        "",
        "Videos: `overlay_autoshot.mp4`, `overlay_oneshot.mp4`, `comparison.gif` (frame, ground "
        "truth, then each method); per-frame numbers in `per_frame.tsv`.",
        "",
    ]
    return "\n".join(lines)


def reading(auto: dict, warm: dict, cold: dict | None) -> str:
    """One paragraph that reads the numbers as they came out."""
    def pct(value):
        return _fixed(value)

    ahead = auto["miou_per_frame_mean"] >= warm["miou_per_frame_mean"]
    text = (f"{'Auto-shot' if ahead else 'One-shot'} is the more accurate on this clip "
            f"(per-frame mIoU {pct(auto['miou_per_frame_mean'])} auto-shot, "
            f"{pct(warm['miou_per_frame_mean'])} one-shot; with the person in frame "
            f"{pct(auto['miou_with_person'])} and {pct(warm['miou_with_person'])}). ")
    if auto["false_person_pixels_when_gone"] is not None:
        seen = [name for name, m in (("auto-shot", auto), ("one-shot", warm))
                if m["false_person_pixels_when_gone"] > 0.05]
        text += (f"In the frames without the person, auto-shot labels "
                 f"{pct(auto['false_person_pixels_when_gone'])} % of the pixels as parts and "
                 f"one-shot {pct(warm['false_person_pixels_when_gone'])} %")
        text += (": " + " and ".join(seen) + (" see" if len(seen) > 1 else " sees")
                 + " a face that is not there. Both learnt from pictures that always hold a "
                 "face (the GAN draws nothing else, and auto-shot is trained on its samples); "
                 "one-shot cannot do otherwise, since the inversion of an empty frame is still "
                 "a generated face. ") if seen else ". "
    if cold is not None:
        text += (f"Warm-starting the inversion from the previous frame gives flicker "
                 f"{_fixed(warm['flicker'], 2)} % against {_fixed(cold['flicker'], 2)} % for cold "
                 f"inversions and per-frame mIoU {pct(warm['miou_per_frame_mean'])} against "
                 f"{pct(cold['miou_per_frame_mean'])}, at {warm['seconds_per_frame']:.2f} s "
                 f"instead of {cold['seconds_per_frame']:.2f} s per frame (the cold ones run "
                 "batched, the warm ones one after the other). ")
    steadier = "steadier" if auto["flicker"] < warm["flicker"] else "less steady"
    text += (f"Auto-shot flickers {_fixed(auto['flicker'], 2)} % ({steadier} than one-shot) and "
             f"takes {1000 * auto['seconds_per_frame']:.1f} ms per frame. Neither method looks "
             "at neighbouring frames: the flicker is that of independent per-frame "
             "segmentation.")
    return text


# ---------------------------------------------------------------------------- the stage

def build(args, params):
    clip_dir = Path(args.clip)
    frames, masks, info = load_clip(clip_dir)
    classes = list(info["classes"])
    labels, seconds, psnr = {}, {}, {}
    labels["autoshot"], seconds["autoshot"] = autoshot_labels(
        Path(args.autoshot) / "model.pt", frames, classes)
    log(f"[video] auto-shot: {len(frames)} frames in {seconds['autoshot']:.2f} s")
    for method, result in oneshot_labels(args, params, frames, classes).items():
        labels[method], seconds[method], psnr[method] = (result["labels"], result["seconds"],
                                                         result["psnr"])
        log(f"[video] {METHODS[method]}: {seconds[method]:.1f} s, "
            f"mean PSNR {np.mean(result['psnr']):.2f} dB")

    present = (masks != 0).any(axis=(1, 2))
    table = pd.DataFrame({"step": np.arange(len(frames)),
                          "person_fraction": (masks != 0).mean(axis=(1, 2))})
    metrics = {"frames": len(frames), "frames_without_person": int((~present).sum()),
               "classes": classes, "threads": torch.get_num_threads(), "methods": {}}
    for method in labels:
        summary, columns = score(labels[method], masks, classes)
        summary["seconds_per_frame"] = seconds[method] / len(frames)
        if method in psnr:
            summary["psnr_mean"] = float(np.mean(psnr[method]))
            table[f"psnr_{method}"] = psnr[method]
        metrics["methods"][method] = summary
        table[f"miou_{method}"] = columns["miou"]
        table[f"flicker_{method}"] = columns["flicker"]
        log(f"[video] {METHODS[method]}: per-frame mIoU {100 * summary['miou_per_frame_mean']:.1f}, "
            f"flicker {100 * summary['flicker']:.2f} %")

    with atomic_dir(args.out) as tmp:
        with atomic_path(tmp / "per_frame.tsv") as part:
            table.round(5).to_csv(part, sep="\t", index=False)
        per_class = pd.DataFrame({METHODS[m]: s["per_class_iou"]
                                  for m, s in metrics["methods"].items()})
        with atomic_path(tmp / "per_class.csv") as part:
            per_class.rename_axis("class").round(4).to_csv(part)
        with atomic_path(tmp / "labels.npz") as part:
            np.savez_compressed(part, **labels)
        save_json(metrics, tmp / "metrics.json")
        save_png(strip_picture(frames, masks, labels, params.video.strip_frames),
                 tmp / "strip.png")
        save_png(per_frame_picture(table, list(labels), ~present), tmp / "per_frame.png")
        write_videos(tmp, frames, masks, labels, info["fps"])
        (tmp / "section.md").write_text(section_markdown(metrics, info, params.video))


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--clip", default="experiments/results/video_clip")
    parser.add_argument("--generator", default="results/train_gan")
    parser.add_argument("--fewshot", default="results/train_fewshot")
    parser.add_argument("--autoshot", default="results/train_autoshot")
    parser.add_argument("--out", default="experiments/results/video")
    run_stage("video", parser, build)
