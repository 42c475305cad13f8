"""The embedded demo dataset: procedural face-like images with pixel-exact part masks.

Every image is a pure function of (seed, split, index): the random generator is seeded with
exactly those three numbers, so generation can be split into chunks, run in parallel and
repeated byte for byte. The classes follow the 10-class CelebAMask-HQ face protocol
(`FACE_CLASSES`).

How a picture is made (numpy only, vectorised):

* A scene is sampled: a background (flat, gradient, colour noise, stripes or clutter), one
  directional light, and one face (1-3 in `test_shifted`) with its own shape, skin tone, hair
  style and colour, eyes, brows, nose, mouth (open or closed), ears, neck and clothes, head
  roll, small yaw, scale and position.
* Parts are painted back to front on a supersampled grid (3x3 samples per output pixel) into
  a small G-buffer: label, albedo, surface normal, a multiplicative detail term (shadows,
  nostrils, eyelids) and gloss. Shading comes from the normals and the light, so the nose
  and the jaw/neck boundary appear as shading on skin of the same hue, as on real faces,
  not as colour edges.
* The picture is the box average of the 3x3 samples (antialiased); the mask is the label of
  the middle sample, which lies exactly on the pixel centre, so masks are exact at the output
  resolution.
"""

from __future__ import annotations

import functools
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from partseg.plumbing.errors import PartsegError
from partseg.plumbing.io import atomic_dir, save_yaml

FACE_CLASSES = ("background", "skin", "hair", "eye", "eyebrow", "nose", "mouth", "ear", "neck",
                "cloth")
BACKGROUND, SKIN, HAIR, EYE, EYEBROW, NOSE, MOUTH, EAR, NECK, CLOTH = range(len(FACE_CLASSES))

SPLITS = ("train", "labeled", "test", "test_shifted")
SUPERSAMPLE = 3  # odd, so the middle sample of each pixel's 3x3 block is the pixel centre
MIN_RESOLUTION, MAX_RESOLUTION = 32, 256
CHUNK = 250  # images per parallel work unit

_rng_split_code = {name: code for code, name in enumerate(SPLITS)}


# ----------------------------------------------------------------------------------------
# Colours


SKIN_LIGHT = np.array([0.96, 0.80, 0.69], np.float32)
SKIN_DARK = np.array([0.36, 0.23, 0.16], np.float32)
HAIR_COLOURS = np.array([
    [0.06, 0.05, 0.05],  # black
    [0.18, 0.11, 0.07],  # dark brown
    [0.36, 0.23, 0.13],  # brown
    [0.52, 0.24, 0.11],  # auburn
    [0.76, 0.62, 0.40],  # blond
    [0.88, 0.83, 0.70],  # platinum
    [0.56, 0.55, 0.54],  # grey
    [0.84, 0.84, 0.83],  # white
], np.float32)
HAIR_WEIGHTS = np.array([0.22, 0.22, 0.16, 0.08, 0.12, 0.05, 0.08, 0.07])
IRIS_COLOURS = np.array([
    [0.25, 0.14, 0.07], [0.12, 0.07, 0.04], [0.30, 0.45, 0.62], [0.32, 0.45, 0.30],
    [0.45, 0.35, 0.18], [0.45, 0.48, 0.50],
], np.float32)


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    i = int(h * 6.0) % 6
    f = h * 6.0 - int(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return np.array(rgb, np.float32)


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    return _hsv(rng.random(), rng.uniform(0.0, 0.9), rng.uniform(0.1, 0.95))


def _skin_tone(rng: np.random.Generator) -> np.ndarray:
    t = rng.random() ** 1.2
    tone = (1 - t) * SKIN_LIGHT + t * SKIN_DARK
    tint = np.array([rng.uniform(-0.03, 0.04), rng.uniform(-0.03, 0.03),
                     rng.uniform(-0.04, 0.03)], np.float32)  # pinkish / olive / yellowish
    return np.clip(tone + tint, 0.05, 1.0)


def _hair_colour(rng: np.random.Generator) -> np.ndarray:
    if rng.random() < 0.06:  # dyed
        return _hsv(rng.random(), rng.uniform(0.4, 0.8), rng.uniform(0.3, 0.8))
    base = HAIR_COLOURS[rng.choice(len(HAIR_COLOURS), p=HAIR_WEIGHTS / HAIR_WEIGHTS.sum())]
    colour = base * rng.uniform(0.8, 1.2) + rng.normal(0, 0.02, 3)
    return np.clip(colour, 0.0, 1.0).astype(np.float32)


def _background_colour(rng: np.random.Generator) -> np.ndarray:
    """Mostly arbitrary colours, sometimes skin- or hair-like so colour alone cannot decide."""
    r = rng.random()
    if r < 0.2:
        return np.clip(_skin_tone(rng) * rng.uniform(0.8, 1.15), 0, 1)
    if r < 0.3:
        return _hair_colour(rng)
    return _random_colour(rng)


# ----------------------------------------------------------------------------------------
# The face description (sampled once per face; all lengths in units of the face half-width)


@dataclass
class FaceSpec:
    cx: float           # centre (eye line) in image units, y down
    cy: float
    scale: float        # face half-width in image units
    roll: float         # radians
    yaw: float          # radians, > 0 turns the features towards +x
    top: float          # forehead height above the eye line
    chin: float         # chin depth below the eye line
    chin_power: float   # jaw profile exponent: 1.4 pointed, 2 round, 3 square
    skin: np.ndarray
    eye_x: float
    eye_y: float
    eye_w: float
    eye_up: float
    eye_down: float
    eye_tilt: float
    iris: np.ndarray
    gaze: float
    brow_gap: float
    brow_w: float
    brow_thick: float
    brow_arch: float
    brow_colour: np.ndarray
    nose_len: float
    nose_top_w: float
    nose_tip_w: float
    nose_bump: float
    mouth_y: float
    mouth_w: float
    lip_up: float
    lip_down: float
    mouth_open: float   # 0 = closed
    smile: float
    lip_colour: np.ndarray
    teeth: bool
    ear_y: float
    ear_w: float
    ear_h: float
    neck_w: float
    jaw_shadow: float
    shoulder_y: float
    shoulder_w: float
    shoulder_h: float
    neckline: str       # "round" | "v" | "high"
    neckline_w: float
    neckline_d: float
    cloth: np.ndarray
    cloth2: np.ndarray
    cloth_pattern: str  # "plain" | "stripes" | "check" | "blotch"
    cloth_freq: float
    hair_style: str     # "bald" | "short" | "long"
    bangs: bool
    hair: np.ndarray
    hair_top: float
    hair_w: float
    hairline: float
    hairline_curve: float
    hair_side: float
    hair_len: float
    covers_ears: bool
    bang_y: float
    bang_wave: float
    bang_freq: float
    bang_slope: float
    strand_freq: float
    blush: float


def sample_face(rng: np.random.Generator, *, cx: float, cy: float, scale: float,
                roll: float, yaw: float) -> FaceSpec:
    """Draw every shape and colour parameter of one face."""
    u = rng.uniform
    skin = _skin_tone(rng)
    hair = _hair_colour(rng)
    style = rng.choice(["bald", "short", "long"], p=[0.1, 0.42, 0.48])
    top = u(1.05, 1.3)
    lip_colour = np.clip(skin * np.array([1.0, 0.62, 0.62], np.float32) * u(0.75, 1.0)
                         + rng.normal(0, 0.02, 3).astype(np.float32), 0, 1)
    mouth_open = u(0.06, 0.2) if rng.random() < 0.35 else 0.0
    brow_colour = hair * u(0.6, 0.9) if style != "bald" and rng.random() < 0.8 \
        else HAIR_COLOURS[rng.integers(0, 3)] * u(0.9, 1.4)
    cloth = _random_colour(rng) if rng.random() > 0.15 else np.clip(skin * u(0.85, 1.1), 0, 1)
    return FaceSpec(
        cx=cx, cy=cy, scale=scale, roll=roll, yaw=yaw,
        top=top, chin=u(1.22, 1.5), chin_power=u(1.4, 3.0), skin=skin,
        eye_x=u(0.37, 0.47), eye_y=u(-0.04, 0.08), eye_w=u(0.16, 0.22), eye_up=u(0.07, 0.12),
        eye_down=u(0.05, 0.09), eye_tilt=u(-0.15, 0.15), iris=IRIS_COLOURS[rng.integers(6)],
        gaze=u(-0.3, 0.3),
        brow_gap=u(0.17, 0.27), brow_w=u(0.2, 0.28), brow_thick=u(0.05, 0.1),
        brow_arch=u(0.0, 0.1), brow_colour=np.clip(brow_colour, 0, 1).astype(np.float32),
        nose_len=u(0.48, 0.62), nose_top_w=u(0.06, 0.09), nose_tip_w=u(0.14, 0.2),
        nose_bump=u(0.5, 1.0),
        mouth_y=u(0.78, 0.92), mouth_w=u(0.24, 0.36), lip_up=u(0.04, 0.08), lip_down=u(0.05, 0.1),
        mouth_open=mouth_open, smile=u(-0.03, 0.1), lip_colour=lip_colour.astype(np.float32),
        teeth=bool(rng.random() < 0.7),
        ear_y=u(0.12, 0.28), ear_w=u(0.13, 0.19), ear_h=u(0.26, 0.34),
        neck_w=u(0.48, 0.66), jaw_shadow=u(0.05, 0.45),
        shoulder_y=u(1.5, 2.1), shoulder_w=u(2.1, 2.9), shoulder_h=u(0.7, 1.3),
        neckline=str(rng.choice(["round", "v", "high"], p=[0.45, 0.3, 0.25])),
        neckline_w=u(0.45, 0.9), neckline_d=u(0.25, 0.7),
        cloth=cloth, cloth2=_random_colour(rng),
        cloth_pattern=str(rng.choice(["plain", "stripes", "check", "blotch"],
                                     p=[0.5, 0.2, 0.1, 0.2])),
        cloth_freq=u(6, 16),
        hair_style=str(style), bangs=bool(style != "bald" and rng.random() < 0.3), hair=hair,
        hair_top=top + u(0.08, 0.4), hair_w=u(1.06, 1.28), hairline=-top * u(0.45, 0.72),
        hairline_curve=u(0.0, 0.35), hair_side=u(0.82, 0.92),
        hair_len=u(1.6, 3.6), covers_ears=bool(rng.random() < 0.65),
        bang_y=u(-0.55, -0.2), bang_wave=u(0.0, 0.06), bang_freq=u(8, 20),
        bang_slope=u(-0.25, 0.25), strand_freq=u(18, 40), blush=u(0.0, 0.08),
    )


# ----------------------------------------------------------------------------------------
# The canvas: a supersampled G-buffer


@functools.lru_cache(maxsize=8)
def _sample_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Flattened sample coordinates (image units, 0..1) of a size x size grid."""
    centres = (np.arange(size, dtype=np.float32) + 0.5) / size
    y, x = np.meshgrid(centres, centres, indexing="ij")
    x, y = x.ravel(), y.ravel()
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


@functools.lru_cache(maxsize=32)
def _interpolation(cells: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Left control index and weight of linear interpolation from `cells` values to `size`."""
    pos = (np.arange(size, dtype=np.float32) + 0.5) / size * (cells - 1)
    left = np.clip(np.floor(pos).astype(np.intp), 0, cells - 2)
    return left, (pos - left).astype(np.float32)


def smooth_noise(rng: np.random.Generator, cells: int, size: int) -> np.ndarray:
    """Band-limited noise (unit-ish variance) over the canvas, flattened.

    Separable linear interpolation by indexing, not matrix products: BLAS threads would
    fight the worker processes for the CPUs and could change the rounding.
    """
    control = rng.standard_normal((cells, cells)).astype(np.float32)
    left, frac = _interpolation(cells, size)
    rows = control[left] * (1 - frac[:, None]) + control[left + 1] * frac[:, None]
    grid = rows[:, left] * (1 - frac[None, :]) + rows[:, left + 1] * frac[None, :]
    return grid.ravel()


class Canvas:
    """Label / albedo / normal / detail / gloss buffers at the supersampled resolution."""

    def __init__(self, resolution: int, rng: np.random.Generator):
        self.resolution = resolution
        self.size = resolution * SUPERSAMPLE
        self.x, self.y = _sample_grid(self.size)
        n = self.size * self.size
        self.label = np.zeros(n, np.uint8)
        self.albedo = np.zeros((n, 3), np.float32)
        self.normal = np.zeros((n, 3), np.float32)
        self.normal[:, 2] = 1.0
        self.detail = np.ones(n, np.float32)
        self.gloss = np.zeros(n, np.float32)
        # Which face painted each sample last (-1: the background): a partition of the face
        # (partseg.data.partitions) is drawn in that face's own coordinates.
        self.owner = np.full(n, -1, np.int8)
        self.painting = -1
        # Texture fields shared by all parts of the picture.
        self.mid = smooth_noise(rng, 14, self.size)
        self.coarse = smooth_noise(rng, 5, self.size)
        self.fine = rng.standard_normal(n, dtype=np.float32)

    def paint(self, where: np.ndarray, label: int, albedo, normal=None, detail=None,
              gloss: float | np.ndarray = 0.0) -> None:
        """Write a part into the buffers at flat indices `where` (later parts cover earlier)."""
        self.label[where] = label
        self.albedo[where] = albedo
        self.normal[where] = (0.0, 0.0, 1.0) if normal is None else normal
        self.detail[where] = 1.0 if detail is None else detail
        self.gloss[where] = gloss
        self.owner[where] = self.painting

    def compose(self, light: "Light") -> np.ndarray:
        """Shade the G-buffer and box-filter it to the output resolution (float RGB)."""
        nx, ny, nz = self.normal.T
        length = np.sqrt(nx * nx + ny * ny + nz * nz)
        lx, ly, lz = (float(c) for c in light.direction)
        lambert = np.clip((nx * lx + ny * ly + nz * lz) / length, 0.0, 1.0)
        shade = light.ambient + light.diffuse * lambert
        colour = self.albedo * (shade * self.detail)[:, None] * light.tint
        hx, hy, hz = lx, ly, lz + 1.0  # half vector between the light and the viewer (+z)
        norm = math.sqrt(hx * hx + hy * hy + hz * hz)
        specular = np.clip((nx * hx + ny * hy + nz * hz) / (length * norm), 0.0, 1.0) ** 24
        colour += (specular * self.gloss)[:, None] * light.tint
        r, s = self.resolution, SUPERSAMPLE
        return colour.reshape(r, s, r, s, 3).mean(axis=(1, 3))

    def mask(self) -> np.ndarray:
        """Labels at the pixel centres (the middle sample of each 3x3 block)."""
        grid = self.label.reshape(self.size, self.size)
        middle = SUPERSAMPLE // 2
        return np.ascontiguousarray(grid[middle::SUPERSAMPLE, middle::SUPERSAMPLE])

    def pixel_centres(self) -> np.ndarray:
        """Flat sample indices of the pixel centres, row by row (where `mask` reads)."""
        middle = SUPERSAMPLE // 2
        samples = np.arange(middle, self.size, SUPERSAMPLE)
        return (samples[:, None] * self.size + samples[None, :]).ravel()


@dataclass
class Light:
    direction: np.ndarray   # unit vector towards the light (x right, y down, z to the viewer)
    ambient: float
    diffuse: float
    tint: np.ndarray


def sample_light(rng: np.random.Generator) -> Light:
    direction = np.array([rng.uniform(-0.9, 0.9), rng.uniform(-0.9, 0.35), rng.uniform(0.45, 1.0)],
                         np.float32)
    direction /= np.linalg.norm(direction)
    tint = np.array([1.0 + rng.uniform(-0.06, 0.06), 1.0, 1.0 + rng.uniform(-0.08, 0.08)],
                    np.float32)
    return Light(direction, float(rng.uniform(0.3, 0.55)), float(rng.uniform(0.55, 0.85)), tint)


# ----------------------------------------------------------------------------------------
# Backgrounds


def paint_background(canvas: Canvas, rng: np.random.Generator, clutter: int) -> None:
    """Fill the canvas with one of several background kinds, then `clutter` random shapes."""
    x, y = canvas.x, canvas.y
    n = x.size
    kind = rng.choice(["flat", "gradient", "noise", "stripes"], p=[0.3, 0.3, 0.25, 0.15])
    first, second = _background_colour(rng), _background_colour(rng)
    if kind == "flat":
        albedo = np.broadcast_to(first, (n, 3)) * (1 + 0.12 * canvas.coarse)[:, None]
    elif kind == "gradient":
        angle = rng.uniform(0, 2 * np.pi)
        t = np.clip(0.5 + (np.cos(angle) * (x - 0.5) + np.sin(angle) * (y - 0.5)), 0, 1)
        albedo = first + t[:, None] * (second - first)
    elif kind == "noise":
        channels = np.stack([smooth_noise(rng, 4, canvas.size) for _ in range(3)], axis=1)
        albedo = first + 0.18 * channels
    else:
        angle, freq = rng.uniform(0, np.pi), rng.uniform(3, 12)
        wave = np.sin(2 * np.pi * freq * (np.cos(angle) * x + np.sin(angle) * y))
        t = (wave > rng.uniform(-0.5, 0.5)).astype(np.float32)
        albedo = first + t[:, None] * (second - first)
    albedo = albedo * (1 + 0.04 * canvas.fine)[:, None]
    # Background samples keep the default normal (facing the viewer): the light scales them
    # uniformly, so the background's own pattern is all that varies.
    canvas.paint(slice(None), BACKGROUND, np.clip(albedo, 0, 1))
    for _ in range(clutter):
        paint_clutter_shape(canvas, rng)


def paint_clutter_shape(canvas: Canvas, rng: np.random.Generator) -> None:
    """A random disc, box or band of some colour; part of the background class."""
    x, y = canvas.x, canvas.y
    cx, cy, r = rng.uniform(-0.1, 1.1), rng.uniform(-0.1, 1.1), rng.uniform(0.04, 0.3)
    shape = rng.choice(["disc", "box", "band"])
    if shape == "disc":
        inside = (x - cx) ** 2 + ((y - cy) / rng.uniform(0.4, 1.0)) ** 2 < r * r
    elif shape == "box":
        inside = (np.abs(x - cx) < r) & (np.abs(y - cy) < r * rng.uniform(0.3, 1.5))
    else:
        angle = rng.uniform(0, np.pi)
        inside = np.abs(np.cos(angle) * (x - cx) + np.sin(angle) * (y - cy)) < r * 0.3
    where = np.flatnonzero(inside)
    colour = _background_colour(rng)
    shading = 1 + rng.uniform(0, 0.3) * (y[where] - cy) / max(r, 1e-3)
    albedo = colour * np.clip(shading, 0.6, 1.3)[:, None] * (1 + 0.04 * canvas.fine[where])[:, None]
    canvas.paint(where, BACKGROUND, np.clip(albedo, 0, 1))


# ----------------------------------------------------------------------------------------
# One face, painted back to front in face coordinates


class FaceFrame:
    """Face coordinates (u right, v down, in face half-widths, origin between the eyes).

    `region` returns the canvas samples in an image-space square around a face point, so each
    part is evaluated only near where it can be: small parts cost little at any resolution.
    """

    def __init__(self, canvas: Canvas, face: FaceSpec):
        self.canvas, self.face = canvas, face
        self.cos, self.sin = math.cos(face.roll), math.sin(face.roll)

    def region(self, cu: float, cv: float, radius: float
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(flat sample indices, u, v) of the samples within `radius` face units of (cu, cv)
        (a square window, so a little more)."""
        face, size = self.face, self.canvas.size
        x = face.cx + (self.cos * cu - self.sin * cv) * face.scale
        y = face.cy + (self.sin * cu + self.cos * cv) * face.scale
        r = radius * face.scale
        cols = np.arange(max(0, int((x - r) * size)), min(size, int(math.ceil((x + r) * size)) + 1))
        rows = np.arange(max(0, int((y - r) * size)), min(size, int(math.ceil((y + r) * size)) + 1))
        idx = (rows[:, None] * size + cols[None, :]).ravel()
        return (idx, *self.coordinates(idx))

    def coordinates(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(u, v) of the canvas samples at flat indices `idx`."""
        face = self.face
        dx, dy = self.canvas.x[idx] - face.cx, self.canvas.y[idx] - face.cy
        u = (self.cos * dx + self.sin * dy) / face.scale
        v = (-self.sin * dx + self.cos * dy) / face.scale
        return u, v

    def to_image(self, nu: np.ndarray, nv: np.ndarray, nz: np.ndarray) -> np.ndarray:
        """Rotate face-frame normals into the image frame, as an [n, 3] array."""
        return np.stack([self.cos * nu - self.sin * nv, self.sin * nu + self.cos * nv, nz], axis=1)


def _yawed(x0: float, yaw: float) -> tuple[float, float]:
    """Where a feature at horizontal position x0 lands when the head (a cylinder) turns by
    `yaw`, and how much it is foreshortened."""
    radius = 1.05
    phi = math.asin(max(-0.99, min(0.99, x0 / radius)))
    return radius * math.sin(phi + yaw), max(0.25, math.cos(phi + yaw) / math.cos(phi))


def unyawed(u: np.ndarray, yaw: float) -> np.ndarray:
    """The inverse of `_yawed`: where on the unturned head (a cylinder) the samples at
    horizontal face positions `u` lie, 0 on the vertical line through the nose."""
    radius = 1.05
    phi = np.arcsin(np.clip(u / radius, -0.99, 0.99)) - yaw
    # Clipped to the visible half of the cylinder, so the result grows with u.
    return radius * np.sin(np.clip(phi, -np.pi / 2, np.pi / 2))


def _sphere_normal(nu, nv, flatten: float = 0.9):
    nu, nv = nu * flatten, nv * flatten
    nz = np.sqrt(np.clip(1.0 - nu * nu - nv * nv, 0.05, None))
    return nu, nv, nz


def _jaw(face: FaceSpec, u: np.ndarray) -> np.ndarray:
    """Height of the face outline's lower edge at horizontal position u."""
    t = np.clip(np.abs(u), 0.0, 1.0)
    return face.chin * np.clip(1.0 - t ** face.chin_power, 0.0, None) ** (1.0 / face.chin_power)


def paint_face(canvas: Canvas, face: FaceSpec) -> None:
    frame = FaceFrame(canvas, face)
    if face.hair_style == "long":
        paint_back_hair(canvas, frame, face)
    paint_cloth_and_neck(canvas, frame, face)
    for side in (-1, 1):
        paint_ear(canvas, frame, face, side)
    paint_skin(canvas, frame, face)
    paint_nose(canvas, frame, face)
    for side in (-1, 1):
        paint_eye(canvas, frame, face, side)
        paint_brow(canvas, frame, face, side)
    paint_mouth(canvas, frame, face)
    if face.hair_style != "bald":
        paint_front_hair(canvas, frame, face)


def _hair_albedo(canvas: Canvas, face: FaceSpec, where, u, v) -> tuple[np.ndarray, np.ndarray]:
    """Hair colour with strands flowing from the crown, and a sheen for gloss."""
    angle = np.arctan2(u, -(v + face.hair_top * 0.6))
    strands = np.sin(face.strand_freq * angle + 3.0 * canvas.mid[where])
    finer = np.sin(2.3 * face.strand_freq * angle + 1.7 * canvas.coarse[where])
    strands = 0.6 * strands + 0.4 * finer
    shade = 1 + 0.12 * strands + 0.08 * canvas.fine[where]
    albedo = face.hair[None, :] * shade[:, None] + 0.02 * strands[:, None]
    gloss = 0.25 * np.clip(strands, 0, 1) * (face.hair.mean() + 0.2)
    return np.clip(albedo, 0, 1), gloss


def paint_back_hair(canvas: Canvas, frame: FaceFrame, face: FaceSpec) -> None:
    """Long hair behind the head and neck, falling to `hair_len`."""
    top, bottom = -face.hair_top, face.hair_len + 0.1
    reach = math.hypot(face.hair_w * 1.5, (bottom - top) / 2)
    idx, u, v = frame.region(0.0, (top + bottom) / 2, reach)
    u = u - 0.1 * face.yaw
    width = face.hair_w * (1.0 + 0.12 * np.clip(v, 0, None))
    inside = (np.abs(u) < width) & (v > 0.0) & (v < face.hair_len + 0.08 * np.sin(7.0 * u))
    inside |= (u / face.hair_w) ** 2 + ((v - 0.1) / (face.hair_top + 0.1)) ** 2 < 1.0
    where, u, v = idx[inside], u[inside], v[inside]
    albedo, gloss = _hair_albedo(canvas, face, where, u, v)
    nu, nv, nz = _sphere_normal(u / (face.hair_w * 1.3), np.full_like(v, -0.2))
    canvas.paint(where, HAIR, albedo * 0.85, frame.to_image(nu, nv, nz), gloss=gloss)


def _cloth_pattern(face: FaceSpec, u, v, mid) -> np.ndarray:
    if face.cloth_pattern == "stripes":
        return (np.sin(face.cloth_freq * v) > 0.3).astype(np.float32)
    if face.cloth_pattern == "check":
        checks = (np.sin(face.cloth_freq * u) > 0) ^ (np.sin(face.cloth_freq * v) > 0)
        return checks.astype(np.float32) * 0.6
    if face.cloth_pattern == "blotch":
        return np.clip(0.5 + 0.5 * mid, 0, 1)
    return np.zeros_like(u)


def _skin_albedo(canvas: Canvas, face: FaceSpec, where) -> np.ndarray:
    """Skin colour with low-frequency blotches and fine pores."""
    variation = 1 + 0.05 * canvas.mid[where] + 0.035 * canvas.fine[where]
    return np.clip(face.skin[None, :] * variation[:, None], 0, 1)


def paint_cloth_and_neck(canvas: Canvas, frame: FaceFrame, face: FaceSpec) -> None:
    """Shoulders in clothes, and the neck (with the chest in the neckline) in skin."""
    # The body reaches below the picture; 4.5 face widths down covers any placement.
    idx, u, v = frame.region(0.0, 2.5, math.hypot(face.shoulder_w, 2.5) + 0.2)
    u = u - 0.15 * face.yaw
    centre_v = face.shoulder_y + face.shoulder_h
    body = ((u / face.shoulder_w) ** 2 + ((v - centre_v) / face.shoulder_h) ** 2 < 1.0) | (
        (v >= centre_v) & (np.abs(u) < face.shoulder_w))
    rel = v - face.shoulder_y
    if face.neckline == "v":
        cut = rel < face.neckline_d * (1.0 - np.abs(u) / face.neckline_w)
    elif face.neckline == "round":
        cut = (u / face.neckline_w) ** 2 + (rel / face.neckline_d) ** 2 < 1.0
    else:
        cut = (u / (face.neck_w * 1.05)) ** 2 + (rel / 0.12) ** 2 < 1.0
    column = (np.abs(u) < face.neck_w * (1 + 0.4 * np.clip(rel + 0.3, 0, None) ** 2)) & (v > 0.2)
    cloth, neck = body & ~cut, (column & ~body) | (body & cut)

    where, uu, vv = idx[cloth], u[cloth], v[cloth]
    pattern = _cloth_pattern(face, uu, vv, canvas.mid[where])
    albedo = face.cloth + pattern[:, None] * (face.cloth2 - face.cloth)
    folds = 1 + 0.08 * np.sin(3.0 * uu + 2.0 * canvas.mid[where]) + 0.03 * canvas.fine[where]
    nu, nv, nz = _sphere_normal(uu / (face.shoulder_w * 1.1),
                                (vv - centre_v) / (face.shoulder_h * 2))
    canvas.paint(where, CLOTH, np.clip(albedo, 0, 1), frame.to_image(nu, nv, nz), detail=folds,
                 gloss=0.03)

    # Neck: the face's own skin, a cylinder in shading, in the jaw's shadow just below it, so
    # the jaw/neck boundary shows only as shading.
    where, uu, vv = idx[neck], u[neck], v[neck]
    below = np.clip(vv - _jaw(face, uu + 0.15 * face.yaw), 0.0, None)
    shadow = 1.0 - face.jaw_shadow * np.exp(-below / 0.18)
    nu, nv, nz = _sphere_normal(uu / (face.neck_w * 1.4), np.full_like(vv, 0.1))
    albedo = _skin_albedo(canvas, face, where) * 0.96
    canvas.paint(where, NECK, albedo, frame.to_image(nu, nv, nz), detail=shadow, gloss=0.04)


def paint_ear(canvas: Canvas, frame: FaceFrame, face: FaceSpec, side: int) -> None:
    # Turning the head shows more of the ear on the far side of the turn, hides the other.
    width = face.ear_w * float(np.clip(1.0 - side * face.yaw * 1.5, 0.3, 1.6))
    centre_u = side * (0.97 + 0.3 * width) + 0.15 * face.yaw
    idx, u, v = frame.region(centre_u, face.ear_y, max(width, face.ear_h))
    du, dv = u - centre_u, v - face.ear_y
    inside = (du / width) ** 2 + (dv / face.ear_h) ** 2 < 1.0
    where, du, dv = idx[inside], du[inside], dv[inside]
    concha = (((du - side * 0.2 * width) / (0.55 * width)) ** 2
              + (dv / (0.6 * face.ear_h)) ** 2 < 1.0)
    detail = np.where(concha, 0.78, 1.0).astype(np.float32)
    nu, nv, nz = _sphere_normal(side * 0.6 + du / width * 0.4, dv / face.ear_h * 0.5)
    canvas.paint(where, EAR, _skin_albedo(canvas, face, where) * 0.97, frame.to_image(nu, nv, nz),
                 detail=detail, gloss=0.05)


def paint_skin(canvas: Canvas, frame: FaceFrame, face: FaceSpec) -> None:
    """The face oval, shaded as an ellipsoid, with eye sockets, cheeks and the nose shadow."""
    middle = (face.chin - face.top) / 2
    idx, u, v = frame.region(0.0, middle, math.hypot(1.0, (face.chin + face.top) / 2))
    # Above the eye line a half ellipse; below it the jaw profile.
    forehead = (u * u + (v / face.top) ** 2 < 1.0) & (v < 0)
    inside = forehead | ((v >= 0) & (np.abs(u) < 1.0) & (v < _jaw(face, u)))
    where, u, v = idx[inside], u[inside], v[inside]
    nu, nv, nz = _sphere_normal(u, v / np.where(v < 0, face.top, face.chin), flatten=0.85)
    detail = np.ones(where.size, np.float32)
    for side in (-1, 1):
        ex, squash = _yawed(side * face.eye_x, face.yaw)
        socket = (((u - ex) / (face.eye_w * squash * 1.6)) ** 2
                  + ((v - face.eye_y + 0.03) / 0.2) ** 2)
        detail -= 0.12 * np.clip(1.0 - socket, 0, None)
    nose_x, _ = _yawed(0.0, face.yaw)
    under_nose = np.exp(-((u - nose_x) / face.nose_tip_w) ** 2
                        - ((v - face.nose_len - 0.07) / 0.06) ** 2)
    detail -= 0.25 * face.nose_bump * under_nose
    albedo = _skin_albedo(canvas, face, where)
    cheeks = np.exp(-((np.abs(u) - 0.5) / 0.22) ** 2 - ((v - 0.45) / 0.2) ** 2)
    albedo = albedo + face.blush * cheeks[:, None] * np.array([0.6, -0.3, -0.2], np.float32)
    canvas.paint(where, SKIN, np.clip(albedo, 0, 1), frame.to_image(nu, nv, nz), detail=detail,
                 gloss=0.08)


def paint_nose(canvas: Canvas, frame: FaceFrame, face: FaceSpec) -> None:
    """A ridge of skin: its label region shows only through shading and the nostrils."""
    nose_x, _ = _yawed(0.0, face.yaw)
    top = face.eye_y + 0.02
    idx, u, v = frame.region(nose_x, (top + face.nose_len) / 2,
                             max(face.nose_tip_w, (face.nose_len - top) / 2) + 0.02)
    du = u - nose_x
    s = (v - top) / (face.nose_len - top)
    half = face.nose_top_w + (face.nose_tip_w - face.nose_top_w) * np.clip(s, 0, 1) ** 2
    rounding = np.sqrt(np.clip(1.0 - np.clip((s - 0.8) / 0.2, 0, None) ** 2, 0, None))
    inside = (s > 0) & (s < 1) & (np.abs(du) < half * rounding)
    where, u, v, s = idx[inside], u[inside], v[inside], s[inside]
    t = du[inside] / half[inside]
    # Ridge height (1 - t^2)^2: its slope vanishes at the border, so the label edge is not
    # a colour edge; the tip bulges towards the viewer near the bottom.
    ridge = 1.6 * face.nose_bump * t * (1 - t * t) - 0.4 * face.yaw
    tip = face.nose_bump * np.clip((s - 0.65) / 0.35, 0, 1) * 0.5
    base_nu, base_nv, _ = _sphere_normal(u, v / face.chin, flatten=0.85)
    nu, nv = base_nu + ridge, base_nv + tip
    nostril = ((np.abs(t) - 0.5) / 0.3) ** 2 + ((s - 0.93) / 0.06) ** 2 < 1.0
    detail = np.where(nostril, 0.45, 1.0).astype(np.float32)
    canvas.paint(where, NOSE, _skin_albedo(canvas, face, where),
                 frame.to_image(nu, nv, np.ones_like(nu)), detail=detail,
                 gloss=0.15 * np.clip(1 - np.abs(t), 0, 1))


def paint_eye(canvas: Canvas, frame: FaceFrame, face: FaceSpec, side: int) -> None:
    ex, squash = _yawed(side * face.eye_x, face.yaw)
    width = face.eye_w * squash
    idx, u, v = frame.region(ex, face.eye_y, width + 0.05)
    du = u - ex
    dv = v - face.eye_y + side * face.eye_tilt * du
    p = 1.0 - (du / width) ** 2
    inside = (p > 0) & (dv > -face.eye_up * p) & (dv < face.eye_down * p)
    where, du, dv, p = idx[inside], du[inside], dv[inside], p[inside]
    iris_r = 0.75 * (face.eye_up + face.eye_down)
    iris_d = np.sqrt((du - face.gaze * width * 0.4) ** 2 + (dv - 0.1 * face.eye_down) ** 2)
    sclera = np.array([0.86, 0.84, 0.80], np.float32)
    albedo = np.where((iris_d < iris_r)[:, None], face.iris[None, :], sclera[None, :])
    albedo = np.where((iris_d < 0.45 * iris_r)[:, None], 0.03, albedo)
    lid = dv < -face.eye_up * p + 0.35 * face.eye_up  # lashes and the upper lid's shadow
    detail = np.where(lid, 0.35, 1.0).astype(np.float32)
    canvas.paint(where, EYE, albedo.astype(np.float32), None, detail=detail, gloss=0.4)


def paint_brow(canvas: Canvas, frame: FaceFrame, face: FaceSpec, side: int) -> None:
    bx, squash = _yawed(side * (face.eye_x + 0.03), face.yaw)
    width = face.brow_w * squash
    by = face.eye_y - face.eye_up - face.brow_gap
    idx, u, v = frame.region(bx, by, width + face.brow_arch + face.brow_thick)
    s = (u - bx) / width
    outer = np.clip(side * s, -1, 1)  # -1 at the inner end, +1 at the outer end
    thick = face.brow_thick * (1.0 - 0.3 * (outer + 1))
    inside = (np.abs(s) < 1) & (np.abs(v - by - face.brow_arch * s * s) < thick)
    where = idx[inside]
    texture = 1 + 0.15 * canvas.fine[where]
    canvas.paint(where, EYEBROW, np.clip(face.brow_colour[None, :] * texture[:, None], 0, 1),
                 None, gloss=0.05)


def paint_mouth(canvas: Canvas, frame: FaceFrame, face: FaceSpec) -> None:
    mx, squash = _yawed(0.0, face.yaw)
    width = face.mouth_w * squash
    idx, u, v = frame.region(mx, face.mouth_y, width + 0.02)
    s = (u - mx) / width
    p = np.sqrt(np.clip(1.0 - s * s, 0, None))
    dv = v - (face.mouth_y - face.smile * s * s)
    gap = face.mouth_open * p
    upper = (dv < -gap * 0.5) & (dv > -gap * 0.5 - face.lip_up * p ** 0.7)
    lower = (dv > gap * 0.5) & (dv < gap * 0.5 + face.lip_down * p ** 0.7)
    opening = np.abs(dv) <= gap * 0.5
    inside = (np.abs(s) < 1) & (upper | lower | opening)
    where, u, dv, gap = idx[inside], u[inside], dv[inside], gap[inside]
    in_opening = np.abs(dv) <= gap * 0.5
    albedo = np.broadcast_to(face.lip_colour, (where.size, 3)).copy()
    albedo[in_opening] = (0.12, 0.03, 0.03)
    if face.teeth:
        albedo[in_opening & (dv < -0.05 * gap)] = (0.85, 0.83, 0.75)
    # The lips' meeting line (closed mouth) is a dark crease.
    crease = np.exp(-(dv / 0.018) ** 2) * (face.mouth_open == 0)
    detail = (1.0 - 0.55 * crease + 0.04 * canvas.fine[where]).astype(np.float32)
    nu, nv, nz = _sphere_normal(u, np.where(dv < 0, -0.3, 0.35), flatten=0.8)
    canvas.paint(where, MOUTH, albedo, frame.to_image(nu, nv, nz), detail=detail, gloss=0.25)


def paint_front_hair(canvas: Canvas, frame: FaceFrame, face: FaceSpec) -> None:
    """Hair cap over the skull, optional bangs, and side locks (long hair, maybe over the ears)."""
    length = face.chin + 0.3 + 0.5 * (face.hair_len - 1.6)
    bottom = length if face.hair_style == "long" else 0.2
    top = -face.hair_top
    reach = math.hypot(face.hair_w * 1.5, (bottom - top) / 2)
    idx, u, v = frame.region(0.0, (top + bottom) / 2, reach)
    u = u - 0.1 * face.yaw
    head = (u / face.hair_w) ** 2 + ((v - 0.1) / (face.hair_top + 0.1)) ** 2 < 1.0
    hairline = face.hairline + face.hairline_curve * u * u
    if face.bangs:
        bangs = face.bang_y + face.bang_slope * u + face.bang_wave * np.sin(face.bang_freq * u)
        hairline = np.minimum(np.maximum(hairline, bangs), face.eye_y - face.eye_up - 0.05)
    cap = head & ((v < hairline) | ((np.abs(u) > face.hair_side) & (v < -0.05)))
    if face.hair_style == "long":
        inner = (0.8 if face.covers_ears else 1.0 + 2 * face.ear_w) + 0.05 * np.sin(9 * v)
        outer = face.hair_w * (1.0 + 0.12 * np.clip(v, 0, None))
        cap |= (np.abs(u) > inner) & (np.abs(u) < outer) & (v > -0.3) & (v < length)
    where, u, v = idx[cap], u[cap], v[cap]
    albedo, gloss = _hair_albedo(canvas, face, where, u, v)
    nu, nv, nz = _sphere_normal(u / (face.hair_w * 1.05), (v - 0.1) / (face.hair_top + 0.3))
    canvas.paint(where, HAIR, albedo, frame.to_image(nu, nv, nz), gloss=gloss)


# ----------------------------------------------------------------------------------------
# Scenes and samples


def _rngs(seed: int, split: str, index: int) -> tuple[np.random.Generator, np.random.Generator]:
    """Two independent streams: scene parameters, and pixel noise (whose amount depends on the
    resolution). Keeping them apart makes a sample the same scene at every resolution."""
    if split not in _rng_split_code:
        raise PartsegError(f"unknown synthetic split {split!r}; "
                           f"expected one of {', '.join(SPLITS)}")
    sequence = np.random.SeedSequence([int(seed), _rng_split_code[split], int(index)])
    scene, noise = sequence.spawn(2)
    return np.random.default_rng(scene), np.random.default_rng(noise)


def _sample_faces(rng: np.random.Generator, split: str) -> list[FaceSpec]:
    """Face placements: a portrait for the ordinary splits; 1-3 free faces for test_shifted."""
    base = 0.23
    if split != "test_shifted":
        return [sample_face(rng, cx=rng.uniform(0.44, 0.56), cy=rng.uniform(0.38, 0.47),
                            scale=base * rng.uniform(0.85, 1.12), roll=rng.uniform(-0.2, 0.2),
                            yaw=rng.uniform(-0.3, 0.3))]
    count = int(rng.choice([1, 2, 3], p=[0.4, 0.35, 0.25]))
    scales = sorted(base * rng.uniform(0.5, 1.5, size=count))  # small ones behind big ones
    return [sample_face(rng, cx=rng.uniform(0.15, 0.85), cy=rng.uniform(0.2, 0.75), scale=s,
                        roll=rng.uniform(-np.pi / 4, np.pi / 4), yaw=rng.uniform(-0.3, 0.3))
            for s in scales]


def face_specs(seed: int, split: str, index: int) -> list[FaceSpec]:
    """The faces of sample (seed, split, index), back to front: count, placement, hair style,
    colours... (for probes and tests; `render_face_sample` draws exactly these)."""
    return _sample_faces(_rngs(seed, split, index)[0], split)


def render_face_sample(seed: int, split: str, index: int, resolution: int = 32
                       ) -> tuple[np.ndarray, np.ndarray]:
    """One picture and its part mask: (HxWx3 uint8, HxW uint8 label ids in FACE_CLASSES order).

    A pure function of its arguments: the same call gives the same bytes.
    """
    image, canvas, _ = render_face_canvas(seed, split, index, resolution)
    return image, canvas.mask()


def render_face_canvas(seed: int, split: str, index: int, resolution: int = 32
                       ) -> tuple[np.ndarray, Canvas, list[FaceSpec]]:
    """The picture of `render_face_sample`, with the G-buffer it was composed from (labels,
    which face painted each sample) and the faces, back to front: what other part maps of
    the same picture are drawn from (partseg.data.partitions)."""
    if not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION:
        raise PartsegError(f"synthetic resolution must be {MIN_RESOLUTION}..{MAX_RESOLUTION}, "
                           f"got {resolution}")
    rng, noise_rng = _rngs(seed, split, index)
    faces = _sample_faces(rng, split)  # first, so that face_specs() can replay it alone
    canvas = Canvas(resolution, noise_rng)
    light = sample_light(rng)
    shifted = split == "test_shifted"
    if shifted:
        clutter = int(rng.integers(6, 16))
    else:
        clutter = int(rng.random() < 0.15) * int(rng.integers(1, 4))
    paint_background(canvas, rng, clutter)
    for number, face in enumerate(faces):
        canvas.painting = number
        paint_face(canvas, face)
    colour = canvas.compose(light)
    # Camera: exposure, contrast and sensor noise.
    colour = (colour - 0.5) * rng.uniform(0.85, 1.15) + 0.5 + rng.uniform(-0.06, 0.06)
    colour += noise_rng.normal(0, rng.uniform(0.0, 0.02), colour.shape).astype(np.float32)
    image = np.clip(np.round(colour * 255.0), 0, 255).astype(np.uint8)
    return image, canvas, faces


# ----------------------------------------------------------------------------------------
# Writing the dataset


def _write_chunk(out_dir: str, seed: int, split: str, start: int, stop: int,
                 resolution: int) -> list[int]:
    """Render and save images start..stop-1 of a split; returns per-class pixel counts."""
    images, masks = Path(out_dir, split, "images"), Path(out_dir, split, "masks")
    counts = np.zeros(len(FACE_CLASSES), np.int64)
    for index in range(start, stop):
        image, mask = render_face_sample(seed, split, index, resolution)
        stem = f"{index:06d}"
        Image.fromarray(image).save(images / f"{stem}.png", compress_level=6)
        Image.fromarray(mask).save(masks / f"{stem}.png", compress_level=6)
        counts += np.bincount(mask.ravel(), minlength=len(FACE_CLASSES))
    return counts.tolist()


def _default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def generate_synthetic_dataset(out_dir, *, resolution: int = 32, seed: int = 0,
                               n_train: int = 10000, n_labeled: int = 500, n_test: int = 500,
                               n_test_shifted: int = 300, show_progress: bool = True,
                               workers: int | None = None) -> dict:
    """Write the synthetic face dataset in the folder format, with classes.yaml and preview.png.

    Every split has images and masks (train's masks are not needed by the method but cost
    little and help probes). `workers` processes render in parallel (default: all CPUs the
    process may use); the output does not depend on it. Returns a summary dict.
    """
    from partseg.data.preview import write_preview
    from partseg.plumbing.progress import progress

    if not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION:
        raise PartsegError(f"data.resolution: the synthetic dataset supports "
                           f"{MIN_RESOLUTION}..{MAX_RESOLUTION} px, got {resolution}")
    sizes = {"train": n_train, "labeled": n_labeled, "test": n_test, "test_shifted": n_test_shifted}
    for split, count in sizes.items():
        if count < 0:
            raise PartsegError(f"n_{split}: must be >= 0, got {count}")
    workers = _default_workers() if workers is None else max(1, int(workers))
    started = time.perf_counter()
    jobs = [(split, start, min(start + CHUNK, count))
            for split, count in sizes.items() for start in range(0, count, CHUNK)]
    counts = {split: np.zeros(len(FACE_CLASSES), np.int64) for split in sizes}
    with atomic_dir(out_dir) as tmp:
        for split in sizes:
            (tmp / split / "images").mkdir(parents=True)
            (tmp / split / "masks").mkdir(parents=True)
        save_yaml(list(FACE_CLASSES), tmp / "classes.yaml")
        bar = progress(total=sum(sizes.values()), desc="synthetic dataset", unit="img") \
            if show_progress else None
        if workers == 1:
            results = (_write_chunk(str(tmp), seed, *job, resolution) for job in jobs)
            for job, result in zip(jobs, results):
                counts[job[0]] += result
                bar is not None and bar.update(job[2] - job[1])
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                futures = [pool.submit(_write_chunk, str(tmp), seed, *job, resolution)
                           for job in jobs]
                for job, future in zip(jobs, futures):
                    counts[job[0]] += future.result()
                    bar is not None and bar.update(job[2] - job[1])
        if bar is not None:
            bar.close()
        write_preview(tmp, tmp / "preview.png")
        size_bytes = sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file())
    seconds = time.perf_counter() - started
    return {
        "source": "synthetic", "resolution": resolution, "seed": seed,
        "classes": list(FACE_CLASSES),
        "splits": {split: {"images": n, "masks": n} for split, n in sizes.items()},
        "class_pixel_fraction": {split: _fractions(c) for split, c in counts.items() if c.sum()},
        "bytes": int(size_bytes), "seconds": round(seconds, 2), "workers": workers,
    }


def _fractions(counts: np.ndarray) -> dict:
    total = max(1, int(counts.sum()))
    return {name: round(int(c) / total, 4) for name, c in zip(FACE_CLASSES, counts)}
