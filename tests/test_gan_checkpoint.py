"""Checkpoints: our format round-trips, rosinality widths are inferred, bad files are refused."""

from __future__ import annotations

import argparse

import pytest
import torch

from partseg.plumbing.errors import PartsegError
from partseg.gan import Discriminator, Generator, load_discriminator, load_generator, save_checkpoint
from partseg.gan.checkpoint import infer_generator_config
from test_gan_reference import rosinality_generator_state, write_rosinality_checkpoint

TINY = dict(size=16, style_dim=8, n_mlp=2, channel_base=128, channel_max=16)


def meta_generator_keys(size: int, style_dim: int, n_mlp: int, widths: dict[int, int]) -> dict:
    """Just the tensors whose shapes define the architecture, on the meta device (no memory)."""
    meta = dict(device="meta")
    state = {f"style.{i}.weight": torch.empty(style_dim, style_dim, **meta)
             for i in range(1, n_mlp + 1)}
    state["input.input"] = torch.empty(1, widths[4], 4, 4, **meta)
    state["conv1.conv.weight"] = torch.empty(1, widths[4], widths[4], 3, 3, **meta)
    c_in, res, k = widths[4], 8, 0
    while res <= size:
        state[f"convs.{k}.conv.weight"] = torch.empty(1, widths[res], c_in, 3, 3, **meta)
        state[f"convs.{k + 1}.conv.weight"] = torch.empty(1, widths[res], widths[res], 3, 3, **meta)
        c_in, res, k = widths[res], res * 2, k + 2
    return state


@pytest.mark.parametrize("multiplier, base", [(2, 32768), (1, 16384)])
def test_published_widths_are_inferred(multiplier, base):
    # REFERENCES.md: 512 up to 32 px, then 256m, 128m, 64m, 32m, 16m at 64 ... 1024 px
    widths = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * multiplier, 128: 128 * multiplier,
              256: 64 * multiplier, 512: 32 * multiplier, 1024: 16 * multiplier}
    config = infer_generator_config(meta_generator_keys(1024, 512, 8, widths), "x.pt")
    assert config["size"] == 1024 and config["n_mlp"] == 8 and config["style_dim"] == 512
    assert (config["channel_base"], config["channel_max"]) == (base, 512)


def test_published_defaults_are_config_f():
    assert Generator(1024).channels == {4: 512, 8: 512, 16: 512, 32: 512, 64: 512, 128: 256,
                                        256: 128, 512: 64, 1024: 32}


def test_widths_that_follow_no_rule_are_refused():
    widths = {4: 32, 8: 64, 16: 32}  # grows, then shrinks
    with pytest.raises(PartsegError, match="channel widths"):
        infer_generator_config(meta_generator_keys(16, 8, 2, widths), "odd.pt")


def test_own_checkpoint_round_trips(tmp_path):
    torch.manual_seed(0)
    generator, discriminator = Generator(**TINY), Discriminator(16, 128, 16)
    generator.latent_avg = torch.randn(1, 8)
    path = tmp_path / "generator.pt"
    save_checkpoint(path, g_ema=generator, d=discriminator, g=generator, extra={"step": 7})
    ckpt = torch.load(path, weights_only=True)  # plain data only
    assert ckpt["format"] == "partseg.stylegan2" and ckpt["extra"] == {"step": 7}
    assert not list(tmp_path.glob("*partial*"))

    loaded = load_generator(path)
    assert loaded.config == generator.config
    assert torch.equal(loaded.latent_avg, generator.latent_avg)
    z = torch.randn(3, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded(z), generator(z), rtol=0, atol=0)
    loaded_d = load_discriminator(path)
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded_d(x), discriminator(x), rtol=0, atol=0)


def test_latent_avg_is_computed_when_unset(tmp_path):
    generator = Generator(**TINY)
    save_checkpoint(tmp_path / "g.pt", g_ema=generator)
    loaded = load_generator(tmp_path / "g.pt")
    torch.testing.assert_close(loaded.latent_avg, generator.mean_latent())
    assert load_discriminator(tmp_path / "g.pt") is None


def test_rosinality_without_discriminator_or_noise_buffers(tmp_path):
    widths = {4: 16, 8: 16, 16: 8}
    state = rosinality_generator_state(16, 8, 2, widths)
    state = {k: v for k, v in state.items() if not k.startswith("noises.")}
    torch.save({"g_ema": state, "latent_avg": torch.zeros(8)}, tmp_path / "converted.pt")
    generator = load_generator(tmp_path / "converted.pt")
    assert generator.channels == widths
    assert load_discriminator(tmp_path / "converted.pt") is None
    # a bare g_ema state dict saved on its own also loads
    torch.save(rosinality_generator_state(16, 8, 2, widths), tmp_path / "bare.pt")
    assert load_generator(tmp_path / "bare.pt").config["size"] == 16


def test_training_checkpoint_with_namespace_loads(tmp_path):
    write_rosinality_checkpoint(tmp_path / "train.pt")
    assert load_generator(tmp_path / "train.pt").size == 32


def test_unknown_checkpoint_names_what_was_found(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"model": {"fc.weight": torch.zeros(2, 2)}, "epoch": 3}, path)
    with pytest.raises(PartsegError) as info:
        load_generator(path)
    message = str(info.value)
    assert str(path) in message and "'epoch'" in message and "'model'" in message
    assert "g_ema" in message  # says what was expected


class CreatesFileWhenUnpickled:
    """Unpickling this calls open(marker, "w"): the code a malicious checkpoint would run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def test_foreign_pickled_object_is_refused_without_running_it(tmp_path):
    path, marker = tmp_path / "evil.pt", tmp_path / "executed"
    state = rosinality_generator_state(16, 8, 2, {4: 16, 8: 16, 16: 8})
    torch.save({"g_ema": state, "args": CreatesFileWhenUnpickled(marker)}, path)
    with pytest.raises(PartsegError) as info:
        load_generator(path)
    assert str(path) in str(info.value) and "io.open" in str(info.value)
    assert not marker.exists()
    # a pickled class instance that is not argparse.Namespace is refused too
    torch.save({"g_ema": state, "args": ArbitraryObject()}, path)
    with pytest.raises(PartsegError, match="ArbitraryObject"):
        load_generator(path)


class ArbitraryObject:
    pass


def test_namespace_is_the_only_extra_global_allowed(tmp_path):
    path = tmp_path / "ok.pt"
    torch.save({"g_ema": rosinality_generator_state(16, 8, 2, {4: 16, 8: 16, 16: 8}),
                "args": argparse.Namespace(size=16)}, path)
    assert load_generator(path).size == 16
    # the allow-list is scoped to our loader, not installed globally
    with pytest.raises(Exception):
        torch.load(path, weights_only=True)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(PartsegError, match="not found"):
        load_generator(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(PartsegError, match="junk.pt"):
        load_generator(tmp_path / "junk.pt")


def test_mismatched_state_dict_gives_clear_error(tmp_path):
    state = rosinality_generator_state(16, 8, 2, {4: 16, 8: 16, 16: 8})
    del state["to_rgb1.bias"]
    torch.save({"g_ema": state}, tmp_path / "broken.pt")
    with pytest.raises(PartsegError, match="to_rgb1.bias"):
        load_generator(tmp_path / "broken.pt")
