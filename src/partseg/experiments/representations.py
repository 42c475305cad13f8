"""Is it the GAN's *training* that makes its pixel features good for few-shot part segmentation?
(stage representations). The few-shot net (train_fewshot's settings), trained on the first k
shared shots (stage shots, k in shots.ks) and scored on the same inverted test images
(invert_test's `test` split), reads each representation in representations.names:

  gan     the demo GAN's pixel features: the shots' exact latents (shots/cache), the test
          images' inversions (invert_test/test/cache);
  vae     the decoder activations of a VAE trained on the same images (stage train_vae,
          partseg.vae; the decoder is the GAN's generator architecture, read by the same
          FeatureExtractor). Shots and test images are encoded (posterior mean z), mapped to w,
          broadcast to W+ and, with representations.vae_refine, refined by the GAN's inversion
          recipe (`inversion` settings, noise maps included) with the pixel loss alone: the VAE
          has no discriminator, whose features are the GAN inversion's perceptual term;
  random  the same generator architecture with random weights (representations.random_seed),
          shots and test images inverted into it by the same recipe (pixel loss alone);
  rgbxy   the image's RGB at the feature resolution and the pixel's x and y (5 channels).

run_representations writes metrics.json (per representation and k: mIoU, per-class IoU; per
representation: the test reconstruction PSNR), per_class.csv, section.md (the tables and a
reading of the numbers), predictions.png and reconstructions.png.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from partseg.plumbing.errors import PartsegError
from partseg.plumbing.io import load_json, read_image
from partseg.plumbing.stage import log

LABELS = {"gan": "GAN (trained)", "vae": "VAE decoder", "random": "generator, random weights",
          "rgbxy": "RGB + xy"}


@dataclass
class Inputs:
    """The folders the experiment reads (the stages that make them in brackets)."""
    dataset: Path     # (dataset)
    generator: Path   # generator.pt (train_gan)
    shots: Path       # images/, masks.npy, annotations.json, cache/ (shots)
    inversions: Path  # test/{cache, stems.json, psnr.csv} (invert_test)
    vae: Path         # vae.pt, record.yaml, metrics.json (train_vae)


# ---- inputs -------------------------------------------------------------------------------

def load_shots(shots_dir: Path, k: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The first k shots: images uint8 [k, H, W, 3], masks [k, R, R] (feature resolution)."""
    annotations = shots_dir / "annotations.json"
    if not annotations.is_file():
        raise PartsegError(f"{annotations}: not found (build the shots stage first)")
    stems = load_json(annotations)["stems"]
    if len(stems) < k:
        raise PartsegError(f"{annotations}: {len(stems)} shots, but shots.ks asks for {k}")
    stems = stems[:k]
    images = np.stack([read_image(shots_dir / "images" / f"{stem}.png") for stem in stems])
    masks = np.load(shots_dir / "masks.npy")[:k]
    return images, masks, stems


def test_set(dataset_dir: Path, inversions: Path):
    """The inverted test images (as many as invert_test inverted), their masks and stems."""
    from partseg.experiments.shared import inverted_test_set

    images, masks, stems = inverted_test_set(dataset_dir, inversions)
    if masks is None:
        raise PartsegError(f"{dataset_dir}/test: no masks to score the representations against")
    return images, masks, stems


def mean_psnr_file(path: Path) -> float | None:
    return float(pd.read_csv(path)["psnr"].mean()) if path.is_file() else None


def check_names(names: list[str]) -> None:
    if not names:
        raise PartsegError("params key representations.names: name at least one representation")
    if len(set(names)) != len(names):
        raise PartsegError(f"params key representations.names: {names} repeats a name")


# ---- the representations ------------------------------------------------------------------

def rgbxy_features(images: np.ndarray, resolution: int) -> np.ndarray:
    """float32 [N, R, R, 5]: RGB in [-1, 1] area-resized to R, then x and y in [-1, 1]."""
    import torch

    from partseg.imaging import images_to_signed_tensor

    pixels = images_to_signed_tensor(images)
    if pixels.shape[-1] != resolution:
        pixels = torch.nn.functional.interpolate(pixels, size=(resolution, resolution),
                                                 mode="area" if pixels.shape[-1] > resolution
                                                 else "bilinear")
    # Pixel centres, so that the grid is symmetric about the image centre at any resolution.
    axis = (torch.arange(resolution, dtype=torch.float32) + 0.5) / resolution * 2 - 1
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    coords = torch.stack([x, y])[None].expand(len(pixels), -1, -1, -1)
    return torch.cat([pixels, coords], dim=1).permute(0, 2, 3, 1).contiguous().numpy()


def write_rgbxy_cache(out_dir: Path, images: np.ndarray, resolution: int):
    from partseg.features import write_cache_from_arrays

    return write_cache_from_arrays(out_dir, rgbxy_features(images, resolution),
                                   layers=["rgb", "xy"], channels_per_layer=[3, 2],
                                   params={"representation": "rgbxy", "resolution": resolution},
                                   layout="NHWC")


def random_generator(config: dict, seed: int):
    """The GAN's architecture with freshly initialised (seeded) weights."""
    import torch

    from partseg.gan import Generator
    from partseg.vae.model import GENERATOR_KEYS

    torch.manual_seed(seed)
    return Generator(**{k: config[k] for k in GENERATOR_KEYS}).eval().requires_grad_(False)


def vae_start(vae, images: np.ndarray):
    """W+ latents of the VAE encoder's posterior means: where the inversion starts."""
    import torch

    from partseg.imaging import images_to_signed_tensor

    with torch.no_grad():
        mu, _ = vae.encode(images_to_signed_tensor(images))
        return vae.wplus(mu)


def inverted_cache(out_dir: Path, G, images: np.ndarray, params, *, init_wplus=None,
                   refine: bool = True) -> tuple:
    """Invert `images` into G with the GAN's recipe (pixel loss only) and cache the features.
    Returns (cache, per-image PSNR, reconstructions uint8)."""
    import torch

    from partseg.features import cache_latent_features
    from partseg.imaging import signed_tensor_to_images
    from partseg.imaging import psnr
    from partseg.inversion import invert_images
    from partseg.plumbing.params import as_dict

    if refine:
        settings = dict(as_dict(params.inversion), perceptual_weight=0.0)
        result = invert_images(G, images, init_wplus=init_wplus, seed=params.dataset.seed,
                               **settings)
        wplus, noises = result["wplus"], result.get("noises")
        scores, recon = np.asarray(result["psnr"]), result["reconstructions"]
    else:  # the encoder's guess as it is
        wplus, noises = init_wplus, None
        with torch.no_grad():
            recon = signed_tensor_to_images(G.synthesis(wplus, noise="const"))
        scores = psnr(recon, images)
    cache = cache_latent_features(out_dir, G, wplus, params.features, batch_size=16,
                                  noises=noises)
    return cache, scores, recon


@dataclass
class Representation:
    """Feature caches of the shots (k = the largest) and of the test images, and the test
    reconstruction PSNR and reconstructions where the representation reconstructs images."""
    shot_cache: object
    test_cache: object
    psnr: float | None
    recon: np.ndarray | None


def generator_representation(name: str, folder: Path, shot_images, test_images,
                             inputs: Inputs, params, gan_config: dict) -> Representation:
    """`random` or `vae`: shots and test images put into a generator that is not the GAN."""
    if name == "random":
        G = random_generator(gan_config, params.representations.random_seed)
        starts, refine = {"shots": None, "test": None}, True
    else:
        from partseg.vae.checkpoint import load_vae

        vae, _ = load_vae(inputs.vae / "vae.pt")
        G, refine = vae.decoder, params.representations.vae_refine
        starts = {"shots": vae_start(vae, shot_images), "test": vae_start(vae, test_images)}
    shot_cache, _, _ = inverted_cache(folder / "shots", G, shot_images, params,
                                      init_wplus=starts["shots"], refine=refine)
    test_cache, scores, recon = inverted_cache(folder / "test", G, test_images, params,
                                               init_wplus=starts["test"], refine=refine)
    return Representation(shot_cache, test_cache, float(np.mean(scores)), recon)


def build_representation(name: str, scratch: Path, shot_images, test_images, inputs: Inputs,
                         params, gan_config: dict) -> Representation:
    from partseg.features import FeatureCache

    folder = scratch / name
    if name == "gan":  # the caches the shots and invert_test stages made
        test_dir = inputs.inversions / "test"
        cache = FeatureCache(test_dir / "cache")
        return Representation(FeatureCache(inputs.shots / "cache"), cache,
                              mean_psnr_file(test_dir / "psnr.csv"), cache.images())
    if name == "rgbxy":
        resolution = params.features.resolution
        return Representation(write_rgbxy_cache(folder / "shots", shot_images, resolution),
                              write_rgbxy_cache(folder / "test", test_images, resolution),
                              None, None)
    return generator_representation(name, folder, shot_images, test_images, inputs, params,
                                    gan_config)


# ---- scoring ------------------------------------------------------------------------------

def score(rep: Representation, k: int, shot_masks, test_masks, classes, scratch: Path,
          settings: dict, device) -> tuple[dict, np.ndarray]:
    """(per-class IoU with its mean, predicted labels) of the net trained on the first k shots."""
    from partseg.fewshot.evaluate import first_images_cache, fewshot_scores

    shot_cache = first_images_cache(rep.shot_cache, k, scratch / f"k{k}")
    confusion, predicted = fewshot_scores(shot_cache, shot_masks[:k], rep.test_cache, test_masks,
                                          num_classes=len(classes), settings=settings,
                                          device=device)
    return {**dict(zip(classes, confusion.iou().tolist())), "mean": confusion.miou()}, predicted


def run_representations(inputs: Inputs, params, out: Path) -> None:
    """Build every representation, score it at every k, write the results into `out`."""
    from partseg.data.folder import load_classes
    from partseg.plumbing.device import resolve_device
    from partseg.gan import load_generator
    from partseg.plumbing.params import as_dict

    names, ks = list(params.representations.names), sorted(params.shots.ks)
    check_names(names)
    classes = load_classes(inputs.dataset)
    test_images, test_masks, stems = test_set(inputs.dataset, inputs.inversions / "test")
    shot_images, shot_masks, _ = load_shots(inputs.shots, max(ks))
    gan_config = load_generator(inputs.generator / "generator.pt").config
    settings, device = as_dict(params.train_fewshot), resolve_device()
    scratch = out / "scratch"
    reps, scores, predicted = {}, {}, {}
    for name in names:
        reps[name] = build_representation(name, scratch, shot_images, test_images, inputs,
                                          params, gan_config)
        scores[name] = {}
        for k in ks:
            scores[name][k], predicted[name, k] = score(
                reps[name], k, shot_masks, test_masks, classes, scratch / name, settings, device)
            log(f"[representations] {name}, k = {k}: mIoU {100 * scores[name][k]['mean']:.1f}")
    vae_info = vae_summary(inputs.vae) if "vae" in names else None
    write_outputs(out, scores, reps, predicted, test_images, test_masks, classes, ks, len(stems),
                  vae_info, settings, params)
    for rep in reps.values():  # release the scratch caches' files before deleting them
        rep.shot_cache.close()
        rep.test_cache.close()
    shutil.rmtree(scratch, ignore_errors=True)


def write_outputs(out: Path, scores, reps, predicted, test_images, test_masks, classes, ks,
                  count: int, vae_info, settings: dict, params) -> None:
    from partseg.experiments.shared import write_results

    names, shown = list(scores), params.representations.n_shown
    metrics = {"test_images": count, "ks": ks, "vae": vae_info,
               "representations": {n: {"test_psnr": reps[n].psnr,
                                       **{f"k{k}": scores[n][k] for k in ks}} for n in names}}
    pictures = {"predictions.png": predictions_picture(test_images, test_masks, predicted, names,
                                                       ks, shown, classes),
                "reconstructions.png": reconstructions_picture(test_images, reps, shown)}
    section = section_markdown(scores, reps, classes, ks, count, vae_info, settings,
                               params.representations.vae_refine)
    write_results(out, metrics=metrics, per_class=per_class_frame(scores, classes),
                  pictures=pictures, section=section, index=False)


# ---- tables, pictures, the report section -------------------------------------------------

def per_class_frame(scores: dict, classes: list[str]) -> pd.DataFrame:
    rows = [{"representation": name, "k": k, **{c: iou[c] for c in classes}, "mean": iou["mean"]}
            for name, by_k in scores.items() for k, iou in by_k.items()]
    return pd.DataFrame(rows)


def miou_frame(scores: dict, reps: dict, ks: list[int]) -> pd.DataFrame:
    rows = []
    for name, by_k in scores.items():
        row = {"representation": LABELS[name]}
        row.update({f"mIoU k = {k}": by_k[k]["mean"] for k in ks})
        row["test PSNR (dB)"] = reps[name].psnr if reps[name].psnr is not None else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def _differences(scores: dict, a: str, b: str, ks: list[int]) -> str:
    gaps = [100 * (scores[a][k]["mean"] - scores[b][k]["mean"]) for k in ks]
    return (f" {LABELS[a]} minus {LABELS[b]}: "
            + ", ".join(f"{g:+.1f} at k = {k}" for g, k in zip(gaps, ks)) + ".")


def reading(scores: dict, ks: list[int]) -> str:
    """The measured numbers in words: the ranking at the largest k, the GAN's margin over each
    other representation and the VAE's over the untrained generator at every k, and each
    representation's change from the fewest shots to the most. No verdicts: the reader
    weighs them (the section's first paragraph says how the representations differ)."""
    k_min, k_max = min(ks), max(ks)
    ranked = sorted(scores, key=lambda n: -scores[n][k_max]["mean"])
    text = (f"At k = {k_max} the ranking is "
            + ", ".join(f"{LABELS[n]} {100 * scores[n][k_max]['mean']:.1f}" for n in ranked)
            + " (mIoU %).")
    pairs = [("gan", other) for other in ("vae", "random", "rgbxy")] + [("vae", "random")]
    for a, b in pairs:
        if a in scores and b in scores:
            text += _differences(scores, a, b, ks)
    if len(ks) > 1:
        gains = {n: 100 * (scores[n][k_max]["mean"] - scores[n][k_min]["mean"]) for n in scores}
        text += (f" From k = {k_min} to {k_max}: "
                 + ", ".join(f"{LABELS[n]} {g:+.1f}" for n, g in gains.items()) + ".")
    return text


def vae_sentence(vae_info: dict | None) -> str:
    if not vae_info:
        return ""
    share = ("" if vae_info["fraction"] is None
             else f", {vae_info['fraction']:.0%} of the GAN's training FLOPs")
    encoder = ("" if vae_info.get("encoder_psnr") is None else
               f"; its encoder alone reconstructs the test images at "
               f"{vae_info['encoder_psnr']:.1f} dB")
    return (f" The VAE trained {vae_info['step']} steps of {vae_info['batch_size']} "
            f"images{share} (stage train_vae's record.yaml){encoder}.")


def section_markdown(scores, reps, classes, ks, count, vae_info, settings, vae_refine: bool
                     ) -> str:
    from partseg.report import markdown_table

    table = per_class_frame(scores, classes)
    table["representation"] = table["representation"].map(LABELS)
    refine = ("then refined by the GAN's inversion recipe with the pixel loss alone, as the "
              "VAE has no discriminator for the perceptual term"
              if vae_refine else "the encoder's mean alone, not refined")
    lines = [
        "## Representations: the GAN's features beside a VAE's, an untrained generator's and "
        "RGB + xy", "",
        f"The same few-shot {settings['network']} net (train_fewshot's settings), trained on "
        f"the first k shared shots (k = {', '.join(map(str, ks))}) and scored on the same "
        f"{count} inverted `test` images, reading four pixel representations: the demo GAN's "
        "features (shots: their exact latents; test images: invert_test's inversions, pixel + "
        "discriminator-feature loss); the decoder activations of a VAE trained on the same "
        "images, whose decoder is the GAN's generator architecture read at the same layers "
        f"(shots and test images encoded, {refine}); the same generator architecture with "
        "random weights, shots and test images inverted into it by the same pixel-loss recipe; "
        f"and raw RGB with the pixel's x, y (5 channels). IoU %.{vae_sentence(vae_info)}", "",
        "### Per class", "", markdown_table(table), "",
        "### Mean IoU and reconstruction", "",
        markdown_table(miou_frame(scores, reps, ks)), "",
        "Test PSNR: how well each generator reproduces the test images after inversion "
        "(RGB + xy is the image itself).", "",
        reading(scores, ks), "",
        "![test images, ground truth, each representation's predictions](predictions.png)", "",
        "![test images and each generator's reconstruction](reconstructions.png)", ""]
    return "\n".join(lines)


def predictions_picture(images, truth, predicted: dict, names, ks, shown: int, classes):
    from partseg.visualize import colorize, titled_grid

    rows = []
    for i in range(min(shown, len(images))):
        rows.append([images[i], colorize(truth[i])]
                    + [colorize(predicted[n, k][i]) for n in names for k in ks])
    titles = ["image", "truth"] + [f"{n} k{k}" for n in names for k in ks]
    return titled_grid(rows, titles, class_names=classes)


def reconstructions_picture(images, reps: dict, shown: int):
    from partseg.visualize import titled_grid

    names = [n for n, rep in reps.items() if rep.recon is not None]
    rows = [[images[i]] + [reps[n].recon[i] for n in names] for i in range(min(shown, len(images)))]
    return titled_grid(rows, ["image"] + names)


def vae_summary(vae_dir: Path) -> dict:
    """Steps and the fraction of the GAN's training FLOPs the VAE received (from its record:
    train_vae keeps the adopted VAE's record under `record`)."""
    import yaml

    from partseg.vae.checkpoint import load_vae

    _, info = load_vae(vae_dir / "vae.pt")
    record_path = vae_dir / "record.yaml"
    record = yaml.safe_load(record_path.read_text()) if record_path.is_file() else {}
    record = record.get("record") or record
    compute = (record or {}).get("compute") or {}
    metrics_path = vae_dir / "metrics.json"
    encoder_psnr = (load_json(metrics_path).get("test_psnr_encoder")
                    if metrics_path.is_file() else None)
    return {"step": info["step"], "batch_size": info["options"]["batch_size"],
            "fraction": compute.get("gan_compute_fraction"),
            "wall_hours": (record or {}).get("wall_hours"), "encoder_psnr": encoder_psnr}
