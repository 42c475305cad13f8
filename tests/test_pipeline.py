"""The whole DAG, end to end, under both tools, on tests/tiny_params.yaml.

Snakemake and DVC share one state (src/partseg/plumbing/dvc_sync.py): whichever tool built last, the
other has nothing to do, and a changed param reruns exactly the stages that depend on it under
either tool. Proved in both orders, each in its own temporary copy of the repository:

- snakemake first: `snakemake --cores all` builds; then `dvc status` is up to date and `dvc repro`
  runs nothing; a few-shot param change is rebuilt by `dvc repro` (exactly its dependants) and
  `dvc metrics diff` names the metrics that changed; then `snakemake` runs nothing; an
  auto-shot param change is rebuilt by snakemake (exactly its dependants) and DVC agrees.
- dvc first: `dvc repro` builds; then `snakemake` runs nothing; a param change is
  rebuilt by snakemake (exactly its dependants) and DVC agrees.

How a plan is read: Snakemake's dry run lists every job it would run. DVC's dry run cannot see
past a stage whose output would change, so for DVC the plan is `dvc status` (the stages whose
own deps or params changed), and the exact set of reruns is checked on a real `dvc repro`.
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

ALL_STAGES = {"dataset", "train_gan", "sample", "baselines", "train_annotator", "annotate",
              "features", "train_fewshot", "invert_test", "predict_oneshot", "synthesize@0",
              "synthesize@1", "train_autoshot", "evaluate", "report"}
# The stages downstream of each param changed below (report reads all of params.yaml).
AFTER_FEWSHOT = {"train_fewshot", "predict_oneshot", "synthesize@0", "synthesize@1",
                 "train_autoshot", "evaluate", "report"}
AFTER_AUTOSHOT = {"train_autoshot", "evaluate", "report"}


def run(args: list[str], cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PARTSEG_DEVICE": "cpu"}
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result


def copy_project(destination: Path) -> Path:
    """A copy of the repository's files (tracked and new, not ignored) with tiny params."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split()
    for name in listed + [".dvc/config", ".dvc/.gitignore", ".dvcignore"]:
        source = ROOT / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    shutil.copy(ROOT / "tests" / "tiny_params.yaml", destination / "params.yaml")
    run(["git", "init", "-q"], destination)
    git_commit(destination, "copy")
    return destination


def git_commit(project: Path, message: str) -> None:
    run(["git", "add", "-A"], project)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message], project)


def set_param(project: Path, section: str, key: str, value) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params[section][key] = value
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def snakemake_plan(project: Path) -> set[str]:
    """The jobs `snakemake -n` would run, named as DVC stages (synthesize shard 0 is
    synthesize@0); empty when it has nothing to do."""
    result = run(["snakemake", "-n", "--cores", "1"], project)
    output = result.stdout + result.stderr
    # Every output has Snakemake's metadata (so a later param change is seen), also after DVC built.
    assert "missing provenance" not in output, output[-2000:]
    names = jobs_in_log(output)
    if not names:
        assert "Nothing to be done" in output, output[-2000:]
    return names


def snakemake_build(project: Path) -> set[str]:
    """Run `snakemake --cores all`; the stages it ran."""
    result = run(["snakemake", "--cores", "all"], project)
    output = result.stdout + result.stderr
    assert "partseg: WARNING" not in output, output[-3000:]
    return jobs_in_log(output)


def jobs_in_log(output: str) -> set[str]:
    """The jobs of a Snakemake log ("rule <name>:" blocks) as DVC stage names."""
    names = set()
    for rule, body in re.findall(r"^(?:local)?rule (\w+):\n((?:    .*\n)*)", output, flags=re.M):
        shard = re.search(r"wildcards: shard=(\d+)", body)
        names.add(f"{rule}@{shard.group(1)}" if shard else rule)
    return names - {"all"}


def flat_metrics(project: Path) -> dict[str, float]:
    """results/evaluate/metrics.json as DVC names its numbers: dotted keys, numbers only."""
    flat = {}

    def walk(value, prefix):
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(inner, f"{prefix}.{key}" if prefix else key)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[prefix] = value

    walk(json.loads((project / "results/evaluate/metrics.json").read_text()), "")
    return flat


def dvc_changed(project: Path) -> set[str]:
    """The stages `dvc status` reports as changed (own deps, params or outs)."""
    return set(json.loads(run(["dvc", "status", "--json"], project).stdout or "{}"))


def dvc_repro(project: Path) -> set[str]:
    """Run `dvc repro`; the stages it ran."""
    output = run(["dvc", "repro"], project).stdout
    return set(re.findall(r"Running stage '([^']+)'", output))


def test_snakemake_first_builds_everything_and_dvc_agrees(tmp_path_factory):
    project = copy_project(tmp_path_factory.mktemp("snakemake_first"))
    assert snakemake_build(project) == ALL_STAGES
    report = (project / "results/report/report.md").read_text()
    assert "## mIoU (%) per method and split" in report
    metrics = json.loads((project / "results/evaluate/metrics.json").read_text())
    for split in ("test", "test_shifted"):
        assert {"autoshot", "unet_k1", "unet_full"} <= set(metrics[split])
        assert "oneshot_mlp" in metrics[f"{split}_inverted_subset"]
        assert 0.0 <= metrics[split]["autoshot"]["miou"] <= 1.0
    assert (project / "results/benchmarks/train_gan.tsv").is_file()
    assert (project / "results/logs/train_gan.log").stat().st_size > 0

    # Snakemake's onsuccess recorded the run in dvc.lock: DVC has nothing to do.
    assert snakemake_plan(project) == set()
    assert dvc_changed(project) == set()
    assert dvc_repro(project) == set()
    git_commit(project, "built by snakemake")  # the baseline for `dvc metrics diff`

    # A few-shot param and an auto-shot one (at tiny sizes the few-shot change alone moves no
    # score; 40 auto-shot steps do): both tools see the same stages downstream; DVC rebuilds
    # exactly those.
    before = flat_metrics(project)
    set_param(project, "train_fewshot", "steps", 25)
    set_param(project, "train_autoshot", "steps", 40)
    assert snakemake_plan(project) == AFTER_FEWSHOT
    assert dvc_changed(project) == {"train_fewshot", "train_autoshot", "report"}  # report reads params.yaml
    assert dvc_repro(project) == AFTER_FEWSHOT
    after = flat_metrics(project)
    changed = json.loads(run(["dvc", "metrics", "diff", "--json"], project).stdout)
    named = set(changed.get("results/evaluate/metrics.json", {}))
    # dvc metrics diff names exactly the metrics whose values changed (HEAD vs workspace):
    # auto-shot was retrained on new labels; the baselines, not rerun, are not named.
    assert named == {key for key in after if after[key] != before.get(key)}
    assert any(key.startswith("test.autoshot.") for key in named), named
    assert not any(key.startswith("test.unet_k1.") for key in named), named

    # DVC built last: Snakemake's first real run adopts it (runs nothing), and then sees the
    # next change exactly.
    assert snakemake_build(project) == set()
    assert snakemake_plan(project) == set()
    set_param(project, "train_autoshot", "steps", 6)
    assert dvc_changed(project) == {"train_autoshot", "report"}
    assert snakemake_build(project) == AFTER_AUTOSHOT
    assert dvc_changed(project) == set()
    assert dvc_repro(project) == set()
    assert snakemake_plan(project) == set()


def test_dvc_first_builds_everything_and_snakemake_agrees(tmp_path_factory):
    project = copy_project(tmp_path_factory.mktemp("dvc_first"))
    assert dvc_repro(project) == ALL_STAGES
    # A dry run neither records DVC's builds nor takes the lock: it says so.
    plan = run(["snakemake", "-n", "--cores", "1"], project)
    assert "has builds Snakemake has not recorded yet" in plan.stderr
    assert snakemake_build(project) == set()  # adopted: no rerun
    assert snakemake_plan(project) == set()  # and no missing metadata
    assert dvc_changed(project) == set()  # adopting changed nothing DVC sees

    set_param(project, "train_autoshot", "steps", 6)
    assert snakemake_plan(project) == AFTER_AUTOSHOT
    assert dvc_changed(project) == {"train_autoshot", "report"}
    assert snakemake_build(project) == AFTER_AUTOSHOT
    assert dvc_changed(project) == set()
    assert dvc_repro(project) == set()
    assert snakemake_plan(project) == set()
