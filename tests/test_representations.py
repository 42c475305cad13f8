"""The representations experiment: the generator-decoder VAE, its training and shipping,
the RGB + xy features, and the stage end to end on tiny inputs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import tiny_generator, two_squares
from partseg.plumbing.errors import PartsegError
from partseg.features import FeatureExtractor, write_feature_cache
from partseg.gan import Generator, save_checkpoint
from partseg.plumbing.io import save_json, save_png, save_torch
from partseg.plumbing.params import parse_params
from partseg.experiments.representations import reading, rgbxy_features
from partseg.plumbing.snapshots import snapshot_steps
from partseg.vae import (GeneratorVAE, load_vae, ship_vae, step_flops, train_vae,
                         training_options)
from stages.representations import build

TINY = dict(size=16, style_dim=16, n_mlp=2, channel_base=128, channel_max=16)
REPO = Path(__file__).resolve().parents[1]


def tiny_options(**overrides) -> dict:
    return training_options(TINY, **{"batch_size": 4, "steps": 4, "snapshot_every": 2,
                                     **overrides})


def tiny_images(n: int = 8, size: int = 16) -> np.ndarray:
    return two_squares(n, size, seed=3)[0]


# ---- the model ----------------------------------------------------------------------------

def test_vae_shapes_and_decoder_is_the_generator():
    vae = GeneratorVAE(TINY)
    images = torch.rand(3, 3, 16, 16) * 2 - 1
    mu, logvar = vae.encode(images)
    assert mu.shape == logvar.shape == (3, 16)
    assert vae.decode(mu).shape == (3, 3, 16, 16)
    assert vae.wplus(mu).shape == (3, vae.decoder.n_latent, 16)
    # The same layers as the GAN's generator of this config: one FeatureExtractor reads both.
    assert vae.decoder.layer_table() == Generator(**TINY).layer_table()
    features, _ = FeatureExtractor(vae.decoder, "all", 16)(vae.wplus(mu))
    gan_extractor = FeatureExtractor(Generator(**TINY), "all", 16)
    assert features.shape == (3, gan_extractor.num_channels, 16, 16)


def test_vae_loss_is_the_negative_elbo_per_value():
    torch.manual_seed(0)
    vae = GeneratorVAE(TINY, sigma=0.5, kl_weight=0.25)
    images = torch.rand(4, 3, 16, 16) * 2 - 1
    loss, parts = vae.loss(images)
    assert loss.ndim == 0 and torch.isfinite(loss)
    expected = (parts["nll"] + 0.25 * parts["kl"]) / images[0].numel()
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-5)
    assert float(parts["kl"]) >= 0


def test_training_lowers_the_loss():
    images = tiny_images(4)
    state_start = GeneratorVAE(TINY)
    batch = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    torch.manual_seed(1)
    with torch.no_grad():
        before = float(state_start.loss(batch)[0])
    from partseg.vae.train import VAETraining, train_step

    state = VAETraining(tiny_options(steps=15))
    data = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    for _ in range(15):
        train_step(state, data)
    torch.manual_seed(1)
    with torch.no_grad():
        after = float(state.vae.loss(batch)[0])
    assert after < 0.7 * before, (before, after)


# ---- training, resuming, shipping ---------------------------------------------------------

def test_resumed_training_equals_an_uninterrupted_run(tmp_path):
    images = tiny_images()
    straight = train_vae(images, tmp_path / "a", tiny_options())
    train_vae(images, tmp_path / "b", tiny_options(steps=2))
    resumed = train_vae(images, tmp_path / "b", tiny_options())
    assert straight.step == resumed.step == 4
    for key, value in straight.vae.state_dict().items():
        assert torch.equal(value, resumed.vae.state_dict()[key]), key
    assert [r["step"] for r in resumed.log_rows] == [r["step"] for r in straight.log_rows]
    assert snapshot_steps(tmp_path / "b") == [2, 4]
    assert (tmp_path / "b" / "grid-000004.png").is_file()


def test_time_budget_stops_with_a_snapshot(tmp_path):
    state = train_vae(tiny_images(), tmp_path, tiny_options(steps=100), max_minutes=0.0)
    assert state.step == 1
    assert snapshot_steps(tmp_path) == [1]


def test_snapshots_of_other_options_are_refused(tmp_path):
    train_vae(tiny_images(), tmp_path, tiny_options(steps=2))
    with pytest.raises(PartsegError, match="lr"):
        train_vae(tiny_images(), tmp_path, tiny_options(steps=4, lr=0.01))


def test_ship_and_load(tmp_path):
    train_vae(tiny_images(), tmp_path / "snaps", tiny_options(steps=2))
    record = ship_vae(tmp_path / "snaps", tmp_path / "out", "the command",
                      {"trained_on": {"source": "synthetic"}}, gan_record=tmp_path / "none.yaml")
    assert record["steps"] == 2 and record["command"] == "the command"
    for name in ("vae.pt", "record.yaml", "samples.png", "training_log.tsv", "snapshot.pt"):
        assert (tmp_path / "out" / name).is_file(), name
    saved = yaml.safe_load((tmp_path / "out" / "record.yaml").read_text())
    assert saved["trained_on"] == {"source": "synthetic"} and len(saved["sha256"]) == 64
    vae, info = load_vae(tmp_path / "out" / "vae.pt")
    assert info["step"] == 2 and not vae.training
    with pytest.raises(PartsegError, match="not found"):
        load_vae(tmp_path / "missing.pt")


def test_step_flops_count_both_models():
    gan_options = dict(TINY, batch_size=4, r1_gamma=0.05, r1_every=4, pl_weight=0.0,
                       pl_every=4, mixing_prob=0.9, ema_kimg=0.01, augment="none", seed=0,
                       lr=0.002, steps=1, snapshot_every=1, device="cpu")
    flops = step_flops(tiny_options(), gan_options)
    # A GAN step runs the generator twice and the discriminator three times: more than one
    # encoder + decoder pass.
    assert 0 < flops["vae"] < flops["gan"]


# ---- RGB + xy -----------------------------------------------------------------------------

def test_rgbxy_features():
    images = np.zeros((2, 8, 8, 3), np.uint8)
    images[1] = 255
    features = rgbxy_features(images, 8)
    assert features.shape == (2, 8, 8, 5)
    assert np.allclose(features[0, ..., :3], -1) and np.allclose(features[1, ..., :3], 1)
    x, y = features[0, ..., 3], features[0, ..., 4]
    assert np.all(np.diff(x, axis=1) > 0) and np.allclose(np.diff(x, axis=0), 0)
    assert np.all(np.diff(y, axis=0) > 0) and np.allclose(x + x[:, ::-1], 0)
    half = rgbxy_features(np.repeat(images, 1, 0), 4)
    assert half.shape == (2, 4, 4, 5) and np.allclose(half[1, ..., :3], 1)


# ---- the report section -------------------------------------------------------------------

def test_the_reading_states_the_numbers_whichever_way_they_fall():
    # Untrained weights ahead of the GAN at k = 10: the reading says so, with no verdict.
    scores = {"gan": {1: {"mean": 0.30}, 10: {"mean": 0.40}},
              "vae": {1: {"mean": 0.35}, 10: {"mean": 0.33}},
              "random": {1: {"mean": 0.20}, 10: {"mean": 0.50}}}
    text = reading(scores, [1, 10])
    assert ("ranking is generator, random weights 50.0, GAN (trained) 40.0, VAE decoder 33.0"
            in text)
    assert "GAN (trained) minus VAE decoder: -5.0 at k = 1, +7.0 at k = 10." in text
    assert "VAE decoder minus generator, random weights: +15.0 at k = 1, -17.0 at k = 10." in text
    assert "From k = 1 to 10: GAN (trained) +10.0, VAE decoder -2.0" in text
    for verdict in ("favour", "matters", "lower bound", "most"):
        assert verdict not in text


# ---- the stage ----------------------------------------------------------------------------

def stage_inputs(tmp_path: Path) -> argparse.Namespace:
    """A 3-class folder dataset, a tiny GAN, its shots and test inversions, a tiny VAE."""
    generator = tiny_generator(16)
    save_checkpoint(tmp_path / "gan" / "generator.pt", g_ema=generator)
    dataset = tmp_path / "dataset"
    images, masks = two_squares(3, 16, seed=5)
    for i in range(3):
        save_png(images[i], dataset / "test" / "images" / f"t{i}.png")
        save_png(masks[i], dataset / "test" / "masks" / f"t{i}.png")
    (dataset / "classes.yaml").write_text("[background, red, green]\n")
    extractor = FeatureExtractor(generator, "all", 16)
    inversions = tmp_path / "invert_test" / "test"
    write_feature_cache(inversions / "cache", extractor, torch.randn(3, 16), batch_size=4,
                        generator_checksum="tiny", params={}, show_progress=False)
    save_json({"stems": ["t0", "t1", "t2"]}, inversions / "stems.json")
    (inversions / "psnr.csv").write_text("stem,psnr\nt0,20\nt1,22\nt2,24\n")
    shots = tmp_path / "shots"
    cache = write_feature_cache(shots / "cache", extractor, torch.randn(2, 16), batch_size=4,
                                generator_checksum="tiny", params={}, show_progress=False)
    for stem, picture in zip(["s0", "s1"], cache.images()):
        save_png(picture, shots / "images" / f"{stem}.png")
    np.save(shots / "masks.npy", two_squares(2, 16, seed=6)[1])
    save_json({"stems": ["s0", "s1"], "ks": [1, 2]}, shots / "annotations.json")
    vae_dir = tmp_path / "train_vae"
    torch.manual_seed(0)
    save_torch({"vae": GeneratorVAE(TINY).state_dict(), "options": tiny_options(), "step": 0},
               vae_dir / "vae.pt")
    return argparse.Namespace(dataset=str(dataset), generator=str(tmp_path / "gan"),
                              shots=str(shots), inversions=str(tmp_path / "invert_test"),
                              vae=str(vae_dir), out=str(tmp_path / "out"))


def tiny_params(**representations):
    raw = yaml.safe_load((REPO / "tests" / "tiny_params.yaml").read_text())
    raw["shots"] = {"ks": [1, 2]}
    raw["features"] = {"layers": "all", "resolution": 16}
    raw["representations"] = {"n_shown": 2, **representations}
    return parse_params(raw)


def test_stage_on_tiny_inputs(tmp_path):
    args = stage_inputs(tmp_path)
    build(args, tiny_params())
    out = Path(args.out)
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics["representations"]) == ["gan", "vae", "random", "rgbxy"]
    for name, scores in metrics["representations"].items():
        assert set(scores) == {"test_psnr", "k1", "k2"}, name
        assert 0.0 <= scores["k2"]["mean"] <= 1.0
    assert metrics["representations"]["gan"]["test_psnr"] == pytest.approx(22.0)
    assert metrics["representations"]["rgbxy"]["test_psnr"] is None
    section = (out / "section.md").read_text()
    assert section.startswith("## ") and "RGB + xy" in section and "predictions.png" in section
    for name in ("per_class.csv", "predictions.png", "reconstructions.png"):
        assert (out / name).is_file(), name
    assert not (out / "scratch").exists()


def test_a_bad_representation_name_names_the_key():
    with pytest.raises(PartsegError, match="representations.names"):
        tiny_params(names=["gan", "vgg"])
