"""Import CelebAMask-HQ into the folder format with the 10-class face protocol.

Published layout (what `root` must contain):

    CelebA-HQ-img/<id>.jpg                                   1024 px photos, id 0..29999
    CelebAMask-HQ-mask-anno/<id // 2000>/<id:05d>_<part>.png  512 px binary mask per part

Parts: skin, nose, eye_g, l_eye, r_eye, l_brow, r_brow, l_ear, r_ear, mouth, u_lip, l_lip,
hair, hat, ear_r, neck_l, neck, cloth. A part absent from an image has no file.

The protocol (as in the paper): background, skin, hair, eye, eyebrow, nose, mouth, ear,
neck, cloth. Left and right parts merge (l_eye + r_eye -> eye, ...); upper lip, lower lip and
the mouth interior merge into mouth.

Parts with no class of their own, and the paint order (later parts win where masks overlap):

1. Accessories first, as ignore (255): eyeglasses (eye_g), earrings (ear_r), necklace
   (neck_l). CelebAMask-HQ labels the visible residue of occluded parts, so an eye seen
   through a lens, or skin under a frame, is annotated in its own mask and, painted later,
   wins. What only the accessory covers (frames, the jewellery itself) belongs to none of
   the ten classes and is left out of training and scoring rather than called background.
2. Then skin, neck, cloth, ears, nose, eyebrows, eyes, mouth (with lips), hair: small parts
   after the skin they lie on; hair last among the parts because it falls over the forehead,
   brows and ears.
3. Hat last, as ignore (255): a hat hides the hair and forehead under it, and calling it hair
   or background would teach a wrong label.

Images: centre square, resized to `resolution` by area averaging (JPEG draft decoding makes
this fast). Masks: composed at their own size, then resized by nearest neighbour (the label at
each output pixel centre). The split is a seeded permutation of the image ids: `test`, then
`labeled`, then `train`; `train` gets images only (the GAN needs no masks), the others masks.
CelebAMask-HQ has no `test_shifted` split.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
from PIL import Image

from partseg.data.folder import IGNORE, normalise_image, normalise_mask
from partseg.data.synthetic import (CLOTH, EAR, EYE, EYEBROW, FACE_CLASSES, HAIR, MOUTH, NECK,
                                    NOSE, SKIN)
from partseg.plumbing.errors import PartsegError
from partseg.plumbing.io import atomic_dir, check_image_size, save_yaml

IMAGES_DIR = "CelebA-HQ-img"
MASKS_DIR = "CelebAMask-HQ-mask-anno"
IMAGES_PER_FOLDER = 2000
PARTS = ("skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear", "mouth",
         "u_lip", "l_lip", "hair", "hat", "ear_r", "neck_l", "neck", "cloth")

# (part, label) in paint order; later entries win. See the module docstring for why.
PAINT_ORDER = (
    ("eye_g", IGNORE), ("ear_r", IGNORE), ("neck_l", IGNORE),
    ("skin", SKIN), ("neck", NECK), ("cloth", CLOTH), ("l_ear", EAR), ("r_ear", EAR),
    ("nose", NOSE), ("l_brow", EYEBROW), ("r_brow", EYEBROW), ("l_eye", EYE), ("r_eye", EYE),
    ("mouth", MOUTH), ("u_lip", MOUTH), ("l_lip", MOUTH), ("hair", HAIR),
    ("hat", IGNORE),
)
_ID_NAME = re.compile(r"^(\d+)\.jpg$", re.IGNORECASE)
_MASK_NAME = re.compile(r"^(\d{5})_(" + "|".join(PARTS) + r")\.png$")


def mask_path(root: Path, image_id: int, part: str) -> Path:
    return root / MASKS_DIR / str(image_id // IMAGES_PER_FOLDER) / f"{image_id:05d}_{part}.png"


def _image_ids(root: Path) -> dict[int, Path]:
    images = root / IMAGES_DIR
    if not images.is_dir():
        raise PartsegError(f"{images}: not found; data.path must be the CelebAMask-HQ folder "
                           f"holding {IMAGES_DIR}/ and {MASKS_DIR}/")
    ids = {}
    for path in images.iterdir():
        match = _ID_NAME.match(path.name)
        if match:
            ids[int(match.group(1))] = path
    if not ids:
        raise PartsegError(f"{images}: no <id>.jpg images found")
    return ids


def _parts_on_disk(root: Path, image_ids) -> dict[int, dict[str, Path]]:
    """For each id, the part masks that exist (one directory listing per folder)."""
    anno = root / MASKS_DIR
    if not anno.is_dir():
        raise PartsegError(f"{anno}: not found; the CelebAMask-HQ part masks belong there")
    found: dict[int, dict[str, Path]] = {i: {} for i in image_ids}
    folders = sorted({i // IMAGES_PER_FOLDER for i in image_ids})
    missing_folders = [anno / str(f) for f in folders if not (anno / str(f)).is_dir()]
    if missing_folders:
        more = len(missing_folders) - 1
        raise PartsegError(f"{missing_folders[0]}: mask folder not found"
                           + (f" (and {more} more)" if more else ""))
    for folder in folders:
        for path in (anno / str(folder)).iterdir():
            match = _MASK_NAME.match(path.name)
            if match and int(match.group(1)) in found:
                found[int(match.group(1))][match.group(2)] = path
    return found


def _read_part(path: Path) -> np.ndarray:
    """A binary part mask (stored as L, RGB or palette, 0/255) as a bool array."""
    try:
        with Image.open(path) as picture:
            check_image_size(path, *picture.size)  # before decoding
            return np.asarray(picture.convert("L")) > 127
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise PartsegError(f"{path}: unreadable or truncated mask ({error})") from None


def compose_mask(parts: dict[str, Path]) -> np.ndarray:
    """Paint the part masks of one image into a 10-class label map (PAINT_ORDER)."""
    label = None
    for part, value in PAINT_ORDER:
        if part not in parts:
            continue
        binary = _read_part(parts[part])
        if label is None:
            label = np.zeros(binary.shape, np.uint8)
        elif binary.shape != label.shape:
            raise PartsegError(f"{parts[part]}: size {binary.shape[1]}x{binary.shape[0]} differs "
                               f"from the image's other part masks "
                               f"({label.shape[1]}x{label.shape[0]})")
        label[binary] = value
    assert label is not None, "compose_mask needs at least one part"
    return label


def _read_photo(path: Path, resolution: int) -> np.ndarray:
    try:
        with Image.open(path) as picture:
            check_image_size(path, *picture.size)  # before decoding
            # JPEG can decode at 1/2, 1/4 or 1/8 scale directly: much faster for small outputs.
            picture.draft("RGB", (resolution, resolution))
            return np.asarray(picture.convert("RGB"))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise PartsegError(f"{path}: unreadable or truncated image ({error})") from None


def import_celebamask(root: str | os.PathLike, out_dir: str | os.PathLike, *, resolution: int,
                      n_train: int, n_labeled: int, n_test: int, seed: int = 0) -> dict:
    """Convert CelebAMask-HQ at `root` into a folder dataset at `out_dir`. Returns a summary."""
    from partseg.data.preview import write_preview
    from partseg.plumbing.progress import progress

    root = Path(root)
    if not root.is_dir():
        raise PartsegError(f"{root}: CelebAMask-HQ folder not found (data.path)")
    photos = _image_ids(root)
    needed = n_train + n_labeled + n_test
    if needed > len(photos):
        raise PartsegError(f"{root / IMAGES_DIR}: {len(photos)} images, but dataset.n_train + "
                           f"n_labeled + n_test = {needed}; lower those counts")
    order = np.random.default_rng(seed).permutation(sorted(photos))
    splits = {"test": order[:n_test], "labeled": order[n_test:n_test + n_labeled],
              "train": order[n_test + n_labeled:needed]}
    labelled_ids = [int(i) for i in np.concatenate([splits["test"], splits["labeled"]])]
    parts = _parts_on_disk(root, labelled_ids)
    unlabelled = [i for i in labelled_ids if not parts[i]]
    if unlabelled:
        others = len(unlabelled) - 1
        raise PartsegError(f"{mask_path(root, unlabelled[0], 'skin')}: no part mask found for "
                           f"image {unlabelled[0]}"
                           + (f" (nor for {others} other images)" if others else ""))
    counts = {}
    with atomic_dir(out_dir) as tmp:
        save_yaml(list(FACE_CLASSES), tmp / "classes.yaml")
        for split, ids in splits.items():
            with_masks = split != "train"
            (tmp / split / "images").mkdir(parents=True)
            if with_masks:
                (tmp / split / "masks").mkdir(parents=True)
            ids = sorted(int(i) for i in ids)
            for image_id in progress(ids, desc=f"celebamask {split}", unit="img"):
                stem = f"{image_id:05d}"
                image = normalise_image(_read_photo(photos[image_id], resolution), resolution)
                Image.fromarray(image).save(tmp / split / "images" / f"{stem}.png")
                if with_masks:
                    mask = normalise_mask(compose_mask(parts[image_id]), resolution)
                    Image.fromarray(mask).save(tmp / split / "masks" / f"{stem}.png")
            counts[split] = {"images": len(ids), "masks": len(ids) if with_masks else 0}
        write_preview(tmp, tmp / "preview.png")
    return {"source": "celebamask", "from": str(root), "resolution": resolution, "seed": seed,
            "classes": list(FACE_CLASSES), "splits": counts}
