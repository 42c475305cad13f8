"""The video experiment: the demo clip (stage video_clip) and three segmentations of it (stage video).

The clip: one procedural face that turns, rolls, grows, shrinks, leaves the frame and comes
back (partseg.data.clip), with exact masks in the dataset's classes.

    images, masks = write_clip_frames(out, seed=0, frames=120, resolution=32, fps=12,
                                      classes=clip_classes("face4"))

The methods (none smooths the labels over time):
- "autoshot": the trained UNet (partseg.autoshot.segmenter.Segmenter), in batches of 32 frames;
- "oneshot": GAN inversion warm-started from the previous frame, then the few-shot net
  (partseg.video.oneshot.OneShotVideo.track);
- "oneshot_cold": every frame inverted from the mean latent (video.cold_baseline).

    frames, masks, info = load_clip("experiments/results/video_clip")
    runs = label_clip(frames, list(info["classes"]), params, autoshot=..., generator=..., fewshot=...)
    metrics, table = measure(runs, masks, list(info["classes"]))
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from partseg.plumbing.errors import PartsegError
from partseg.plumbing.io import load_json
from partseg.plumbing.stage import log

METHODS = {"autoshot": "auto-shot", "oneshot": "one-shot (warm start)",
           "oneshot_cold": "one-shot (cold, every frame)"}
DISPLAY_SIZE = 128  # clip.mp4's size: the frames enlarged by a whole factor to about this
AUTOSHOT_BATCH = 32


# ---------------------------------------------------------------------------- the clip

def clip_classes(protocol: str) -> list[str]:
    """The clip's classes: the synthetic faces' 10, merged as `protocol` says."""
    from partseg.data.protocols import protocol_classes
    from partseg.data.synthetic import FACE_CLASSES

    return protocol_classes(protocol, list(FACE_CLASSES))


def display_scale(resolution: int) -> int:
    """The whole factor clip.mp4 enlarges frames by: H.264 halves chroma resolution, so the
    tiny frames are enlarged (nearest neighbour) for their colours to survive the codec."""
    return max(1, DISPLAY_SIZE // resolution)


def write_clip_frames(out: Path, *, seed: int, frames: int, resolution: int, fps: float,
                      classes: list[str]) -> tuple[list[np.ndarray], np.ndarray]:
    """Render the clip into `out`: frames/frame_00000.png ... (exact pixels) and clip.mp4
    (enlarged by display_scale). Returns the images and the masks, uint8 [N, H, W], in
    `classes`."""
    from partseg.data.clip import render_clip
    from partseg.data.protocols import merge_labels
    from partseg.data.synthetic import FACE_CLASSES
    from partseg.plumbing.io import save_png
    from partseg.plumbing.progress import progress
    from partseg.video.io import VideoWriter
    from partseg.visualize import enlarge

    factor = display_scale(resolution)
    images, masks = [], []
    (out / "frames").mkdir()
    bar = progress(total=frames, desc="render clip", unit="frame")
    with VideoWriter(out / "clip.mp4", fps) as writer:
        for index, (image, mask) in enumerate(render_clip(seed, frames, resolution)):
            save_png(image, out / "frames" / f"frame_{index:05d}.png")
            writer.write(enlarge(image, factor))
            images.append(image)
            masks.append(merge_labels(mask, list(FACE_CLASSES), classes))
            bar.update(1)
    bar.close()
    return images, np.stack(masks)


def pose_table(seed: int, masks: np.ndarray) -> pd.DataFrame:
    """Per frame (`step` = frame index): the head's pose and the fraction the person covers."""
    from partseg.data.clip import BASE_SCALE, clip_face, clip_poses, face_fraction

    poses = clip_poses(clip_face(seed), len(masks))
    return pd.DataFrame([{"step": i, "cx": p.cx, "cy": p.cy, "scale": p.scale / BASE_SCALE,
                          "roll": p.roll, "yaw": p.yaw, "person_fraction": face_fraction(m)}
                         for i, (p, m) in enumerate(zip(poses, masks))])


def load_clip(clip_dir: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """The clip's frames (read as a video: partseg.video.io), masks and clip.json."""
    from partseg.video.io import read_video

    clip_dir = Path(clip_dir)
    info = load_json(clip_dir / "clip.json")
    frames, _ = read_video(clip_dir / "frames", fps=info["fps"])
    masks = np.load(clip_dir / "masks.npy")
    if frames.shape[:3] != masks.shape:
        raise PartsegError(f"{clip_dir}: frames {frames.shape[:3]} and masks.npy {masks.shape} "
                           "disagree; rerun the video_clip stage")
    return frames, masks, info


# ---------------------------------------------------------------------------- the methods

def check_classes(what: str, path: Path, names, classes: list[str]) -> None:
    """A model must segment the clip's classes, in the clip's order (label ids are compared)."""
    if names is not None and list(names) != list(classes):
        raise PartsegError(f"{path}: the {what} segments {list(names)}, but the clip is labelled "
                           f"{classes}; rerun video_clip with the same data.protocol")


def autoshot_labels(model_path: Path, frames: np.ndarray,
                    classes: list[str]) -> tuple[np.ndarray, float]:
    """The auto-shot UNet's labels uint8 [N, H, W] and the seconds they took."""
    from partseg.autoshot.segmenter import Segmenter

    segmenter = Segmenter(model_path)
    check_classes("auto-shot model", model_path, segmenter.class_names, classes)
    started = time.perf_counter()
    labels = np.concatenate([np.stack(segmenter.predict_batch(list(frames[i:i + AUTOSHOT_BATCH])))
                             for i in range(0, len(frames), AUTOSHOT_BATCH)])
    return labels, time.perf_counter() - started


def oneshot_labels(generator_path: Path, fewshot_path: Path, params, frames: np.ndarray,
                   classes: list[str]) -> dict[str, dict]:
    """{"oneshot": run, "oneshot_cold": run (if video.cold_baseline)}, each run
    {"labels", "psnr", "seconds"}."""
    from partseg.plumbing.params import as_dict
    from partseg.plumbing.progress import progress
    from partseg.video.oneshot import OneShotVideo

    settings, inversion = params.video, as_dict(params.inversion)
    segmenter = OneShotVideo(generator_path, fewshot_path, layers=params.features.layers,
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
    runs = {"oneshot": {"labels": np.stack([r["labels"] for r in tracked]),
                        "psnr": np.array([r["psnr"] for r in tracked]),
                        "seconds": sum(r["seconds"] for r in tracked)}}
    if settings.cold_baseline:
        log(f"[video] one-shot, cold: {len(frames)} frames x {settings.steps_first} steps")
        runs["oneshot_cold"] = segmenter.independent(frames, steps=settings.steps_first,
                                                     inversion=inversion, seed=settings.seed)
    return runs


def label_clip(frames: np.ndarray, classes: list[str], params, *, autoshot: Path,
               generator: Path, fewshot: Path) -> dict[str, dict]:
    """Every method's run on the clip, in METHODS order: {method: {"labels", "seconds",
    "psnr" (one-shot only)}}. `autoshot` and `fewshot` are model.pt files, `generator` the
    generator.pt checkpoint."""
    labels, seconds = autoshot_labels(autoshot, frames, classes)
    log(f"[video] auto-shot: {len(frames)} frames in {seconds:.2f} s")
    runs = {"autoshot": {"labels": labels, "seconds": seconds}}
    for method, run in oneshot_labels(generator, fewshot, params, frames, classes).items():
        log(f"[video] {METHODS[method]}: {run['seconds']:.1f} s, "
            f"mean PSNR {np.mean(run['psnr']):.2f} dB")
        runs[method] = run
    return runs


# ---------------------------------------------------------------------------- the numbers

def measure(runs: dict[str, dict], masks: np.ndarray,
            classes: list[str]) -> tuple[dict, pd.DataFrame]:
    """(metrics.json's content, per_frame.tsv's table) of the methods' runs."""
    import torch

    from partseg.video.metrics import score_video

    present = (masks != 0).any(axis=(1, 2))
    table = pd.DataFrame({"step": np.arange(len(masks)),
                          "person_fraction": (masks != 0).mean(axis=(1, 2))})
    metrics = {"frames": len(masks), "frames_without_person": int((~present).sum()),
               "classes": classes, "threads": torch.get_num_threads(), "methods": {}}
    for method, run in runs.items():
        summary, columns = score_video(run["labels"], masks, classes)
        summary["seconds_per_frame"] = run["seconds"] / len(masks)
        if "psnr" in run:
            summary["psnr_mean"] = float(np.mean(run["psnr"]))
            table[f"psnr_{method}"] = run["psnr"]
        metrics["methods"][method] = summary
        table[f"miou_{method}"] = columns["miou"]
        table[f"flicker_{method}"] = columns["flicker"]
        log(f"[video] {METHODS[method]}: per-frame mIoU "
            f"{100 * summary['miou_per_frame_mean']:.1f}, flicker {100 * summary['flicker']:.2f} %")
    return metrics, table
