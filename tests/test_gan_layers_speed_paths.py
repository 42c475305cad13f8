"""The generator's no-autograd speed paths (channels-last upsampling convs and blurs, reused
weight terms) compute what the NCHW reference path computes, and never serve a stale term.

Which bits the two layouts give depends on the CPU's kernels (bench/generator_bits.py checks
a machine), so values are compared with a tolerance far below any real error; paths that run
the same kernels are compared exactly."""

import pytest
import torch

from partseg.gan import Generator
from partseg.gan.layers import DerivedTerms, ModulatedConv2d, Upsample, reference_layout

TOLERANCE = dict(rtol=1e-5, atol=1e-5)


def small_generator(seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    generator = Generator(size=16, style_dim=32, n_mlp=2, channel_base=256, channel_max=32)
    with torch.no_grad():  # non-zero noise strengths and biases, so those terms count too
        for name, parameter in generator.named_parameters():
            if name.endswith("noise.weight") or "bias" in name:
                parameter.normal_(0.0, 0.1)
    return generator


def test_no_grad_forward_matches_the_reference_path():
    generator = small_generator()
    z = torch.randn(4, generator.style_dim)
    reference = generator(z).detach()  # parameters require grad: the NCHW reference path
    with torch.no_grad():
        fast, again = generator(z), generator(z)  # the second call reuses the weight terms
    torch.testing.assert_close(fast, reference, **TOLERANCE)
    assert torch.equal(again, fast)
    assert fast.is_contiguous()


def test_a_batch_of_one_runs_the_reference_kernels_exactly():
    generator = small_generator()
    z = torch.randn(1, generator.style_dim)
    assert reference_layout(torch.zeros(1, 8, 4, 4)) and not reference_layout(torch.zeros(2, 8, 4, 4))
    reference = generator(z).detach()
    with torch.no_grad():
        assert torch.equal(generator(z), reference)


def test_features_seen_by_hooks_are_nchw_and_match():
    generator = small_generator()
    features = []
    generator.convs[0].register_forward_hook(lambda module, args, out: features.append(out))
    z = torch.randn(3, generator.style_dim)
    with torch.no_grad():
        generator(z)
    generator(z)
    assert features[0].is_contiguous()
    torch.testing.assert_close(features[0], features[1].detach(), **TOLERANCE)


def test_gradients_flow_after_terms_were_reused():
    """Terms kept by a no-grad call must not cut the graph of a later training step."""
    z = torch.randn(2, 32)
    gradients = []
    for warm in (False, True):
        generator = small_generator()
        if warm:
            with torch.no_grad():
                generator(z)
        generator(z).square().mean().backward()
        gradients.append({name: p.grad.clone() for name, p in generator.named_parameters()
                          if p.grad is not None})
    assert gradients[0].keys() == gradients[1].keys()
    assert "convs.0.conv.modulation.weight" in gradients[1]
    for name, gradient in gradients[0].items():
        assert torch.equal(gradient, gradients[1][name]), name


def test_terms_follow_in_place_updates_loads_and_dtype_changes():
    conv = ModulatedConv2d(8, 8, 3, style_dim=4, upsample=True)
    x, style = torch.randn(2, 8, 4, 4), torch.randn(2, 4)

    def fresh() -> torch.Tensor:
        conv.derived.clear()
        conv.modulation.derived.clear()
        return conv(x.to(conv.weight.dtype), style.to(conv.weight.dtype))

    with torch.no_grad():
        conv(x, style)                              # keeps the terms
        conv.weight.mul_(2.0)                       # an optimiser-like in-place update
        conv.modulation.weight.add_(1.0)
        assert torch.equal(conv(x, style), fresh())
        conv.load_state_dict({k: v * 3 for k, v in conv.state_dict().items()})
        assert torch.equal(conv(x, style), fresh())
        conv.double()
        doubled = conv(x.double(), style.double())
        assert doubled.dtype == torch.float64 and torch.equal(doubled, fresh())
        conv.weight.data.mul_(0.5)                  # a write the version counter does not see:
        conv.derived.clear()                        # documented, the owner clears
        assert torch.equal(conv(x.double(), style.double()), fresh())


def test_derived_terms_recompute_under_autograd_and_reuse_without():
    weight = torch.randn(3, requires_grad=True)
    terms, calls = DerivedTerms(), []

    def doubled() -> torch.Tensor:
        calls.append(1)
        return weight * 2

    with torch.no_grad():
        first, second = terms.get("w", [weight], doubled), terms.get("w", [weight], doubled)
    assert first is second and len(calls) == 1
    assert terms.get("w", [weight], doubled).requires_grad and len(calls) == 2
    with torch.no_grad():
        weight.add_(1.0)
        assert torch.equal(terms.get("w", [weight], doubled), weight * 2) and len(calls) == 3


@pytest.mark.parametrize("batch", [1, 2])
def test_skip_upsampling_matches_the_reference_path(batch):
    upsample = Upsample((1, 3, 3, 1))
    x = torch.randn(batch, 3, 8, 8)
    with torch.no_grad():
        fast = upsample(x)
    reference = upsample(x.clone().requires_grad_()).detach()
    torch.testing.assert_close(fast, reference, **TOLERANCE)
    assert fast.shape == (batch, 3, 16, 16)
