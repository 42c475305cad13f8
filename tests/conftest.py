"""Shared test fixtures and helpers."""

from __future__ import annotations

import pytest
import torch

from partseg.gan import Generator
from partseg.gan.layers import NoiseInjection


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """The tests use tiny tensors: on a 2-core machine shared with other jobs, thread
    hand-offs cost more than the maths (two threads made some tests ten times slower)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def tiny_generator(size: int = 16, seed: int = 0, noise_strength: float = 0.5) -> Generator:
    """A small random StyleGAN2 generator whose noise inputs matter.

    Random init leaves the noise strengths at 0; setting them makes "const" vs "random"
    noise observable, so the tests of noise handling can fail.
    """
    torch.manual_seed(seed)
    generator = Generator(size, style_dim=16, n_mlp=2, channel_base=128, channel_max=16).eval()
    for module in generator.modules():
        if isinstance(module, NoiseInjection):
            module.weight.data.fill_(noise_strength)
    return generator
