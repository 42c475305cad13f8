"""Stage video_clip: the demo video, one procedural face moving through the frame, with exact masks.

Renders video_clip.frames frames at data.resolution (partseg.data.clip: the face turns left
and right, rolls, grows and shrinks, slides out of the frame until nothing of it is left for
a few frames, and comes back). Masks are in the dataset's classes: the 10 face classes, merged
to the 4 of the face4 protocol when data.protocol is face4. Writes:

    frames/frame_00000.png ...  the frames, exact pixels (what the video stage measures on)
    masks.npy                   uint8 [N, H, W] label ids, one mask per frame
    clip.mp4                    the clip to watch or to give `partseg segment`: H.264 at
                                video_clip.fps, enlarged 4x (nearest neighbour) so that its
                                colours survive the codec's half-resolution chroma
    poses.tsv                   per frame (`step` = frame index): the head's pose and the
                                fraction of the frame the person covers
    clip.json, classes.yaml     frame count, fps, resolution, seed, classes, frames without face
    strip.png                   12 frames evenly spaced, above their masks overlaid
"""

from pathlib import Path

import numpy as np
import pandas as pd

from partseg.io import atomic_dir, atomic_path, save_json, save_png, save_yaml
from partseg.stage import log, run_stage, stage_parser

DISPLAY_SIZE = 128  # clip.mp4's size: the frames enlarged by a whole factor to about this


def clip_classes(protocol: str) -> list[str]:
    from partseg.data.protocols import protocol_classes
    from partseg.data.synthetic import FACE_CLASSES

    return protocol_classes(protocol, list(FACE_CLASSES))


def write_strip(images: list, masks: list, classes: list[str], path: Path, every: int) -> None:
    from partseg.visualize import legend, overlay, stack_vertical, titled_grid

    picks = list(range(0, len(images), every))
    grid = titled_grid([[images[i] for i in picks], [overlay(images[i], masks[i]) for i in picks]],
                       [f"frame {i}" for i in picks], upscale=3)
    save_png(stack_vertical([grid, legend(classes, width=grid.shape[1])]), path)


def build(args, params):
    from partseg.data.clip import BASE_SCALE, clip_face, clip_poses, face_fraction, render_clip
    from partseg.data.protocols import merge_labels
    from partseg.data.synthetic import FACE_CLASSES
    from partseg.progress import progress
    from partseg.video import VideoWriter
    from partseg.visualize import enlarge

    settings, resolution = params.video_clip, params.data.resolution
    classes = clip_classes(params.data.protocol)
    poses = clip_poses(clip_face(settings.seed), settings.frames)
    factor = max(1, DISPLAY_SIZE // resolution)
    images, masks = [], []
    with atomic_dir(args.out) as tmp:
        (tmp / "frames").mkdir()
        bar = progress(total=settings.frames, desc="render clip", unit="frame")
        with VideoWriter(tmp / "clip.mp4", settings.fps) as writer:
            for index, (image, mask) in enumerate(render_clip(settings.seed, settings.frames,
                                                              resolution)):
                mask = merge_labels(mask, list(FACE_CLASSES), classes)
                save_png(image, tmp / "frames" / f"frame_{index:05d}.png")
                writer.write(enlarge(image, factor))
                images.append(image)
                masks.append(mask)
                bar.update(1)
        bar.close()
        masks_array = np.stack(masks)
        with atomic_path(tmp / "masks.npy") as part:
            np.save(part, masks_array)
        fractions = [face_fraction(mask) for mask in masks_array]
        table = pd.DataFrame([{"step": i, "cx": p.cx, "cy": p.cy,
                               "scale": p.scale / BASE_SCALE, "roll": p.roll, "yaw": p.yaw,
                               "person_fraction": f}
                              for i, (p, f) in enumerate(zip(poses, fractions))])
        with atomic_path(tmp / "poses.tsv") as part:
            table.round(4).to_csv(part, sep="\t", index=False)
        gone = [i for i, f in enumerate(fractions) if f == 0]
        save_yaml(classes, tmp / "classes.yaml")
        save_json({"frames": settings.frames, "fps": settings.fps, "resolution": resolution,
                   "seed": settings.seed, "classes": classes, "frames_without_person": gone,
                   "video_scale": factor}, tmp / "clip.json")
        write_strip(images, masks, classes, tmp / "strip.png", every=max(1, settings.frames // 12))
    log(f"[video_clip] {settings.frames} frames at {resolution} px, {settings.fps:g} fps; "
        f"the person is entirely out of frame in {len(gone)} of them "
        f"({gone[0] if gone else '-'}..{gone[-1] if gone else '-'})")


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--out", default="experiments/results/video_clip")
    run_stage("video_clip", parser, build)
