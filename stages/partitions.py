"""Stage partitions (experiments): parts of any shape, from one shot.

The few-shot net should learn whatever parts a person paints, not only a dataset's classes.
Each protocol in partitions.names is one definition of the parts of the same pictures: face10
(the face classes) and partitions of the face that no class merge gives, drawn by the demo
generator in each face's own coordinates (partseg.data.partitions: grid4, a 2x2 grid over the
face; bands3, concentric bands).

Who paints a grid on a generated face? The demo's simulated annotator knows only the face
classes, so the shot comes from annotate's `inverted` source instead: a real image of the
`labeled` split, inverted into the GAN (inversion settings), with its exact mask under every
protocol. partitions.shot: auto inverts the first partitions.candidates labelled images in
one batch and takes, as a person would, the best inverted one (PSNR) among those that show
every part of every protocol (each at least a 2x2 patch, as annotate's auto pick), since a
badly inverted shot's mask does not fit the GAN's picture it is learnt from; or a named stem.
The very same inverted shot (same latent, same features) serves every protocol, so the
protocols differ in their masks alone. For each protocol the
few-shot net (train_fewshot's settings) learns the shot's GAN features and segments the
inverted `test` images (invert_test's feature cache), scored against their masks under that
protocol: mIoU and per-class IoU, plus two numbers that split the error: the IoU of the face
as a whole (all face parts merged; protocols that cover the whole face) and the share of the
face's pixels, among those found as face, that land in the right part.

Writes experiments/results/partitions/: metrics.json, per_class.csv, section.md, shots.png (the
shot, its inversion and its mask under each protocol) and predictions.png (test images, then
per protocol the ground truth and the prediction).
"""

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from partseg.errors import PartsegError
from partseg.io import atomic_dir, atomic_path, load_json, save_json, save_png
from partseg.stage import log, run_stage, stage_parser

KEY = "params key partitions.names"
SHOWN_TEST_IMAGES = 6
# The face as the partitions define it (partseg.data.partitions.FACE_REGION), by class name.
FACE_PARTS = ("skin", "eye", "eyebrow", "nose", "mouth")


def test_set(dataset_dir: Path, inversions: Path, names: list[str]) -> tuple:
    """The inverted test images (as many as invert_test inverted), their stems, and their
    masks under each protocol."""
    from partseg.data.folder import load_split_arrays
    from partseg.data.protocols import split_masks

    stems = load_json(inversions / "stems.json")["stems"]
    images, _, dataset_stems = load_split_arrays(dataset_dir, "test", limit=len(stems))
    if list(dataset_stems) != list(stems):
        raise PartsegError(f"{inversions}: its images are not the first {len(stems)} of "
                           f"{dataset_dir}/test (rerun invert_test)")
    masks = {name: split_masks(dataset_dir, "test", name, limit=len(stems), key=KEY)[0]
             for name in names}
    return images, stems, masks


def shot_features(shots: dict, generator_dir: Path, params, test_cache, out: Path):
    """The GAN feature cache of the inverted shots, with the layers of the test images'."""
    from partseg.device import resolve_device
    from partseg.features import FeatureExtractor, generator_checksum, write_feature_cache
    from partseg.gan import load_generator
    from partseg.params import as_dict

    device = resolve_device()
    checkpoint = generator_dir / "generator.pt"
    checksum = generator_checksum(checkpoint)
    if test_cache.manifest.get("generator_checksum") != checksum:
        raise PartsegError(f"{test_cache.dir}: its features come from another generator than "
                           f"{checkpoint} (rerun invert_test)")
    extractor = FeatureExtractor(load_generator(checkpoint, device=device),
                                 params.features.layers, params.features.resolution)
    cache = write_feature_cache(out, extractor, shots["wplus"].to(device),
                                noises=shots.get("noises"), batch_size=8,
                                generator_checksum=checksum, params=as_dict(params.features),
                                show_progress=False)
    if cache.layers != test_cache.layers or cache.resolution != test_cache.resolution:
        raise PartsegError(f"{test_cache.dir}: features of layers {test_cache.layers} at "
                           f"{test_cache.resolution} px, but the features params give "
                           f"{cache.layers} at {cache.resolution} px (rerun invert_test)")
    return cache


def nearest(masks: np.ndarray, resolution: int) -> np.ndarray:
    """Masks at the feature resolution (nearest neighbour, as the features stage does)."""
    stacked = torch.from_numpy(masks).unsqueeze(1).float()
    resized = torch.nn.functional.interpolate(stacked, size=(resolution, resolution),
                                              mode="nearest")
    return resized.squeeze(1).to(torch.uint8).numpy()


def face_ids(protocol: str, classes: list[str]) -> list[int] | None:
    """Label ids that make up the whole face under `protocol` (None: it covers only a part)."""
    from partseg.data.protocols import is_partition

    if is_partition(protocol):
        return list(range(1, len(classes)))
    if all(part in classes for part in FACE_PARTS):
        return [classes.index(part) for part in FACE_PARTS]
    return None


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


def face_shares(classes: list[str], ids: list[int] | None, **masks: np.ndarray) -> dict | None:
    """Per face part, its share of the face's pixels in each set of masks (the shot's, the
    test truth's, the prediction's): does the net copy the shot's proportions?"""
    if ids is None:
        return None
    return {classes[i]: {name: share(labels == i, np.isin(labels, ids))
                         for name, labels in masks.items()} for i in ids}


def per_class_frame(scores: dict) -> pd.DataFrame:
    return pd.DataFrame([{"protocol": protocol, "class": name, "iou": iou}
                         for protocol, result in scores.items()
                         for name, iou in result["per_class_iou"].items()])


def percent(value) -> str:
    return "—" if value is None or np.isnan(value) else f"{100 * value:.1f}"


def section_markdown(scores: dict, shots: dict, candidates: list[dict], count: int,
                     settings: dict) -> str:
    from partseg.report import markdown_table

    if candidates:
        complete = sum(c["every_part"] for c in candidates)
        how = (f", picked automatically: of the first {len(candidates)} labelled images, "
               f"inverted together, {complete} show every part of every protocol (each at least "
               "a 2x2 patch), and this is the best inverted of them" if complete else
               f", picked automatically: none of the first {len(candidates)} labelled images "
               "shows every part of every protocol; this one shows the most, and is the best "
               "inverted of those")
    else:
        how = " (partitions.shot)"
    lines = ["## Parts of any shape", "",
             f"One shot, several definitions of its parts. The shot is the real `labeled` image "
             f"{shots['stems'][0]}, inverted into the GAN (PSNR {shots['psnr'][0]:.1f} dB){how}. "
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
    lines += [reading(scores, count, shots.get("head")), "",
              "![test images; per protocol the ground truth, then the prediction](predictions.png)",
              ""]
    return "\n".join(lines)


def reading(scores: dict, count: int, head: dict | None = None) -> str:
    """One paragraph that reads the numbers as they came out (each claim from a measurement)."""
    from partseg.data.protocols import is_partition

    partitions = [p for p in scores if is_partition(p)]
    if not partitions:
        return "No partition was measured (partitions.names holds class protocols only)."
    text = "From one shot, " + "; ".join(
        f"{p} reaches {percent(scores[p]['miou'])} mIoU" for p in partitions) + "."
    if "face10" in scores:
        text += (f" The face classes, learnt from the same shot, reach "
                 f"{percent(scores['face10']['miou'])}: another task (10 classes, several "
                 "only a few pixels large), so the mIoUs are no ranking of the definitions.")
    whole = {p: scores[p]["face_iou"] for p in scores if scores[p]["face_iou"] is not None}
    if len(whole) > 1:
        listed = ", ".join(f"{p} {percent(v)}" for p, v in whole.items())
        if max(whole.values()) - min(whole.values()) <= 0.05:
            text += (f" The face as a whole is found about as well whatever the net was taught "
                     f"(face IoU {listed}), so what differs is how the face is divided.")
        else:
            text += (f" How well the face as a whole is found depends on what the net was "
                     f"taught (face IoU {listed}).")
    for p in partitions:
        text += " " + partition_reading(p, scores[p], head)
    text += (f" One shot, {count} test images and one training seed (train_fewshot.seed): "
             "differences of a few points are within what another shot or seed would move.")
    return text


def partition_reading(protocol: str, result: dict, head: dict | None) -> str:
    """Where one partition's errors are, each from a measurement."""
    parts = {c: v for c, v in result["per_class_iou"].items() if c != "background"}
    weakest = min(parts, key=parts.get)
    text = (f"{protocol}: {percent(result['right_part_in_face'])} % of the face pixels found get "
            f"the right part; its weakest part is {weakest} ({percent(parts[weakest])} IoU). "
            f"{percent(result['wrong_part_on_borders'])} % of the wrong ones lie on a border "
            f"between parts, where {percent(result['face_on_borders'])} % of the face lies")
    on_borders, base = result["wrong_part_on_borders"] or 0, result["face_on_borders"] or 0
    if on_borders > 1.5 * base:
        text += (": the errors gather where one part meets the next, a line no edge in the "
                 "picture marks.")
    elif base > 0.5:
        text += (": at this resolution most of the face is next to another part, so this says "
                 "little about where the errors are.")
    else:
        text += ": the errors are not only at the borders."
    shares = result.get("face_shares")
    if shares:
        moved = max(shares, key=lambda c: abs(shares[c]["predicted"] - shares[c]["truth"]))
        share_of = shares[moved]
        text += (f" The net's largest shift is {moved}: {percent(share_of['predicted'])} % of the "
                 f"face it finds, {percent(share_of['truth'])} % of the true faces "
                 f"({percent(share_of['shot'])} % of the shot's face).")
        copied = abs(share_of["predicted"] - share_of["shot"])
        if copied < abs(share_of["predicted"] - share_of["truth"]) / 2:
            turned = (f", its head turned by {abs(head['yaw_deg']):.0f} degrees"
                      if head and abs(head["yaw_deg"]) >= 5 else "")
            text += (" The net repeats the shot's proportions rather than each test face's own: "
                     f"one shot shows where the cells fall on one face{turned}.")
    return text


def legends(classes: dict[str, list[str]], width: int) -> list[np.ndarray]:
    """One titled legend per protocol (their label ids share colours, not meanings)."""
    from partseg.visualize import legend, text_strip

    pictures = []
    for protocol, names in classes.items():
        pictures += [text_strip(f"{protocol}:", width), legend(names, width=width)]
    return pictures


def shots_picture(shots: dict, reconstructions: np.ndarray, masks: dict, classes: dict
                  ) -> np.ndarray:
    from partseg.visualize import colorize, stack_vertical, titled_grid

    rows = [[image, reconstruction, *(colorize(masks[p][i]) for p in masks)]
            for i, (image, reconstruction) in enumerate(zip(shots["images"], reconstructions))]
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


def choose_shot(dataset_dir: Path, generator_dir: Path, params) -> tuple[dict, list[dict]]:
    """The one inverted shot (partitions.shot), and each candidate's record (auto)."""
    from partseg.data.protocols import split_masks
    from partseg.shots.sources import inverted_shots

    options = params.partitions
    if options.shot != "auto":
        return inverted_shots(dataset_dir, generator_dir, 1, params.inversion,
                              stems=[options.shot]), []
    pool = inverted_shots(dataset_dir, generator_dir, options.candidates, params.inversion)
    classes = class_lists(dataset_dir, options.names)
    masks = {name: split_masks(dataset_dir, "labeled", name, limit=len(pool["stems"]),
                               key=KEY)[0] for name in options.names}
    records = []
    for i, stem in enumerate(pool["stems"]):
        shown = {name: parts_shown(masks[name][i]) for name in options.names}
        records.append({"stem": stem, "psnr": round(pool["psnr"][i], 2),
                        "parts_shown": sum(shown.values()),
                        "every_part": all(shown[n] == len(classes[n]) for n in options.names)})
    best = max(range(len(records)), key=lambda i: (records[i]["every_part"],
                                                  records[i]["parts_shown"], records[i]["psnr"]))
    return pick(pool, best), records


def parts_shown(mask: np.ndarray) -> int:
    """Classes (background included) covering at least a 2x2 patch of `mask`."""
    from partseg.shots.choose import MIN_PART_PIXELS

    counts = np.bincount(mask[mask != 255].ravel(), minlength=1)
    return int(np.count_nonzero(counts >= MIN_PART_PIXELS))


def class_lists(dataset_dir: Path, names: list[str]) -> dict[str, list[str]]:
    from partseg.data.folder import load_classes
    from partseg.data.protocols import classes_under

    dataset_classes = load_classes(dataset_dir)
    return {name: classes_under(name, dataset_classes, KEY) for name in names}


def labelled_masks(dataset_dir: Path, names: list[str], index: int) -> dict[str, np.ndarray]:
    """The mask of labelled image number `index` under each protocol."""
    from partseg.data.protocols import split_masks

    return {name: split_masks(dataset_dir, "labeled", name, limit=index + 1, key=KEY)[0][index]
            for name in names}


def shot_head(dataset_dir: Path, stem: str) -> dict | None:
    """The pose of the shot's face as the demo generator drew it (None for other sources)."""
    import math

    from partseg.data.packed import is_packed, load_manifest
    from partseg.data.synthetic import face_specs

    source = load_manifest(dataset_dir).get("source", {}) if is_packed(dataset_dir) else {}
    if source.get("source") != "synthetic" or not stem.isdigit():
        return None
    face = face_specs(int(source["seed"]), "labeled", int(stem))[-1]  # the front face
    return {"yaw_deg": round(math.degrees(face.yaw), 1),
            "roll_deg": round(math.degrees(face.roll), 1)}


def pick(pool: dict, i: int) -> dict:
    """Shot i of a batch of inverted shots, as a batch of one."""
    noises = pool.get("noises")
    return {"stems": [pool["stems"][i]], "images": [pool["images"][i]],
            "masks": [pool["masks"][i]], "wplus": pool["wplus"][i: i + 1],
            "noises": None if noises is None else [n[i: i + 1] for n in noises],
            "psnr": [pool["psnr"][i]]}


def build(args, params):
    from partseg.device import resolve_device
    from partseg.features import FeatureCache
    from partseg.params import as_dict
    from partseg.shots.sources import labelled_indices

    names = params.partitions.names
    dataset_dir, inversions = Path(args.dataset), Path(args.inversions) / "test"
    classes = class_lists(dataset_dir, names)
    images, stems, test_masks = test_set(dataset_dir, inversions, names)
    test_cache = FeatureCache(inversions / "cache")
    shots, candidates = choose_shot(dataset_dir, Path(args.generator), params)
    index = labelled_indices(dataset_dir, shots["stems"])[0]
    shot_masks = {name: mask[None] for name, mask in
                  labelled_masks(dataset_dir, names, index).items()}
    shots["head"] = shot_head(dataset_dir, shots["stems"][0])
    log(f"[partitions] the shot: labelled image {shots['stems'][0]} (inversion PSNR "
        f"{shots['psnr'][0]:.2f} dB)")
    settings, device = as_dict(params.train_fewshot), resolve_device()
    scores, predicted = {}, {}
    with atomic_dir(args.out) as tmp:
        shot_cache = shot_features(shots, Path(args.generator), params, test_cache,
                                   tmp / "scratch" / "shot_cache")
        reconstructions = shot_cache.images()
        for name in names:
            scores[name], predicted[name] = score_protocol(
                name, shot_cache, nearest(shot_masks[name], shot_cache.resolution), test_cache,
                test_masks[name], classes[name], settings, device)
            log(f"[partitions] {name}: one-shot mIoU {100 * scores[name]['miou']:.1f} on "
                f"{len(stems)} test images")
        shot_cache.close()
        shutil.rmtree(tmp / "scratch")
        save_json({"shot": shots["stems"][0], "shot_psnr_db": round(shots["psnr"][0], 2),
                   "shot_head": shots["head"],
                   "shot_candidates": candidates, "test_images": len(stems),
                   "protocols": scores}, tmp / "metrics.json")
        with atomic_path(tmp / "per_class.csv") as part:
            per_class_frame(scores).to_csv(part, index=False, float_format="%.4f")
        save_png(shots_picture(shots, reconstructions, shot_masks, classes), tmp / "shots.png")
        save_png(predictions_picture(images, test_masks, predicted, classes),
                 tmp / "predictions.png")
        (tmp / "section.md").write_text(
            section_markdown(scores, shots, candidates, len(stems), settings))


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--dataset", default="data/dataset")
    parser.add_argument("--generator", default="results/train_gan")
    parser.add_argument("--inversions", default="results/invert_test")
    parser.add_argument("--out", default="experiments/results/partitions")
    run_stage("partitions", parser, build)
