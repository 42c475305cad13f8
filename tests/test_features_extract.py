"""Feature extraction: layer selection, shapes and channel bookkeeping, resizing, determinism."""

import pytest
import torch
import torch.nn.functional as F

from partseg.plumbing.errors import PartsegError
from partseg.features import FeatureExtractor, resize_feature_map, select_layers
from partseg.gan import Generator, sample_images
from conftest import tiny_generator


@pytest.fixture(scope="module")
def G():
    return tiny_generator(32)


def hooked_outputs(G, ws, names, noise="const"):
    """Each layer's raw output, collected independently of the extractor."""
    outputs = {}
    handles = [G.get_submodule(n).register_forward_hook(
        lambda m, i, o, n=n: outputs.__setitem__(n, o.detach().clone())) for n in names]
    with torch.no_grad():
        G.synthesis(ws, noise=noise)
    for handle in handles:
        handle.remove()
    return outputs


def test_all_is_every_styled_conv_without_conv1(G):
    names = select_layers(G.layer_table(), "all")
    assert names == [f"convs.{i}" for i in range(6)]
    assert "conv1" not in names


def test_low_mid_high_split_resolutions_into_thirds(G):
    table = G.layer_table()
    resolution = {row["name"]: row["resolution"] for row in table}
    groups = {g: select_layers(table, g) for g in ("low", "mid", "high")}
    assert {resolution[n] for n in groups["low"]} == {8}
    assert {resolution[n] for n in groups["mid"]} == {16}
    assert {resolution[n] for n in groups["high"]} == {32}
    assert sum(groups.values(), []) == select_layers(table, "all")


def test_named_layers_come_back_in_forward_order_and_conv1_can_be_named(G):
    assert select_layers(G.layer_table(), ["convs.3", "conv1", "convs.0"]) == ["conv1", "convs.0", "convs.3"]
    assert select_layers(G.layer_table(), "convs.2, convs.1") == ["convs.1", "convs.2"]


def test_unknown_layer_names_the_valid_ones(G):
    with pytest.raises(PartsegError, match=r"features.layers.*'convs.99'.*conv1, convs.0"):
        select_layers(G.layer_table(), ["convs.0", "convs.99"])


def test_empty_group_on_a_small_generator_is_a_clear_error():
    G8 = Generator(8, style_dim=16, n_mlp=1, channel_base=64, channel_max=16)
    with pytest.raises(PartsegError, match="'mid' is empty"):
        select_layers(G8.layer_table(), "mid")


def test_shapes_and_channel_bookkeeping_match_layer_table(G):
    extractor = FeatureExtractor(G, "all", 16)
    table = {row["name"]: row for row in G.layer_table()}
    assert extractor.channels_per_layer == [table[n]["channels"] for n in extractor.layers]
    assert extractor.num_channels == sum(extractor.channels_per_layer) == 2 * 16 + 2 * 8 + 2 * 4
    ws = sample_images(G, 3, seed=1)["wplus"]
    features, images = extractor(ws)
    assert features.shape == (3, extractor.num_channels, 16, 16) and features.dtype == torch.float32
    assert images.shape == (3, 3, 32, 32)
    # Each layer's channel slice is exactly that layer's output, resized.
    raw = hooked_outputs(G, ws, extractor.layers)
    for index, name in enumerate(extractor.layers):
        start, stop = extractor.channel_offsets[index], extractor.channel_offsets[index + 1]
        torch.testing.assert_close(features[:, start:stop], resize_feature_map(raw[name], 16))


def test_resize_is_bilinear_up_and_area_down():
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(resize_feature_map(x, 16),
                               F.interpolate(x, size=16, mode="bilinear", align_corners=True))
    torch.testing.assert_close(resize_feature_map(x, 4), F.avg_pool2d(x, 2))
    assert resize_feature_map(x, 8) is x
    for size_in, size_out in [(5, 13), (1, 4), (4, 32)]:
        y = torch.randn(2, 3, size_in, size_in)
        torch.testing.assert_close(resize_feature_map(y, size_out), F.interpolate(
            y, size=size_out, mode="bilinear", align_corners=True))
    z = torch.randn(1, 2, 32, 32)
    torch.testing.assert_close(resize_feature_map(z, 12), F.adaptive_avg_pool2d(z, 12))
    # align_corners=True keeps the corner values exactly.
    up = resize_feature_map(x, 16)
    torch.testing.assert_close(up[..., 0, 0], x[..., 0, 0])
    torch.testing.assert_close(up[..., -1, -1], x[..., -1, -1])


def test_extractor_resizes_each_layer_the_right_way(G):
    extractor = FeatureExtractor(G, ["convs.1", "convs.5"], 16)   # an 8 px and a 32 px layer
    ws = sample_images(G, 2, seed=2)["wplus"]
    features, _ = extractor(ws)
    raw = hooked_outputs(G, ws, extractor.layers)
    small, large = extractor.channels_per_layer
    torch.testing.assert_close(features[:, :small], F.interpolate(
        raw["convs.1"], size=16, mode="bilinear", align_corners=True))
    torch.testing.assert_close(features[:, small:], F.avg_pool2d(raw["convs.5"], 2))


def test_same_latents_same_features_on_every_call_and_batching(G):
    extractor = FeatureExtractor(G, "all", 32)
    sample = sample_images(G, 4, seed=5)
    first, images = extractor(sample["wplus"])
    second, _ = extractor(sample["wplus"].clone())
    assert torch.equal(first, second)
    alone, _ = extractor(sample["wplus"][2:3])
    torch.testing.assert_close(alone[0], first[2], rtol=1e-4, atol=1e-5)
    # The images are the generated sample itself: features describe what was annotated.
    rendered = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1)
    assert torch.equal(rendered, torch.from_numpy(sample["images"]))
    # Random noise changes the features: "const" is what makes them reproducible.
    noisy, _ = extractor(sample["wplus"], noise="random")
    assert not torch.allclose(noisy, first)


def test_w_latents_are_broadcast_to_every_layer(G):
    extractor = FeatureExtractor(G, "high", 8)
    w = G.mapping(torch.randn(2, G.style_dim))
    from_w, _ = extractor(w)
    from_wplus, _ = extractor(w[:, None].repeat(1, G.n_latent, 1))
    assert torch.equal(from_w, from_wplus)


def test_fp16_channel_last_output_matches_fp32(G):
    extractor = FeatureExtractor(G, "all", 16)
    ws = sample_images(G, 2, seed=7)["wplus"]
    reference, _ = extractor(ws)
    half, _ = extractor.extract(ws, dtype=torch.float16, channels_last=True)
    assert half.dtype == torch.float16 and half.shape == (2, 16, 16, extractor.num_channels)
    torch.testing.assert_close(half.float().permute(0, 3, 1, 2), reference, rtol=1e-3, atol=1e-3)


def test_per_image_noise_maps_are_used(G):
    extractor = FeatureExtractor(G, "all", 8)
    ws = sample_images(G, 2, seed=8)["wplus"]
    const_maps = [n.expand(2, -1, -1, -1).clone() for n in G.noise_maps()]
    torch.testing.assert_close(extractor(ws, noise=const_maps)[0], extractor(ws)[0])
    other = [torch.randn_like(n) for n in const_maps]
    assert not torch.allclose(extractor(ws, noise=other)[0], extractor(ws)[0])


def test_bad_resolution_and_latent_shape_are_user_errors(G):
    with pytest.raises(PartsegError, match="features.resolution"):
        FeatureExtractor(G, "all", 64)
    extractor = FeatureExtractor(G, "all", 8)
    with pytest.raises(PartsegError, match="latents: expected shape"):
        extractor(torch.zeros(2, 3, G.style_dim))


def test_works_for_a_generator_loaded_from_a_rosinality_checkpoint(G, tmp_path):
    from partseg.gan import load_generator

    path = tmp_path / "rosinality.pt"
    torch.save({"g_ema": G.state_dict(), "latent_avg": G.mean_latent().reshape(-1)}, path)
    loaded = load_generator(path)
    ws = sample_images(G, 2, seed=4)["wplus"]
    original, _ = FeatureExtractor(G, "all", 16)(ws)
    reloaded, _ = FeatureExtractor(loaded, "all", 16)(ws)
    torch.testing.assert_close(reloaded, original)
