"""The whole DAG, end to end, under both tools, on tests/tiny_params.yaml.

In a temporary copy of the repository: `snakemake --cores all` builds everything, a second
`snakemake -n` has nothing to do, `dvc repro` builds, a changed few-shot parameter reruns only
train_fewshot and what depends on it, and `dvc metrics diff` reports on the metrics.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def run(args: list[str], cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PARTSEG_DEVICE": "cpu"}
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A copy of the repository's files (tracked and new, not ignored) with tiny params."""
    copy = tmp_path_factory.mktemp("project")
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split()
    for name in listed + [".dvc/config", ".dvc/.gitignore", ".dvcignore"]:
        source = ROOT / name
        if source.is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    shutil.copy(ROOT / "tests" / "tiny_params.yaml", copy / "params.yaml")
    for command in (["git", "init", "-q"], ["git", "add", "-A"],
                    ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"]):
        run(command, copy)
    return copy


def test_snakemake_builds_everything(project):
    run(["snakemake", "--cores", "all"], project)
    report = (project / "results/report/report.md").read_text()
    assert "## mIoU (%) per method and split" in report
    metrics = json.loads((project / "results/evaluate/metrics.json").read_text())
    for split in ("test", "test_shifted"):
        assert {"autoshot", "unet_k1", "unet_full"} <= set(metrics[split])
        assert "oneshot_mlp" in metrics[f"{split}_inverted_subset"]
        assert 0.0 <= metrics[split]["autoshot"]["miou"] <= 1.0
    assert (project / "results/benchmarks/train_gan.tsv").is_file()
    assert (project / "results/logs/train_gan.log").stat().st_size > 0


def test_second_snakemake_run_has_nothing_to_do(project):
    result = run(["snakemake", "-n", "--cores", "1"], project)
    assert "Nothing to be done" in result.stdout + result.stderr


def test_dvc_repro_then_one_param_reruns_only_downstream(project):
    run(["dvc", "repro"], project)
    run(["git", "add", "-A"], project)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "repro"], project)

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["train_fewshot"]["steps"] = 25
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    output = run(["dvc", "repro"], project).stdout
    rerun = set(re.findall(r"Running stage '([^']+)'", output))
    assert rerun == {"train_fewshot", "predict_oneshot", "synthesize@0", "synthesize@1",
                     "train_autoshot", "evaluate", "report"}

    diff = run(["dvc", "metrics", "diff", "--all", "--json"], project).stdout
    changed = json.loads(diff)["results/evaluate/metrics.json"]
    assert "test.autoshot.miou" in changed
