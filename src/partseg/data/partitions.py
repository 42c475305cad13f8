"""Parts of any shape: part maps of the demo faces that are not the dataset's classes.

The paper's claim is that the few-shot net learns whatever parts a person paints, not only a
dataset's semantic classes. To measure that, the demo generator draws other part maps of the
very same pictures, here called partitions. A partition divides *the face* into cells:

  the face   the face oval as it shows in the picture: the samples a face painted as skin,
             eye, eyebrow, nose or mouth. Hair over the forehead, the ears, the neck, the
             clothes, the background and other faces are not the face; they are background
             (label 0) in every partition.

The cells are drawn in the face's own coordinates (partseg.data.synthetic.FaceFrame: u right,
v down, in face half-widths), so they roll, scale and turn with the head: the vertical line
through the nose is the head's midline whatever its yaw (`unyawed` maps u to the unturned
head), and the face's height runs from the top of the forehead (v = -top) to the chin
(v = chin). Cells are named as seen in an upright picture (upper_left is the viewer's left).

  grid4      a 2x2 grid over the face: split by the midline and by the horizontal line halfway
             between the top of the forehead and the chin.
  bands3     three concentric bands around the face's centre (on the midline, halfway between
             forehead and chin): the elliptic radius r (1 on the ellipse through the face's
             half-width and half-height) cut where the ellipse's area is split in thirds,
             r = sqrt(1/3) and sqrt(2/3): inner, middle, outer.

The masks are exact like the semantic ones: drawn on the same supersampled canvas as the
picture (render_face_canvas replays the sample from its seed) and read at the pixel centres,
where the semantic mask is read. So for any (seed, split, index) the partition mask lines up
with the picture and its semantic mask pixel for pixel.
"""

from __future__ import annotations

import math

import numpy as np

from partseg.data.synthetic import (EYE, EYEBROW, MOUTH, NOSE, SKIN, Canvas, FaceSpec,
                                    FaceFrame, render_face_canvas, unyawed)
from partseg.plumbing.errors import PartsegError

# partition -> its class names (index = label id; 0 is always background).
PARTITIONS: dict[str, tuple[str, ...]] = {
    "grid4": ("background", "upper_left", "upper_right", "lower_left", "lower_right"),
    "bands3": ("background", "inner", "middle", "outer"),
}
FACE_REGION = (SKIN, EYE, EYEBROW, NOSE, MOUTH)
BAND_EDGES = (math.sqrt(1 / 3), math.sqrt(2 / 3))  # equal thirds of the ellipse's area


def check_partition(name: str) -> tuple[str, ...]:
    """The classes of partition `name`; an unknown name stops with the known ones."""
    if name not in PARTITIONS:
        raise PartsegError(f"partition {name!r} is not one of {', '.join(PARTITIONS)}")
    return PARTITIONS[name]


def face_centre(face: FaceSpec) -> tuple[float, float]:
    """(v of the face's centre, the face's half-height): halfway from forehead to chin."""
    return (face.chin - face.top) / 2, (face.chin + face.top) / 2


def cell_labels(name: str, face: FaceSpec, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """uint8 label ids (1..) of partition `name` at face coordinates (u, v) of `face`."""
    check_partition(name)
    x = unyawed(u, face.yaw)  # 0 on the midline, in half-widths of the unturned head
    centre, half_height = face_centre(face)
    if name == "grid4":
        right, lower = x >= 0, v >= centre
        return (1 + right + 2 * lower).astype(np.uint8)
    radius = np.hypot(x, (v - centre) / half_height)
    return (1 + np.searchsorted(np.asarray(BAND_EDGES), radius, side="right")).astype(np.uint8)


def partition_mask(name: str, canvas: Canvas, faces: list[FaceSpec]) -> np.ndarray:
    """HxW uint8: partition `name` of the picture on `canvas`, read at the pixel centres.

    Each face's cells are drawn where that face shows (the canvas records which face painted
    each sample last), so a face in front hides the cells of a face behind it.
    """
    check_partition(name)
    centres = canvas.pixel_centres()
    labels = np.zeros(centres.size, np.uint8)
    in_face = np.isin(canvas.label[centres], FACE_REGION)
    for number, face in enumerate(faces):
        mine = np.flatnonzero(in_face & (canvas.owner[centres] == number))
        u, v = FaceFrame(canvas, face).coordinates(centres[mine])
        labels[mine] = cell_labels(name, face, u, v)
    return labels.reshape(canvas.resolution, canvas.resolution)


def render_partition_sample(seed: int, split: str, index: int, resolution: int, name: str
                            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(picture, semantic mask, partition mask) of one demo sample: the picture and semantic
    mask are exactly `render_face_sample`'s."""
    check_partition(name)
    image, canvas, faces = render_face_canvas(seed, split, index, resolution)
    return image, canvas.mask(), partition_mask(name, canvas, faces)
