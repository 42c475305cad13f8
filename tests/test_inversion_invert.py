"""GAN inversion: recovers the GAN's own images, shapes, options, regulariser and errors."""

import numpy as np
import pytest
import torch

from partseg.plumbing.errors import PartsegError
from partseg.features import FeatureExtractor
from partseg.gan import Discriminator, sample_images
from partseg.imaging import signed_tensor_to_images
from conftest import tiny_generator
from partseg.imaging import psnr
from partseg.inversion import (inversion_targets, invert_images, noise_regularisation,
                               normalise_noises, warmup_flat_rampdown_lr)

STEPS = 40


@pytest.fixture(scope="module")
def G():
    return tiny_generator(16, seed=0, noise_strength=0.1)


@pytest.fixture(scope="module")
def own_images(G):
    return sample_images(G, 3, seed=11)["images"]


@pytest.fixture(scope="module")
def inverted(G, own_images):
    random_images = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    both = np.concatenate([own_images, random_images])
    return invert_images(G, both, steps=STEPS, lr=0.1, batch_size=3, show_progress=False)


def test_inverting_the_gans_own_image_recovers_it(inverted):
    own, random = inverted["psnr"][:3], inverted["psnr"][3:]
    # After only 40 steps a random image stays near the mean image (~10.6 dB); the GAN's own
    # images reach 16-21 dB (more with more steps).
    assert own.min() > random.max() + 4.0, (own, random)
    assert own.mean() > random.mean() + 6.0, (own, random)


def test_outputs_have_the_documented_shapes(G, inverted):
    assert inverted["wplus"].shape == (6, G.n_latent, G.style_dim)
    assert inverted["wplus"].dtype == torch.float32
    assert inverted["reconstructions"].shape == (6, 16, 16, 3)
    assert inverted["reconstructions"].dtype == np.uint8
    assert inverted["psnr"].shape == (6,) and inverted["loss"].shape == (6,)
    assert [n.shape for n in inverted["noises"]] == [(6, 1, *n.shape[-2:]) for n in G.noise_maps()]


def test_features_of_inverted_images_use_the_optimised_noise(G, inverted):
    """The extractor, given the returned latents and noise maps, draws the reconstructions."""
    extractor = FeatureExtractor(G, "all", 8)
    features, images = extractor(inverted["wplus"], noise=inverted["noises"])
    assert features.shape == (6, extractor.num_channels, 8, 8)
    assert np.abs(signed_tensor_to_images(images).astype(int) - inverted["reconstructions"]).max() <= 1


def test_optimised_noise_maps_stay_normalised(inverted):
    for noise in inverted["noises"]:
        per_image = noise.reshape(len(noise), -1)
        torch.testing.assert_close(per_image.mean(1), torch.zeros(len(noise)), atol=1e-4, rtol=0)
        torch.testing.assert_close(per_image.std(1), torch.ones(len(noise)), atol=1e-3, rtol=0)


def test_w_space_gives_one_latent_for_all_layers_and_targets_at_another_size(G, own_images):
    small = own_images[:2, ::2, ::2]                      # 8 px targets for a 16 px generator
    result = invert_images(G, small, space="w", steps=5, optimize_noise=False,
                           show_progress=False)
    wplus = result["wplus"]
    assert torch.equal(wplus, wplus[:, :1].expand_as(wplus))
    assert result["noises"] is None
    assert result["reconstructions"].shape == (2, 8, 8, 3)


def test_discriminator_perceptual_term_and_pluggable_callable(G, own_images):
    D = Discriminator(16, channel_base=128, channel_max=16)
    with_d = invert_images(G, own_images[:1], D=D, steps=3, show_progress=False)
    calls = []

    def perceptual(a, b):
        calls.append((a.shape, b.shape))
        return ((a - b) ** 2).mean(dim=(1, 2, 3))

    with_fn = invert_images(G, own_images[:1], D=D, perceptual=perceptual, steps=3,
                            show_progress=False)
    assert calls and calls[0] == ((1, 3, 16, 16), (1, 3, 16, 16))
    assert with_d["loss"][0] != with_fn["loss"][0]
    assert all(p.requires_grad for p in D.parameters())   # restored after inversion
    assert all(p.requires_grad for p in G.parameters())


def test_same_seed_same_result(G, own_images):
    a = invert_images(G, own_images[:1], steps=4, seed=3, show_progress=False)
    b = invert_images(G, own_images[:1], steps=4, seed=3, show_progress=False)
    assert torch.equal(a["wplus"], b["wplus"])


def test_learning_rate_ramps_up_then_down():
    rates = [warmup_flat_rampdown_lr(step, 100, 0.1) for step in range(100)]
    assert rates[0] < rates[4] == pytest.approx(0.1)
    assert max(rates) == pytest.approx(0.1)
    assert rates[50] == pytest.approx(0.1) and rates[99] < 0.01
    assert all(a >= b for a, b in zip(rates[75:], rates[76:]))


def test_noise_regulariser_penalises_smooth_maps_not_white_noise():
    torch.manual_seed(0)
    white = [torch.randn(2, 1, 32, 32)]
    smooth = [torch.nn.functional.interpolate(torch.randn(2, 1, 4, 4), size=32, mode="bilinear")]
    normalise_noises(smooth)
    assert noise_regularisation(smooth).min() > 100 * noise_regularisation(white).max()
    assert noise_regularisation(white).shape == (2,)


def test_psnr_and_input_conversion():
    a = np.zeros((2, 4, 4, 3), np.uint8)
    b = a.copy()
    b[1] = 255
    assert psnr(a, b)[1] == pytest.approx(0.0) and psnr(a, b)[0] == pytest.approx(100.0)
    tensor = inversion_targets(np.full((4, 4, 3), 255, np.uint8))
    assert tensor.shape == (1, 3, 4, 4) and torch.all(tensor == 1.0)


@pytest.mark.parametrize("images, message", [
    (np.zeros((2, 8, 8, 3), np.float32), "must be uint8"),
    (np.zeros((2, 8, 6, 3), np.uint8), "must be square"),
    (np.zeros((2, 8, 8), np.uint8), r"expected \[N, H, W, 3\]"),
    (torch.zeros(2, 1, 8, 8), r"\[N, 3, H, W\]"),
])
def test_bad_images_are_user_errors(G, images, message):
    with pytest.raises(PartsegError, match=message):
        invert_images(G, images, steps=1, show_progress=False)


def test_bad_options_are_user_errors(G, own_images):
    with pytest.raises(PartsegError, match="inversion.space"):
        invert_images(G, own_images, space="z", show_progress=False)


def test_starts_from_the_checkpoints_latent_avg_when_there_is_one(G):
    from partseg.inversion import latent_statistics

    computed, spread = latent_statistics(G, torch.device("cpu"))
    torch.testing.assert_close(computed, G.mean_latent().reshape(-1))
    assert spread > 0
    G.latent_avg = torch.full((1, G.style_dim), 0.25)
    try:
        stored, _ = latent_statistics(G, torch.device("cpu"))
        assert torch.equal(stored, torch.full((G.style_dim,), 0.25))
    finally:
        G.latent_avg = None


def test_a_warm_start_at_the_answer_beats_a_cold_start_with_few_steps(G, own_images):
    """init_wplus / init_noises start the optimisation there (video frames start from the
    previous frame's result): started at the true latents, 5 steps already reconstruct."""
    truth = sample_images(G, 3, seed=11)
    wplus = truth["wplus"]
    common = dict(steps=5, lr=0.01, batch_size=3, latent_noise=0.0, show_progress=False)
    warm = invert_images(G, own_images, init_wplus=wplus, optimize_noise=False, **common)
    cold = invert_images(G, own_images, optimize_noise=False, **common)
    assert warm["psnr"].min() > cold["psnr"].max() + 5.0, (warm["psnr"], cold["psnr"])
    noises = [n.expand(3, 1, *n.shape[-2:]).clone() for n in G.noise_maps()]
    warm_noise = invert_images(G, own_images, init_wplus=wplus, init_noises=noises, **common)
    assert [tuple(n.shape) for n in warm_noise["noises"]] == [tuple(n.shape) for n in noises]


def test_a_warm_start_of_the_wrong_shape_is_a_user_error(G, own_images):
    with pytest.raises(PartsegError, match="init_wplus"):
        invert_images(G, own_images, init_wplus=torch.zeros(2, G.n_latent, G.style_dim),
                      show_progress=False)
