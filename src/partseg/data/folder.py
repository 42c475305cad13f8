"""The folder dataset format: how users bring their own images and part masks.

    <root>/classes.yaml                  ordered class names; list index = label id
    <root>/<split>/images/<stem>.png|jpg
    <root>/<split>/masks/<stem>.png      uint8 label ids, 255 = ignore (optional per split)

Splits are sub-folders (`train`, `labeled`, `test`, `test_shifted`, ...). `labeled` and `test`
must have a mask for every image; for unlabelled splits masks are optional, but a split that
has masks at all must have one for every image.

`validate_folder_dataset` checks everything up front and names the file at fault;
`prepare_folder_dataset` writes the normalised square copy, which the `dataset` stage then
packs (partseg.data.packed: a few array files instead of one PNG per image);
`load_split_arrays` reads a split of either layout; `FolderSplit` reads a folder split.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from partseg.plumbing.errors import PartsegError
from partseg.plumbing.io import IMAGE_SUFFIXES, atomic_dir, load_yaml, read_image, read_mask, save_yaml

IGNORE = 255
MAX_CLASSES = 255  # ids 0..254; 255 is the ignore label
REQUIRED_MASK_SPLITS = ("labeled", "test")
OPTIONAL_MASK_SPLITS = ("train", "test_shifted")
# Suffixes that look like pictures but are not part of the format: flagged instead of skipped.
_OTHER_PICTURES = (".bmp", ".gif", ".tif", ".tiff", ".webp")
_MAX_LISTED_PROBLEMS = 10


def load_classes(root: str | os.PathLike) -> list[str]:
    """Class names from `<root>/classes.yaml` (a YAML list; index = label id)."""
    path = Path(root) / "classes.yaml"
    example = "a YAML list of class names in label-id order, e.g. [background, skin, hair]"
    if not path.is_file():
        raise PartsegError(f"{path}: not found; a folder dataset needs classes.yaml: {example}")
    data = load_yaml(path)  # names the file; refuses a key written twice
    if isinstance(data, dict) and set(data) == {"classes"}:
        data = data["classes"]  # also accept `classes: [...]`
    if not isinstance(data, list) or not data:
        raise PartsegError(f"{path}: must be {example}")
    names = []
    for i, name in enumerate(data):
        if not isinstance(name, (str, int)) or isinstance(name, bool) or str(name).strip() == "":
            raise PartsegError(f"{path}: entry {i} ({name!r}) is not a class name")
        names.append(str(name).strip())
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise PartsegError(f"{path}: duplicate class names {duplicates}")
    if len(names) > MAX_CLASSES:
        raise PartsegError(f"{path}: {len(names)} classes; at most {MAX_CLASSES} "
                           f"(label ids are uint8 and {IGNORE} means ignore)")
    return names


def stem_problem(stem: str) -> str | None:
    """Why a file stem cannot be a dataset stem, or None. Stems are kept one a line
    (partseg.data.packed), in UTF-8: a control character (a newline, a tab, ...) or bytes that
    are not UTF-8 would not come back the same, so such names are refused up front."""
    for char in stem:
        if ord(char) < 32 or ord(char) == 127:
            return f"its name contains the control character {char!r}"
        if 0xD800 <= ord(char) <= 0xDFFF:  # how Python spells bytes that are not UTF-8
            return "its name is not valid UTF-8"
    return None


def _index_pictures(folder: Path, problems: list[str], suffixes=IMAGE_SUFFIXES) -> dict[str, Path]:
    """stem -> file for the pictures in `folder`; odd files are reported in `problems`."""
    found: dict[str, Path] = {}
    if not folder.is_dir():
        return found
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        suffix = path.suffix.lower()
        if suffix in suffixes and stem_problem(path.stem):
            problems.append(f"{ascii(str(path))}: {stem_problem(path.stem)}; rename the file")
        elif suffix in suffixes:
            if path.stem in found:
                problems.append(f"{path}: two files with stem {path.stem!r} "
                                f"({found[path.stem].name} and {path.name}); keep one")
            else:
                found[path.stem] = path
        elif suffix in IMAGE_SUFFIXES or suffix in _OTHER_PICTURES:
            what = "masks must be PNG (JPEG compression changes label ids)" \
                if folder.name == "masks" else "images must be PNG or JPEG"
            problems.append(f"{path}: unsupported file type; {what}")
    return found


class FolderSplit:
    """One split of a folder dataset: `.stems`, `len()`, `.image(i)`, `.mask(i)`."""

    def __init__(self, root: str | os.PathLike, split: str):
        self.root, self.split = Path(root), split
        self.images_dir = self.root / split / "images"
        self.masks_dir = self.root / split / "masks"
        if not self.images_dir.is_dir():
            raise PartsegError(f"{self.images_dir}: split {split!r} not found (expected a folder "
                               f"of images at <dataset>/{split}/images)")
        self.classes = load_classes(self.root)
        problems: list[str] = []
        self._images = _index_pictures(self.images_dir, problems)
        self._masks = _index_pictures(self.masks_dir, problems, suffixes=(".png",))
        if problems:
            raise PartsegError(problems[0])
        self.stems = sorted(self._images)
        self.has_masks = bool(self._masks)

    def __len__(self) -> int:
        return len(self.stems)

    def image_path(self, i: int) -> Path:
        return self._images[self.stems[i]]

    def mask_path(self, i: int) -> Path:
        return self.masks_dir / f"{self.stems[i]}.png"

    def image(self, i: int) -> np.ndarray:
        """HxWx3 uint8 RGB."""
        return read_image(self.image_path(i))

    def mask(self, i: int) -> np.ndarray | None:
        """HxW uint8 label ids, or None when this split has no masks."""
        if not self.has_masks:
            return None
        stem = self.stems[i]
        if stem not in self._masks:
            raise PartsegError(f"{self.image_path(i)}: no mask (expected {self.mask_path(i)})")
        return read_mask(self._masks[stem])


def load_split_arrays(root: str | os.PathLike, split: str, limit: int | None = None
                      ) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """A whole split in memory: images [N,H,W,3] uint8, masks [N,H,W] uint8 (or None), stems.

    The one way to read a dataset. `root` is either the `dataset` stage's output (the packed
    layout of partseg.data.packed, detected by its manifest) or a folder dataset whose
    images all share one size. `limit` keeps the first `limit` images (in stem order).
    """
    from partseg.data.packed import is_packed, load_packed_split

    if is_packed(root):
        return load_packed_split(root, split, limit)
    data = FolderSplit(root, split)
    count = len(data) if limit is None else min(int(limit), len(data))
    if count == 0:
        raise PartsegError(f"{data.images_dir}: no images in split {split!r}")
    images = [data.image(i) for i in range(count)]
    masks = [data.mask(i) for i in range(count)] if data.has_masks else None
    first = images[0].shape
    for i in range(count):
        if images[i].shape != first:
            height, width = images[i].shape[:2]
            raise PartsegError(f"{data.image_path(i)}: size {width}x{height} "
                               f"differs from {data.image_path(0).name} ({first[1]}x{first[0]}); "
                               "load the prepared dataset (stage `dataset`), not the raw folder")
        if masks is not None and masks[i].shape != first[:2]:
            height, width = masks[i].shape
            raise PartsegError(f"{data.mask_path(i)}: mask size {width}x{height} "
                               f"differs from its image ({first[1]}x{first[0]})")
    stacked_masks = np.stack(masks) if masks is not None else None
    return np.stack(images), stacked_masks, data.stems[:count]


# ----------------------------------------------------------------------------------------
# Validation


def _splits_present(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if (p / "images").is_dir())


def _check_picture_pair(image_path: Path, mask_path: Path | None, n_classes: int,
                        problems: list[str]) -> tuple[int, int] | None:
    """Decode an image (and its mask) fully; report what is wrong. Returns the image size."""
    try:
        image = read_image(image_path)  # decodes fully: a truncated file fails here
    except PartsegError as error:
        problems.append(str(error))
        return None
    size = (image.shape[1], image.shape[0])
    if mask_path is None:
        return size
    try:
        mask = read_mask(mask_path)
    except PartsegError as error:
        problems.append(str(error))
        return size
    if (mask.shape[1], mask.shape[0]) != size:
        problems.append(f"{mask_path}: mask is {mask.shape[1]}x{mask.shape[0]} but its image "
                        f"{image_path.name} is {size[0]}x{size[1]}")
        return size
    bad = (mask >= n_classes) & (mask != IGNORE)
    if bad.any():
        ids = sorted(int(i) for i in np.unique(mask[bad]))
        problems.append(f"{mask_path}: label id(s) {ids[:8]} outside the {n_classes} classes of "
                        f"classes.yaml (ids 0..{n_classes - 1}, {IGNORE} = ignore)")
    return size


def _validate_split(root: Path, split: str, masks_required: bool, n_classes: int,
                    problems: list[str], bar) -> str:
    images_dir, masks_dir = root / split / "images", root / split / "masks"
    images = _index_pictures(images_dir, problems)
    masks = _index_pictures(masks_dir, problems, suffixes=(".png",))
    if not images:
        problems.append(f"{images_dir}: no images (.png/.jpg)")
    if masks_required and not masks:
        problems.append(f"{masks_dir}: split {split!r} needs a mask for every image, found none")
    for stem in sorted(set(masks) - set(images)):
        problems.append(f"{masks[stem]}: mask without an image "
                        f"(expected {images_dir}/{stem}.png|jpg)")
    if masks:
        for stem in sorted(set(images) - set(masks)):
            problems.append(f"{images[stem]}: image without a mask "
                            f"(expected {masks_dir}/{stem}.png)")
    sizes = set()
    for stem, image_path in sorted(images.items()):
        size = _check_picture_pair(image_path, masks.get(stem), n_classes, problems)
        if size is not None:
            sizes.add(size)
        if bar is not None:
            bar.update(1)
    shown = ", ".join(f"{w}x{h}" for w, h in sorted(sizes)[:3]) + (" ..." if len(sizes) > 3 else "")
    labelled = f"{len(masks)} masks" if masks else "no masks"
    return f"{split}: {len(images)} images, {labelled} ({shown or 'no readable images'})"


def validate_folder_dataset(root: str | os.PathLike, require_masks=REQUIRED_MASK_SPLITS,
                            optional_masks=OPTIONAL_MASK_SPLITS) -> str:
    """Check a folder dataset completely before anything uses it; return a one-line summary.

    Raises PartsegError naming the file for: a missing or invalid classes.yaml, a missing
    required split, a mask without an image or an image without a mask, a mask whose size
    differs from its image's, a label id outside the class list (255 is allowed), an
    unreadable or truncated image, a mask that is not single-channel. Several problems are
    reported together. Grayscale, RGBA, palette and 16-bit images are fine (converted on read).
    Splits other than those named are checked too, with optional masks.
    """
    from partseg.plumbing.progress import progress

    root = Path(root)
    if not root.is_dir():
        raise PartsegError(f"{root}: dataset folder not found")
    classes = load_classes(root)
    for split in require_masks:
        if not (root / split / "images").is_dir():
            raise PartsegError(f"{root / split / 'images'}: required split {split!r} is missing "
                               f"(expected {root}/{split}/images/ and {root}/{split}/masks/)")
    present = _splits_present(root)
    splits = list(require_masks)
    splits += [s for s in optional_masks if s in present and s not in splits]
    splits += [s for s in present if s not in splits]  # any other split: masks optional
    total = sum(len(list((root / s / "images").iterdir())) for s in splits)
    problems: list[str] = []
    with progress(total=total, desc=f"checking {root}", unit="img") as bar:
        lines = [_validate_split(root, split, split in require_masks, len(classes), problems, bar)
                 for split in splits]
    if problems:
        if len(problems) == 1:
            raise PartsegError(problems[0])
        listed = "\n  ".join(problems[:_MAX_LISTED_PROBLEMS])
        more = len(problems) - _MAX_LISTED_PROBLEMS
        raise PartsegError(f"{len(problems)} problems in folder dataset {root}:\n  {listed}"
                           + (f"\n  ... and {more} more" if more > 0 else ""))
    return f"{len(classes)} classes; " + "; ".join(lines)


# ----------------------------------------------------------------------------------------
# Normalised copy


def square_resize(picture: Image.Image, resolution: int, resample: int) -> Image.Image:
    """Centre square crop of side min(w, h), resized to resolution x resolution."""
    w, h = picture.size
    side = min(w, h)
    left, top = (w - side) / 2, (h - side) / 2
    return picture.resize((resolution, resolution), resample=resample,
                          box=(left, top, left + side, top + side))


def normalise_image(image: np.ndarray, resolution: int) -> np.ndarray:
    """Images: area averaging when shrinking, bicubic when enlarging."""
    picture = Image.fromarray(image)
    shrinking = min(picture.size) >= resolution
    resample = Image.Resampling.BOX if shrinking else Image.Resampling.BICUBIC
    return np.asarray(square_resize(picture, resolution, resample))


def normalise_mask(mask: np.ndarray, resolution: int) -> np.ndarray:
    """Masks: nearest neighbour, i.e. the label at each new pixel centre."""
    return np.asarray(square_resize(Image.fromarray(mask), resolution, Image.Resampling.NEAREST))


def prepare_folder_dataset(src_root: str | os.PathLike, out_dir: str | os.PathLike, *,
                           resolution: int) -> dict:
    """Validate the user's folder dataset, then write a square copy at `resolution` (PNG).

    Shorter side resized to `resolution`, centre square crop; images by area/bicubic, masks by
    nearest neighbour; stems and splits kept; classes.yaml and a preview.png written.
    """
    from partseg.data.preview import write_preview
    from partseg.plumbing.progress import progress

    src_root = Path(src_root)
    summary_line = validate_folder_dataset(src_root)
    classes = load_classes(src_root)
    splits = {}
    with atomic_dir(out_dir) as tmp:
        save_yaml(classes, tmp / "classes.yaml")
        for split in _splits_present(src_root):
            data = FolderSplit(src_root, split)
            (tmp / split / "images").mkdir(parents=True)
            if data.has_masks:
                (tmp / split / "masks").mkdir(parents=True)
            for i in progress(range(len(data)), desc=f"preparing {split}", unit="img"):
                stem = data.stems[i]
                image = normalise_image(data.image(i), resolution)
                Image.fromarray(image).save(tmp / split / "images" / f"{stem}.png")
                if data.has_masks:
                    mask = normalise_mask(data.mask(i), resolution)
                    Image.fromarray(mask).save(tmp / split / "masks" / f"{stem}.png")
            splits[split] = {"images": len(data), "masks": len(data) if data.has_masks else 0}
        write_preview(tmp, tmp / "preview.png")
    return {"source": "folder", "from": str(src_root), "resolution": resolution,
            "classes": classes, "splits": splits, "checked": summary_line}
