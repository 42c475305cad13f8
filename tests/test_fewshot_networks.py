"""The few-shot networks: shapes, the paper's architectures, and the ensemble's uncertainty."""

import math

import pytest
import torch

from partseg.plumbing.errors import PartsegError
from partseg.fewshot import DilatedCNN, Ensemble, PixelMLP, build_network
from partseg.fewshot import mlp as mlp_module
from partseg.fewshot.dilated_cnn import receptive_field, scaled_dilations
from partseg.fewshot.ensemble import js_divergence
from partseg.fewshot.networks import member_kinds
from partseg.fewshot.normalize import ChannelStandardize


def linear_widths(model):
    return [(layer.in_features, layer.out_features) for layer in model.modules()
            if isinstance(layer, torch.nn.Linear)]


@pytest.mark.parametrize("kind, widths", [
    ("linear", [(12, 5)]),
    ("mlp", [(12, 2000), (2000, 5)]),
    ("mlp2", [(12, 2000), (2000, 200), (200, 5)]),
])
def test_mlp_kinds_have_the_papers_hidden_widths(kind, widths):
    model = build_network(kind, 12, 5)
    assert isinstance(model, PixelMLP)
    assert linear_widths(model) == widths
    relus = [m for m in model.modules() if isinstance(m, torch.nn.ReLU)]
    assert len(relus) == len(widths) - 1


def test_unknown_network_names_the_key_and_choices():
    with pytest.raises(PartsegError, match=r"train_fewshot.network.*linear, mlp, mlp2, cnn"):
        build_network("resnet", 4, 2)


def test_pixel_mlp_classifies_vectors_and_maps_consistently(monkeypatch):
    torch.manual_seed(0)
    model = PixelMLP(6, 3, hidden=(8, 4)).eval()
    maps = torch.randn(2, 6, 5, 7)
    vectors = maps.permute(0, 2, 3, 1).reshape(-1, 6)
    from_vectors = model(vectors).reshape(2, 5, 7, 3).permute(0, 3, 1, 2)
    with_grad = model(maps)
    monkeypatch.setattr(mlp_module, "PIXELS_PER_CHUNK", 7)  # one row per chunk
    with torch.no_grad():
        chunked = model(maps)
    assert vectors.shape == (70, 6) and model(vectors).shape == (70, 3)
    assert chunked.shape == (2, 3, 5, 7)
    torch.testing.assert_close(with_grad, from_vectors)
    torch.testing.assert_close(chunked, from_vectors)


def test_pixel_mlp_with_batch_norm_has_one_per_hidden_layer():
    model = PixelMLP(6, 3, hidden=(8, 4), batch_norm=True)
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in model.modules()) == 2
    assert model(torch.randn(10, 6)).shape == (10, 3)


def test_dilated_cnn_keeps_size_and_has_the_papers_layers():
    model = build_network("cnn", 10, 4)
    assert isinstance(model, DilatedCNN)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size[0], c.dilation[0]) for c in convs] == [
        (10, 128, 1, 1), (128, 64, 3, 2), (64, 64, 3, 4), (64, 64, 3, 8), (64, 64, 3, 1),
        (64, 64, 3, 2), (64, 64, 3, 4), (64, 32, 3, 8), (32, 4, 3, 1)]
    assert sum(isinstance(m, torch.nn.LeakyReLU) for m in model.modules()) == 8
    assert model(torch.randn(2, 10, 13, 9)).shape == (2, 4, 13, 9)
    with pytest.raises(ValueError):
        model(torch.randn(5, 10))


def test_dilated_cnn_receptive_field_is_61_pixels():
    assert receptive_field() == 61
    torch.manual_seed(0)
    model = DilatedCNN(2, 3).double()
    features = torch.randn(1, 2, 81, 81, dtype=torch.float64, requires_grad=True)
    model(features)[0, :, 40, 40].sum().backward()
    reached = features.grad.abs().sum(dim=(0, 1)) > 0
    rows = torch.nonzero(reached.any(dim=1)).flatten()
    cols = torch.nonzero(reached.any(dim=0)).flatten()
    assert (rows.min().item(), rows.max().item()) == (10, 70)
    assert (cols.min().item(), cols.max().item()) == (10, 70)


def test_channel_standardize_uses_stored_statistics():
    norm = ChannelStandardize(3)
    x = torch.tensor([[1.0, 10.0, -5.0], [3.0, 30.0, -5.0]])
    torch.testing.assert_close(norm(x), x)  # identity until statistics are set
    norm.set_statistics(x.mean(0), x.std(0, unbiased=False))
    out = norm(x)
    torch.testing.assert_close(out[:, :2], torch.tensor([[-1.0, -1.0], [1.0, 1.0]]))
    assert torch.isfinite(out).all()  # a constant channel does not divide by zero
    maps = x.t().reshape(1, 3, 1, 2)
    torch.testing.assert_close(norm(maps), out.t().reshape(1, 3, 1, 2))


class FixedLogits(torch.nn.Module):
    """A member whose logits are a fixed linear function of the input channels."""

    def __init__(self, weight):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.tensor(weight, dtype=torch.float32))

    def forward(self, x):
        return torch.einsum("kc,nchw->nkhw", self.weight, x)


def test_ensemble_output_is_log_of_mean_probabilities():
    torch.manual_seed(0)
    members = [PixelMLP(4, 3, hidden=(5,)) for _ in range(3)]
    ensemble = Ensemble(members).eval()
    x = torch.randn(7, 4)
    mean_probs = torch.stack([m(x).softmax(dim=1) for m in members]).mean(0)
    torch.testing.assert_close(ensemble(x).exp(), mean_probs)
    torch.testing.assert_close(ensemble(x).softmax(dim=1), mean_probs)


def test_ensemble_uncertainty_is_higher_where_members_disagree():
    # Channel 0 decides member A, channel 1 member B: where the channels have the same sign the
    # members agree, where they differ they are confidently opposed.
    ensemble = Ensemble([FixedLogits([[4.0, 0.0], [-4.0, 0.0]]), FixedLogits([[0.0, 4.0], [0.0, -4.0]])])
    features = torch.tensor([[1.0, 1.0, -1.0, 1.0], [1.0, -1.0, -1.0, -1.0]]).reshape(1, 2, 1, 4)
    with torch.no_grad():
        u = ensemble.uncertainty(features)[0, 0]
    agree, disagree = u[[0, 2]], u[[1, 3]]
    assert u.shape == (4,)
    assert agree.max() < 1e-3
    assert disagree.min() > 0.5
    assert disagree.max() <= math.log(2) + 1e-6  # JS divergence of two members is at most log 2


def test_identical_members_have_zero_uncertainty():
    member = FixedLogits([[1.0, -2.0], [0.5, 3.0], [0.0, 1.0]])
    with torch.no_grad():
        u = Ensemble([member, member]).uncertainty(torch.randn(2, 2, 3, 3))
    assert u.shape == (2, 3, 3)
    assert u.abs().max() < 1e-5


def test_js_divergence_matches_hand_value():
    # Two members, two classes: p = (1, 0) and q = (0, 1): mean (0.5, 0.5), entropy log 2, members 0.
    log_probs = torch.log(torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]]))
    torch.testing.assert_close(js_divergence(log_probs), torch.tensor([math.log(2)]))


@pytest.mark.parametrize("resolution, field", [(32, 5), (64, 9), (128, 17), (256, 33), (512, 61)])
def test_scaled_cnn_sees_an_eighth_of_the_image_like_the_papers(resolution, field):
    assert receptive_field(scaled_dilations(resolution)) == field
    torch.manual_seed(0)
    model = build_network("cnn_scaled", 2, 3, resolution=resolution).double()
    side = field + 20
    features = torch.randn(1, 2, side, side, dtype=torch.float64, requires_grad=True)
    model(features)[0, :, side // 2, side // 2].sum().backward()
    rows = torch.nonzero((features.grad.abs().sum(dim=(0, 1)) > 0).any(dim=1)).flatten()
    assert rows.max().item() - rows.min().item() + 1 == field
    assert model(torch.randn(1, 2, 7, 5, dtype=torch.float64)).shape == (1, 3, 7, 5)


def test_scaled_cnn_needs_a_resolution_and_unknown_kinds_are_named():
    with pytest.raises(PartsegError, match="resolution"):
        build_network("cnn_scaled", 2, 3)
    with pytest.raises(PartsegError, match="unknown network 'mlp\\+rnn'.*mlp\\+cnn"):
        member_kinds("mlp+rnn")
    assert member_kinds("mlp+cnn", 2) == ["mlp", "cnn", "mlp", "cnn"]
