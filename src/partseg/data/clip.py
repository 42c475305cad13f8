"""The demo video: one procedural face that moves, turns, rolls, scales and leaves the frame,
with an exact part mask for every frame.

    from partseg.data.clip import render_clip
    for image, mask in render_clip(seed=0, frames=72, resolution=32):   # one frame at a time
        ...   # HxWx3 uint8, HxW uint8 ids in FACE_CLASSES order

It reuses the synthetic dataset's renderer (partseg.data.synthetic): the same face model,
painter, lighting and 3x3 supersampling, so each mask is the label at the pixel centre and
exact at the output resolution. What changes from frame to frame is the head's pose only
(position, scale, roll, yaw), along a smooth path through the keyframes in `KEYFRAMES`:

    portrait (as the training images) -> turns left while drifting left -> turns right while
    growing by a quarter -> shrinks -> slides out of the right edge (half out, then entirely
    out, body included, for about a tenth of the clip) -> comes back and settles as a portrait.

Between keyframes the path is a cubic Hermite curve whose tangents are the neighbours'
differences (Catmull-Rom), so position and velocity are continuous: no frame-to-frame jumps.
Fixed for the whole clip: the face's features, colours and hair, the light, the background
and the camera's exposure; the sensor noise is drawn anew for every frame, as a camera's is.
The texture fields (skin blotches, hair strands) are image-space fields of the renderer, so
they stay put while the head moves; at 32 px they are faint.

Everything is a pure function of (seed, frames, resolution). The face is drawn from the
seed but always shows all ten classes (hair that leaves brows and ears visible), so that
every part can be tracked through the clip.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator

import numpy as np

from partseg.data.synthetic import (BACKGROUND, MAX_RESOLUTION, MIN_RESOLUTION, Canvas, FaceSpec,
                                    paint_background, paint_face, sample_face, sample_light)
from partseg.plumbing.errors import PartsegError

MIN_FRAMES = 16
BASE_SCALE = 0.23  # the synthetic portraits' face half-width (image units)
OUT = "out"        # a keyframe x that puts the whole person beyond the right edge

# (time as a fraction of the clip, centre x, centre y, scale / BASE_SCALE, roll, yaw)
KEYFRAMES = (
    (0.00, 0.50, 0.42, 1.00, 0.00, 0.00),   # a portrait like the training images
    (0.14, 0.40, 0.45, 0.95, -0.15, -0.50),  # turns left, drifts left
    (0.30, 0.55, 0.40, 1.25, 0.22, 0.45),   # turns right, rolls, grows
    (0.44, 0.66, 0.46, 0.80, 0.05, 0.10),   # shrinks
    (0.53, 0.98, 0.46, 0.80, 0.00, 0.00),   # half out of the right edge
    (0.62, OUT, 0.46, 0.80, 0.00, 0.00),    # gone, body and all
    (0.68, OUT, 0.44, 0.90, 0.00, 0.00),    # still gone
    (0.82, 0.62, 0.42, 1.00, -0.10, -0.25),  # back in
    (1.00, 0.50, 0.42, 1.00, 0.00, 0.00),   # settles as a portrait
)


@dataclasses.dataclass(frozen=True)
class Pose:
    cx: float
    cy: float
    scale: float
    roll: float
    yaw: float


def _streams(seed: int) -> dict[str, np.random.SeedSequence]:
    """Independent seeds for each fixed ingredient of the clip (so one never shifts another)."""
    names = ("face", "light", "background", "texture", "camera")
    root = np.random.SeedSequence([int(seed), 0xC11F])
    return dict(zip(names, root.spawn(len(names))))


def clip_face(seed: int) -> FaceSpec:
    """The clip's face: drawn from the seed, with its hair kept off the brows and ears."""
    rng = np.random.default_rng(_streams(seed)["face"])
    face = sample_face(rng, cx=0.5, cy=0.42, scale=BASE_SCALE, roll=0.0, yaw=0.0)
    style = "short" if face.hair_style == "bald" else face.hair_style
    return dataclasses.replace(face, hair_style=style, bangs=False, covers_ears=False)


def exit_x(face: FaceSpec, scale: float) -> float:
    """A centre x at which nothing of the person (shoulders, hair, ears) is left in the frame."""
    reach = max(face.shoulder_w + 0.2, face.hair_w * 1.2, 1.0 + 3 * face.ear_w) + 0.3
    return 1.0 + reach * scale


def clip_poses(face: FaceSpec, frames: int) -> list[Pose]:
    """The head's pose in each of `frames` frames (see KEYFRAMES)."""
    if frames < MIN_FRAMES:
        raise PartsegError(f"video_clip.frames: at least {MIN_FRAMES} frames, got {frames}")
    times = np.array([k[0] for k in KEYFRAMES])
    values = np.array([[exit_x(face, BASE_SCALE * k[3]) if k[1] == OUT else k[1], k[2],
                        BASE_SCALE * k[3], k[4], k[5]] for k in KEYFRAMES])
    samples = _hermite(times, values, np.linspace(0.0, 1.0, frames))
    return [Pose(*map(float, row)) for row in samples]


def _hermite(times: np.ndarray, values: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Cubic Hermite interpolation through (times, values) with Catmull-Rom tangents
    (zero at both ends: the clip starts and ends at rest)."""
    tangents = np.zeros_like(values)
    tangents[1:-1] = (values[2:] - values[:-2]) / (times[2:] - times[:-2])[:, None]
    segment = np.clip(np.searchsorted(times, at, side="right") - 1, 0, len(times) - 2)
    t0, t1 = times[segment], times[segment + 1]
    h = (t1 - t0)[:, None]
    s = ((at - t0) / (t1 - t0))[:, None]
    h00, h10 = 2 * s ** 3 - 3 * s ** 2 + 1, s ** 3 - 2 * s ** 2 + s
    h01, h11 = -2 * s ** 3 + 3 * s ** 2, s ** 3 - s ** 2
    return (h00 * values[segment] + h10 * h * tangents[segment]
            + h01 * values[segment + 1] + h11 * h * tangents[segment + 1])


def render_clip(seed: int = 0, frames: int = 72, resolution: int = 32
                ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (image HxWx3 uint8, mask HxW uint8 in FACE_CLASSES ids) for each frame in order."""
    if not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION:
        raise PartsegError(f"video clip resolution must be {MIN_RESOLUTION}..{MAX_RESOLUTION}, "
                           f"got {resolution}")
    face = clip_face(seed)
    streams = _streams(seed)
    light = sample_light(np.random.default_rng(streams["light"]))
    camera = np.random.default_rng(streams["camera"])
    contrast, brightness = camera.uniform(0.9, 1.1), camera.uniform(-0.04, 0.04)
    noise_level = camera.uniform(0.005, 0.015)
    for index, pose in enumerate(clip_poses(face, frames)):
        # The same seeds every frame: the background and textures do not change.
        canvas = Canvas(resolution, np.random.default_rng(streams["texture"]))
        paint_background(canvas, np.random.default_rng(streams["background"]), clutter=0)
        paint_face(canvas, dataclasses.replace(face, **dataclasses.asdict(pose)))
        colour = (canvas.compose(light) - 0.5) * contrast + 0.5 + brightness
        sensor = np.random.default_rng([int(seed), 0xC11F, index])
        colour += sensor.normal(0, noise_level, colour.shape).astype(np.float32)
        image = np.clip(np.round(colour * 255.0), 0, 255).astype(np.uint8)
        yield image, canvas.mask()


def face_fraction(mask: np.ndarray) -> float:
    """Fraction of the frame covered by the person (anything but background)."""
    return float(np.mean(mask != BACKGROUND))


def face_centre(mask: np.ndarray) -> tuple[float, float] | None:
    """(x, y) centroid of the non-background pixels in image units, or None when gone."""
    ys, xs = np.nonzero(mask != BACKGROUND)
    if xs.size == 0:
        return None
    height, width = mask.shape
    return (float(xs.mean() + 0.5) / width, float(ys.mean() + 0.5) / height)
