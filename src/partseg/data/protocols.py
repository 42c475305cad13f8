"""Face labelling protocols (`data.protocol`): which classes the pipeline segments.

face10  the source's own classes, unchanged. For the face sources (synthetic, celebamask) these
        are the 10 classes of CelebAMask-HQ as in the paper: background, skin, hair, eye,
        eyebrow, nose, mouth, ear, neck, cloth. A folder dataset keeps its classes.yaml.
face4   background, eye, mouth, nose: the paper's second face protocol ("Face, 4 classes: eye,
        mouth, nose, background"). From the 10 face classes, eye, mouth and nose keep their
        part and every other class (skin, hair, eyebrow, ear, neck, cloth) becomes background;
        ignore (255) stays ignore. It needs a source labelled with the 10 face classes.

The classes are merged once, at the dataset stage, so every later stage reads 4-class masks
and a 4-class classes.yaml. The shipped simulated annotator labels the 10 face classes; its
labels are merged the same way (`merge_labels`) wherever they are used.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from partseg.data.synthetic import FACE_CLASSES
from partseg.errors import PartsegError

IGNORE = 255
# protocol -> its class names (index = label id); None = the source's own classes.
PROTOCOLS: dict[str, tuple[str, ...] | None] = {
    "face10": None,
    "face4": ("background", "eye", "mouth", "nose"),
}


def protocol_classes(protocol: str, source_classes: list[str]) -> list[str]:
    """The classes the dataset has under `protocol`, given the source's classes."""
    if protocol not in PROTOCOLS:
        raise PartsegError(f"params key data.protocol: {protocol!r} is not one of "
                           f"{', '.join(PROTOCOLS)}")
    target = PROTOCOLS[protocol]
    if target is None:
        return list(source_classes)
    if list(source_classes) != list(FACE_CLASSES):
        raise PartsegError(
            f"params key data.protocol: {protocol} merges the 10 face classes "
            f"{list(FACE_CLASSES)}, but this dataset's classes are {list(source_classes)}; use "
            f"data.protocol: face10 to keep a dataset's own classes")
    return list(target)


def merges_face_classes(classes: list[str]) -> bool:
    """Whether `classes` are a protocol's merge of the 10 face classes (face4), i.e. whether
    10-class face labels (the rendered masks, the shipped annotator's) can be merged to them."""
    return any(target is not None and list(target) == list(classes)
               for target in PROTOCOLS.values())


def label_lookup(from_classes: list[str], to_classes: list[str]) -> np.ndarray:
    """A 256-entry uint8 table: source label id -> merged label id (by class name).

    A class missing from `to_classes` goes to background; 255 (ignore) stays 255.
    """
    if "background" not in to_classes:
        raise PartsegError(f"cannot merge {list(from_classes)} into {list(to_classes)}: "
                           f"the merged classes have no background")
    table = np.full(256, IGNORE, np.uint8)
    background = to_classes.index("background")
    for index, name in enumerate(from_classes):
        table[index] = to_classes.index(name) if name in to_classes else background
    return table


def merge_labels(labels: np.ndarray, from_classes: list[str], to_classes: list[str]) -> np.ndarray:
    """Label map(s) in `from_classes` ids re-expressed in `to_classes` ids."""
    if list(from_classes) == list(to_classes):
        return labels  # face10: nothing to merge, the very same array
    return label_lookup(list(from_classes), list(to_classes))[labels]


def merge_folder_dataset(folder: Path, protocol: str, summary: dict) -> dict:
    """Apply `protocol` in place to a folder dataset: every masks/*.png and classes.yaml.

    Returns `summary` with its class list and per-class pixel fractions merged too.
    """
    from partseg.data.folder import load_classes
    from partseg.io import save_yaml

    source = load_classes(folder)
    target = protocol_classes(protocol, source)
    if target == source:
        return summary  # face10 leaves the dataset byte for byte as the source wrote it
    table = label_lookup(source, target)
    for path in sorted(folder.glob("**/masks/*.png")):
        with Image.open(path) as picture:
            mask = np.asarray(picture)
        Image.fromarray(table[mask]).save(path)
    save_yaml(target, folder / "classes.yaml")
    if (folder / "preview.png").is_file():
        from partseg.data.preview import write_preview

        write_preview(folder, folder / "preview.png")  # the preview shows the merged classes
    return _merged_summary(summary, source, target, protocol)


def _merged_summary(summary: dict, source: list[str], target: list[str], protocol: str) -> dict:
    """The source's summary with merged classes; pixel fractions summed per merged class."""
    merged = {**summary, "classes": target, "protocol": protocol}
    fractions = summary.get("class_pixel_fraction")
    if isinstance(fractions, dict):
        table = label_lookup(source, target)
        merged["class_pixel_fraction"] = {}
        for split, by_class in fractions.items():
            sums = dict.fromkeys(target, 0.0)
            for index, name in enumerate(source):
                sums[target[table[index]]] += by_class.get(name, 0.0)
            merged["class_pixel_fraction"][split] = {k: round(v, 4) for k, v in sums.items()}
    return merged
