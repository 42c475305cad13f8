"""Stage annotate: the k annotated images (the shots) and their latents.

annotate.source decides who annotates:
  manual     a person paints masks on k of the sample.n generated candidates
             (`partseg annotate`); until k are painted the pipeline stops, lists the candidates
             in the order it suggests, and says where to paint them and the class ids.
  inverted   k labelled real images are inverted into the GAN and keep their own masks
             (HandsOff's approach, for users who already have a few labelled images).
  simulated  demo data only: the simulated annotator (stage train_annotator, a UNet trained on
             thousands of rendered faces) labels the candidates, standing in for a person.
             Named as such in every output.
annotate.pick decides which candidates become the shots, as a person would choose them:
  auto       simulated: the candidates whose masks show the most parts (each at least a
             2x2 patch), then the annotator's confidence; manual: the candidates the
             discriminator finds most realistic are suggested, and the shots are the ones
             painted.
  first      the first k candidates (sample_000, ...), the paper's blind choice.
  [stems]    exactly these candidates, e.g. [sample_004].
--protocol NAME annotates in another part definition than the dataset's classes
(partseg.data.protocols: face10, face4, or a partition of the face such as grid4 / bands3):
inverted shots keep their masks under it (merged, or drawn by the demo generator), a person
paints its classes (manual), and the simulated annotator serves only the class merges.
Without it the shots have the dataset's own classes.
Writes results/annotate/{images,masks}/<stem>.png, latents.pt, annotations.json (the choice and
every candidate's score) and shots.png (the shots and their masks, enlarged).
"""

import shutil
from pathlib import Path

import numpy as np
import torch

from partseg.errors import PartsegError
from partseg.io import (atomic_dir, atomic_path, load_weights, read_image, read_mask, save_json,
                         save_png, save_torch, save_yaml)
from partseg.stage import log, run_stage, stage_parser


# A part "shows" in a mask when it covers at least this many pixels: a 2x2 patch is the least
# a person can paint and a few-shot net can learn a part from.
MIN_PART_PIXELS = 4
# The automatic pick, as a person would choose: a face that shows every part, and among those
# the clearest, i.e. the one the annotator is surest about (an unclear face, e.g. dark hair
# on a dark background, is one it hesitates on). A tiebreak on the smallest part's size was
# tried and dropped: one pixel more of eyebrow picked the least clear face of all.
AUTO_PICK_ORDER = ("parts_shown", "confidence")


def load_candidates(sample_dir: Path) -> dict:
    """All generated candidates: stems, images (list of HxWx3 uint8) and W+ latents."""
    path = sample_dir / "latents.pt"
    latents = load_weights(path)  # weights only; a tampered file is refused, named
    if not (isinstance(latents, dict) and {"stems", "wplus"} <= set(latents)):
        raise PartsegError(f"{path}: not the sample stage's latents (no stems/wplus); rerun "
                           "stage sample")
    stems = list(latents["stems"])
    images = [read_image(sample_dir / "images" / f"{stem}.png") for stem in stems]
    return {"stems": stems, "images": images, "wplus": latents["wplus"]}


def select(candidates: dict, indices: list[int]) -> dict:
    return {"stems": [candidates["stems"][i] for i in indices],
            "images": [candidates["images"][i] for i in indices],
            "wplus": candidates["wplus"][indices]}


def named_indices(stems: list[str], wanted: list[str], k: int) -> list[int]:
    """The candidates annotate.pick names, checked: k of them, each a sample stem."""
    unknown = [stem for stem in wanted if stem not in stems]
    if unknown:
        raise PartsegError(f"params key annotate.pick: {', '.join(unknown)} is not a generated "
                           f"sample; the candidates are {', '.join(stems)}")
    if len(wanted) != k:
        raise PartsegError(f"params key annotate.pick: names {len(wanted)} samples but "
                           f"annotate.k is {k}")
    return [stems.index(stem) for stem in wanted]


def coverage_scores(masks: list[np.ndarray], confidence: list[float]) -> list[dict]:
    """Per candidate: how many part classes its mask shows, the pixels of its smallest shown
    part, and the annotator's confidence."""
    scores = []
    for mask, sure in zip(masks, confidence):
        parts = np.bincount(mask[mask != 255].ravel(), minlength=1)[1:]  # background not counted
        shown = parts[parts >= MIN_PART_PIXELS]
        scores.append({"parts_shown": int(shown.size),
                       "smallest_part_pixels": int(shown.min()) if shown.size else 0,
                       "confidence": round(float(sure), 4)})
    return scores


def rank(scores: list[dict], keys: tuple[str, ...]) -> list[int]:
    """Candidate indices, best first by `keys` (higher is better); ties keep sample order."""
    return sorted(range(len(scores)), key=lambda i: tuple(-scores[i][key] for key in keys))


def export_for_manual_annotation(samples: dict, sample_dir: Path, manual_dir: Path,
                                 classes_file: Path, classes: list[str] | None = None) -> None:
    """The candidates' images and the classes to paint (`classes`, or the dataset's
    classes.yaml as it is) where `partseg annotate` opens them."""
    (manual_dir / "images").mkdir(parents=True, exist_ok=True)
    (manual_dir / "masks").mkdir(parents=True, exist_ok=True)
    for stem in samples["stems"]:
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


def read_manual_masks(shots: dict, manual_dir: Path, classes: list[str],
                      classes_file: Path) -> list[np.ndarray]:
    masks = []
    for stem, image in zip(shots["stems"], shots["images"]):
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
    from partseg.annotator import annotator_labels
    from partseg.autoshot.train import load_segmenter
    from partseg.device import resolve_device

    device = resolve_device()
    annotator = load_segmenter(annotator_path, device)
    results = annotator_labels(annotator, np.stack(images), classes, batch_size=64,
                               device=device, return_probs=True)
    return [labels for labels, _ in results], [float(probs.max(0).mean()) for _, probs in results]


def realism_scores(images: list[np.ndarray], generator_dir: Path) -> list[dict] | None:
    """The discriminator's logit per image (higher = more like the training data), or None
    when the checkpoint has no discriminator."""
    from partseg.device import resolve_device
    from partseg.gan import load_discriminator

    device = resolve_device()
    discriminator = load_discriminator(generator_dir / "generator.pt", device)
    if discriminator is None:
        return None
    batch = torch.from_numpy(np.stack(images)).to(device).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        logits = discriminator(batch).reshape(-1).cpu().tolist()
    return [{"realism": round(float(v), 4)} for v in logits]


def simulated_shots(candidates: dict, pick, k: int, annotator_path: Path, classes: list[str]
                    ) -> tuple[dict, dict]:
    log("[annotate] SIMULATED annotator: a UNet trained on rendered faces labels the candidates "
        "(demo data only; stands in for a person)")
    masks, confidence = simulated_annotations(candidates["images"], annotator_path, classes)
    scores = coverage_scores(masks, confidence)
    if isinstance(pick, list):
        chosen = named_indices(candidates["stems"], pick, k)
    else:
        chosen = rank(scores, AUTO_PICK_ORDER)[:k] if pick == "auto" else list(range(k))
    shots = select(candidates, chosen)
    shots["masks"] = [masks[i] for i in chosen]
    return shots, {stem: score for stem, score in zip(candidates["stems"], scores)}


def manual_shots(candidates: dict, pick, k: int, args, options, classes) -> tuple[dict, dict]:
    """A person's masks. pick auto offers every candidate, most realistic first, and the shots
    are whichever k the person painted; first / named candidates must all be painted."""
    stems, manual_dir = candidates["stems"], Path(options.manual_dir)
    protocol = getattr(args, "protocol", None)
    # Under --protocol the person paints that protocol's classes, listed in the manual folder.
    classes_file = manual_dir / "classes.yaml" if protocol else Path(args.dataset) / "classes.yaml"
    scores = realism_scores(candidates["images"], Path(args.generator))
    if isinstance(pick, list):
        offered = named_indices(stems, pick, k)
    elif pick == "auto":
        offered = rank(scores, ("realism",)) if scores else list(range(len(stems)))
    else:
        offered = list(range(k))
    painted = [i for i in offered if (manual_dir / "masks" / f"{stems[i]}.png").exists()]
    if len(painted) < k:
        export_for_manual_annotation(select(candidates, offered), Path(args.samples), manual_dir,
                                     Path(args.dataset) / "classes.yaml",
                                     classes if protocol else None)
        # `partseg annotate` lists the candidates in this order and stars the first k.
        save_json({"k": k, "order": [stems[i] for i in offered]}, manual_dir / "candidates.json")
        waiting = [stems[i] for i in offered if i not in painted]
        raise PartsegError(missing_masks_message(len(painted), k, waiting, manual_dir, classes,
                                                 any_of=pick == "auto"))
    shots = select(candidates, painted[:k])
    shots["masks"] = read_manual_masks(shots, manual_dir, classes, classes_file)
    return shots, dict(zip(stems, scores)) if scores else {}


def inverted_shots(dataset_dir: Path, generator_dir: Path, k: int, inversion,
                   protocol: str | None = None, stems: list[str] | None = None) -> dict:
    """The first k labelled real images (or the labelled images named by `stems`) inverted
    into the GAN, with their masks: the dataset's, or under `protocol` (merged, or drawn by
    the demo generator for these very images), and the PSNR of each inversion."""
    from partseg.data.folder import load_split_arrays
    from partseg.data.protocols import split_masks
    from partseg.device import resolve_device
    from partseg.gan import load_discriminator, load_generator
    from partseg.inversion import invert_images
    from partseg.params import as_dict

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
    return {"stems": list(stems), "images": list(images), "masks": list(masks),
            "wplus": result["wplus"], "noises": result.get("noises"),
            "psnr": [float(v) for v in result["psnr"]]}


def labelled_indices(dataset_dir: Path, stems: list[str]) -> list[int]:
    """Positions of `stems` in the labeled split; a stem it lacks stops the run, named."""
    from partseg.data.folder import load_split_arrays

    known = list(load_split_arrays(dataset_dir, "labeled")[2])
    missing = [stem for stem in stems if stem not in known]
    if missing:
        raise PartsegError(f"{dataset_dir}/labeled: no image {', '.join(missing)} (its images "
                           f"are {known[0]} ... {known[-1]})")
    return [known.index(stem) for stem in stems]


def shots_picture(shots: dict, classes: list[str]) -> np.ndarray:
    """The shots and their masks side by side, enlarged, with the legend: what the few-shot
    network learns from, large enough to judge."""
    from partseg.visualize import colorize, overlay, titled_grid

    rows = [[image, colorize(mask), overlay(image, mask)]
            for image, mask in zip(shots["images"], shots["masks"])]
    upscale = max(1, 256 // shots["images"][0].shape[0])
    grid = titled_grid(rows, ["shot", "its mask", "overlay"], classes, upscale=upscale)
    return grid


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


def build(args, params):
    options, dataset_dir = params.annotate, Path(args.dataset)
    protocol = getattr(args, "protocol", None)
    classes = shot_classes(dataset_dir, protocol, options.source)
    scores = {}
    if options.source == "inverted":
        shots = inverted_shots(dataset_dir, Path(args.generator), options.k, params.inversion,
                               protocol)
    elif options.source == "manual":
        shots, scores = manual_shots(load_candidates(Path(args.samples)), options.pick,
                                     options.k, args, options, classes)
    else:
        shots, scores = simulated_shots(load_candidates(Path(args.samples)), options.pick,
                                        options.k, Path(args.annotator), classes)
    with atomic_dir(args.out) as tmp:
        for stem, image, mask in zip(shots["stems"], shots["images"], shots["masks"]):
            save_png(image, tmp / "images" / f"{stem}.png")
            save_png(mask.astype(np.uint8), tmp / "masks" / f"{stem}.png")
        save_png(shots_picture(shots, classes), tmp / "shots.png")
        save_torch({"stems": shots["stems"], "wplus": shots["wplus"].cpu(),
                    "noises": shots.get("noises")}, tmp / "latents.pt")
        # "protocol" only under --protocol: the default run's record stays as it was.
        named = {"protocol": protocol} if protocol else {}
        save_json({"source": options.source, "k": options.k, "pick": options.pick,
                   "stems": shots["stems"], "simulated": options.source == "simulated",
                   "classes": classes, **named, "candidates": scores}, tmp / "annotations.json")
    log(f"[annotate] {options.k} shot(s) {shots['stems']} from source '{options.source}' "
        f"(pick: {options.pick}) in {args.out}")


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--dataset", default="data/dataset")
    parser.add_argument("--generator", default="results/train_gan")
    parser.add_argument("--samples", default="results/sample")
    parser.add_argument("--annotator", default="results/train_annotator/annotator.pt")
    parser.add_argument("--out", default="results/annotate")
    parser.add_argument("--protocol", default=None,
                        help="annotate in this protocol (face10, face4, grid4, bands3) instead of "
                             "the dataset's classes")
    run_stage("annotate", parser, build)
