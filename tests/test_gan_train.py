"""GAN training: outputs, kill-and-resume, option changes, bad data; seeded sampling."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import partseg.gan.train as train_module
from partseg.plumbing.errors import PartsegError
from partseg.gan import Generator, load_discriminator, load_generator, sample_images, train_gan
from partseg.gan.train import LOG_COLUMNS
from partseg.imaging import signed_tensor_to_images
from partseg.plumbing.io import save_png

TINY = dict(size=16, style_dim=16, n_mlp=2, channel_base=128, channel_max=16, batch_size=4,
            r1_every=2, pl_every=2, pl_weight=1.0, seed=3)


@pytest.fixture(scope="module")
def images_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("train") / "images"
    rng = np.random.default_rng(0)
    for i in range(12):
        save_png(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), folder / f"{i:03d}.png")
    return folder


def read_log(path):
    with open(path) as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def run(images_dir, root, steps, **overrides):
    options = {**TINY, "snapshot_every": 2, **overrides}
    return train_gan(images_dir=images_dir, out_dir=root / "out", snapshot_dir=root / "snap",
                     steps=steps, device="cpu", **options)


def test_training_writes_every_output(images_dir, tmp_path):
    summary = run(images_dir, tmp_path, steps=3, augment="diffaugment")
    out = tmp_path / "out"
    assert summary["step"] == 3 and summary["resumed_from"] is None
    generator = load_generator(out / "generator.pt")
    assert generator.config["size"] == 16 and generator.latent_avg is not None
    assert load_discriminator(out / "generator.pt") is not None
    rows = read_log(out / "training_log.tsv")
    assert list(rows[0]) == list(LOG_COLUMNS)
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    assert [int(r["images_seen"]) for r in rows] == [4, 8, 12]
    assert all(np.isfinite(float(r["d_loss"])) and float(r["seconds_per_step"]) > 0 for r in rows)
    options = yaml.safe_load((out / "training_options.yaml").read_text())
    for key in ("size", "channel_base", "steps", "lr", "r1_gamma", "augment", "seed", "ema_kimg"):
        assert key in options
    assert options["augment"] == "diffaugment"
    assert Image.open(out / "samples.png").size == (8 * 16, 8 * 16)
    assert sorted(p.name for p in (out / "snapshots").iterdir()) == \
        ["grid-000002.png", "grid-000003.png"]
    assert not list(tmp_path.rglob("*.partial*"))


def test_killed_run_resumes_from_its_snapshot_and_matches_an_uninterrupted_run(
        images_dir, tmp_path, monkeypatch):
    real_step = train_module.train_step
    calls = {"n": 0}

    def dies_during_step_three(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # killed after the snapshot at step 2
        return real_step(*args, **kwargs)

    monkeypatch.setattr(train_module, "train_step", dies_during_step_three)
    with pytest.raises(KeyboardInterrupt):
        run(images_dir, tmp_path / "killed", steps=4)
    assert not (tmp_path / "killed" / "out" / "generator.pt").exists()
    monkeypatch.setattr(train_module, "train_step", real_step)

    summary = run(images_dir, tmp_path / "killed", steps=4)
    assert summary["resumed_from"] == 2
    rows = read_log(tmp_path / "killed" / "out" / "training_log.tsv")
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]

    run(images_dir, tmp_path / "straight", steps=4)
    resumed = torch.load(tmp_path / "killed" / "out" / "generator.pt", weights_only=True)
    straight = torch.load(tmp_path / "straight" / "out" / "generator.pt", weights_only=True)
    for part in ("g_ema", "g", "d"):
        for key, value in straight[part].items():
            torch.testing.assert_close(resumed[part][key], value, rtol=1e-5, atol=1e-6)
    straight_rows = read_log(tmp_path / "straight" / "out" / "training_log.tsv")
    assert [r["d_loss"] for r in rows] == [r["d_loss"] for r in straight_rows]


def test_raising_steps_continues_and_changed_options_start_afresh(images_dir, tmp_path):
    run(images_dir, tmp_path, steps=2)
    assert run(images_dir, tmp_path, steps=4)["resumed_from"] == 2
    assert run(images_dir, tmp_path, steps=4)["resumed_from"] == 4   # nothing left to do
    assert [int(r["step"]) for r in read_log(tmp_path / "out" / "training_log.tsv")] == [1, 2, 3, 4]
    changed = run(images_dir, tmp_path, steps=2, lr=0.001)
    assert changed["resumed_from"] is None
    assert [int(r["step"]) for r in read_log(tmp_path / "out" / "training_log.tsv")] == [1, 2]


def test_images_of_the_wrong_size_are_refused(tmp_path):
    folder = tmp_path / "images"
    save_png(np.zeros((16, 16, 3), np.uint8), folder / "a.png")
    save_png(np.zeros((20, 16, 3), np.uint8), folder / "b.png")
    with pytest.raises(PartsegError, match="b.png"):
        run(folder, tmp_path, steps=1)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PartsegError, match="no PNG"):
        run(empty, tmp_path, steps=1)
    with pytest.raises(PartsegError, match="not found"):
        run(tmp_path / "missing", tmp_path, steps=1)


@pytest.fixture(scope="module")
def small_generator():
    torch.manual_seed(0)
    return Generator(16, style_dim=16, n_mlp=2, channel_base=128, channel_max=16).eval()


def test_sample_images_is_seeded_and_prefix_stable(small_generator):
    five = sample_images(small_generator, 5, seed=7, batch_size=2)
    three = sample_images(small_generator, 3, seed=7, batch_size=3)
    other = sample_images(small_generator, 3, seed=8)
    assert five["images"].shape == (5, 16, 16, 3) and five["images"].dtype == np.uint8
    assert five["z"].shape == (5, 16) and five["wplus"].shape == (5, 6, 16)
    assert torch.equal(five["z"][:3], three["z"])
    np.testing.assert_array_equal(five["images"][:3], three["images"])
    assert not torch.equal(other["z"], three["z"])


def test_sample_wplus_reproduces_the_images_with_truncation(small_generator):
    out = sample_images(small_generator, 4, seed=1, truncation=0.5)
    with torch.no_grad():
        again = small_generator.synthesis(out["wplus"], noise="const")
    np.testing.assert_array_equal(signed_tensor_to_images(again), out["images"])
    # every layer has the same w, pulled halfway towards the mean
    centre = small_generator.mean_latent()
    with torch.no_grad():
        w = small_generator.mapping(out["z"])
    torch.testing.assert_close(out["wplus"][:, 3], centre + 0.5 * (w - centre))
    assert torch.equal(out["wplus"][:, 0], out["wplus"][:, -1])


def test_a_shipped_run_loads_records_its_checksum_and_resumes_where_it_says(images_dir, tmp_path):
    from partseg.gan.ship import ship
    from partseg.plumbing.io import file_sha256

    summary = run(images_dir, tmp_path, steps=4)
    out = tmp_path / "shipped"
    record = ship(Path(summary["run_dir"]), out, command="python -m stages.train_gan ...",
                  trained_on={"source": "synthetic", "resolution": 16, "seed": 0},
                  seconds=5400.0, probe=None, resumable=True)
    assert record["steps"] == 4 and record["wall_hours"] == 1.5
    assert record["sha256"] == file_sha256(out / "generator.pt")
    assert load_generator(out / "generator.pt").size == 16
    assert load_discriminator(out / "generator.pt") is not None
    run_id = Path(summary["run_dir"]).name
    assert record["run_id"] == run_id
    assert f"checkpoints/demo_gan/{run_id}/snapshot-000004.pt" in record["resume"]
    # Following the instructions: the copied snapshot is where a longer run resumes from.
    (tmp_path / "again" / "snap" / run_id).mkdir(parents=True)
    shutil.copyfile(out / "snapshot.pt", tmp_path / "again" / "snap" / run_id / "snapshot-000004.pt")
    assert run(images_dir, tmp_path / "again", steps=6)["resumed_from"] == 4
