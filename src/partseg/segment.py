"""`partseg segment`: segment real images and videos with a trained auto-shot (or baseline) UNet.

    partseg segment photos/ more/*.jpg one.png --model results/train_autoshot/model.pt -o out/
    -> out/labels/<stem>.png    uint8 label ids (the model's class order, saved in the model)
       out/overlays/<stem>.png  the image with the parts coloured

    partseg segment clip.mp4 talk.webm anim.gif -o out/       video files (any FFmpeg reads)
    partseg segment --frames shots/take1/ --fps 30 -o out/    a folder of frames as one video
    -> out/<stem>/labels/frame_00000.png ...   one label PNG per frame, in order
       out/<stem>/overlay.mp4                  the video with the parts coloured, same fps

A folder is a set of independent images unless `--frames` is given; then every folder named
is the frames of one video (read in natural order: frame_2 before frame_10; `--fps` sets their
rate, default 25). Video files are recognised by their suffix (partseg.video.VIDEO_SUFFIXES),
named directly or matched by a glob. Frames are decoded, segmented and written a batch at a
time, so a long video never sits in memory. Each frame is segmented on its own (no temporal
smoothing), exactly as an image would be.

From Python:
    from partseg.autoshot.segmenter import Segmenter
    from partseg.segment import segment_paths
    labels = Segmenter("model.pt").predict(image_or_path)          # HxW uint8
    report = segment_paths("model.pt", ["photos/"], "out/")

Scale (partseg.autoshot.segmenter.Segmenter): every image is resized so that its shorter side
equals the model's training resolution (keeping the aspect ratio), segmented fully
convolutionally, and the class probabilities are resized back (bilinear) to the image's own
size before the argmax. Why not native size: a UNet only recognises parts at the scales it was
trained on (training resolution x the 0.5-2 scale augmentation); a 1024 px photo of a face seen
by a net trained on 32 px faces would present parts 30x too large for its receptive field. Why
the shorter side: the training images are square and their object fills the frame, so matching
the shorter side keeps an object that spans the photo at its trained size, while the longer
side simply extends the scene (several objects side by side stay at a sensible scale). `--size`
overrides it (0 = native size).

An unreadable file is reported by name and skipped; the others are still segmented, and the
command then exits with status 1. A video is one unit: an unreadable video file, a frame that
fails to decode (named with its index), an unreadable frame image or a frame of another size
stops that video, removes its partial outputs (they are written to `<stem>.tmp` and renamed
when complete), and is reported the same way.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from partseg.plumbing.errors import PartsegError
from partseg.plumbing.io import IMAGE_SUFFIXES, list_images, read_image, save_png
from partseg.plumbing.progress import progress
from partseg.video import VIDEO_SUFFIXES

if TYPE_CHECKING:
    from partseg.autoshot.segmenter import Segmenter

DEFAULT_MODEL = "results/train_autoshot/model.pt"


def expand_inputs(inputs: Sequence[str | os.PathLike], *, frame_folders: bool = False
                  ) -> list[Path]:
    """Files, folders (their .png/.jpg, not recursive) and glob patterns (images and videos)
    -> input paths, in order, without duplicates. With `frame_folders`, a folder is kept as
    one input (a video of frames) instead. An input that matches nothing is an error naming it."""
    suffixes = IMAGE_SUFFIXES + VIDEO_SUFFIXES
    paths: list[Path] = []
    for item in inputs:
        text = str(item)
        path = Path(text)
        if path.is_dir() and frame_folders:
            found = [path]
        elif path.is_dir():
            found = list_images(path)
            if not found:
                raise PartsegError(f"{path}: folder has no images ({', '.join(IMAGE_SUFFIXES)}); "
                                   "for a folder of video frames add --frames, name videos "
                                   "directly or with a glob")
        elif path.is_file():
            found = [path]
        elif glob.has_magic(text):
            found = sorted(Path(p) for p in glob.glob(text, recursive=True)
                           if Path(p).is_file() and Path(p).suffix.lower() in suffixes)
            if not found:
                raise PartsegError(f"{text}: no image files match this pattern")
        else:
            raise PartsegError(f"{text}: no such file or folder")
        paths.extend(found)
    unique: dict[Path, Path] = {}
    for path in paths:
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


def _output_stems(paths: Sequence[Path]) -> list[str]:
    """File stems, made unique (a.png and a.jpg -> a, a-2) so no output overwrites another."""
    seen: dict[str, int] = {}
    stems = []
    for path in paths:
        count = seen.get(path.stem, 0) + 1
        seen[path.stem] = count
        stems.append(path.stem if count == 1 else f"{path.stem}-{count}")
    return stems


def _video_stems(paths: Sequence[Path]) -> list[str]:
    """Output folder names of videos: unique, and never the image outputs' labels/overlays."""
    stems = _output_stems(paths)
    return [f"{stem}-video" if stem in ("labels", "overlays") else stem for stem in stems]


def segment_video(segmenter: Segmenter, source: str | os.PathLike, out_dir: str | os.PathLike,
                  *, batch_size: int = 16, fps: float | None = None) -> dict:
    """Segment every frame of a video file or frame folder; write out_dir/labels/frame_NNNNN.png
    and out_dir/overlay.mp4 (the source's frame rate). Frames stream through in batches.

    Returns {"frames", "fps", "labels", "overlay"}. Bad input raises PartsegError naming the
    file (and frame); out_dir is then left as it was (written whole, or not at all).
    """
    from partseg.plumbing.io import atomic_dir
    from partseg.video import VideoWriter, open_video
    from partseg.visualize import overlay

    out_dir = Path(out_dir)
    count = 0
    with open_video(source, fps) as video, atomic_dir(out_dir) as tmp:
        (tmp / "labels").mkdir()
        bar = progress(total=video.frame_count, desc=f"segment {Path(source).name}",
                       unit="frame")
        try:
            with VideoWriter(tmp / "overlay.mp4", video.fps) as writer:
                for frames in _batches(video, batch_size):
                    for frame, labels in zip(frames, segmenter.predict_batch(frames)):
                        save_png(labels, tmp / "labels" / f"frame_{count:05d}.png")
                        writer.write(overlay(frame, labels))
                        count += 1
                    bar.update(len(frames))
        finally:
            bar.close()
    return {"frames": count, "fps": video.fps, "labels": str(out_dir / "labels"),
            "overlay": str(out_dir / "overlay.mp4")}


def _batches(frames, size: int):
    """Lists of up to `size` consecutive items of an iterable."""
    batch = []
    for frame in frames:
        batch.append(frame)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def segment_paths(model_path: str | os.PathLike, inputs: Sequence[str | os.PathLike],
                  out_dir: str | os.PathLike, *, batch_size: int = 16,
                  device: str | torch.device | None = None, size: int | None = None,
                  frame_folders: bool = False, fps: float | None = None,
                  flip: bool = False) -> dict:
    """Segment every image and video named by `inputs`; write labels/ and overlays/ under
    `out_dir` for the images, and <stem>/labels/, <stem>/overlay.mp4 for each video.

    frame_folders: each folder in `inputs` is the frames of one video (at `fps`, default 25),
    not a set of images. flip: test-time flip (twice the work). Returns a report: {"model",
    "out_dir", "size", "segmented": {image path: output stem}, "videos": {video path:
    segment_video's dict}, "failed": [{"path", "error"}]}. Unreadable images and videos are
    skipped (and listed in "failed"); inputs that match nothing raise PartsegError before
    anything is written.
    """
    from partseg.video import is_video_file
    from partseg.visualize import overlay

    media = expand_inputs(inputs, frame_folders=frame_folders)
    videos = [path for path in media if path.is_dir() or is_video_file(path)]
    paths = [path for path in media if not (path.is_dir() or is_video_file(path))]
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():  # found before any work, not after it
        raise PartsegError(f"{out_dir}: exists and is not a folder; name a folder for --out "
                           "(created if missing)")
    created = not out_dir.exists()
    from partseg.onnx_backend import open_segmenter  # *.onnx: ONNX Runtime (partseg export)

    segmenter = open_segmenter(model_path, device=device, size=size, flip=flip)
    report = {"model": str(model_path), "out_dir": str(out_dir), "size": segmenter.size,
              "segmented": {}, "videos": {}, "failed": []}
    for path, stem in zip(videos, _video_stems(videos)):
        try:
            report["videos"][str(path)] = segment_video(segmenter, path, out_dir / stem,
                                                        batch_size=batch_size, fps=fps)
        except PartsegError as error:
            print(f"skipped: {error}", file=sys.stderr)
            report["failed"].append({"path": str(path), "error": str(error)})
    if created and out_dir.is_dir() and not any(out_dir.iterdir()):
        out_dir.rmdir()  # every video failed: leave no empty folder behind
    if not paths:
        return report
    pending: dict[tuple[int, int], list[tuple[Path, str, np.ndarray]]] = {}

    def flush(key: tuple[int, int]) -> None:
        group = pending.pop(key)
        labels = segmenter.predict_batch([image for _, _, image in group])
        for (path, stem, image), label in zip(group, labels):
            save_png(label, out_dir / "labels" / f"{stem}.png")
            save_png(overlay(image, label), out_dir / "overlays" / f"{stem}.png")
            report["segmented"][str(path)] = stem

    bar = progress(total=len(paths), desc="segment", unit="img")
    for path, stem in zip(paths, _output_stems(paths)):
        bar.update(1)
        try:
            image = read_image(path)
        except PartsegError as error:
            print(f"skipped: {error}", file=sys.stderr)
            report["failed"].append({"path": str(path), "error": str(error)})
            continue
        key = segmenter.working_size(*image.shape[:2])
        pending.setdefault(key, []).append((path, stem, image))
        # Same-size images share a batch; at most batch_size images wait in memory.
        if sum(len(group) for group in pending.values()) >= batch_size:
            flush(max(pending, key=lambda k: len(pending[k])))
    for key in list(pending):
        flush(key)
    bar.close()
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+",
                        help="image and video files (mp4, webm, gif, ...), folders and/or glob "
                             "patterns")
    parser.add_argument("--frames", action="store_true",
                        help="each folder is the frames of one video (natural order), not a set "
                             "of independent images")
    parser.add_argument("--fps", type=float, default=None,
                        help="frame rate of a --frames folder's overlay video (default 25; video "
                             "files keep their own)")
    parser.add_argument("-m", "--model", default=DEFAULT_MODEL,
                        help=f"trained segmenter, or its ONNX export (*.onnx, run with ONNX "
                             f"Runtime; partseg export) (default {DEFAULT_MODEL})")
    parser.add_argument("-o", "--out", default="segmented",
                        help="output folder: labels/ and overlays/ for images, <stem>/labels/ "
                             "and <stem>/overlay.mp4 per video (default ./segmented)")
    parser.add_argument("--batch-size", type=int, default=16, help="images per batch (default 16)")
    parser.add_argument("--size", type=int, default=None,
                        help="shorter side in pixels at which images are segmented "
                             "(default: the model's training resolution; 0 = native size)")
    parser.add_argument("--device", default=None,
                        help="cpu, cuda, cuda:N or auto (default: $PARTSEG_DEVICE or auto)")
    parser.add_argument("--flip", action="store_true",
                        help="test-time flip: average the image's and its mirror image's "
                             "probabilities (twice the time; as the demo's evaluate.flip)")


def run(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise PartsegError(f"--batch-size: must be at least 1, got {args.batch_size}")
    if args.size is not None and args.size < 0:
        raise PartsegError(f"--size: must be 0 (native size) or a positive number of pixels, "
                           f"got {args.size}")
    if args.fps is not None and args.fps <= 0:
        raise PartsegError(f"--fps: must be a positive frame rate, got {args.fps}")
    report = segment_paths(args.model, args.inputs, args.out, batch_size=args.batch_size,
                           device=args.device, size=args.size, frame_folders=args.frames,
                           fps=args.fps, flip=args.flip)
    count, failed = len(report["segmented"]), report["failed"]
    if failed and not count and not report["videos"]:
        raise PartsegError(f"nothing segmented: {len(failed)} file(s) could not be read: "
                           + "; ".join(item["error"] for item in failed))
    if count or not report["videos"]:
        print(f"segmented {count} image(s) into {report['out_dir']}/labels and "
              f"{report['out_dir']}/overlays")
    for source, video in report["videos"].items():
        print(f"segmented {source}: {video['frames']} frames into {video['labels']}, "
              f"{video['overlay']} ({video['fps']:g} fps)")
    if failed:
        print(f"error: {len(failed)} file(s) could not be read: "
              f"{', '.join(item['path'] for item in failed)}", file=sys.stderr)
        return 1
    return 0
