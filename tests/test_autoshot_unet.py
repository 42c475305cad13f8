"""The UNet segmenter: any input size, its config, and that it learns (gradients reach every layer)."""

import pytest
import torch

from partseg.autoshot.unet import UNet


@pytest.mark.parametrize("height,width", [(16, 16), (13, 21), (1, 9), (40, 24)])
def test_output_has_input_size_and_class_channels(height, width):
    model = UNet(num_classes=5, base_channels=4, depth=3).eval()
    with torch.no_grad():
        logits = model(torch.rand(2, 3, height, width))
    assert logits.shape == (2, 5, height, width)
    assert torch.isfinite(logits).all()


def test_config_rebuilds_the_same_architecture():
    model = UNet(num_classes=4, base_channels=6, depth=2, in_channels=3)
    assert model.config == {"num_classes": 4, "base_channels": 6, "depth": 2, "in_channels": 3}
    clone = UNet(**model.config)
    clone.load_state_dict(model.state_dict())  # raises if any shape differs
    model.eval(), clone.eval()
    x = torch.rand(1, 3, 12, 12)
    with torch.no_grad():
        assert torch.equal(model(x), clone(x))


def test_depth_sets_the_number_of_levels():
    shallow, deep = UNet(3, base_channels=4, depth=1), UNet(3, base_channels=4, depth=3)
    assert len(shallow.down) == 1 and len(deep.down) == 3
    # channels double per level: the bottom of a depth-3 net has base * 8 channels
    assert deep.down[-1][0].out_channels == 32


def test_every_parameter_gets_a_gradient():
    model = UNet(num_classes=3, base_channels=4, depth=2)
    model(torch.rand(2, 3, 10, 14)).logsumexp(1).mean().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert missing == []


def test_padding_does_not_leak_into_the_kept_region_for_aligned_sizes():
    """For a size already a multiple of 2**depth, no padding happens: cropping is a no-op."""
    model = UNet(num_classes=2, base_channels=4, depth=2).eval()
    x = torch.rand(1, 3, 8, 12)
    with torch.no_grad():
        assert torch.equal(model(x), model.head(_unpadded_features(model, x)))


def _unpadded_features(model, x):
    skips = [model.stem(x * 2 - 1)]
    for block in model.down:
        skips.append(block(torch.nn.functional.max_pool2d(skips[-1], 2)))
    y = skips.pop()
    for block in model.up:
        y = block(y, skips.pop())
    return y


def test_invalid_configuration_is_refused():
    with pytest.raises(ValueError):
        UNet(num_classes=0)
    with pytest.raises(ValueError):
        UNet(num_classes=3, depth=0)
