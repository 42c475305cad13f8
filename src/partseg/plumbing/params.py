"""params.yaml: one typed section per stage, validated on load.

Each section is a dataclass; `field(metadata=...)` carries the allowed range or choices and
the one-line help shown in errors. `load_params()` checks every key: an unknown key, a wrong
type or a value out of range stops with a message naming the key (`train_fewshot.lr: ...`).
Stages read only their own section (and `data`/`inversion`, which several stages share), and
dvc.yaml / the Snakefile declare exactly those sections as the stage's params.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from partseg.plumbing.errors import PartsegError


def knob(default: Any, help: str, *, low: float | None = None, high: float | None = None,
         choices: tuple | None = None, min_items: int | None = None) -> Any:
    """A params field with its help text and allowed values (`min_items`: of a list)."""
    meta = {"help": help, "low": low, "high": high, "choices": choices, "min_items": min_items}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class DataParams:
    source: str = knob("synthetic", "where the images come from",
                       choices=("synthetic", "folder", "celebamask"))
    path: str = knob("data/user", "the folder dataset or CelebAMask-HQ root (unused for synthetic)")
    resolution: int = knob(32, "working resolution in pixels (images are resized to it)",
                           low=32, high=1024)
    protocol: str = knob("face10", "face classes: face10 (the source's own, 10 for faces) or "
                         "face4 (background, eye, mouth, nose); merged at the dataset stage",
                         choices=("face10", "face4"))


@dataclass
class DatasetParams:
    seed: int = knob(0, "seed of the synthetic generator and of the split assignment", low=0)
    n_train: int = knob(10000, "unlabelled images for the GAN", low=1)
    n_labeled: int = knob(500, "labelled pool: annotation stand-ins and supervised baselines", low=1)
    n_test: int = knob(500, "test images with masks", low=1)
    n_test_shifted: int = knob(300, "shifted test images (scale, rotation, several faces)", low=1)


@dataclass
class TrainGanParams:
    checkpoint: str | None = knob("data/pretrained/demo_gan/generator.pt",
                                  "pretrained generator (a rosinality or partseg .pt, or an "
                                  "NVlabs .pkl; the shipped demo GAN by default); null trains "
                                  "one from scratch")
    style_dim: int = knob(128, "dimension of z and w", low=8, high=1024)
    n_mlp: int = knob(4, "mapping network layers", low=1, high=8)
    channel_base: int = knob(1024, "channels at resolution r are min(channel_base / r, channel_max)",
                             low=64)
    channel_max: int = knob(128, "widest layer (512 in the published models)", low=8)
    batch_size: int = knob(16, "images per step", low=1, high=256)
    steps: int = knob(4000, "training steps (resume continues up to this count)", low=1)
    lr: float = knob(0.002, "Adam learning rate of G and D", low=0.0, high=1.0)
    r1_gamma: float = knob(0.05, "R1 penalty weight", low=0.0)
    r1_every: int = knob(16, "lazy R1: penalty every N steps", low=1)
    pl_weight: float = knob(0.0, "path-length regularisation weight (0 = off)", low=0.0)
    pl_every: int = knob(4, "lazy path-length regularisation interval", low=1)
    mixing_prob: float = knob(0.9, "style mixing probability", low=0.0, high=1.0)
    ema_kimg: float = knob(2.5, "EMA half-life of the generator, thousands of images", low=0.0)
    augment: str = knob("none", "differentiable augmentation for small datasets",
                        choices=("none", "diffaugment"))
    snapshot_every: int = knob(250, "steps between snapshots (resume point, sample grid)", low=1)
    seed: int = knob(0, "training seed", low=0)


@dataclass
class SampleParams:
    n: int = knob(32, "generated images exported for annotation (at least annotate.k)", low=1)
    seed: int = knob(0, "seed of the latents", low=0)
    truncation: float = knob(1.0, "truncation psi (1 = none, as the paper)", low=0.0, high=1.0)


@dataclass
class AnnotateParams:
    source: str = knob("simulated", "who annotates the k images",
                       choices=("manual", "inverted", "simulated"))
    k: int = knob(1, "number of annotated images (the shots)", low=1)
    manual_dir: str = knob("data/annotations", "where `partseg annotate` saves masks (manual)")
    pick: str | list[str] = knob("auto", "which candidates become the shots: auto (most parts "
                                 "shown / most realistic), first, or a list of sample stems")


@dataclass
class InversionParams:
    space: str = knob("wplus", "latent space optimised", choices=("w", "wplus"))
    steps: int = knob(200, "optimisation steps per batch", low=1)
    lr: float = knob(0.05, "peak learning rate (cosine ramp down)", low=0.0)
    batch_size: int = knob(50, "images inverted together", low=1)
    pixel_weight: float = knob(1.0, "weight of the pixel MSE", low=0.0)
    perceptual_weight: float = knob(0.1, "weight of the discriminator-feature distance", low=0.0)
    noise_reg_weight: float = knob(1e5, "noise map regularisation", low=0.0)
    optimize_noise: bool = knob(True, "optimise per-image noise maps (they carry fine detail)")


@dataclass
class FeaturesParams:
    layers: str | list[str] = knob("all", "all | low | mid | high, or a list of layer names")
    resolution: int = knob(32, "feature map size (at most the generator size)", low=4, high=1024)


@dataclass
class TrainFewshotParams:
    network: str = knob("mlp", "few-shot net: per-pixel (linear, mlp, mlp2), dilated CNN (cnn: "
                        "the paper's 61 px field; cnn_scaled: field scaled to the resolution) "
                        "or a mixed ensemble",
                        choices=("linear", "mlp", "mlp2", "cnn", "cnn_scaled", "mlp+cnn",
                                 "mlp+cnn_scaled"))
    ensemble: int = knob(1, "members; their disagreement is the uncertainty map", low=1, high=32)
    steps: int = knob(300, "optimiser steps", low=1)
    batch_pixels: int = knob(4096, "pixels per step (linear/MLP)", low=16)
    tile: int = knob(32, "tile size per step (CNN)", low=8)
    lr: float = knob(0.001, "Adam learning rate", low=0.0)
    weight_decay: float = knob(0.001, "Adam weight decay", low=0.0)
    class_balance: bool = knob(True, "weight the loss by inverse class frequency")
    seed: int = knob(0, "seed", low=0)


@dataclass
class InvertTestParams:
    splits: list[str] = knob(["test", "test_shifted"], "dataset splits to invert", min_items=1)
    n_images: int = knob(50, "first N images of each split (inversion is slow)", low=1)


@dataclass
class SynthesizeParams:
    shards: list[int] = knob([0, 1], "shard ids; one job each, run in parallel", low=0,
                             min_items=1)
    images_per_shard: int = knob(1000, "generated images per shard", low=1)
    batch_size: int = knob(50, "generator batch", low=1)
    truncation: float = knob(1.0, "truncation psi", low=0.0, high=1.0)
    drop_uncertain: float = knob(0.0, "fraction of most uncertain images dropped (ensemble)",
                                 low=0.0, high=0.99)
    seed: int = knob(1000, "base seed; shard i uses seed + i", low=0)


@dataclass
class AugmentParams:
    scale_min: float = knob(0.5, "smallest random scale", low=0.05)
    scale_max: float = knob(2.0, "largest random scale", low=0.05)
    rotation: float = knob(10.0, "max rotation, degrees", low=0.0, high=180.0)
    translate: float = knob(0.25, "max translation, fraction of the image", low=0.0, high=1.0)
    flip: bool = knob(True, "random horizontal flip")
    color_jitter: float = knob(0.1, "brightness/contrast/saturation jitter strength", low=0.0, high=1.0)


@dataclass
class UnetParams:
    base_channels: int = knob(16, "channels of the first UNet level", low=4)
    depth: int = knob(3, "down/up-sampling levels", low=1, high=6)


@dataclass
class TrainAutoshotParams:
    unet: UnetParams = field(default_factory=UnetParams, metadata={"help": "segmenter architecture"})
    augment: AugmentParams = field(default_factory=AugmentParams,
                                   metadata={"help": "geometric and colour augmentation"})
    steps: int = knob(1000, "optimiser steps (with self-training, the teacher's; README "
                            "\"Ablation\")", low=1)
    batch_size: int = knob(32, "images per step", low=1)
    lr: float = knob(0.003, "Adam peak learning rate (warm-up, cosine decay)", low=0.0)
    weight_decay: float = knob(0.0001, "Adam weight decay", low=0.0)
    class_balance_power: float = knob(0.5, "loss weight of a class ~ (1 / its pixel frequency) "
                                           "** power; 0 = plain cross-entropy", low=0.0)
    self_train_images: int = knob(10000, "self-training: the UNet labels this many real `train` "
                                     "images and a new UNet learns from its confident pixels; 0 = off",
                                  low=0)
    self_train_steps: int = knob(0, "self-training: the new UNet's optimiser steps; 0 = `steps`",
                                 low=0)
    self_train_confidence: float = knob(0.9, "self-training: a pixel is kept when the UNet's top "
                                             "probability is at least this", low=0.0, high=1.0)
    self_train_class_portion: float = knob(
        0.0, "self-training: also keep this fraction of the pixels predicted as each class, its "
             "most confident ones (class-balanced, as in CBST), so thin parts are not left out "
             "(worse on the demo: README 'Ablation'); 0 = the confidence threshold alone",
        low=0.0, high=1.0)
    prior_correction: float = knob(
        1.0, "strength s of the prior correction: the final UNet's logits minus s * log(the "
             "class weights of the synthetic set's loss), folded into its head (removes the "
             "tilt towards rare classes that class_balance_power gives; README 'Ablation'); "
             "0 = off", low=0.0)
    seed: int = knob(0, "seed", low=0)


def _annotator_augment() -> AugmentParams:
    # Milder than auto-shot's: the annotator labels portraits like the ones it learns from.
    return AugmentParams(scale_min=0.8, scale_max=1.25, rotation=10.0, translate=0.1)


@dataclass
class TrainAnnotatorParams:
    checkpoint: str | None = knob("data/pretrained/annotator/annotator.pt",
                                  "a trained annotator to adopt (the shipped one by default; "
                                  "null = train it here, about an hour on 1 CPU thread)")
    n_images: int = knob(20000, "freshly rendered demo faces it learns from", low=1)
    unet: UnetParams = field(default_factory=UnetParams, metadata={"help": "its architecture"})
    augment: AugmentParams = field(default_factory=_annotator_augment,
                                   metadata={"help": "its augmentation"})
    steps: int = knob(6000, "optimiser steps", low=1)
    batch_size: int = knob(32, "images per step", low=1)
    lr: float = knob(0.002, "Adam learning rate", low=0.0)
    weight_decay: float = knob(0.0001, "Adam weight decay", low=0.0)
    seed: int = knob(0, "seed of the rendered faces and of training", low=0)


@dataclass
class BaselinesParams:
    label_counts: list[int] = knob([1, 10], "few-label UNets: number of labelled real images",
                                   low=1)
    steps: int = knob(2000, "optimiser steps of the all-label UNet (same as auto-shot by "
                            "default; bench/bench_unet.py --convergence)", low=1)
    steps_few: int = knob(1000, "optimiser steps of the few-label UNets (label_counts): at "
                                "10 images they plateau by 1000", low=1)
    batch_size_few: int = knob(16, "images per step of the few-label UNets: with 1 or 10 "
                                   "images a batch of 32 only repeats them (bench/bench_unet.py "
                                   "--batch-size 16: the same mIoU, within 0.5, at half the cost)",
                               low=1)
    class_balance_power: float = knob(0.0, "as train_autoshot.class_balance_power; clean labels "
                                           "need none (0.5 lowers the all-label UNet from 71.8 "
                                           "to 67.2 test mIoU, bench/bench_unet.py)", low=0.0)
    seed: int = knob(0, "seed", low=0)


@dataclass
class EvaluateParams:
    splits: list[str] = knob(["test", "test_shifted"], "splits evaluated", min_items=1)
    n_qualitative: int = knob(6, "images in the qualitative grid", low=1)
    flip: bool = knob(True, "test-time flip: average each UNet's probabilities of the image and "
                      "its mirror image (classes must be mirror-symmetric, as in face10)")


# ---- The paper's other experiments (experiments/, outside the default run). Each experiment
# stage has its section here, named as the stage; the default run reads none of them.

@dataclass
class ShotsParams:
    ks: list[int] = knob([1, 10], "numbers of shots the experiments compare; the shots of a smaller "
                         "k are the first of the larger (the auto pick's order)", low=1)


@dataclass
class ProtocolsParams:
    names: list[str] = knob(["face10", "face4"], "face protocols compared (the shots' and the "
                            "test images' face10 masks merged into each)",
                            choices=("face10", "face4"))


# >>> representations experiment (train_vae, representations)
@dataclass
class TrainVaeParams:
    checkpoint: str | None = knob("data/pretrained/demo_vae/vae.pt",
                                  "a trained VAE to adopt (the shipped demo VAE by default; "
                                  "null = train one here with the keys below)")
    steps: int = knob(72800, "optimiser steps; 72800 batches of 16 cost the FLOPs of the demo "
                             "GAN's 35000 steps (stages/train_vae.py)", low=1)
    batch_size: int = knob(16, "images per step (the GAN's)", low=1)
    lr: float = knob(0.002, "Adam learning rate (betas 0.9, 0.99)", low=0.0)
    sigma: float = knob(0.1, "fixed std of the Gaussian pixel likelihood, images in [-1, 1]",
                        low=1e-4)
    kl_weight: float = knob(1.0, "weight of the KL term (1 = the ELBO)", low=0.0)
    seed: int = knob(0, "seed of the weights and of the batches", low=0)


@dataclass
class RepresentationsParams:
    names: list[str] = knob(["gan", "vae", "random", "rgbxy"],
                            "representations compared: gan (the GAN's pixel features), vae (its "
                            "decoder's), random (the generator untrained), rgbxy (pixels and "
                            "coordinates)", choices=("gan", "vae", "random", "rgbxy"))
    vae_refine: bool = knob(True, "refine the VAE encoder's latents by inversion (the GAN's "
                                  "recipe, pixel loss); false: the encoder's mean alone")
    random_seed: int = knob(0, "seed of the untrained generator's weights", low=0)
    n_shown: int = knob(4, "test images in the predictions picture", low=1)
# <<< representations experiment

# >>> video experiment (video_clip, video)
@dataclass
class VideoClipParams:
    frames: int = knob(72, "frames of the demo clip; the face's path (turn, grow, shrink, leave, "
                       "come back) is spread over them", low=16, high=5000)
    fps: float = knob(12.0, "frame rate of clip.mp4 and of the overlay videos", low=1.0,
                      high=120.0)
    seed: int = knob(0, "seed of the face, background, light and sensor noise", low=0)


@dataclass
class VideoParams:
    steps_first: int = knob(200, "inversion steps of the first frame (cold: from the mean "
                            "latent), and of every frame in the cold baseline", low=1)
    steps_warm: int = knob(30, "inversion steps of each later frame, started from the previous "
                           "frame's latents and noise maps", low=1)
    lr_warm: float = knob(0.05, "peak learning rate of the warm-started inversions "
                          "(inversion.lr is the cold one's)", low=0.0)
    cold_baseline: bool = knob(True, "also invert every frame cold (steps_first each, batched), "
                               "to measure what the warm start changes")
    strip_frames: int = knob(8, "frames shown in strip.png, evenly spaced", low=2, high=32)
    seed: int = knob(0, "seed of the inversions' random latent perturbation (cold starts)", low=0)
# <<< video experiment

# >>> partitions experiment (partitions)
@dataclass
class PartitionsParams:
    # The protocol names of partseg.data.protocols.known_protocols(), spelled out so that
    # loading params never imports the data code (tests/test_partitions.py checks they agree).
    names: list[str] = knob(["face10", "grid4", "bands3"], "part definitions compared on the same "
                            "inverted shot: face10 (the face classes) and partitions of the face "
                            "drawn by the demo generator (grid4: a 2x2 grid; bands3: concentric "
                            "bands)", choices=("face10", "face4", "grid4", "bands3"))
    shot: str = knob("auto", "the one shot, a real `labeled` image inverted into the GAN: auto "
                     "(of the first `candidates`, the best inverted one that shows every part "
                     "of every protocol) or a stem such as '000002'")
    candidates: int = knob(16, "labelled images inverted for shot: auto (one batch: about the "
                           "time of one)", low=1, high=100)
# <<< partitions experiment


@dataclass
class Params:
    data: DataParams = field(default_factory=DataParams)
    dataset: DatasetParams = field(default_factory=DatasetParams)
    train_gan: TrainGanParams = field(default_factory=TrainGanParams)
    sample: SampleParams = field(default_factory=SampleParams)
    train_annotator: TrainAnnotatorParams = field(default_factory=TrainAnnotatorParams)
    annotate: AnnotateParams = field(default_factory=AnnotateParams)
    inversion: InversionParams = field(default_factory=InversionParams)
    features: FeaturesParams = field(default_factory=FeaturesParams)
    train_fewshot: TrainFewshotParams = field(default_factory=TrainFewshotParams)
    invert_test: InvertTestParams = field(default_factory=InvertTestParams)
    synthesize: SynthesizeParams = field(default_factory=SynthesizeParams)
    train_autoshot: TrainAutoshotParams = field(default_factory=TrainAutoshotParams)
    baselines: BaselinesParams = field(default_factory=BaselinesParams)
    evaluate: EvaluateParams = field(default_factory=EvaluateParams)
    # the experiments' sections
    shots: ShotsParams = field(default_factory=ShotsParams)
    protocols: ProtocolsParams = field(default_factory=ProtocolsParams)
    # >>> experiment sections (one line per section)
    train_vae: TrainVaeParams = field(default_factory=TrainVaeParams)
    representations: RepresentationsParams = field(default_factory=RepresentationsParams)
    partitions: PartitionsParams = field(default_factory=PartitionsParams)
    video_clip: VideoClipParams = field(default_factory=VideoClipParams)
    video: VideoParams = field(default_factory=VideoParams)
    # <<< experiment sections


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _check_value(key: str, value: Any, tp: Any) -> Any:
    """Return `value` converted to `tp`, or raise PartsegError naming `key`."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in typing.get_args(tp):
            if option is type(None):
                if value is None:
                    return None
                continue
            try:
                return _check_value(key, value, option)
            except PartsegError as error:
                errors.append(str(error))
        allowed = " or ".join(_type_name(t) for t in typing.get_args(tp))
        raise PartsegError(f"params key {key}: expected {allowed}, got {value!r}")
    if origin is list:
        (item_type,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise PartsegError(f"params key {key}: expected a list of {_type_name(item_type)}, "
                               f"got {value!r}")
        return [_check_value(f"{key}[{i}]", v, item_type) for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        return _build_section(key, value, tp)
    if tp is bool:
        if not isinstance(value, bool):
            raise PartsegError(f"params key {key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise PartsegError(f"params key {key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise PartsegError(f"params key {key}: expected a number, got {value!r}")
        if not math.isfinite(value):  # YAML's .nan and .inf are floats too
            raise PartsegError(f"params key {key}: expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise PartsegError(f"params key {key}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported params type {tp} for {key}")


def _check_range(key: str, value: Any, meta: dict) -> None:
    choices, low, high = meta.get("choices"), meta.get("low"), meta.get("high")
    values = value if isinstance(value, list) else [value]
    if isinstance(value, list) and len(value) < (meta.get("min_items") or 0):
        raise PartsegError(f"params key {key}: needs at least {meta['min_items']} item(s), "
                           "got an empty list")
    for item in values:
        if choices is not None and item not in choices:
            raise PartsegError(f"params key {key}: {item!r} is not one of {', '.join(map(str, choices))}")
        if isinstance(item, (int, float)) and not isinstance(item, bool):
            if low is not None and item < low:
                raise PartsegError(f"params key {key}: {item} is below the minimum {low}")
            if high is not None and item > high:
                raise PartsegError(f"params key {key}: {item} is above the maximum {high}")


def _build_section(prefix: str, raw: Any, cls: type) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise PartsegError(f"params key {prefix}: expected a mapping of keys, got {raw!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    for name in raw:
        if name not in known:
            where = f"{prefix}.{name}" if prefix else str(name)
            raise PartsegError(f"unknown params key {where} (known keys: {', '.join(known)})")
    values = {}
    for name, spec in known.items():
        if name not in raw:
            continue
        key = f"{prefix}.{name}" if prefix else name
        values[name] = _check_value(key, raw[name], hints[name])
        _check_range(key, values[name], dict(spec.metadata))
    return cls(**values)


def _check_consistency(params: Params) -> None:
    """Rules that involve several keys."""
    if params.sample.n < params.annotate.k and params.annotate.source != "inverted":
        raise PartsegError(f"params key annotate.k: {params.annotate.k} shots need at least as many "
                           f"samples, but sample.n is {params.sample.n}")
    if params.features.resolution > params.data.resolution:
        raise PartsegError(f"params key features.resolution: {params.features.resolution} is larger "
                           f"than data.resolution ({params.data.resolution})")
    if params.annotate.source == "simulated" and params.data.source != "synthetic":
        raise PartsegError("params key annotate.source: 'simulated' stands in for a person on the "
                           "built-in demo data only; with your own data use 'manual' or 'inverted'")
    pick = params.annotate.pick
    if isinstance(pick, str) and pick not in ("auto", "first"):
        raise PartsegError(f"params key annotate.pick: {pick!r} is not one of auto, first, or a "
                           f"list of sample stems such as [sample_004]")
    res = params.data.resolution
    if res & (res - 1):
        raise PartsegError(f"params key data.resolution: {res} must be a power of two")
    for section in ("train_autoshot", "train_annotator"):
        aug = getattr(params, section).augment
        if aug.scale_min > aug.scale_max:
            raise PartsegError(f"params key {section}.augment.scale_min: {aug.scale_min} is larger "
                               f"than scale_max ({aug.scale_max}); the range must be ordered")
    if len(set(params.synthesize.shards)) != len(params.synthesize.shards):
        raise PartsegError("params key synthesize.shards: shard ids must be unique")
    _check_splits(params)
    _check_label_counts(params)


# The splits each built-in source writes (a folder dataset has the splits of its folders:
# `partseg check` compares those).
SOURCE_SPLITS = {"synthetic": ("train", "labeled", "test", "test_shifted"),
                 "celebamask": ("train", "labeled", "test")}
# Splits a stage may name although a source lacks them (skipped with a note, e.g. CelebAMask-HQ
# has no test_shifted), so one params.yaml serves every source.
STANDARD_SPLITS = ("train", "labeled", "test", "test_shifted")


def _check_splits(params: Params) -> None:
    """evaluate.splits / invert_test.splits: a typo would silently evaluate nothing."""
    for key in ("evaluate.splits", "invert_test.splits"):
        section, name = key.split(".")
        for split in getattr(getattr(params, section), name):
            if params.data.source != "folder" and split not in STANDARD_SPLITS:
                raise PartsegError(f"params key {key}: {split!r} is not a split of the "
                                   f"{params.data.source} dataset (its splits: "
                                   f"{', '.join(SOURCE_SPLITS[params.data.source])})")
            if not split or split.startswith(".") or "/" in split or "\\" in split:
                raise PartsegError(f"params key {key}: {split!r} is not a split folder name")


def _check_label_counts(params: Params) -> None:
    """baselines.label_counts: at most the labelled images the built-in sources write (a folder
    dataset's count is checked by the baselines stage, which reads it)."""
    if params.data.source == "folder":
        return
    for count in params.baselines.label_counts:
        if count > params.dataset.n_labeled:
            raise PartsegError(f"params key baselines.label_counts: {count} labelled images, but "
                               f"the labeled split has dataset.n_labeled = "
                               f"{params.dataset.n_labeled}; use at most that")


def parse_params(raw: Any, source: str = "params.yaml") -> Params:
    """Validate a params mapping (as loaded from YAML) into typed sections."""
    if not isinstance(raw, dict):
        raise PartsegError(f"{source}: expected a mapping of stage sections at the top level")
    params = _build_section("", raw, Params)
    _check_consistency(params)
    return params


def load_params(path: str | Path = "params.yaml") -> Params:
    """Load and validate params.yaml; errors name the file and the key."""
    from partseg.plumbing.io import load_yaml

    path = Path(path)
    if not path.exists():
        raise PartsegError(f"{path}: params file not found")
    raw = load_yaml(path)  # refuses a folder, bad YAML and a key written twice, naming the file
    try:
        return parse_params(raw or {}, str(path))
    except PartsegError as error:
        named = str(error).startswith(f"{path}:")  # parse_params names the file itself
        raise PartsegError(str(error) if named else f"{path}: {error}") from None


def as_dict(section: Any) -> dict:
    """A section as a plain dict (for saving beside outputs)."""
    return dataclasses.asdict(section)
