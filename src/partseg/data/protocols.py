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

Parts of any shape: besides these class merges, a protocol can be a partition of the face
that no class merge gives (partseg.data.partitions: grid4, a 2x2 grid over the face; bands3,
concentric bands), drawn by the demo generator for the very pictures of the dataset. One
registry knows both kinds (`known_protocols`); `split_masks` gives a split's masks under any
of them (merged, or rendered), so `annotate --protocol` and `evaluate --protocol` can work
in a part definition of the user's own. An unknown name stops with one message naming it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from partseg.data.synthetic import FACE_CLASSES
from partseg.plumbing.errors import PartsegError

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
    from partseg.plumbing.io import save_yaml

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


# ----------------------------------------------------------------------------------------
# Every protocol: the class merges above and the demo generator's partitions


def known_protocols() -> list[str]:
    """All protocol names: the class merges (face10, face4), then the partitions."""
    from partseg.data.partitions import PARTITIONS

    return [*PROTOCOLS, *PARTITIONS]


def is_partition(protocol: str) -> bool:
    """Whether `protocol` is drawn by the demo generator (not merged from the classes)."""
    from partseg.data.partitions import PARTITIONS

    return protocol in PARTITIONS


def check_protocol(protocol: str, key: str = "protocol") -> str:
    """`protocol` if it is known; else one message naming it, `key` and the known ones."""
    if protocol not in known_protocols():
        raise PartsegError(f"{key}: {protocol!r} is not a known protocol; the protocols are "
                           f"{', '.join(known_protocols())}")
    return protocol


def classes_under(protocol: str, dataset_classes: list[str], key: str = "protocol") -> list[str]:
    """The class names of `protocol` for a dataset whose masks have `dataset_classes`."""
    from partseg.data.partitions import PARTITIONS

    check_protocol(protocol, key)
    if protocol in PARTITIONS:
        return list(PARTITIONS[protocol])
    if PROTOCOLS[protocol] is not None and list(PROTOCOLS[protocol]) == list(dataset_classes):
        return list(dataset_classes)  # the dataset was built in this protocol already
    try:
        return protocol_classes(protocol, dataset_classes)
    except PartsegError as error:  # its message names data.protocol; here the key is another
        raise PartsegError(str(error).replace("params key data.protocol", key)) from None


def relabel(labels: np.ndarray, from_classes: list[str], to_classes: list[str]
            ) -> np.ndarray | None:
    """Labels in `from_classes` re-expressed in `to_classes`: the same array when the classes
    agree, merged by class name when `to_classes` is a merge of them (face10 -> face4), and
    None when no merge gives them (face10 -> grid4: a prediction in other classes)."""
    if list(from_classes) == list(to_classes):
        return labels
    if "background" in to_classes and set(to_classes) <= set(from_classes):
        return merge_labels(labels, list(from_classes), list(to_classes))
    return None


def split_masks(dataset_dir, split: str, protocol: str, *, limit: int | None = None,
                key: str = "protocol") -> tuple[np.ndarray, list[str]]:
    """A split's masks under `protocol` (uint8 [N, H, W]) and their stems; `limit`: the first
    images only. Class merges merge the dataset's masks; partitions are rendered by the demo
    generator for exactly the dataset's pictures (a packed synthetic dataset only)."""
    from partseg.data.folder import load_classes, load_split_arrays

    dataset_classes = load_classes(dataset_dir)
    classes = classes_under(protocol, dataset_classes, key)
    images, masks, stems = load_split_arrays(dataset_dir, split, limit=limit)
    if is_partition(protocol):
        masks = rendered_partition_masks(Path(dataset_dir), split, protocol, images, stems, key)
        return masks, stems
    if masks is None:
        raise PartsegError(f"{Path(dataset_dir) / split}: the split has no masks")
    return merge_labels(masks, dataset_classes, classes), stems


def rendered_partition_masks(dataset_dir: Path, split: str, protocol: str, images: np.ndarray,
                             stems: list[str], key: str) -> np.ndarray:
    """Partition `protocol` of each picture, drawn by the generator that made it; a picture
    the generator does not reproduce byte for byte stops the run (its mask would not fit)."""
    from partseg.data.packed import is_packed, load_manifest
    from partseg.data.partitions import render_partition_sample

    source = load_manifest(dataset_dir).get("source", {}) if is_packed(dataset_dir) else {}
    if source.get("source") != "synthetic":
        raise PartsegError(
            f"{key}: {protocol} is a partition drawn by the demo face generator, but "
            f"{dataset_dir} is not its output (data.source: {source.get('source', 'folder')}); "
            f"paint your own partition's masks with `partseg annotate` instead")
    seed, resolution = int(source["seed"]), int(source["resolution"])
    masks = []
    for stem, image in zip(stems, images):
        drawn = (render_partition_sample(seed, split, int(stem), resolution, protocol)
                 if stem.isdigit() else None)
        if drawn is None or not np.array_equal(drawn[0], image):
            raise PartsegError(f"{dataset_dir / split}: image {stem} is not the demo generator's "
                               f"picture (seed {seed}, {resolution} px); its {protocol} mask "
                               f"cannot be drawn")
        masks.append(drawn[2])
    return np.stack(masks) if masks else np.zeros((0, *images.shape[1:3]), np.uint8)
