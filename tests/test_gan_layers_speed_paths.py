"""The generator's no-autograd speed paths (channels-last transposed conv and blurs, cached
weight terms) give the same bits as the NCHW reference path that runs under autograd."""

import torch

from partseg.gan import Generator
from partseg.gan.layers import ModulatedConv2d, Upsample


def small_generator(seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    generator = Generator(size=16, style_dim=32, n_mlp=2, channel_base=256, channel_max=32)
    with torch.no_grad():  # non-zero noise strengths and biases, so those terms count too
        for name, parameter in generator.named_parameters():
            if name.endswith("noise.weight") or "bias" in name:
                parameter.normal_(0.0, 0.1)
    return generator


def test_no_grad_forward_has_the_reference_bits():
    generator = small_generator()
    z = torch.randn(4, generator.style_dim)
    reference = generator(z)  # parameters require grad: the NCHW reference path
    with torch.no_grad():
        fast, again = generator(z), generator(z)  # the second call uses the cached terms
    assert torch.equal(fast, reference.detach())
    assert torch.equal(again, reference.detach())
    assert fast.is_contiguous()


def test_features_seen_by_hooks_are_nchw():
    generator = small_generator()
    features = []
    generator.convs[0].register_forward_hook(lambda module, args, out: features.append(out))
    with torch.no_grad():
        generator(torch.randn(2, generator.style_dim))
    assert features[0].is_contiguous()


def test_weight_cache_follows_in_place_updates():
    conv = ModulatedConv2d(8, 8, 3, style_dim=4, upsample=True)
    x, style = torch.randn(2, 8, 4, 4), torch.randn(2, 4)
    with torch.no_grad():
        conv(x, style)                        # fills the cache
        conv.weight.mul_(2.0)                 # an optimiser-like in-place update
        cached = conv(x, style)
        conv.clear_weight_cache()
        assert torch.equal(cached, conv(x, style))
        conv.load_state_dict({k: v * 3 for k, v in conv.state_dict().items()})
        loaded = conv(x, style)
    assert torch.equal(loaded, conv(x, style).detach())  # autograd: no cache


def test_skip_upsampling_has_the_reference_bits():
    upsample = Upsample((1, 3, 3, 1))
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        fast = upsample(x)
    reference = upsample(x.clone().requires_grad_())
    assert torch.equal(fast, reference.detach())
