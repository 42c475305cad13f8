"""Generator and discriminator behaviour: shapes, layer table, noise modes, determinism."""

from __future__ import annotations

import pytest
import torch

from partseg.gan import Discriminator, Generator

DEMO = dict(size=32, style_dim=128, n_mlp=4, channel_base=1024, channel_max=128)


@pytest.fixture(scope="module")
def demo_generator():
    torch.manual_seed(0)
    generator = Generator(**DEMO).eval()
    for module in generator.modules():  # non-zero noise strengths so noise modes matter
        if module.__class__.__name__ == "NoiseInjection":
            module.weight.data.fill_(0.5)
    return generator


def test_demo_layer_table(demo_generator):
    table = demo_generator.layer_table()
    assert [row["name"] for row in table] == ["conv1"] + [f"convs.{i}" for i in range(6)]
    assert [row["resolution"] for row in table] == [4, 8, 8, 16, 16, 32, 32]
    assert [row["channels"] for row in table] == [128, 128, 128, 64, 64, 32, 32]
    assert demo_generator.n_latent == 8
    assert [tuple(n.shape[2:]) for n in demo_generator.noise_maps()] == \
        [(r["resolution"],) * 2 for r in table]


def test_layer_table_matches_hooked_outputs(demo_generator):
    shapes = {}
    modules = dict(demo_generator.named_modules())
    for row in demo_generator.layer_table():
        modules[row["name"]].register_forward_hook(
            lambda m, a, out, name=row["name"]: shapes.__setitem__(name, tuple(out.shape)))
    with torch.no_grad():
        demo_generator(torch.randn(2, 128))
    for row in demo_generator.layer_table():
        assert shapes[row["name"]] == (2, row["channels"], row["resolution"], row["resolution"])
    for module in modules.values():
        module._forward_hooks.clear()


def test_const_noise_is_deterministic_and_batch_independent(demo_generator):
    z = torch.randn(4, 128, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        first = demo_generator(z, noise="const")
        second = demo_generator(z, noise="const")
        alone = demo_generator(z[2:3], noise="const")
    assert first.shape == (4, 3, 32, 32)
    assert torch.equal(first, second)
    torch.testing.assert_close(alone, first[2:3], rtol=1e-5, atol=1e-5)


def test_random_noise_varies_and_explicit_noise_is_used(demo_generator):
    z = torch.randn(2, 128)
    with torch.no_grad():
        a = demo_generator(z, noise="random")
        b = demo_generator(z, noise="random")
        const = demo_generator(z, noise="const")
        explicit = demo_generator(z, noise=demo_generator.noise_maps())
        zeros = demo_generator(z, noise=[torch.zeros_like(n) for n in demo_generator.noise_maps()])
    assert not torch.allclose(a, b)
    assert torch.equal(explicit, const)
    assert not torch.allclose(zeros, const)
    with pytest.raises(ValueError):
        demo_generator(z, noise="sometimes")


def test_mapping_synthesis_and_truncation(demo_generator):
    z = torch.randn(3, 128)
    with torch.no_grad():
        w = demo_generator.mapping(z)
        ws = w[:, None].repeat(1, demo_generator.n_latent, 1)
        torch.testing.assert_close(demo_generator.synthesis(ws), demo_generator(z))
        centre = demo_generator.mean_latent(n=256, seed=0)
        assert centre.shape == (1, 128)
        assert torch.equal(centre, demo_generator.mean_latent(n=256, seed=0))
        at_centre = demo_generator(z, truncation=0.0, truncation_latent=centre)
        expected = demo_generator.synthesis(centre[:, None].repeat(3, 8, 1))
        torch.testing.assert_close(at_centre, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError):
        demo_generator.synthesis(w)  # [N, style_dim] is not W+


def test_gradients_reach_every_generator_parameter():
    generator = Generator(16, style_dim=8, n_mlp=2, channel_base=128, channel_max=16)
    generator(torch.randn(2, 8), noise="random").square().mean().backward()
    missing = [name for name, p in generator.named_parameters() if p.grad is None]
    assert missing == []


def test_discriminator_logits_and_features():
    torch.manual_seed(0)
    discriminator = Discriminator(32, channel_base=1024, channel_max=128)
    x = torch.randn(6, 3, 32, 32)  # 6 is not a multiple of the stddev group 4
    logits, features = discriminator(x, return_features=True)
    assert logits.shape == (6, 1)
    torch.testing.assert_close(discriminator(x), logits)
    assert [tuple(f.shape) for f in features] == [(6, 32, 32, 32), (6, 64, 16, 16),
                                                  (6, 128, 8, 8), (6, 128, 4, 4)]
    # features of one image do not depend on the rest of the batch (usable as a distance)
    _, alone = discriminator(x[:1], return_features=True)
    for f_alone, f_batch in zip(alone, features):
        torch.testing.assert_close(f_alone, f_batch[:1], rtol=1e-5, atol=1e-5)
    logits.sum().backward()
    assert all(p.grad is not None for p in discriminator.parameters())


def test_invalid_size_is_refused():
    with pytest.raises(ValueError):
        Generator(24)
