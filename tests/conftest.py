"""Shared test fixtures and helpers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
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


def two_squares(n: int = 4, size: int = 16, seed: int = 0, noise: int = 15):
    """Noisy images of two coloured squares on grey; masks are the squares' classes (0, 1, 2)."""
    rng = np.random.default_rng(seed)
    colours = np.array([(60, 60, 60), (200, 40, 40), (40, 200, 40)])
    masks = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        for k in (1, 2):
            y, x = rng.integers(0, size - 6, 2)
            masks[i, y:y + 6, x:x + 6] = k
    jitter = rng.integers(-noise, noise + 1, (n, size, size, 3))
    images = np.clip(colours[masks] + jitter, 0, 255).astype(np.uint8)
    return images, masks


def required_stage_arguments(stage: str) -> set[str]:
    """The arguments stages/<stage>.py declares `required=True`: every path it reads or writes
    (a stage has no default path; the Snakefile and dvc.yaml pass them all), and synthesize's
    --shard."""
    import ast

    root = Path(__file__).resolve().parent.parent
    tree = ast.parse((root / "stages" / f"{stage}.py").read_text())
    return {call.args[0].value[2:] for call in ast.walk(tree)
            if isinstance(call, ast.Call) and getattr(call.func, "attr", "") == "add_argument"
            and any(k.arg == "required" and getattr(k.value, "value", False) for k in call.keywords)}
