"""Data-parallel training (partseg.plumbing.distributed) under torchrun with 2 gloo processes on CPU.

What "the same run" means: with the same global batch, a 2-process run draws the same batches
and augmentations, normalises the loss by the global pixel count and uses BatchNorm statistics
of the global batch, so it computes the 1-process gradient. Only the order of floating-point
sums differs (each rank sums its half, then the halves are added), which changes fp32 results
at about 1e-7 relative per reduction; over a few Adam steps at lr 1e-2 that stays far below
1e-3. A run that ignored the other rank's half (per-rank BatchNorm, per-rank loss mean, or
the wrong rows) differs at the 1e-2 level (test_a_per_rank_batch_would_differ shows it).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import two_squares

ROOT = Path(__file__).resolve().parent.parent
TOLERANCE = {"rtol": 1e-3, "atol": 1e-4}

# What both workers start with: arguments, one thread, the process group, and (die_after)
# rank 0 dying abruptly right after writing its first snapshot: a killed run.
PRELUDE = '''
import os, sys
import numpy as np, torch
from partseg.plumbing import distributed
from partseg.{module} import train as trainer

out, steps, die_after, global_batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(1)
distributed.init_from_environment("cpu")
if die_after:
    save = trainer.{save}
    def save_then_die(*args):
        save(*args)
        os._exit(3)
    trainer.{save} = save_then_die
'''

WORKER = PRELUDE.format(module="autoshot", save="_save_snapshot") + '''
data = np.load(os.environ["DATA"])
model, history = trainer.train_segmenter(
    data["images"], data["masks"], num_classes=3, target_kind="hard",
    unet_config={"base_channels": 4, "depth": 2}, steps=steps, batch_size=global_batch, lr=1e-2,
    augment={"color_jitter": 0.1}, seed=0, device="cpu", snapshot_dir=os.environ["SNAPSHOTS"],
    snapshot_every=2, log_every=1)
if distributed.current().is_main:
    torch.save({"state": model.state_dict(), "loss": [row["loss"] for row in history]}, out)
distributed.shutdown()
'''


GAN_WORKER = PRELUDE.format(module="gan", save="save_snapshot") + '''
summary = trainer.train_gan(
    images_dir=os.environ["DATA"], out_dir=out + ".out", snapshot_dir=os.environ["SNAPSHOTS"],
    size=16, style_dim=16, n_mlp=2, channel_base=128, channel_max=16, batch_size=global_batch,
    steps=steps, r1_every=2, pl_every=2, pl_weight=1.0, seed=3, snapshot_every=2, device="cpu")
if distributed.current().is_main:
    import csv
    from pathlib import Path
    snapshot = torch.load(sorted(Path(summary["run_dir"]).glob("snapshot-*.pt"))[-1],
                          weights_only=True)
    with open(out + ".out/training_log.tsv") as handle:
        loss = [float(r["d_loss"]) for r in csv.DictReader(handle, delimiter="\t")]
    state = {f"{k}.{n}": v for k in ("g", "d", "g_ema") for n, v in snapshot[k].items()}
    torch.save({"state": state, "loss": loss}, out)
distributed.shutdown()
'''


def gan_images(tmp_path):
    from partseg.plumbing.io import save_png

    folder = tmp_path / "images"
    if not folder.exists():
        rng = np.random.default_rng(0)
        for i in range(12):
            save_png(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), folder / f"{i:03d}.png")
    return folder


def run_worker(tmp_path, name, processes, *, steps=6, die_after=0, global_batch=6,
               snapshots=None, check=True, gan=False):
    script = tmp_path / ("gan_worker.py" if gan else "worker.py")
    script.write_text(GAN_WORKER if gan else WORKER)
    data = tmp_path / "data.npz"
    if not data.exists():
        images, masks = two_squares(12, 16, seed=0, noise=15)
        np.savez(data, images=images, masks=masks)
    if gan:
        data = gan_images(tmp_path)
    env = {**os.environ, "DATA": str(data), "OMP_NUM_THREADS": "1",
           "SNAPSHOTS": str(snapshots or tmp_path / f"snapshots_{name}")}
    out = tmp_path / f"{name}.pt"
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone",
                 f"--nproc_per_node={processes}"] if processes > 1 else [sys.executable])
    result = subprocess.run([*launcher, str(script), str(out), str(steps), str(die_after),
                             str(global_batch)], env=env, capture_output=True, text=True,
                            timeout=240)
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result, out


def assert_same_model(a: Path, b: Path, **tolerance):
    first, second = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    assert first["state"].keys() == second["state"].keys()
    for key in first["state"]:
        torch.testing.assert_close(first["state"][key].float(), second["state"][key].float(),
                                   **(tolerance or TOLERANCE), msg=key)
    np.testing.assert_allclose(first["loss"], second["loss"], rtol=1e-3)


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("one")
    return run_worker(tmp_path, "one", 1)[1]


def test_two_gloo_processes_train_the_one_process_model(tmp_path, one_process):
    _, two = run_worker(tmp_path, "two", 2)
    assert_same_model(one_process, two)


def test_a_killed_two_process_run_resumes_where_its_snapshot_left(tmp_path, one_process):
    snapshots = tmp_path / "snapshots"
    killed, out = run_worker(tmp_path, "resumed", 2, die_after=2, snapshots=snapshots,
                             check=False)
    assert killed.returncode != 0 and not out.exists()
    snapshot = torch.load(snapshots / "segmenter_snapshot.pt", weights_only=True)
    assert snapshot["step"] == 2
    resumed, out = run_worker(tmp_path, "resumed", 2, snapshots=snapshots)
    assert "resuming at step 2" in resumed.stderr
    assert_same_model(one_process, out)


@pytest.fixture(scope="module")
def gan_one_process(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("gan_one")
    return run_worker(tmp_path, "gan_one", 1, gan=True, global_batch=8)[1]


def test_gan_on_two_gloo_processes_trains_the_one_process_gan(tmp_path, gan_one_process):
    """G, D and the EMA after 6 steps with R1 and path length every 2 steps, style mixing and
    per-sample noise: the global batch of 8 split 4 + 4 (whole minibatch-stddev groups)."""
    _, two = run_worker(tmp_path, "gan_two", 2, gan=True, global_batch=8)
    assert_same_model(gan_one_process, two)


def test_a_killed_two_process_gan_run_resumes(tmp_path, gan_one_process):
    snapshots = tmp_path / "snapshots"
    killed, out = run_worker(tmp_path, "gan_resumed", 2, gan=True, global_batch=8, die_after=2,
                             snapshots=snapshots, check=False)
    assert killed.returncode != 0 and not out.exists()
    resumed, out = run_worker(tmp_path, "gan_resumed", 2, gan=True, global_batch=8,
                              snapshots=snapshots)
    assert "resuming from snapshot step 2" in resumed.stdout + resumed.stderr
    assert_same_model(gan_one_process, out)


def test_gan_batch_that_splits_groups_is_refused(tmp_path):
    """4 images make one stddev group of 4; two ranks of 2 would make groups of 2."""
    result, _ = run_worker(tmp_path, "gan_bad", 2, gan=True, global_batch=4, steps=1, check=False)
    assert result.returncode != 0
    assert "train_gan.batch_size: 4 images cannot be split over 2 processes" in result.stderr


def test_a_per_rank_batch_would_differ(tmp_path, one_process):
    """The tolerance is meaningful: half the global batch (what a rank alone would see) trains
    a model outside it."""
    _, half = run_worker(tmp_path, "half", 1, global_batch=3)
    with pytest.raises(AssertionError):
        assert_same_model(one_process, half)


def test_global_batchnorm_equals_batchnorm_with_one_process():
    from partseg.plumbing.distributed import GlobalBatchNorm2d, convert_batchnorm

    torch.manual_seed(0)
    plain = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    converted = convert_batchnorm(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3),
                                                      torch.nn.BatchNorm2d(4)))
    converted.load_state_dict(plain.state_dict())
    assert isinstance(converted[1], GlobalBatchNorm2d)
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(converted(x), plain(x))


def test_stage_trains_on_two_processes(tmp_path):
    """`python -m stages.train_autoshot --processes 2` relaunches under torchrun; rank 0 writes."""
    images, masks = two_squares(8, 32, seed=0, noise=15)
    shard = tmp_path / "synthesize" / "shard_0"
    shard.mkdir(parents=True)
    np.save(shard / "images.npy", images)
    np.save(shard / "logits.npy", (6.0 * np.eye(3, dtype=np.float32)[masks]
                                   .transpose(0, 3, 1, 2)).astype(np.float16))
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    (dataset / "classes.yaml").write_text("[background, a, b]\n")
    params = yaml.safe_load((ROOT / "tests" / "tiny_params.yaml").read_text())
    params["synthesize"]["shards"] = [0]
    params["train_autoshot"]["self_train_images"] = 0  # this dataset has no real `train` split
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    outs = {}
    for processes in (1, 2):
        out = tmp_path / f"out{processes}"
        result = subprocess.run(
            [sys.executable, "-m", "stages.train_autoshot", "--params", str(tmp_path / "params.yaml"),
             "--threads", "2", "--processes", str(processes), "--shards", str(shard.parent),
             "--dataset", str(dataset), "--snapshots", str(tmp_path / f"snap{processes}"),
             "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=240,
            env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert result.returncode == 0, result.stderr[-3000:]
        assert sorted(p.name for p in out.iterdir()) == ["model.pt", "training_log.tsv"]
        outs[processes] = torch.load(out / "model.pt", weights_only=True)["state_dict"]
    assert "launching 2 processes" in result.stderr
    for key in outs[1]:
        torch.testing.assert_close(outs[1][key].float(), outs[2][key].float(), **TOLERANCE)


def test_bad_process_count_is_one_clear_message(tmp_path):
    result = subprocess.run([sys.executable, "-m", "stages.train_autoshot", "--help"], cwd=ROOT,
                            capture_output=True, text=True,
                            env={**os.environ, "PARTSEG_PROCESSES": "two"})
    assert result.returncode != 0
    assert "PARTSEG_PROCESSES='two'" in result.stderr and "Traceback" not in result.stderr


def test_train_gan_stage_trains_on_two_processes(tmp_path):
    """`python -m stages.train_gan --processes 2` on the tiny dataset: rank 0 writes the stage's
    outputs, and the generator equals the 1-process stage's."""
    params = yaml.safe_load((ROOT / "tests" / "tiny_params.yaml").read_text())
    params["train_gan"].update(batch_size=8, steps=3)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def stage(*args):
        result = subprocess.run([sys.executable, "-m", *args, "--params",
                                 str(tmp_path / "params.yaml")], cwd=ROOT, capture_output=True,
                                text=True, timeout=240, env=env)
        assert result.returncode == 0, result.stderr[-3000:]
        return result

    stage("stages.dataset", "--threads", "1", "--out", str(tmp_path / "dataset"))
    generators = {}
    for processes in (1, 2):
        out = tmp_path / f"gan{processes}"
        stage("stages.train_gan", "--threads", "2", "--processes", str(processes),
              "--dataset", str(tmp_path / "dataset"), "--snapshots", str(tmp_path / f"s{processes}"),
              "--out", str(out))
        assert {"generator.pt", "training_log.tsv", "samples.png"} <= {p.name for p in out.iterdir()}
        generators[processes] = torch.load(out / "generator.pt", weights_only=True)["g_ema"]
    for key in generators[1]:
        torch.testing.assert_close(generators[1][key].float(), generators[2][key].float(),
                                   **TOLERANCE, msg=key)
