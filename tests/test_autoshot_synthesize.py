"""Synthesizing a shard: stored logits are the few-shot net's, reproducible, uncertainty filtering.

Stand-ins with the real call signatures replace the generator, the feature extractor and the
few-shot nets, so these tests pin down the shard logic alone and stay fast.
"""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from partseg.autoshot.synthesize import synthesize_shard
from partseg.gan.sampling import seeded_z
from partseg.imaging import signed_tensor_to_images

SIZE, FEATURE_SIZE, STYLE_DIM, N_LATENT, CHANNELS, CLASSES = 16, 8, 6, 4, 5, 3


class StandInGenerator(nn.Module):
    """mapping / synthesis / truncate with the partseg.gan.Generator signatures."""

    style_dim, n_latent, size = STYLE_DIM, N_LATENT, SIZE

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.style = nn.Linear(STYLE_DIM, STYLE_DIM)
        self.to_image = nn.Linear(STYLE_DIM, 3 * SIZE * SIZE)
        self.latent_avg = None

    def mapping(self, z):
        return self.style(z)

    def truncate(self, w, truncation):
        return w * truncation

    def synthesis(self, ws, noise="const"):
        assert noise == "const"
        return torch.tanh(self.to_image(ws.mean(1))).view(-1, 3, SIZE, SIZE)


class StandInExtractor:
    """extractor(ws, noise="const") -> (features [N,C,R,R], images [N,3,H,W])."""

    def __init__(self, generator):
        self.G = generator
        self.calls = []

    def __call__(self, ws, noise="const"):
        self.calls.append(len(ws))
        images = self.G.synthesis(ws, noise=noise)
        pooled = F.avg_pool2d(images, SIZE // FEATURE_SIZE)
        styles = ws[:, :, :2].flatten(1)[:, :CHANNELS - 3, None, None]
        return torch.cat([pooled, styles.expand(-1, -1, FEATURE_SIZE, FEATURE_SIZE)], 1), images


class StandInEnsemble(nn.Module):
    """Two 1x1 conv heads; uncertainty = their per-pixel disagreement."""

    in_channels = CHANNELS

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.a, self.b = nn.Conv2d(CHANNELS, CLASSES, 1), nn.Conv2d(CHANNELS, CLASSES, 1)

    def forward(self, features):
        return (self.a(features) + self.b(features)) / 2

    def uncertainty(self, features):
        return (self.a(features).softmax(1) - self.b(features).softmax(1)).abs().sum(1)


def _parts():
    generator = StandInGenerator()
    return generator, StandInExtractor(generator), StandInEnsemble()


def _expected(generator, extractor, fewshot, seed, count, truncation=1.0):
    with torch.no_grad():
        w = generator.mapping(seeded_z(seed, range(count), STYLE_DIM))
        w = generator.truncate(w, truncation) if truncation < 1 else w
        features, images = extractor(w[:, None].repeat(1, N_LATENT, 1))
        logits = F.interpolate(fewshot(features), size=(SIZE, SIZE), mode="bilinear",
                               align_corners=False)
    return signed_tensor_to_images(images), logits.numpy(), features


def test_shard_stores_the_fewshot_logits_of_the_same_latents(tmp_path):
    generator, extractor, fewshot = _parts()
    meta = synthesize_shard(tmp_path / "shard", generator=generator, extractor=extractor,
                            fewshot_model=fewshot, num_images=7, seed=11, batch_size=3,
                            device="cpu")
    images = np.load(tmp_path / "shard" / "images.npy")
    logits = np.load(tmp_path / "shard" / "logits.npy")
    assert images.dtype == np.uint8 and images.shape == (7, SIZE, SIZE, 3)
    assert logits.dtype == np.float16 and logits.shape == (7, CLASSES, SIZE, SIZE)
    assert extractor.calls == [3, 3, 1]  # features made batch by batch, never all at once

    expected_images, expected_logits, _ = _expected(generator, extractor, fewshot, 11, 7)
    assert np.array_equal(images, expected_images)
    np.testing.assert_allclose(logits.astype(np.float32), expected_logits, atol=2e-3, rtol=2e-3)
    # soft labels, not argmax: the stored values are real-valued logits
    assert len(np.unique(logits)) > CLASSES * 4

    on_disk = json.loads((tmp_path / "shard" / "meta.json").read_text())
    assert on_disk == meta
    assert meta["generated"] == meta["kept"] == 7 and meta["dropped"] == 0
    assert meta["kept_indices"] == list(range(7)) and meta["seed"] == 11
    assert sorted(p.name for p in (tmp_path / "shard").iterdir()) == [
        "images.npy", "logits.npy", "meta.json"]


def test_shard_does_not_depend_on_the_batch_size(tmp_path):
    generator, extractor, fewshot = _parts()
    for name, batch_size in (("b2", 2), ("b5", 5), ("b5-again", 5)):
        synthesize_shard(tmp_path / name, generator=generator, extractor=extractor,
                         fewshot_model=fewshot, num_images=5, seed=3, batch_size=batch_size,
                         device="cpu")
    for name in ("images.npy", "logits.npy"):  # same arguments: bit-identical
        assert np.array_equal(np.load(tmp_path / "b5" / name), np.load(tmp_path / "b5-again" / name))
    # Other batch size: the same latents; floats may differ in the last bit (BLAS blocking).
    difference = np.load(tmp_path / "b2" / "images.npy").astype(int) - np.load(tmp_path / "b5" / "images.npy")
    assert np.abs(difference).max() <= 1
    np.testing.assert_allclose(np.load(tmp_path / "b2" / "logits.npy").astype(np.float32),
                               np.load(tmp_path / "b5" / "logits.npy").astype(np.float32), atol=2e-3)
    other_seed = tmp_path / "other"
    synthesize_shard(other_seed, generator=generator, extractor=extractor, fewshot_model=fewshot,
                     num_images=5, seed=4, batch_size=5, device="cpu")
    assert not np.array_equal(np.load(other_seed / "images.npy"), np.load(tmp_path / "b5" / "images.npy"))


def test_truncation_goes_through_the_generator(tmp_path):
    generator, extractor, fewshot = _parts()
    synthesize_shard(tmp_path / "t", generator=generator, extractor=extractor,
                     fewshot_model=fewshot, num_images=3, seed=0, truncation=0.5, device="cpu")
    expected_images, _, _ = _expected(generator, extractor, fewshot, 0, 3, truncation=0.5)
    assert np.array_equal(np.load(tmp_path / "t" / "images.npy"), expected_images)


def test_drop_uncertain_removes_the_most_uncertain_images(tmp_path):
    generator, extractor, fewshot = _parts()
    meta = synthesize_shard(tmp_path / "u", generator=generator, extractor=extractor,
                            fewshot_model=fewshot, num_images=10, seed=5, batch_size=4,
                            drop_uncertain=0.3, device="cpu")
    expected_images, expected_logits, features = _expected(generator, extractor, fewshot, 5, 10)
    with torch.no_grad():
        per_image = fewshot.uncertainty(features).mean((-2, -1)).numpy()
    dropped = np.sort(np.argsort(-per_image)[:3])
    kept = np.setdiff1d(np.arange(10), dropped)

    assert meta["generated"] == 10 and meta["kept"] == 7 and meta["dropped"] == 3
    assert meta["kept_indices"] == kept.tolist()
    assert meta["uncertainty"]["mean_dropped"] > meta["uncertainty"]["mean_kept"]
    assert np.array_equal(np.load(tmp_path / "u" / "images.npy"), expected_images[kept])
    np.testing.assert_allclose(np.load(tmp_path / "u" / "logits.npy").astype(np.float32),
                               expected_logits[kept], atol=2e-3, rtol=2e-3)
    assert sorted(p.name for p in (tmp_path / "u").iterdir()) == [
        "images.npy", "logits.npy", "meta.json"]


def test_drop_uncertain_needs_an_ensemble(tmp_path):
    generator, extractor, _ = _parts()
    single = nn.Conv2d(CHANNELS, CLASSES, 1)
    with pytest.raises(ValueError, match="ensemble"):
        synthesize_shard(tmp_path / "x", generator=generator, extractor=extractor,
                         fewshot_model=single, num_images=2, seed=0, drop_uncertain=0.5,
                         device="cpu")
    assert not (tmp_path / "x").exists()


def test_a_failed_shard_leaves_no_output(tmp_path):
    generator, extractor, fewshot = _parts()

    def broken(ws, noise="const"):
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError):
        synthesize_shard(tmp_path / "s", generator=generator, extractor=broken,
                         fewshot_model=fewshot, num_images=2, seed=0, device="cpu")
    assert list(tmp_path.iterdir()) == []


def test_works_with_the_real_generator_extractor_and_ensemble(tmp_path):
    """The same shard logic on partseg's own modules (tiny sizes), checked against them."""
    from partseg.features import FeatureExtractor
    from partseg.fewshot.ensemble import Ensemble
    from partseg.fewshot.networks import build_network
    from partseg.fewshot.predict import predict_logits
    from partseg.gan import Generator

    torch.manual_seed(0)
    generator = Generator(16, style_dim=16, n_mlp=1, channel_base=128, channel_max=16)
    extractor = FeatureExtractor(generator, "all", 8)
    ensemble = Ensemble([build_network("linear", extractor.num_channels, 3) for _ in range(2)])
    meta = synthesize_shard(tmp_path / "s", generator=generator, extractor=extractor,
                            fewshot_model=ensemble, num_images=4, seed=2, batch_size=4,
                            drop_uncertain=0.25, device="cpu")
    assert meta["kept"] == 3
    kept = meta["kept_indices"]
    with torch.no_grad():
        w = generator.mapping(seeded_z(2, kept, 16))
        features, images = extractor(w)
        logits = F.interpolate(predict_logits(ensemble, features), size=(16, 16),
                               mode="bilinear", align_corners=False)
    assert np.array_equal(np.load(tmp_path / "s" / "images.npy"), signed_tensor_to_images(images))
    np.testing.assert_allclose(np.load(tmp_path / "s" / "logits.npy").astype(np.float32),
                               logits.numpy(), atol=2e-3, rtol=2e-3)
