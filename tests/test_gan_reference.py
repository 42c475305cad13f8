"""Equivalence with rosinality/stylegan2-pytorch, proven against an independent reference.

The reference below is a deliberately plain StyleGAN2 forward written for the tests (not the
library's code).

It works on raw state dicts in the rosinality/stylegan2-pytorch layout and follows that
project's arithmetic literally: per-sample weights and grouped convolutions for modulated
convs, transposed convolution then blur for upsampling, explicit zero insertion for FIR
upsampling. If partseg.gan agrees with this on random weights, it computes the same images as
that project with the same checkpoint.

Also builds checkpoints in that layout (key names and shapes listed here by hand).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

SQRT2 = math.sqrt(2.0)


# ---- rosinality-layout state dicts, keys written out by hand ------------------------------

def fir_kernel(upsample: bool) -> torch.Tensor:
    taps = torch.tensor([1.0, 3.0, 3.0, 1.0])
    kernel = taps[:, None] * taps[None, :]
    kernel = kernel / kernel.sum()
    return kernel * 4 if upsample else kernel


def rosinality_generator_state(size: int, style_dim: int, n_mlp: int, widths: dict[int, int],
                               seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights (biases and noise strengths non-zero so that they matter)."""
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=1.0, offset=0.0):
        return torch.randn(*shape, generator=gen) * scale + offset

    state = {}
    for i in range(1, n_mlp + 1):
        state[f"style.{i}.weight"] = rand(style_dim, style_dim, scale=100.0)  # stored / lr_mul
        state[f"style.{i}.bias"] = rand(style_dim, scale=10.0)

    def styled_conv(prefix, c_in, c_out, upsample):
        state[f"{prefix}.conv.weight"] = rand(1, c_out, c_in, 3, 3)
        state[f"{prefix}.conv.modulation.weight"] = rand(c_in, style_dim)
        state[f"{prefix}.conv.modulation.bias"] = rand(c_in, scale=0.1, offset=1.0)
        if upsample:
            state[f"{prefix}.conv.blur.kernel"] = fir_kernel(upsample=True)
        state[f"{prefix}.noise.weight"] = rand(1, scale=0.3)
        state[f"{prefix}.activate.bias"] = rand(c_out, scale=0.2)

    def to_rgb(prefix, c_in, upsample):
        if upsample:
            state[f"{prefix}.upsample.kernel"] = fir_kernel(upsample=True)
        state[f"{prefix}.conv.weight"] = rand(1, 3, c_in, 1, 1)
        state[f"{prefix}.conv.modulation.weight"] = rand(c_in, style_dim)
        state[f"{prefix}.conv.modulation.bias"] = rand(c_in, scale=0.1, offset=1.0)
        state[f"{prefix}.bias"] = rand(1, 3, 1, 1, scale=0.2)

    state["input.input"] = rand(1, widths[4], 4, 4)
    styled_conv("conv1", widths[4], widths[4], upsample=False)
    to_rgb("to_rgb1", widths[4], upsample=False)
    log_size = int(math.log2(size))
    c_in = widths[4]
    for k, log_res in enumerate(range(3, log_size + 1)):
        c_out = widths[2 ** log_res]
        styled_conv(f"convs.{2 * k}", c_in, c_out, upsample=True)
        styled_conv(f"convs.{2 * k + 1}", c_out, c_out, upsample=False)
        to_rgb(f"to_rgbs.{k}", c_out, upsample=True)
        c_in = c_out
    for i in range(2 * (log_size - 2) + 1):
        res = 2 ** ((i + 5) // 2)
        state[f"noises.noise_{i}"] = rand(1, 1, res, res)
    return state


def rosinality_discriminator_state(size: int, widths: dict[int, int],
                                   seed: int = 1) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=1.0):
        return torch.randn(*shape, generator=gen) * scale

    state = {"convs.0.0.weight": rand(widths[size], 3, 1, 1),
             "convs.0.1.bias": rand(widths[size], scale=0.1)}
    log_size = int(math.log2(size))
    for k, log_res in enumerate(range(log_size, 2, -1), start=1):
        c_in, c_out = widths[2 ** log_res], widths[2 ** (log_res - 1)]
        state[f"convs.{k}.conv1.0.weight"] = rand(c_in, c_in, 3, 3)
        state[f"convs.{k}.conv1.1.bias"] = rand(c_in, scale=0.1)
        state[f"convs.{k}.conv2.0.kernel"] = fir_kernel(upsample=False)
        state[f"convs.{k}.conv2.1.weight"] = rand(c_out, c_in, 3, 3)
        state[f"convs.{k}.conv2.2.bias"] = rand(c_out, scale=0.1)
        state[f"convs.{k}.skip.0.kernel"] = fir_kernel(upsample=False)
        state[f"convs.{k}.skip.1.weight"] = rand(c_out, c_in, 1, 1)
    c4 = widths[4]
    state["final_conv.0.weight"] = rand(c4, c4 + 1, 3, 3)
    state["final_conv.1.bias"] = rand(c4, scale=0.1)
    state["final_linear.0.weight"] = rand(c4, c4 * 16)
    state["final_linear.0.bias"] = rand(c4, scale=0.1)
    state["final_linear.1.weight"] = rand(1, c4)
    state["final_linear.1.bias"] = rand(1, scale=0.1)
    return state


# ---- the reference arithmetic -------------------------------------------------------------

def ref_upfirdn2d(x, kernel, up=1, down=1, pad=(0, 0)):
    n, c, h, w = x.shape
    if up > 1:
        spread = torch.zeros(n, c, h * up, w * up, dtype=x.dtype)
        spread[:, :, ::up, ::up] = x
        x = spread
    p0, p1 = pad
    x = F.pad(x, [max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)])
    x = x[:, :, max(-p0, 0):x.shape[2] - max(-p1, 0), max(-p0, 0):x.shape[3] - max(-p1, 0)]
    hh, ww = x.shape[2:]
    x = x.reshape(n * c, 1, hh, ww)
    x = F.conv2d(x, torch.flip(kernel, [0, 1])[None, None])
    x = x.reshape(n, c, x.shape[2], x.shape[3])
    return x[:, :, ::down, ::down]


def ref_flrelu(x, bias):
    shape = [1, -1] + [1] * (x.ndim - 2)
    return F.leaky_relu(x + bias.view(*shape), 0.2) * SQRT2


def ref_mapping(state, z, n_mlp, lr_mul=0.01):
    x = z * torch.rsqrt(torch.mean(z ** 2, dim=1, keepdim=True) + 1e-8)
    for i in range(1, n_mlp + 1):
        weight = state[f"style.{i}.weight"]
        x = F.linear(x, weight * (1 / math.sqrt(weight.shape[1])) * lr_mul)
        x = ref_flrelu(x, state[f"style.{i}.bias"] * lr_mul)
    return x


def ref_modconv(state, prefix, x, w, demodulate=True, upsample=False):
    weight = state[f"{prefix}.weight"]                  # [1, out, in, k, k]
    _, c_out, c_in, k, _ = weight.shape
    mod_w = state[f"{prefix}.modulation.weight"]
    style = F.linear(w, mod_w * (1 / math.sqrt(mod_w.shape[1])), state[f"{prefix}.modulation.bias"])
    batch = x.shape[0]
    weight = weight * (1 / math.sqrt(c_in * k * k)) * style.view(batch, 1, c_in, 1, 1)
    if demodulate:
        weight = weight * torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8).view(batch, c_out, 1, 1, 1)
    h, wd = x.shape[2:]
    if upsample:
        weight = weight.transpose(1, 2).reshape(batch * c_in, c_out, k, k)
        out = F.conv_transpose2d(x.reshape(1, batch * c_in, h, wd), weight, stride=2, groups=batch)
        out = out.reshape(batch, c_out, out.shape[2], out.shape[3])
        return ref_upfirdn2d(out, state[f"{prefix}.blur.kernel"], pad=(1, 1))
    weight = weight.reshape(batch * c_out, c_in, k, k)
    out = F.conv2d(x.reshape(1, batch * c_in, h, wd), weight, padding=k // 2, groups=batch)
    return out.reshape(batch, c_out, h, wd)


def ref_styled(state, prefix, x, w, noise, upsample=False):
    out = ref_modconv(state, f"{prefix}.conv", x, w, upsample=upsample)
    out = out + state[f"{prefix}.noise.weight"] * noise
    return ref_flrelu(out, state[f"{prefix}.activate.bias"])


def ref_to_rgb(state, prefix, x, w, skip=None):
    out = ref_modconv(state, f"{prefix}.conv", x, w, demodulate=False) + state[f"{prefix}.bias"]
    if skip is not None:
        out = out + ref_upfirdn2d(skip, state[f"{prefix}.upsample.kernel"], up=2, pad=(2, 1))
    return out


def ref_synthesis(state, ws, features: list | None = None):
    """ws [N, n_latent, style_dim] with the stored noise; optionally collects styled outputs."""
    batch = ws.shape[0]
    n_convs = len([k for k in state if k.startswith("convs.") and k.endswith(".conv.weight")])
    x = state["input.input"].repeat(batch, 1, 1, 1)
    x = ref_styled(state, "conv1", x, ws[:, 0], state["noises.noise_0"])
    if features is not None:
        features.append(x)
    image = ref_to_rgb(state, "to_rgb1", x, ws[:, 1])
    i = 1
    for k in range(n_convs // 2):
        x = ref_styled(state, f"convs.{2 * k}", x, ws[:, i], state[f"noises.noise_{i}"],
                       upsample=True)
        if features is not None:
            features.append(x)
        x = ref_styled(state, f"convs.{2 * k + 1}", x, ws[:, i + 1], state[f"noises.noise_{i + 1}"])
        if features is not None:
            features.append(x)
        image = ref_to_rgb(state, f"to_rgbs.{k}", x, ws[:, i + 2], image)
        i += 2
    return image


def ref_discriminator(state, x):
    x = ref_flrelu(F.conv2d(x, state["convs.0.0.weight"] * (1 / math.sqrt(3))),
                   state["convs.0.1.bias"])
    n_blocks = len([k for k in state if k.endswith(".conv1.0.weight")])

    def eq_conv(x, weight, stride=1, padding=0):
        fan_in = weight.shape[1] * weight.shape[2] * weight.shape[3]
        return F.conv2d(x, weight * (1 / math.sqrt(fan_in)), stride=stride, padding=padding)

    for k in range(1, n_blocks + 1):
        p = f"convs.{k}"
        out = ref_flrelu(eq_conv(x, state[f"{p}.conv1.0.weight"], padding=1), state[f"{p}.conv1.1.bias"])
        out = ref_upfirdn2d(out, state[f"{p}.conv2.0.kernel"], pad=(2, 2))
        out = ref_flrelu(eq_conv(out, state[f"{p}.conv2.1.weight"], stride=2), state[f"{p}.conv2.2.bias"])
        skip = eq_conv(ref_upfirdn2d(x, state[f"{p}.skip.0.kernel"], pad=(1, 1)),
                       state[f"{p}.skip.1.weight"], stride=2)
        x = (out + skip) / math.sqrt(2)
    batch, c, h, w = x.shape
    group = min(batch, 4)
    std = x.view(group, -1, 1, c, h, w)
    std = torch.sqrt(std.var(0, unbiased=False) + 1e-8).mean([2, 3, 4], keepdim=True).squeeze(2)
    x = torch.cat([x, std.repeat(group, 1, h, w)], 1)
    x = ref_flrelu(eq_conv(x, state["final_conv.0.weight"], padding=1), state["final_conv.1.bias"])
    x = x.reshape(batch, -1)
    w0 = state["final_linear.0.weight"]
    x = ref_flrelu(F.linear(x, w0 / math.sqrt(w0.shape[1])), state["final_linear.0.bias"])
    w1 = state["final_linear.1.weight"]
    return F.linear(x, w1 / math.sqrt(w1.shape[1]), state["final_linear.1.bias"])


# ---- the tests -----------------------------------------------------------------------------

import argparse  # noqa: E402

import pytest  # noqa: E402

from partseg.gan import load_discriminator, load_generator  # noqa: E402


SIZE, STYLE_DIM, N_MLP = 32, 16, 3
# channel_base 512, channel_max 32: 32/32/32/16 channels at 4/8/16/32 px
WIDTHS = {4: 32, 8: 32, 16: 32, 32: 16}


def write_rosinality_checkpoint(path, size=SIZE, widths=WIDTHS):
    """A training checkpoint as rosinality's train.py writes it."""
    g_ema = rosinality_generator_state(size, STYLE_DIM, N_MLP, widths, seed=0)
    g = rosinality_generator_state(size, STYLE_DIM, N_MLP, widths, seed=2)
    d = rosinality_discriminator_state(size, widths)
    ckpt = {
        "g": g, "d": d, "g_ema": g_ema,
        "g_optim": {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.zeros(3)}},
                    "param_groups": [{"lr": 0.002, "betas": (0.0, 0.99), "params": [0]}]},
        "d_optim": {"state": {}, "param_groups": [{"lr": 0.002, "params": []}]},
        "args": argparse.Namespace(size=size, latent=STYLE_DIM, n_mlp=N_MLP, channel_multiplier=2,
                                   batch=4, r1=10.0, path="lmdb"),
        "latent_avg": torch.randn(STYLE_DIM),
    }
    torch.save(ckpt, path)
    return ckpt


@pytest.fixture(scope="module")
def rosinality_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "rosinality.pt"
    return path, write_rosinality_checkpoint(path)


def test_infers_architecture_of_rosinality_checkpoint(rosinality_ckpt):
    path, ckpt = rosinality_ckpt
    generator = load_generator(path)
    assert generator.config == dict(size=32, style_dim=16, n_mlp=3, channel_base=512,
                                    channel_max=32, lr_mlp=0.01, blur_kernel=[1, 3, 3, 1])
    assert generator.n_latent == 8
    assert not generator.training
    assert torch.equal(generator.latent_avg, ckpt["latent_avg"].reshape(1, -1))
    # every key of theirs is one of ours and vice versa
    assert set(generator.state_dict()) == set(ckpt["g_ema"])


def test_generator_matches_reference_forward(rosinality_ckpt):
    path, ckpt = rosinality_ckpt
    generator = load_generator(path)
    z = torch.randn(5, STYLE_DIM, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        w = ref_mapping(ckpt["g_ema"], z, N_MLP)
        expected = ref_synthesis(ckpt["g_ema"], w[:, None].repeat(1, 8, 1))
        image = generator(z, noise="const")
    assert image.shape == (5, 3, 32, 32)
    assert expected.abs().max() > 0.5  # not a degenerate comparison
    torch.testing.assert_close(image, expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(generator.mapping(z), w, rtol=1e-5, atol=1e-5)


def test_synthesis_matches_reference_on_wplus_and_hooks_see_styled_outputs(rosinality_ckpt):
    path, ckpt = rosinality_ckpt
    generator = load_generator(path)
    ws = torch.randn(3, 8, STYLE_DIM, generator=torch.Generator().manual_seed(4))
    captured = {}
    names = [row["name"] for row in generator.layer_table()]
    modules = dict(generator.named_modules())
    hooks = [modules[name].register_forward_hook(
        lambda module, args, out, name=name: captured.__setitem__(name, out)) for name in names]
    expected_features = []
    with torch.no_grad():
        expected = ref_synthesis(ckpt["g_ema"], ws, expected_features)
        image = generator.synthesis(ws, noise="const")
    for hook in hooks:
        hook.remove()
    torch.testing.assert_close(image, expected, rtol=1e-4, atol=1e-4)
    assert len(expected_features) == len(names) == 7
    for name, feature in zip(names, expected_features):
        torch.testing.assert_close(captured[name], feature, rtol=1e-4, atol=1e-4)


def test_truncation_and_mixing_follow_the_reference(rosinality_ckpt):
    path, ckpt = rosinality_ckpt
    generator = load_generator(path)
    z = torch.randn(2, STYLE_DIM, generator=torch.Generator().manual_seed(5))
    z2 = torch.randn(2, STYLE_DIM, generator=torch.Generator().manual_seed(6))
    centre = ckpt["latent_avg"].reshape(1, -1)
    with torch.no_grad():
        w = centre + 0.7 * (ref_mapping(ckpt["g_ema"], z, N_MLP) - centre)
        expected = ref_synthesis(ckpt["g_ema"], w[:, None].repeat(1, 8, 1))
        torch.testing.assert_close(generator(z, truncation=0.7), expected, rtol=1e-4, atol=1e-4)
        # mixing: the first `crossover` layers take z's style, the rest z2's
        torch.manual_seed(0)
        mixed = generator(z, mixing_z=z2)
        torch.manual_seed(0)
        crossover = int(torch.randint(1, 8, ()).item())
        w1, w2 = ref_mapping(ckpt["g_ema"], z, N_MLP), ref_mapping(ckpt["g_ema"], z2, N_MLP)
        ws = torch.cat([w1[:, None].repeat(1, crossover, 1),
                        w2[:, None].repeat(1, 8 - crossover, 1)], 1)
        torch.testing.assert_close(mixed, ref_synthesis(ckpt["g_ema"], ws), rtol=1e-4, atol=1e-4)


def test_discriminator_matches_reference_forward(rosinality_ckpt):
    path, ckpt = rosinality_ckpt
    discriminator = load_discriminator(path)
    assert discriminator.config["size"] == 32
    assert set(discriminator.state_dict()) == set(ckpt["d"])
    x = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        logits, features = discriminator(x, return_features=True)
        expected = ref_discriminator(ckpt["d"], x)
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)
    assert [tuple(f.shape) for f in features] == [(8, 16, 32, 32), (8, 32, 16, 16),
                                                  (8, 32, 8, 8), (8, 32, 4, 4)]
