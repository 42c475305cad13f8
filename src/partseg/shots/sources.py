"""Who annotates the shots: a person (manual), the labelled real images inverted into the GAN
(inverted), or the demo's simulated annotator (simulated). See stages/annotate.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from partseg.plumbing.errors import PartsegError
from partseg.plumbing.io import atomic_path, read_mask, save_json, save_yaml
from partseg.shots.batch import Shots
from partseg.shots.choose import (AUTO_PICK_ORDER, coverage_scores, named_indices, rank,
                                  realism_scores)
from partseg.plumbing.stage import log

def export_for_manual_annotation(samples: Shots, sample_dir: Path, manual_dir: Path,
                                 classes_file: Path, classes: list[str] | None = None) -> None:
    """The candidates' images and the classes to paint (`classes`, or the dataset's
    classes.yaml as it is) where `partseg annotate` opens them."""
    (manual_dir / "images").mkdir(parents=True, exist_ok=True)
    (manual_dir / "masks").mkdir(parents=True, exist_ok=True)
    for stem in samples.stems:
        target = manual_dir / "images" / f"{stem}.png"
        if not target.exists():
            with atomic_path(target) as tmp:
                shutil.copyfile(sample_dir / "images" / f"{stem}.png", tmp)
    if classes is not None:  # --protocol: that protocol's classes, not the dataset's
        save_yaml(list(classes), manual_dir / "classes.yaml")
        return
    with atomic_path(manual_dir / "classes.yaml") as tmp:
        shutil.copyfile(classes_file, tmp)


def missing_masks_message(painted: int, k: int, offered: list[str], manual_dir: Path,
                          classes: list[str], any_of: bool) -> str:
    ids = ", ".join(f"{i}={name}" for i, name in enumerate(classes))
    if any_of:
        what = (f"{painted} of the {k} shots are painted. Choose {k - painted} more of the "
                f"{len(offered)} candidates in {manual_dir / 'images'} and paint them (suggested, "
                f"best first: {', '.join(offered)})")
    else:
        missing = [str(manual_dir / "masks" / f"{stem}.png") for stem in offered]
        what = f"{k - painted} of {k} masks to annotate are missing: {', '.join(missing)}"
    return (f"{what}. Run `partseg annotate --dir {manual_dir}` to paint them (or save uint8 PNG "
            f"masks with class ids {ids}; 255 = ignore), then rerun the pipeline")


def read_manual_masks(shots: Shots, manual_dir: Path, classes: list[str],
                      classes_file: Path) -> list[np.ndarray]:
    masks = []
    for stem, image in zip(shots.stems, shots.images):
        path = manual_dir / "masks" / f"{stem}.png"
        mask = read_mask(path)
        if mask.shape != image.shape[:2]:
            raise PartsegError(f"{path}: mask is {mask.shape[1]}x{mask.shape[0]} but its image is "
                               f"{image.shape[1]}x{image.shape[0]}")
        bad = np.unique(mask[(mask != 255) & (mask >= len(classes))])
        if bad.size:
            raise PartsegError(f"{path}: label id {int(bad[0])} is outside the {len(classes)} "
                               f"classes of {classes_file}")
        masks.append(mask)
    return masks


def simulated_annotations(images: list[np.ndarray], annotator_path: Path, classes: list[str]
                          ) -> tuple[list[np.ndarray], list[float]]:
    """The simulated annotator's masks of `images` in the dataset's `classes` (its 10 face
    classes merged under data.protocol face4), and its mean confidence on each."""
    from partseg.shots.simulated_annotator import annotator_labels
    from partseg.autoshot.segmenter import load_segmenter
    from partseg.plumbing.device import resolve_device

    device = resolve_device()
    annotator = load_segmenter(annotator_path, device)
    results = annotator_labels(annotator, np.stack(images), classes, batch_size=64,
                               device=device, return_probs=True)
    return [labels for labels, _ in results], [float(probs.max(0).mean()) for _, probs in results]


def simulated_shots(candidates: Shots, pick, k: int, annotator_path: Path, classes: list[str]
                    ) -> tuple[Shots, dict]:
    log("[annotate] SIMULATED annotator: a UNet trained on rendered faces labels the candidates "
        "(demo data only; stands in for a person)")
    masks, confidence = simulated_annotations(candidates.images, annotator_path, classes)
    scores = coverage_scores(masks, confidence)
    if isinstance(pick, list):
        chosen = named_indices(candidates.stems, pick, k)
    else:
        chosen = rank(scores, AUTO_PICK_ORDER)[:k] if pick == "auto" else list(range(k))
    shots = candidates.select(chosen).with_masks([masks[i] for i in chosen])
    return shots, {stem: score for stem, score in zip(candidates.stems, scores)}


def manual_shots(candidates: Shots, pick, k: int, classes: list[str], *, manual_dir: Path,
                 dataset_dir: Path, samples_dir: Path, generator_dir: Path,
                 protocol: str | None = None) -> tuple[Shots, dict]:
    """A person's masks. pick auto offers every candidate, most realistic first, and the shots
    are whichever k the person painted; first / named candidates must all be painted."""
    stems, manual_dir = candidates.stems, Path(manual_dir)
    # Under --protocol the person paints that protocol's classes, listed in the manual folder.
    classes_file = manual_dir / "classes.yaml" if protocol else Path(dataset_dir) / "classes.yaml"
    scores = realism_scores(candidates.images, Path(generator_dir))
    if isinstance(pick, list):
        offered = named_indices(stems, pick, k)
    elif pick == "auto":
        offered = rank(scores, ("realism",)) if scores else list(range(len(stems)))
    else:
        offered = list(range(k))
    painted = [i for i in offered if (manual_dir / "masks" / f"{stems[i]}.png").exists()]
    if len(painted) < k:
        export_for_manual_annotation(candidates.select(offered), Path(samples_dir), manual_dir,
                                     Path(dataset_dir) / "classes.yaml",
                                     classes if protocol else None)
        # `partseg annotate` lists the candidates in this order and stars the first k.
        save_json({"k": k, "order": [stems[i] for i in offered]}, manual_dir / "candidates.json")
        waiting = [stems[i] for i in offered if i not in painted]
        raise PartsegError(missing_masks_message(len(painted), k, waiting, manual_dir, classes,
                                                 any_of=pick == "auto"))
    shots = candidates.select(painted[:k])
    shots = shots.with_masks(read_manual_masks(shots, manual_dir, classes, classes_file))
    return shots, dict(zip(stems, scores)) if scores else {}


def inverted_shots(dataset_dir: Path, generator_dir: Path, k: int, inversion,
                   protocol: str | None = None, stems: list[str] | None = None) -> Shots:
    """The first k labelled real images (or the labelled images named by `stems`) inverted
    into the GAN, with their masks: the dataset's, or under `protocol` (merged, or drawn by
    the demo generator for these very images), and the PSNR of each inversion."""
    from partseg.data.folder import load_split_arrays
    from partseg.data.protocols import split_masks
    from partseg.plumbing.device import resolve_device
    from partseg.gan import load_discriminator, load_generator
    from partseg.inversion import invert_images
    from partseg.plumbing.params import as_dict

    chosen = labelled_indices(dataset_dir, stems) if stems is not None else list(range(k))
    k, limit = len(chosen), max(chosen, default=-1) + 1
    images, masks, all_stems = load_split_arrays(dataset_dir, "labeled", limit=limit)
    if masks is None or len(all_stems) < limit:
        raise PartsegError(f"{dataset_dir}/labeled: annotate.source inverted needs {k} labelled "
                           f"images with masks, found {len(all_stems)}")
    if protocol is not None:
        masks, _ = split_masks(dataset_dir, "labeled", protocol, limit=limit, key="--protocol")
    images, masks, stems = images[chosen], masks[chosen], [all_stems[i] for i in chosen]
    device = resolve_device()
    checkpoint = generator_dir / "generator.pt"
    result = invert_images(load_generator(checkpoint, device), images,
                           D=load_discriminator(checkpoint, device), device=device,
                           **as_dict(inversion))
    log(f"[annotate] inversion PSNR of the {k} shots: {np.round(result['psnr'], 2).tolist()}")
    return Shots(stems=list(stems), images=list(images), masks=list(masks),
                 wplus=result["wplus"], noises=result.get("noises"),
                 psnr=[float(v) for v in result["psnr"]])


def labelled_indices(dataset_dir: Path, stems: list[str]) -> list[int]:
    """Positions of `stems` in the labeled split; a stem it lacks stops the run, named."""
    from partseg.data.folder import load_split_arrays

    known = list(load_split_arrays(dataset_dir, "labeled")[2])
    missing = [stem for stem in stems if stem not in known]
    if missing:
        raise PartsegError(f"{dataset_dir}/labeled: no image {', '.join(missing)} (its images "
                           f"are {known[0]} ... {known[-1]})")
    return [known.index(stem) for stem in stems]


def shot_classes(dataset_dir: Path, protocol: str | None, source: str) -> list[str]:
    """The classes the shots are annotated in: the dataset's, or those of --protocol."""
    from partseg.data.folder import load_classes
    from partseg.data.protocols import classes_under, is_partition

    classes = load_classes(dataset_dir)
    if protocol is None:
        return classes
    classes = classes_under(protocol, classes, key="--protocol")
    if source == "simulated" and is_partition(protocol):
        raise PartsegError(f"--protocol: the simulated annotator paints the face classes, not the "
                           f"partition {protocol}; use annotate.source inverted (its masks drawn "
                           f"by the demo generator) or manual (paint them)")
    return classes
