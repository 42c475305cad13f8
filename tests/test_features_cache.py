"""The on-disk feature cache: fp16 round trip, random access, staleness, streaming, atomicity,
positional reads (no memory map), the descriptor's life (close, fork, pickle), array writer."""

import json
import logging
import mmap
import os
import pickle
import re

import numpy as np
import pytest
import torch

from partseg.plumbing.errors import PartsegError
from partseg.features import (FeatureCache, FeatureExtractor, build_or_reuse, cache_is_current,
                              generator_checksum, stale_reason, write_feature_cache)
from partseg.features import cache as cache_module
from partseg.features.cache import write_cache_from_arrays
from partseg.gan import Generator, sample_images
from conftest import tiny_generator as make_tiny_generator

PARAMS = {"layers": "all", "resolution": 8, "seed": 0}


def tiny_generator(seed: int = 0) -> Generator:
    return make_tiny_generator(16, seed)


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



def test_cache_latent_features_writes_what_write_feature_cache_writes(tmp_path, G, sample):
    """The one helper every stage uses: from a module or a checkpoint, the same files."""
    from partseg.features import cache_latent_features
    from partseg.gan.checkpoint import save_checkpoint
    from partseg.plumbing.params import FeaturesParams

    options = FeaturesParams(layers="all", resolution=8)
    rng = torch.Generator().manual_seed(0)
    noises = [torch.randn(len(sample["wplus"]), 1, *n.shape[-2:], generator=rng)
              for n in G.noise_maps()]
    direct = write_feature_cache(tmp_path / "direct", FeatureExtractor(G, "all", 8), sample["wplus"],
                                 batch_size=2, generator_checksum=generator_checksum(G),
                                 params={"layers": "all", "resolution": 8}, noises=noises,
                                 show_progress=False)
    from_module = cache_latent_features(tmp_path / "module", G, sample["wplus"], options,
                                        batch_size=2, noises=noises, show_progress=False)
    checkpoint = tmp_path / "generator.pt"
    save_checkpoint(checkpoint, g_ema=G)
    from_file = cache_latent_features(tmp_path / "file", checkpoint, sample["wplus"], options,
                                      batch_size=2, noises=noises, show_progress=False)
    for name in ("features.f16", "images.npy", "manifest.json"):
        assert (direct.dir / name).read_bytes() == (from_module.dir / name).read_bytes()
    assert from_file.manifest["generator_checksum"] == generator_checksum(checkpoint)
    assert (from_file.dir / "features.f16").read_bytes() == (direct.dir / "features.f16").read_bytes()


# ----------------------------------------------------------------------------- arrays and reads

LAYERS, CHANNELS = ["a", "b"], [3, 4]  # C = 7


@pytest.fixture(scope="module")
def array():
    """Random fp16-exact features [N=3, R=6, R, C=7], channel-last."""
    return np.random.default_rng(5).standard_normal((3, 6, 6, 7)).astype(np.float16).astype(np.float32)


@pytest.fixture()
def array_cache(tmp_path, array):
    with write_cache_from_arrays(tmp_path / "arrays", array, layers=LAYERS,
                                 channels_per_layer=CHANNELS, params={"k": 1}) as cache:
        yield cache


def as_nchw(array):
    return torch.from_numpy(array).permute(0, 3, 1, 2)


def every_read(cache):
    """One call of each read method, with positions that include the edges."""
    img, y, x = np.array([0, 2, 1, 2]), np.array([0, 5, 3, 5]), np.array([5, 0, 2, 5])
    return {
        "pixels": cache.pixels(img, y, x),
        "random_pixels": cache.random_pixels(40, 3)[0],
        "tiles": cache.tiles(img[:3], np.array([0, 2, 4]), np.array([4, 0, 2]), 2),
        "whole_row_tiles": cache.tiles(np.array([2, 0]), np.array([0, 0]), np.array([0, 0]), 6),
        "random_tiles": cache.random_tiles(5, 4, 3)[0],
        "image_features": cache.image_features(1),
        "image_rows": cache.image_rows(2, 1, 5),
        "batch_features": cache.batch_features([2, 0]),
        "iter_batches": torch.cat([b for _, b in cache.iter_batches(batch_size=2)]),
    }


def test_arrays_written_read_back_exactly(array_cache, array):
    reference = as_nchw(array)
    assert array_cache.shape == (3, 6, 6, 7)
    assert array_cache.layers == LAYERS and array_cache.channels_per_layer == CHANNELS
    assert array_cache.manifest["params"] == {"k": 1} and array_cache.manifest["layout"] == "NHWC"
    reads = every_read(array_cache)
    assert all(value.dtype == torch.float32 for value in reads.values())
    assert torch.equal(reads["pixels"], reference[[0, 2, 1, 2], :, [0, 5, 3, 5], [5, 0, 2, 5]])
    assert torch.equal(reads["tiles"][1], reference[2, :, 2:4, 0:2])
    assert torch.equal(reads["tiles"][2], reference[1, :, 4:6, 2:4])
    assert torch.equal(reads["whole_row_tiles"], reference[[2, 0]])
    assert torch.equal(reads["image_features"], reference[1])
    assert torch.equal(array_cache.pixels(1, 2, 3), reference[1, :, 2, 3])  # shapes as numpy's
    assert array_cache.pixels([], [], []).shape == (0, 7)
    assert torch.equal(reads["image_rows"], reference[2, :, 1:5])
    assert torch.equal(reads["batch_features"], reference[[2, 0]])
    assert torch.equal(reads["iter_batches"], reference)
    values, (img, y, x) = array_cache.random_pixels(40, 3)
    assert torch.equal(values, reference[img, :, y, x])
    tiles, (img, y0, x0) = array_cache.random_tiles(5, 4, 3)
    for k in range(5):
        assert torch.equal(tiles[k], reference[img[k], :, y0[k]:y0[k] + 4, x0[k]:x0[k] + 4])


@pytest.mark.parametrize("kind", ["nchw numpy", "nchw torch", "nhwc torch fp32"])
def test_arrays_in_either_layout_give_the_same_cache(tmp_path, array, array_cache, kind):
    features = {"nchw numpy": array.transpose(0, 3, 1, 2),
                "nchw torch": as_nchw(array).contiguous(),
                "nhwc torch fp32": torch.from_numpy(array)}[kind]
    other = write_cache_from_arrays(tmp_path / "other", features, layers=LAYERS,
                                    channels_per_layer=CHANNELS)
    assert (other.features_path.read_bytes() == array_cache.features_path.read_bytes())
    assert other.manifest["params"] == {}


def test_array_writer_rejects_bad_shapes_and_has_no_images(tmp_path, array, array_cache):
    write = lambda features, **kw: write_cache_from_arrays(  # noqa: E731
        tmp_path / "bad", features, **{"layers": LAYERS, "channels_per_layer": CHANNELS, **kw})
    with pytest.raises(PartsegError, match=r"not \[N, R, R, C\] or \[N, C, R, R\] .* = 7"):
        write(array[..., :6])
    with pytest.raises(PartsegError, match="2 layers but 1 channels_per_layer"):
        write(array, channels_per_layer=[7])
    square = np.zeros((1, 7, 7, 7), np.float32)
    square[0, :, :, 1] = 1
    with pytest.raises(PartsegError, match="read as NHWC and as NCHW; pass layout="):
        write(square)
    assert torch.equal(write(square, layout="NHWC").pixels([0], [0], [0])[0], torch.eye(7)[1])
    assert torch.equal(write(square, layout="NCHW").pixels([0], [0], [0])[0], torch.zeros(7))
    with pytest.raises(PartsegError, match="layout: expected auto, NHWC or NCHW"):
        write(array, layout="HWC")
    assert not (tmp_path / "bad.tmp").exists()
    with pytest.raises(PartsegError, match="stores no images"):
        array_cache.images()
    with pytest.raises(PartsegError, match="stores no latents"):
        array_cache.latents()
    assert stale_reason(array_cache.dir, None, {"k": 1}) is None
    assert stale_reason(array_cache.dir, None, {"k": 1}, ws=torch.zeros(3, 2, 4)) == "no latents stored"


def test_reads_never_map_the_file(array_cache, array, monkeypatch):
    """A memory map put the page-cache folios around each random pixel into the process's RSS,
    which then grew with the cache size; every read copies with positional reads instead."""
    def no_map(*args, **kwargs):
        raise AssertionError("the feature file was memory-mapped")

    monkeypatch.setattr(np, "memmap", no_map)
    monkeypatch.setattr(mmap, "mmap", no_map)
    assert torch.equal(every_read(array_cache)["iter_batches"], as_nchw(array))


def test_seek_and_read_fallback_gives_the_same_values(array_cache, monkeypatch):
    """Windows has no os.pread: the cache seeks and reads under its lock instead."""
    expected = every_read(array_cache)
    array_cache.close()
    monkeypatch.setattr(cache_module, "_HAS_PREAD", False)
    monkeypatch.delattr(os, "pread")
    for name, value in every_read(array_cache).items():
        assert torch.equal(value, expected[name]), name


@pytest.mark.skipif(not hasattr(os, "pread"), reason="counts os.pread calls")
def test_one_read_per_pixel_tile_row_and_band_of_rows(array_cache, array, monkeypatch):
    reference = as_nchw(array)
    reads = []
    original = os.pread

    def counting(fd, size, offset):
        reads.append(size)
        return original(fd, size, offset)

    monkeypatch.setattr(os, "pread", counting)
    row_bytes = 6 * 7 * 2
    assert torch.equal(array_cache.batch_features([0, 2]), reference[[0, 2]])
    assert reads == [6 * row_bytes] * 2  # a whole image fits one band: one read per image
    reads.clear()
    monkeypatch.setattr(cache_module, "BAND_BYTES", 4 * row_bytes)
    assert torch.equal(array_cache.image_rows(1, 0, 6), reference[1])
    assert reads == [4 * row_bytes, 2 * row_bytes]
    reads.clear()
    monkeypatch.setattr(cache_module, "BAND_BYTES", 1)  # smaller than a row: one row per read
    assert torch.equal(array_cache.image_rows(1, 2, 5), reference[1, :, 2:5])
    assert reads == [row_bytes] * 3
    reads.clear()
    array_cache.tiles([0], [1], [2], 3)
    assert reads == [3 * 7 * 2] * 3  # a tile: one read per tile row
    reads.clear()
    array_cache.pixels([0, 1], [1, 2], [3, 4])
    assert reads == [7 * 2] * 2  # a pixel: one read


def test_positions_outside_the_cache_are_refused(array_cache):
    with pytest.raises(PartsegError, match=r"image indices must lie in \[0, 3\)"):
        array_cache.pixels([3], [0], [0])
    with pytest.raises(PartsegError, match=r"positions must lie in \[0, 5\]"):
        array_cache.pixels([0], [6], [0])
    with pytest.raises(PartsegError, match=r"positions must lie in \[0, 3\]"):
        array_cache.tiles([0], [0], [4], 3)
    with pytest.raises(PartsegError, match=r"positions must lie in \[0, 5\]"):
        array_cache.pixels([0], [0], [-1])
    with pytest.raises(PartsegError, match="rows 4:7 must lie within 0:6"):
        array_cache.image_rows(0, 4, 7)


def test_a_file_truncated_while_open_is_a_clear_error(array_cache):
    array_cache.pixels([0], [0], [0])
    with open(array_cache.features_path, "r+b") as handle:
        handle.truncate(100)
    with pytest.raises(PartsegError, match="features.f16: ends before byte"):
        array_cache.image_features(2)
    with pytest.raises(PartsegError, match="features.f16: ends before byte"):
        array_cache.pixels([0, 2], [0, 5], [0, 5])


def open_descriptors():
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_descriptor_opens_lazily_and_closes(array_cache, array):
    before = open_descriptors()
    reopened = FeatureCache(array_cache.dir)
    assert open_descriptors() == before  # opening a cache reads only its manifest
    with reopened:
        reopened.pixels([0], [0], [0])
        reopened.random_tiles(2, 3, 0)
        assert open_descriptors() == before + 1  # one descriptor, reused by every read
    assert open_descriptors() == before
    assert torch.equal(reopened.image_features(0), as_nchw(array)[0])  # reads after close reopen
    reopened.close()
    reopened.close()
    assert open_descriptors() == before
    reopened.pixels([0], [0], [0])
    del reopened
    assert open_descriptors() == before  # garbage collection closes it too


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_reads_with_its_own_descriptor(array_cache, array):
    where = (np.array([0, 1, 2]), np.array([1, 2, 3]), np.array([5, 4, 3]))
    expected = array_cache.pixels(*where).numpy()
    parent_fd = array_cache._fd
    os.lseek(parent_fd, 123, os.SEEK_SET)  # pread ignores it; a child that shared it would see it
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: numpy only (no torch ops after a fork), and always _exit
        code = 1
        try:
            values = array_cache.pixels(*where).numpy()
            own = os.lseek(array_cache._fd, 0, os.SEEK_CUR) == 0  # a file of its own
            array_cache.close()
            code = 0 if own and np.array_equal(values, expected) else 3
        finally:
            os.write(write_end, bytes([code]))
            os._exit(0)
    os.close(write_end)
    _, status = os.waitpid(pid, 0)
    result = os.read(read_end, 1)
    os.close(read_end)
    assert status == 0 and result == bytes([0])
    assert array_cache._fd == parent_fd  # the child's close left the parent's descriptor open
    assert np.array_equal(array_cache.pixels(*where).numpy(), expected)


def test_a_pickled_cache_reads_the_same_values(array_cache, array):
    array_cache.pixels([0], [0], [0])  # the descriptor is open; it does not travel
    copy = pickle.loads(pickle.dumps(array_cache))
    assert copy._fd is None
    assert torch.equal(copy.batch_features([1, 2]), as_nchw(array)[[1, 2]])
    copy.close()
