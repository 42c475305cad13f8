"""The on-disk feature cache: fp16 round trip, random access, staleness, streaming, atomicity."""

import json
import logging
import re

import numpy as np
import pytest
import torch

from partseg.errors import PartsegError
from partseg.features import (FeatureCache, FeatureExtractor, build_or_reuse, cache_is_current,
                              generator_checksum, stale_reason, write_feature_cache)
from partseg.gan import Generator, sample_images
from partseg.gan.layers import NoiseInjection

PARAMS = {"layers": "all", "resolution": 8, "seed": 0}


def tiny_generator(seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    G = Generator(16, style_dim=16, n_mlp=2, channel_base=128, channel_max=16).eval()
    for module in G.modules():
        if isinstance(module, NoiseInjection):
            module.weight.data.fill_(0.5)
    return G


@pytest.fixture(scope="module")
def G():
    return tiny_generator()


@pytest.fixture(scope="module")
def sample(G):
    return sample_images(G, 5, seed=0)


@pytest.fixture(scope="module")
def extractor(G):
    return FeatureExtractor(G, "all", 8)


def reference_features(extractor, ws, batch_size=2):
    """fp32 features computed with the same batches as the cache (so fp16 rounding matches)."""
    return torch.cat([extractor(ws[i:i + batch_size])[0] for i in range(0, len(ws), batch_size)])


@pytest.fixture()
def cache(tmp_path, extractor, sample, G):
    return write_feature_cache(tmp_path / "cache", extractor, sample["wplus"], batch_size=2,
                               generator_checksum=generator_checksum(G), params=PARAMS,
                               extra_manifest={"stems": ["a", "b", "c", "d", "e"]},
                               show_progress=False)


def test_files_and_manifest(cache, extractor, G, sample):
    manifest = json.loads((cache.dir / "manifest.json").read_text())
    assert manifest["layers"] == extractor.layers
    assert manifest["channels_per_layer"] == extractor.channels_per_layer
    assert manifest["resolution"] == 8 and manifest["num_images"] == 5
    assert manifest["num_channels"] == extractor.num_channels
    assert manifest["dtype"] == "float16" and manifest["layout"] == "NHWC"
    assert manifest["generator_checksum"] == generator_checksum(G)
    assert manifest["params"] == PARAMS and manifest["extra"]["stems"][4] == "e"
    assert (cache.dir / "features.f16").stat().st_size == 5 * 8 * 8 * extractor.num_channels * 2
    assert torch.equal(cache.latents(), sample["wplus"])
    assert cache.noises() is None
    assert np.array_equal(cache.images(), sample["images"])
    assert not (cache.dir.parent / "cache.tmp").exists()


def test_round_trip_within_fp16_tolerance(cache, extractor, sample):
    reference = reference_features(extractor, sample["wplus"])
    assert cache.num_images == 5 and cache.num_channels == extractor.num_channels
    for i in range(5):
        stored = cache.image_features(i)
        assert stored.dtype == torch.float32 and stored.shape == reference[i].shape
        torch.testing.assert_close(stored, reference[i], rtol=1e-3, atol=1e-3)
        # Exactly the fp16 rounding of the reference, not merely close.
        assert torch.equal(stored, reference[i].half().float())
    torch.testing.assert_close(cache.image_rows(3, 2, 5), cache.image_features(3)[:, 2:5])
    batches = list(cache.iter_batches(batch_size=2))
    assert [list(indices) for indices, _ in batches] == [[0, 1], [2, 3], [4]]
    torch.testing.assert_close(torch.cat([b for _, b in batches]), reference.half().float())


def test_features_recomputed_from_saved_latents_match(cache, G):
    """A later stage needs only the cache folder and the generator to reproduce the features."""
    extractor = FeatureExtractor(G, cache.manifest["layers"], cache.resolution)
    recomputed, images = extractor(cache.latents()[2:4])
    torch.testing.assert_close(cache.batch_features([2, 3]), recomputed, rtol=1e-3, atol=1e-3)
    rendered = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1)
    assert np.array_equal(cache.images([2, 3]), rendered.numpy())


def test_random_pixels_index_the_right_values(cache, extractor, sample):
    reference = reference_features(extractor, sample["wplus"]).half().float()
    values, (img, y, x) = cache.random_pixels(200, np.random.default_rng(0))
    assert values.shape == (200, extractor.num_channels) and values.dtype == torch.float32
    assert torch.equal(values, reference[img, :, y, x])
    assert set(img) == {0, 1, 2, 3, 4}
    only, (img, _, _) = cache.random_pixels(50, 1, images=[3])
    assert set(img) == {3}
    again, _ = cache.random_pixels(200, np.random.default_rng(0))
    assert torch.equal(again, values)


def test_random_tiles_index_the_right_values(cache, extractor, sample):
    reference = reference_features(extractor, sample["wplus"]).half().float()
    tiles, (img, y0, x0) = cache.random_tiles(6, 3, np.random.default_rng(2))
    assert tiles.shape == (6, extractor.num_channels, 3, 3)
    for k in range(6):
        assert torch.equal(tiles[k], reference[img[k], :, y0[k]:y0[k] + 3, x0[k]:x0[k] + 3])
    assert (y0 <= 5).all() and (x0 <= 5).all()
    with pytest.raises(PartsegError, match="tile size 9"):
        cache.random_tiles(1, 9, 0)


def test_current_cache_is_reused_not_rebuilt(cache, extractor, sample, G, monkeypatch):
    checksum = generator_checksum(G)
    assert cache_is_current(cache.dir, checksum, PARAMS)
    monkeypatch.setattr("partseg.features.cache.write_feature_cache",
                        lambda *a, **k: pytest.fail("a current cache was rebuilt"))
    reused = build_or_reuse(cache.dir, extractor, sample["wplus"], batch_size=2,
                            generator_checksum=checksum, params=dict(PARAMS))
    assert reused.manifest == cache.manifest


@pytest.mark.parametrize("change, reason", [
    ("generator", "generator checksum changed"),
    ("params", "params changed .*seed: 0 -> 1"),
    ("resolution", "resolution changed"),
    ("latents", "latents changed"),
])
def test_stale_cache_is_rebuilt_and_says_why(cache, extractor, sample, G, change, reason, caplog):
    checksum, params, ws, ex = generator_checksum(G), dict(PARAMS), sample["wplus"], extractor
    if change == "generator":
        G2 = tiny_generator(seed=1)
        checksum, ex = generator_checksum(G2), FeatureExtractor(G2, "all", 8)
    elif change == "params":
        params["seed"] = 1
    elif change == "resolution":
        ex = FeatureExtractor(G, "all", 4)
    else:
        ws = sample_images(G, 5, seed=9)["wplus"]
    assert not cache_is_current(cache.dir, checksum, params, extractor=ex, ws=ws)
    with caplog.at_level(logging.INFO, logger="partseg.features.cache"):
        rebuilt = build_or_reuse(cache.dir, ex, ws, batch_size=2, generator_checksum=checksum,
                                 params=params, show_progress=False)
    assert any("rebuilding" in r.getMessage() for r in caplog.records)
    assert re.search(reason, caplog.text)
    assert rebuilt.manifest["generator_checksum"] == checksum
    assert rebuilt.manifest["params"] == params
    assert torch.equal(rebuilt.latents(), ws)
    torch.testing.assert_close(rebuilt.image_features(1), ex(ws[1:2])[0][0], rtol=1e-3, atol=1e-3)
    assert stale_reason(cache.dir, checksum, params, extractor=ex, ws=ws) is None


def test_write_streams_batch_by_batch(tmp_path, extractor, sample, monkeypatch):
    """Each batch is on disk before the next is computed, and no call sees more than a batch:
    what the writer holds does not grow with the number of images."""
    per_image = 8 * 8 * extractor.num_channels * 2
    target = tmp_path / "streamed"
    seen = []
    original = FeatureExtractor.extract

    def spy(self, ws, *args, **kwargs):
        on_disk = (target.parent / "streamed.tmp" / "features.f16").stat().st_size
        seen.append((len(ws), on_disk))
        return original(self, ws, *args, **kwargs)

    monkeypatch.setattr(FeatureExtractor, "extract", spy)
    write_feature_cache(target, extractor, sample["wplus"], batch_size=2, generator_checksum="x",
                        params={}, show_progress=False)
    assert seen == [(2, 0), (2, 2 * per_image), (1, 4 * per_image)]


def test_failed_build_leaves_previous_cache_intact(cache, extractor, sample, monkeypatch):
    before = cache.image_features(0)
    calls = []

    def failing(self, ws, *args, **kwargs):
        calls.append(len(ws))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self, ws, *args, **kwargs)

    original = FeatureExtractor.extract
    monkeypatch.setattr(FeatureExtractor, "extract", failing)
    with pytest.raises(KeyboardInterrupt):
        write_feature_cache(cache.dir, extractor, sample["wplus"], batch_size=2,
                            generator_checksum="other", params={}, show_progress=False)
    assert not (cache.dir.parent / "cache.tmp").exists()
    reopened = FeatureCache(cache.dir)
    assert reopened.manifest["params"] == PARAMS
    assert torch.equal(reopened.image_features(0), before)


def test_noise_maps_are_saved_and_used(tmp_path, extractor, sample, G):
    noises = [torch.randn(5, 1, n.shape[-2], n.shape[-1]) for n in G.noise_maps()]
    cache = write_feature_cache(tmp_path / "noisy", extractor, sample["wplus"], batch_size=3,
                                generator_checksum="x", params={}, noises=noises,
                                show_progress=False)
    assert cache.manifest["noises_file"] == "noises.pt"
    assert all(torch.equal(a, b) for a, b in zip(cache.noises(), noises))
    expected = extractor(sample["wplus"][3:5], noise=[n[3:5] for n in noises])[0]
    torch.testing.assert_close(cache.image_features(4), expected[1], rtol=1e-3, atol=1e-3)
    assert stale_reason(cache.dir, "x", {}, ws=sample["wplus"], noises=noises) is None
    assert stale_reason(cache.dir, "x", {}, ws=sample["wplus"]) == "noise maps changed"


def test_damaged_or_missing_cache_is_a_clear_error(cache, tmp_path):
    with pytest.raises(PartsegError, match="no feature cache here"):
        FeatureCache(tmp_path / "nowhere")
    with open(cache.dir / "features.f16", "r+b") as handle:
        handle.truncate(100)
    with pytest.raises(PartsegError, match="features.f16: 100 bytes"):
        FeatureCache(cache.dir)
    assert "unreadable cache" in stale_reason(cache.dir, "x", PARAMS)


def test_generator_checksum_of_module_and_file(G, tmp_path):
    same = tiny_generator()
    assert generator_checksum(G) == generator_checksum(same)
    assert generator_checksum(G) != generator_checksum(tiny_generator(seed=1))
    path = tmp_path / "g.pt"
    path.write_bytes(b"weights")
    assert generator_checksum(path) == generator_checksum(str(path))
    assert len(generator_checksum(path)) == 64
    with pytest.raises(PartsegError, match="not found"):
        generator_checksum(tmp_path / "missing.pt")
