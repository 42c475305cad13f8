"""Stage train_gan adopting a pretrained generator: the checksum is recorded, and a shipped
generator whose record names other data is refused with what to do."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from partseg.gan import Generator, load_generator, save_checkpoint

ROOT = Path(__file__).resolve().parent.parent


def adopt(tmp_path: Path, checkpoint: Path) -> subprocess.CompletedProcess:
    params = yaml.safe_load((ROOT / "tests" / "tiny_params.yaml").read_text())
    params["train_gan"]["checkpoint"] = str(checkpoint)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return subprocess.run(
        [sys.executable, "-m", "stages.train_gan", "--params", str(tmp_path / "params.yaml"),
         "--threads", "1", "--dataset", str(tmp_path / "no_dataset"), "--snapshots",
         str(tmp_path / "snapshots"), "--out", str(tmp_path / "out")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={"PARTSEG_DEVICE": "cpu", "PATH": "/usr/bin:/bin"})


@pytest.fixture()
def shipped(tmp_path) -> Path:
    """A generator folder as the project ships one: generator.pt and record.yaml."""
    folder = tmp_path / "demo_gan"
    save_checkpoint(folder / "generator.pt",
                    g_ema=Generator(32, style_dim=32, n_mlp=2, channel_base=256, channel_max=32))
    record = {"trained_on": {"source": "synthetic", "resolution": 32, "seed": 0}, "kimg": 1.5}
    (folder / "record.yaml").write_text(yaml.safe_dump(record))
    return folder


def test_adopting_records_the_checksum(tmp_path, shipped):
    result = adopt(tmp_path, shipped / "generator.pt")
    assert result.returncode == 0, result.stderr
    options = yaml.safe_load((tmp_path / "out" / "training_options.yaml").read_text())
    digest = hashlib.sha256((shipped / "generator.pt").read_bytes()).hexdigest()
    assert options["sha256"] == digest and options["record"]["kimg"] == 1.5
    assert load_generator(tmp_path / "out" / "generator.pt").size == 32


def test_a_generator_trained_on_other_data_is_refused(tmp_path, shipped):
    record = yaml.safe_load((shipped / "record.yaml").read_text())
    record["trained_on"] = {"source": "synthetic", "resolution": 64, "seed": 3}
    (shipped / "record.yaml").write_text(yaml.safe_dump(record))
    result = adopt(tmp_path, shipped / "generator.pt")
    assert result.returncode == 2
    message = result.stderr.strip().splitlines()[-1]
    assert "was trained on other data: resolution 64 (yours: 32), seed 3 (yours: 0)" in message
    assert "Set train_gan.checkpoint: null" in message and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_missing_checkpoint_names_the_key(tmp_path):
    result = adopt(tmp_path, tmp_path / "nothing.pt")
    assert result.returncode == 2
    assert "train_gan.checkpoint" in result.stderr and "does not exist" in result.stderr
