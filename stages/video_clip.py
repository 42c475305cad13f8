"""Stage video_clip: the demo video, one procedural face moving through the frame, with exact masks.

Renders video_clip.frames frames at data.resolution (partseg.video.experiment over
partseg.data.clip: the face turns left and right, rolls, grows and shrinks, slides out of the
frame until nothing of it is left for a few frames, and comes back). Masks are in the dataset's classes: the 10 face classes, merged
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

import numpy as np

from partseg.plumbing.io import atomic_dir, atomic_path, save_json, save_png, save_yaml
from partseg.plumbing.stage import log, run_stage, stage_parser


def build(args, params):
    from partseg.video import experiment, report

    settings, resolution = params.video_clip, params.data.resolution
    classes = experiment.clip_classes(params.data.protocol)
    with atomic_dir(args.out) as tmp:
        images, masks = experiment.write_clip_frames(
            tmp, seed=settings.seed, frames=settings.frames, resolution=resolution,
            fps=settings.fps, classes=classes)
        with atomic_path(tmp / "masks.npy") as part:
            np.save(part, masks)
        table = experiment.pose_table(settings.seed, masks)
        with atomic_path(tmp / "poses.tsv") as part:
            table.round(4).to_csv(part, sep="\t", index=False)
        gone = [int(i) for i in np.flatnonzero(table["person_fraction"] == 0)]
        save_yaml(classes, tmp / "classes.yaml")
        save_json({"frames": settings.frames, "fps": settings.fps, "resolution": resolution,
                   "seed": settings.seed, "classes": classes, "frames_without_person": gone,
                   "video_scale": experiment.display_scale(resolution)}, tmp / "clip.json")
        save_png(report.clip_strip(images, masks, classes, every=max(1, settings.frames // 12)),
                 tmp / "strip.png")
    log(f"[video_clip] {settings.frames} frames at {resolution} px, {settings.fps:g} fps; "
        f"the person is entirely out of frame in {len(gone)} of them "
        f"({gone[0] if gone else '-'}..{gone[-1] if gone else '-'})")


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--out", required=True)
    run_stage("video_clip", parser, build)
