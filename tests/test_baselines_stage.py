"""Stage baselines: the same UNets whether trained one after another or side by side."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch
import yaml

from partseg.data.synthetic import generate_synthetic_dataset

ROOT = Path(__file__).resolve().parent.parent


def run_stage(root: Path, threads: int, out: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stages.baselines", "--params", str(root / "params.yaml"),
         "--threads", str(threads), "--dataset", str(root / "dataset"),
         "--snapshots", str(root / f"snapshots_{out}"), "--out", str(root / out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={"PARTSEG_DEVICE": "cpu", "PATH": "/usr/bin:/bin", "TQDM_DISABLE": "1"})


def test_parallel_run_writes_the_same_models_as_the_sequential_one(tmp_path):
    generate_synthetic_dataset(tmp_path / "dataset", n_train=1, n_labeled=3, n_test=1,
                               n_test_shifted=1, show_progress=False, workers=1)
    params = yaml.safe_load((ROOT / "tests" / "tiny_params.yaml").read_text())
    params["baselines"] = {"label_counts": [1], "steps": 3, "seed": 0}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    for threads, out in ((1, "sequential"), (2, "parallel")):
        result = run_stage(tmp_path, threads, out)
        assert result.returncode == 0, result.stderr
    assert "2 UNets in 2 processes" in result.stderr
    for name in ("unet_k1", "unet_full"):
        assert (tmp_path / "parallel" / f"{name}_log.tsv").is_file()
        a, b = (torch.load(tmp_path / out / f"{name}.pt", weights_only=True)
                for out in ("sequential", "parallel"))
        assert a["meta"] == b["meta"]
        for key, value in a["state_dict"].items():
            assert torch.equal(value, b["state_dict"][key]), (name, key)

