"""Parts of any shape, from one shot (stage partitions).

The few-shot net should learn whatever parts a person paints, not only a dataset's classes.
Each protocol in partitions.names is one definition of the parts of the same pictures: face10
(the face classes) and partitions of the face that no class merge gives, drawn by the demo
generator in each face's own coordinates (partseg.data.partitions: grid4, a 2x2 grid over the
face; bands3, concentric bands).

The shot is a real `labeled` image inverted into the GAN (the simulated annotator knows only
the face classes, so it paints no grid), with its exact mask under every protocol; the very
same shot (latent, features) serves every protocol, so the protocols differ in their masks
alone. Besides mIoU, two numbers split the error: the IoU of the face as a whole (finding it)
and the share of the face's pixels found as face that land in the right part (dividing it).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from partseg.plumbing.errors import PartsegError
from partseg.experiments.shared import SHOWN_TEST_IMAGES, inverted_test_set
from partseg.shots.batch import Shots
from partseg.plumbing.stage import log

KEY = "params key partitions.names"
# The face as the partitions define it (partseg.data.partitions.FACE_REGION), by class name.
FACE_PARTS = ("skin", "eye", "eyebrow", "nose", "mouth")


# --- the data: classes, test masks, the shot ---------------------------------------------

def class_lists(dataset_dir: Path, names: list[str]) -> dict[str, list[str]]:
    from partseg.data.folder import load_classes
    from partseg.data.protocols import classes_under

    dataset_classes = load_classes(dataset_dir)
    return {name: classes_under(name, dataset_classes, KEY) for name in names}


def test_set(dataset_dir: Path, inversions: Path, names: list[str]) -> tuple:
    """The inverted test images, their stems, and their masks under each protocol."""
    from partseg.data.protocols import split_masks

    images, _, stems = inverted_test_set(dataset_dir, inversions)
    masks = {name: split_masks(dataset_dir, "test", name, limit=len(stems), key=KEY)[0]
             for name in names}
    return images, stems, masks


def choose_shot(dataset_dir: Path, generator_dir: Path, params) -> tuple[Shots, list[dict]]:
    """The one inverted shot (partitions.shot), and each candidate's record (auto).

    auto inverts the first partitions.candidates labelled images in one batch and takes, as a
    person would, the best inverted one (PSNR) among those that show every part of every
    protocol: a badly inverted shot's mask does not fit the GAN picture it is learnt from."""
    from partseg.data.protocols import split_masks
    from partseg.shots.sources import inverted_shots

    options = params.partitions
    if options.shot != "auto":
        return inverted_shots(dataset_dir, generator_dir, 1, params.inversion,
                              stems=[options.shot]), []
    pool = inverted_shots(dataset_dir, generator_dir, options.candidates, params.inversion)
    classes = class_lists(dataset_dir, options.names)
    masks = {name: split_masks(dataset_dir, "labeled", name, limit=len(pool),
                               key=KEY)[0] for name in options.names}
    records = []
    for i, stem in enumerate(pool.stems):
        shown = {name: parts_shown(masks[name][i]) for name in options.names}
        records.append({"stem": stem, "psnr": round(pool.psnr[i], 2),
                        "parts_shown": sum(shown.values()),
                        "every_part": all(shown[n] == len(classes[n]) for n in options.names)})
    best = max(range(len(records)), key=lambda i: (records[i]["every_part"],
                                                  records[i]["parts_shown"], records[i]["psnr"]))
    return pool.select([best]), records


def parts_shown(mask: np.ndarray) -> int:
    """Classes (background included) covering at least a 2x2 patch of `mask`."""
    from partseg.shots.choose import MIN_PART_PIXELS

    counts = np.bincount(mask[mask != 255].ravel(), minlength=1)
    return int(np.count_nonzero(counts >= MIN_PART_PIXELS))


def shot_masks(dataset_dir: Path, names: list[str], stem: str) -> dict[str, np.ndarray]:
    """The labelled image `stem`'s mask under each protocol, as a batch of one [1, H, W]."""
    from partseg.data.protocols import split_masks
    from partseg.shots.sources import labelled_indices

    index = labelled_indices(dataset_dir, [stem])[0]
    return {name: split_masks(dataset_dir, "labeled", name, limit=index + 1,
                              key=KEY)[0][index][None] for name in names}


def shot_head(dataset_dir: Path, stem: str) -> dict | None:
    """The pose of the shot's face as the demo generator drew it (None for other sources)."""
    from partseg.data.packed import is_packed, load_manifest
    from partseg.data.synthetic import face_specs

    source = load_manifest(dataset_dir).get("source", {}) if is_packed(dataset_dir) else {}
    if source.get("source") != "synthetic" or not stem.isdigit():
        return None
    face = face_specs(int(source["seed"]), "labeled", int(stem))[-1]  # the front face
    return {"yaw_deg": round(math.degrees(face.yaw), 1),
            "roll_deg": round(math.degrees(face.roll), 1)}


def shot_features(shots: Shots, generator_dir: Path, params, test_cache, out: Path):
    """The GAN feature cache of the inverted shots, with the layers of the test images'."""
    from partseg.plumbing.device import resolve_device
    from partseg.features import cache_latent_features, generator_checksum

    checkpoint = generator_dir / "generator.pt"
    checksum = generator_checksum(checkpoint)
    if test_cache.manifest.get("generator_checksum") != checksum:
        raise PartsegError(f"{test_cache.dir}: its features come from another generator than "
                           f"{checkpoint} (rerun invert_test)")
    cache = cache_latent_features(out, checkpoint, shots.wplus, params.features, batch_size=8,
                                  noises=shots.noises, checksum=checksum,
                                  device=resolve_device(), show_progress=False)
    if cache.layers != test_cache.layers or cache.resolution != test_cache.resolution:
        raise PartsegError(f"{test_cache.dir}: features of layers {test_cache.layers} at "
                           f"{test_cache.resolution} px, but the features params give "
                           f"{cache.layers} at {cache.resolution} px (rerun invert_test)")
    return cache


# --- the metrics -------------------------------------------------------------------------

def face_ids(protocol: str, classes: list[str]) -> list[int] | None:
    """Label ids that make up the whole face under `protocol` (None: it covers only a part)."""
    from partseg.data.protocols import is_partition

    if is_partition(protocol):
        return list(range(1, len(classes)))
    if all(part in classes for part in FACE_PARTS):
        return [classes.index(part) for part in FACE_PARTS]
    return None


def share(part: np.ndarray, whole: np.ndarray) -> float:
    total = np.count_nonzero(whole)
    return np.count_nonzero(part) / total if total else float("nan")


def part_borders(truth: np.ndarray, ids: list[int]) -> np.ndarray:
    """bool [N, H, W]: face pixels with an 8-neighbour in another part of the face."""
    height, width = truth.shape[1:]
    padded = np.pad(truth, ((0, 0), (1, 1), (1, 1)), mode="edge")
    in_face = np.isin(truth, ids)
    borders = np.zeros(truth.shape, bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            neighbour = padded[:, 1 + dy: 1 + dy + height, 1 + dx: 1 + dx + width]
            borders |= in_face & np.isin(neighbour, ids) & (neighbour != truth)
    return borders


def face_scores(predicted: np.ndarray, truth: np.ndarray, ids: list[int] | None) -> dict:
    """Where the errors are: the IoU of the face as a whole (finding it), the share of the true
    face's pixels found as face that got the right part (dividing it), and how many of the
    wrong-part pixels lie on a border between two parts, beside how many face pixels do."""
    empty = dict.fromkeys(("face_iou", "right_part_in_face", "wrong_part_on_borders",
                           "face_on_borders"))
    if ids is None:
        return empty
    in_predicted, in_truth = np.isin(predicted, ids), np.isin(truth, ids)
    both = in_predicted & in_truth
    wrong = both & (predicted != truth)
    borders = part_borders(truth, ids)
    return {"face_iou": share(both, in_predicted | in_truth),
            "right_part_in_face": share(both & ~wrong, both),
            "wrong_part_on_borders": share(wrong & borders, wrong),
            "face_on_borders": share(in_truth & borders, in_truth)}


def face_shares(classes: list[str], ids: list[int] | None, **masks: np.ndarray) -> dict | None:
    """Per face part, its share of the face's pixels in each set of masks (the shot's, the
    test truth's, the prediction's): does the net copy the shot's proportions?"""
    if ids is None:
        return None
    return {classes[i]: {name: share(labels == i, np.isin(labels, ids))
                         for name, labels in masks.items()} for i in ids}


def score_protocol(protocol: str, shot_cache, shot_masks, test_cache, test_masks, classes,
                   settings: dict, device) -> tuple[dict, np.ndarray]:
    """The few-shot net on the shots' masks under `protocol`, scored on the test images."""
    from partseg.fewshot.evaluate import fewshot_scores

    confusion, predicted = fewshot_scores(shot_cache, shot_masks, test_cache, test_masks,
                                          num_classes=len(classes), settings=settings,
                                          device=device)
    ids = face_ids(protocol, classes)
    scores = {"miou": confusion.miou(), "pixel_accuracy": confusion.pixel_accuracy(),
              "per_class_iou": dict(zip(classes, confusion.iou().tolist())),
              **face_scores(predicted, test_masks, ids),
              "face_shares": face_shares(classes, ids, shot=shot_masks, truth=test_masks,
                                         predicted=predicted)}
    return scores, predicted


def score_protocols(shot_cache, shot_masks: dict, test_cache, test_masks: dict,
                    classes: dict, settings: dict, device) -> tuple[dict, dict]:
    """Per protocol: its scores and predicted labels; the shot's masks are brought to the
    feature resolution (nearest neighbour, as the features stage does)."""
    from partseg.imaging import resize_masks

    scores, predicted = {}, {}
    for name, masks in test_masks.items():
        scores[name], predicted[name] = score_protocol(
            name, shot_cache, resize_masks(shot_masks[name], shot_cache.resolution), test_cache,
            masks, classes[name], settings, device)
        log(f"[partitions] {name}: one-shot mIoU {100 * scores[name]['miou']:.1f} on "
            f"{len(masks)} test images")
    return scores, predicted


def metrics(shots: Shots, head: dict | None, candidates: list[dict], count: int,
            scores: dict) -> dict:
    """metrics.json: the shot, how it was picked, and every protocol's scores."""
    return {"shot": shots.stems[0], "shot_psnr_db": round(shots.psnr[0], 2),
            "shot_head": head, "shot_candidates": candidates, "test_images": count,
            "protocols": scores}


def per_class_frame(scores: dict) -> pd.DataFrame:
    return pd.DataFrame([{"protocol": protocol, "class": name, "iou": iou}
                         for protocol, result in scores.items()
                         for name, iou in result["per_class_iou"].items()])


# --- the report section ------------------------------------------------------------------

def percent(value) -> str:
    return "—" if value is None or np.isnan(value) else f"{100 * value:.1f}"


def how_picked(candidates: list[dict]) -> str:
    if not candidates:
        return " (partitions.shot)"
    complete = sum(c["every_part"] for c in candidates)
    if complete:
        return (f", picked automatically: of the first {len(candidates)} labelled images, "
                f"inverted together, {complete} show every part of every protocol (each at "
                "least a 2x2 patch), and this is the best inverted of them")
    return (f", picked automatically: none of the first {len(candidates)} labelled images "
            "shows every part of every protocol; this one shows the most, and is the best "
            "inverted of those")


def section_markdown(scores: dict, shots: Shots, head: dict | None, candidates: list[dict],
                     count: int, settings: dict) -> str:
    from partseg.report import markdown_table

    pose = (f"; its face is turned {head['yaw_deg']:+.0f} degrees (yaw) and rolled "
            f"{head['roll_deg']:+.0f} (as the demo generator drew it)" if head else "")
    lines = ["## Parts of any shape", "",
             f"One shot, several definitions of its parts. The shot is the real `labeled` image "
             f"{shots.stems[0]}, inverted into the GAN (PSNR {shots.psnr[0]:.1f} dB)"
             f"{how_picked(candidates)}{pose}. "
             f"Under each protocol the few-shot {settings['network']} net learns its GAN "
             f"features with the shot's exact mask in that protocol, then segments the {count} "
             "inverted `test` images (one-shot), scored against their masks in the same "
             "protocol. face10 is the face classes; grid4 (a 2x2 grid over the face) and bands3 "
             "(concentric bands around its centre) are partitions of the face drawn by the demo "
             "generator in each face's own coordinates, so they turn and roll with the head "
             "(partseg/data/partitions.py); the face is the skin, eyes, brows, nose and mouth "
             "as they show (hair over the forehead is not face). The shot, its latent and its "
             "features are the same for every protocol: only the masks differ.", "",
             "![the shot, its inversion and its mask under each protocol](shots.png)", ""]
    summary = pd.DataFrame([{"protocol": p, "classes": len(r["per_class_iou"]),
                             "mIoU": percent(r["miou"]),
                             "pixel accuracy": percent(r["pixel_accuracy"]),
                             "face IoU": percent(r["face_iou"]),
                             "right part in the face": percent(r["right_part_in_face"])}
                            for p, r in scores.items()])
    lines += ["IoU %. *face IoU*: the face as a whole (its parts merged); *right part in the "
              "face*: of the true face's pixels the net also calls face, the share given the "
              "right part.", "", markdown_table(summary), ""]
    for protocol, result in scores.items():
        frame = pd.DataFrame([{**{c: percent(v) for c, v in result["per_class_iou"].items()},
                               "mean": percent(result["miou"])}])
        lines += [f"### {protocol}", "", markdown_table(frame), ""]
    lines += [reading(scores, count), "",
              "![test images; per protocol the ground truth, then the prediction](predictions.png)",
              ""]
    return "\n".join(lines)


def reading(scores: dict, count: int) -> str:
    """One paragraph of the numbers as they came out: each sentence a measurement, or a
    comparison computed from them."""
    from partseg.data.protocols import is_partition

    partitions = [p for p in scores if is_partition(p)]
    if not partitions:
        return "No partition was measured (partitions.names holds class protocols only)."
    text = "From one shot, " + "; ".join(
        f"{p} reaches {percent(scores[p]['miou'])} mIoU over {len(scores[p]['per_class_iou'])} "
        "classes" for p in partitions) + "."
    if "face10" in scores:
        text += (f" The face classes, learnt from the same shot, reach "
                 f"{percent(scores['face10']['miou'])} over "
                 f"{len(scores['face10']['per_class_iou'])} classes: mIoUs over different "
                 "classes are no ranking of the definitions.")
    whole = {p: scores[p]["face_iou"] for p in scores if scores[p]["face_iou"] is not None}
    if len(whole) > 1:
        listed = ", ".join(f"{p} {percent(v)}" for p, v in whole.items())
        spread = max(whole.values()) - min(whole.values())
        text += (f" The face as a whole (face IoU): {listed}, a spread of {percent(spread)} "
                 "points.")
    for p in partitions:
        text += " " + partition_reading(p, scores[p])
    text += (f" One shot, {count} test images and one training seed (train_fewshot.seed): how "
             "far another shot or seed would move these numbers was not measured.")
    return text


def partition_reading(protocol: str, result: dict) -> str:
    """Where one partition's errors are, each from a measurement."""
    parts = {c: v for c, v in result["per_class_iou"].items() if c != "background"}
    weakest = min(parts, key=parts.get)
    on_borders, base = result["wrong_part_on_borders"], result["face_on_borders"]
    text = (f"{protocol}: {percent(result['right_part_in_face'])} % of the face pixels found get "
            f"the right part; its weakest part is {weakest} ({percent(parts[weakest])} IoU). "
            f"{percent(on_borders)} % of the wrong ones lie on a border between parts, where "
            f"{percent(base)} % of the face lies")
    if _finite(on_borders) and _finite(base) and base > 0:
        text += f" ({on_borders / base:.1f} times that share)"
    text += "."
    shares = result.get("face_shares")
    if shares:
        moved = max(shares, key=lambda c: abs(shares[c]["predicted"] - shares[c]["truth"]))
        share_of = shares[moved]
        text += (f" The net's largest shift is {moved}: {percent(share_of['predicted'])} % of the "
                 f"face it finds, {percent(share_of['truth'])} % of the true faces "
                 f"({percent(share_of['shot'])} % of the shot's face), "
                 f"{percent(abs(share_of['predicted'] - share_of['shot']))} points from the "
                 f"shot's share and {percent(abs(share_of['predicted'] - share_of['truth']))} "
                 "from the test faces'.")
    return text


def _finite(value) -> bool:
    return value is not None and math.isfinite(value)


# --- the pictures ------------------------------------------------------------------------

def legends(classes: dict[str, list[str]], width: int) -> list[np.ndarray]:
    """One titled legend per protocol (their label ids share colours, not meanings)."""
    from partseg.visualize import legend, text_strip

    pictures = []
    for protocol, names in classes.items():
        pictures += [text_strip(f"{protocol}:", width), legend(names, width=width)]
    return pictures


def shots_picture(shots: Shots, reconstructions: np.ndarray, masks: dict, classes: dict
                  ) -> np.ndarray:
    """The shot, its inversion and its mask under each protocol."""
    from partseg.visualize import colorize, stack_vertical, titled_grid

    rows = [[image, reconstruction, *(colorize(masks[p][i]) for p in masks)]
            for i, (image, reconstruction) in enumerate(zip(shots.images, reconstructions))]
    grid = titled_grid(rows, ["shot", "its inversion", *masks], upscale=4)
    return stack_vertical([grid, *legends(classes, grid.shape[1])])


def predictions_picture(images, truth: dict, predicted: dict, classes: dict) -> np.ndarray:
    """Rows: test images; columns: the image, then per protocol its truth and prediction."""
    from partseg.visualize import colorize, stack_vertical, titled_grid

    shown = min(SHOWN_TEST_IMAGES, len(images))
    rows = [[images[i], *(colorize(m) for p in truth for m in (truth[p][i], predicted[p][i]))]
            for i in range(shown)]
    titles = ["image", *(f"{p} {what}" for p in truth for what in ("truth", "predicted"))]
    grid = titled_grid(rows, titles, upscale=4)
    return stack_vertical([grid, *legends(classes, grid.shape[1])])
