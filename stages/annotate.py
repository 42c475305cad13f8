"""Stage annotate: the k annotated images (the shots) and their latents.

annotate.source decides who annotates:
  manual     a person paints masks for the first k samples (`partseg annotate`); missing masks
             stop the pipeline with the list of files to paint, where and the class ids.
  inverted   k labelled real images are inverted into the GAN and keep their own masks
             (HandsOff's approach, for users who already have a few labelled images).
  simulated  demo data only: the fully supervised UNet (stage baselines, all labels) labels the
             k samples, standing in for a person. Named as such in every output.
Writes results/annotate/{images,masks}/<stem>.png, latents.pt and annotations.json.
"""

import shutil
from pathlib import Path

import numpy as np
import torch

from partseg.errors import PartsegError
from partseg.io import atomic_dir, atomic_path, read_image, read_mask, save_json, save_png, save_torch
from partseg.stage import log, run_stage, stage_parser


def first_k_samples(sample_dir: Path, k: int) -> dict:
    latents = torch.load(sample_dir / "latents.pt", weights_only=True)
    stems = latents["stems"][:k]
    images = [read_image(sample_dir / "images" / f"{stem}.png") for stem in stems]
    return {"stems": stems, "images": images, "wplus": latents["wplus"][:k]}


def export_for_manual_annotation(samples: dict, sample_dir: Path, manual_dir: Path,
                                 classes_file: Path) -> None:
    (manual_dir / "images").mkdir(parents=True, exist_ok=True)
    (manual_dir / "masks").mkdir(parents=True, exist_ok=True)
    for stem in samples["stems"]:
        target = manual_dir / "images" / f"{stem}.png"
        if not target.exists():
            with atomic_path(target) as tmp:
                shutil.copyfile(sample_dir / "images" / f"{stem}.png", tmp)
    with atomic_path(manual_dir / "classes.yaml") as tmp:
        shutil.copyfile(classes_file, tmp)


def manual_masks(samples: dict, sample_dir: Path, manual_dir: Path, classes: list[str],
                 classes_file: Path) -> list[np.ndarray]:
    mask_paths = [manual_dir / "masks" / f"{stem}.png" for stem in samples["stems"]]
    missing = [p for p in mask_paths if not p.exists()]
    if missing:
        export_for_manual_annotation(samples, sample_dir, manual_dir, classes_file)
        ids = ", ".join(f"{i}={name}" for i, name in enumerate(classes))
        raise PartsegError(
            f"{len(missing)} of {len(mask_paths)} masks to annotate are missing: "
            f"{', '.join(str(p) for p in missing)}. The images are in {manual_dir / 'images'}; "
            f"run `partseg annotate --dir {manual_dir}` to paint them (or save uint8 PNG masks "
            f"with class ids {ids}; 255 = ignore), then rerun the pipeline")
    masks = []
    for path, image in zip(mask_paths, samples["images"]):
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


def simulated_masks(samples: dict, annotator_path: Path) -> list[np.ndarray]:
    from partseg.autoshot.train import load_segmenter, predict_labels
    from partseg.device import resolve_device

    device = resolve_device()
    annotator = load_segmenter(annotator_path, device)
    return [labels for labels, _ in predict_labels(annotator, np.stack(samples["images"]),
                                                    batch_size=16, device=device)]


def inverted_shots(dataset_dir: Path, generator_dir: Path, k: int, inversion) -> dict:
    from partseg.data.folder import load_split_arrays
    from partseg.device import resolve_device
    from partseg.gan import load_discriminator, load_generator
    from partseg.inversion import invert_images
    from partseg.params import as_dict

    images, masks, stems = load_split_arrays(dataset_dir, "labeled", limit=k)
    if masks is None or len(stems) < k:
        raise PartsegError(f"{dataset_dir}/labeled: annotate.source inverted needs {k} labelled "
                           f"images with masks, found {len(stems)}")
    device = resolve_device()
    checkpoint = generator_dir / "generator.pt"
    result = invert_images(load_generator(checkpoint, device), images,
                           D=load_discriminator(checkpoint, device), device=device,
                           **as_dict(inversion))
    log(f"[annotate] inversion PSNR of the {k} shots: {np.round(result['psnr'], 2).tolist()}")
    return {"stems": list(stems), "images": list(images), "masks": list(masks),
            "wplus": result["wplus"], "noises": result.get("noises")}


def build(args, params):
    from partseg.data.folder import load_classes

    options, dataset_dir = params.annotate, Path(args.dataset)
    classes = load_classes(dataset_dir)
    if options.source == "inverted":
        shots = inverted_shots(dataset_dir, Path(args.generator), options.k, params.inversion)
    else:
        shots = first_k_samples(Path(args.samples), options.k)
        if options.source == "manual":
            shots["masks"] = manual_masks(shots, Path(args.samples), Path(options.manual_dir),
                                          classes, dataset_dir / "classes.yaml")
        else:
            log("[annotate] SIMULATED annotator: the fully supervised UNet labels the samples "
                "(demo data only; stands in for a person)")
            shots["masks"] = simulated_masks(shots, Path(args.annotator))
    with atomic_dir(args.out) as tmp:
        for stem, image, mask in zip(shots["stems"], shots["images"], shots["masks"]):
            save_png(image, tmp / "images" / f"{stem}.png")
            save_png(mask.astype(np.uint8), tmp / "masks" / f"{stem}.png")
        save_torch({"stems": shots["stems"], "wplus": shots["wplus"].cpu(),
                    "noises": shots.get("noises")}, tmp / "latents.pt")
        save_json({"source": options.source, "k": options.k, "stems": shots["stems"],
                   "simulated": options.source == "simulated", "classes": classes},
                  tmp / "annotations.json")
    log(f"[annotate] {options.k} shot(s) from source '{options.source}' in {args.out}")


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--dataset", default="data/dataset")
    parser.add_argument("--generator", default="results/train_gan")
    parser.add_argument("--samples", default="results/sample")
    parser.add_argument("--annotator", default="results/baselines/unet_full.pt")
    parser.add_argument("--out", default="results/annotate")
    run_stage("annotate", parser, build)
