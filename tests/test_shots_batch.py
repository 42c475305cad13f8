"""The Shots type: every field sliced alike, and the files the annotate stage writes read back."""

import numpy as np
import torch

from partseg.shots.batch import Shots


def make_shots(k: int = 3, inverted: bool = True) -> Shots:
    rng = np.random.default_rng(0)
    return Shots(stems=[f"s{i}" for i in range(k)],
                 images=[rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for _ in range(k)],
                 masks=[rng.integers(0, 4, (8, 8), dtype=np.uint8) for _ in range(k)],
                 wplus=torch.randn(k, 4, 2),
                 noises=[torch.randn(k, 1, 4, 4), torch.randn(k, 1, 8, 8)] if inverted else None,
                 psnr=[20.0 + i for i in range(k)] if inverted else None)


def test_select_and_first_take_every_field_alike():
    shots = make_shots()
    two = shots.select([2, 0])
    assert two.stems == ["s2", "s0"] and len(two) == 2 and two.psnr == [22.0, 20.0]
    assert two.images[0] is shots.images[2] and two.masks[1] is shots.masks[0]
    assert torch.equal(two.wplus, shots.wplus[[2, 0]])
    assert all(torch.equal(a, b[[2, 0]]) for a, b in zip(two.noises, shots.noises))
    first = shots.first(1)
    assert first.stems == ["s0"] and torch.equal(first.wplus, shots.wplus[:1])
    assert first.noises[1].shape == (1, 1, 8, 8)
    candidates = make_shots(inverted=False)
    assert candidates.first(2).noises is None and candidates.first(2).psnr is None


def test_saved_shots_load_back(tmp_path):
    shots = make_shots()
    shots.save_pictures(tmp_path)
    shots.save_latents(tmp_path / "latents.pt")
    back = Shots.load(tmp_path)
    assert back.stems == shots.stems and torch.equal(back.wplus, shots.wplus)
    assert all(np.array_equal(a, b) for a, b in zip(back.images, shots.images))
    assert all(np.array_equal(a, b) for a, b in zip(back.masks, shots.masks))
    assert all(torch.equal(a, b) for a, b in zip(back.noises, shots.noises))
    shots.save_latents(tmp_path / "plain.pt", noises=False)
    assert set(torch.load(tmp_path / "plain.pt", weights_only=True)) == {"stems", "wplus"}
