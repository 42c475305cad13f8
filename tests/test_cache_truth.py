"""The cache tells the truth, under Snakemake and DVC, on tests/tiny_params.yaml.

- A library edit reruns exactly the stages whose imports reach the edited file (and what
  depends on them), under both tools.
- An upstream change retrains the auto-shot UNet from scratch, never from the old snapshot;
  other pseudo-labels train a new self-trained student.
- A SIGKILL during a training stage or during `synthesize`, then the plain command, gives the
  same outputs as an uninterrupted run.
- A bad params value or a missing data folder stops both tools before anything is deleted.
- Resuming at the final step still writes the training log; `snakemake --unlock` works; the
  two tools refuse to run at the same time in one folder.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml

from test_pipeline import (copy_project, dvc_changed, git_commit, run, set_param,
                           snakemake_build, snakemake_plan)

pytestmark = pytest.mark.slow
ENV = {**os.environ, "DVC_NO_ANALYTICS": "1", "PARTSEG_DEVICE": "cpu"}
AFTER_SYNTHESIZE = {"synthesize@0", "synthesize@1", "train_autoshot", "evaluate", "report"}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A tiny project built once by Snakemake (and recorded in dvc.lock)."""
    project = copy_project(tmp_path_factory.mktemp("cache_truth"))
    snakemake_build(project)
    git_commit(project, "built")
    return project


def attempt(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Run a command that may fail; its result."""
    return subprocess.run(args, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=900)


def tree_digest(folder: Path) -> str:
    """A hash of every file below `folder` (names and bytes)."""
    digest = hashlib.sha1()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + path.read_bytes())
    return digest.hexdigest()


def results_digest(project: Path) -> dict[str, str]:
    return {p.name: tree_digest(p) for p in sorted((project / "results").iterdir())
            if p.is_dir() and p.name not in ("logs", "benchmarks")}


def append_comment(project: Path, relative: str) -> None:
    with open(project / relative, "a") as handle:
        handle.write("\n# an edit\n")


def restore(project: Path, *relative: str) -> None:
    run(["git", "checkout", "--", *relative], project)


def test_a_library_edit_reruns_exactly_its_importers_under_both_tools(project):
    # autoshot/synthesize.py is run by the synthesize stage only (not by the baselines or the
    # annotator, which use autoshot/train.py).
    append_comment(project, "src/partseg/autoshot/synthesize.py")
    assert snakemake_plan(project) == AFTER_SYNTHESIZE
    assert dvc_changed(project) == {"synthesize@0", "synthesize@1"}
    restore(project, "src/partseg/autoshot/synthesize.py")
    # gan/sampling.py: every stage that loads or samples the generator.
    append_comment(project, "src/partseg/gan/sampling.py")
    plan = snakemake_plan(project)
    assert {"train_gan", "sample", "annotate", "synthesize@0"} <= plan
    assert not {"dataset", "baselines", "train_annotator"} & plan
    restore(project, "src/partseg/gan/sampling.py")
    # report.py: the report alone.
    append_comment(project, "src/partseg/report.py")
    assert snakemake_plan(project) == {"report"}
    assert dvc_changed(project) == {"report"}
    restore(project, "src/partseg/report.py")
    snakemake_build(project)  # the restored files are newer than the outputs: rebuilt once
    assert snakemake_plan(project) == set()


def test_an_upstream_change_retrains_the_unet_from_scratch(project):
    snapshots = project / "checkpoints/train_autoshot"
    old = {p.name for p in snapshots.iterdir()}
    set_param(project, "synthesize", "seed", 7)  # new synthetic data, same UNet options
    ran = snakemake_build(project)
    assert {"synthesize@0", "train_autoshot"} <= ran
    log = (project / "results/logs/train_autoshot.log").read_text()
    assert "resuming" not in log, log
    new = {p.name for p in snapshots.iterdir()}
    assert len(new) == 1 and new != old  # keyed by the inputs; the old key's folder is gone
    # Resuming a finished run (0 steps to train) still writes the log and the model.
    run(["snakemake", "--cores", "1", "--forcerun", "train_autoshot"], project)
    assert "resuming at step" in (project / "results/logs/train_autoshot.log").read_text()
    assert (project / "results/train_autoshot/training_log.tsv").stat().st_size > 0
    assert (project / "results/train_autoshot/model.pt").is_file()
    git_commit(project, "seed 7")


def test_another_pseudo_label_choice_trains_a_new_student(project):
    # The teacher's options and data are unchanged, so it resumes its finished snapshot. At
    # confidence 0 every pixel is kept (the tiny params keep each class's surest half, ties
    # included), so the student's labels change: it must train afresh, not resume.
    set_param(project, "train_autoshot", "self_train_confidence", 0.0)
    assert "train_autoshot" in snakemake_build(project)
    log = (project / "results/logs/train_autoshot.log").read_text()
    assert "100.0% of the pixels kept" in log
    resumed = [line for line in log.splitlines() if "resuming at step" in line]
    assert resumed and not any("student" in line for line in resumed), resumed
    students = list((project / "checkpoints/train_autoshot").glob("*/student/*"))
    assert len(students) == 1 and students[0].name.startswith("labels-")
    git_commit(project, "confidence 0")


def test_the_prior_correction_moves_only_the_head_bias_and_trains_nothing(project):
    """train_autoshot.prior_correction is applied after training: changing it reruns the
    stage, which resumes both finished snapshots and shifts at most the head's bias, by the
    offsets it recorded (tests/test_autoshot_train.py checks the offsets themselves; the tiny
    few-shot net labels nearly every synthetic pixel alike, so here they may all be 0)."""
    def saved() -> dict:
        return torch.load(project / "results/train_autoshot/model.pt", weights_only=True)

    corrected = saved()
    assert corrected["meta"]["prior_correction"]["strength"] == 1.0
    offsets = torch.tensor(corrected["meta"]["prior_correction"]["logit_offsets"])
    set_param(project, "train_autoshot", "prior_correction", 0.0)
    assert "train_autoshot" in snakemake_build(project)
    log = (project / "results/logs/train_autoshot.log").read_text()
    assert log.count("resuming at step") == 2, log  # the teacher and the student
    plain = saved()
    assert plain["meta"]["prior_correction"] is None
    weights, plain_weights = corrected["state_dict"], plain["state_dict"]
    assert {name for name in weights if not torch.equal(weights[name], plain_weights[name])} \
        <= {"head.bias"}
    torch.testing.assert_close(weights["head.bias"].double() - plain_weights["head.bias"].double(),
                               offsets.double(), rtol=0, atol=1e-5)
    git_commit(project, "no prior correction")


def kill_when_running(command: list[str], project: Path, module: str, out: str) -> None:
    """Start `command`; once the `python -m <module>` process it starts has begun writing `out`
    (its `<out>.tmp` folder exists), SIGKILL that process, as the OOM killer would; wait for the
    command to stop."""
    process = subprocess.Popen(command, cwd=project, env=ENV, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline, killed = time.time() + 300, False
    while time.time() < deadline and process.poll() is None and not killed:
        stages = stage_processes(module, project)
        if stages and (project / f"{out}.tmp").is_dir():
            time.sleep(0.5)  # into the work
            for stage in stages:
                stage.send_signal(signal.SIGKILL)
            killed = True
        time.sleep(0.05)
    process.wait(timeout=300)
    assert killed, f"{module} was not seen writing {out}"
    assert process.returncode != 0  # Snakemake saw the job fail


def stage_processes(module: str, project: Path) -> list:
    """The running `python -m <module>` processes of `project`."""
    import psutil

    found = []
    for process in psutil.process_iter(["cmdline", "cwd"]):
        command, cwd = process.info["cmdline"] or [], process.info["cwd"]
        if module in command and cwd and Path(cwd).resolve() == project.resolve():
            found.append(process)
    return found


def shard_arrays(project: Path) -> dict[str, str]:
    """The synthesized images and labels of shard 0 (its meta.json also holds a wall time)."""
    folder = project / "results/synthesize/shard_0"
    return {name: hashlib.sha1((folder / name).read_bytes()).hexdigest()
            for name in ("images.npy", "logits.npy")}


def model_weights(project: Path) -> dict:
    return torch.load(project / "results/train_autoshot/model.pt", weights_only=True)["state_dict"]


@pytest.mark.parametrize("module, out, seed", [
    ("stages.train_autoshot", "results/train_autoshot", 21),
    ("stages.synthesize", "results/synthesize/shard_0", 22),
])
def test_a_kill_then_the_plain_command_gives_an_uninterrupted_runs_outputs(project, module, out,
                                                                           seed):
    # New work for both stages, long enough to be killed in the middle of it.
    set_param(project, "synthesize", "seed", seed)
    set_param(project, "synthesize", "images_per_shard", 200)
    set_param(project, "train_autoshot", "steps", 600)
    kill_when_running(["snakemake", "--cores", "1"], project, module, out)
    snakemake_build(project)  # the plain command fills the hole
    assert snakemake_plan(project) == set()
    assert dvc_changed(project) == set()
    shard, weights = shard_arrays(project), model_weights(project)
    # The uninterrupted run of the same params: the killed stage and what follows, from scratch.
    rule = module.split(".")[1]
    run(["rm", "-rf", "checkpoints/train_autoshot"], project)
    run(["snakemake", "--cores", "1", "--forcerun", rule], project)
    assert shard_arrays(project) == shard
    again = model_weights(project)
    assert weights.keys() == again.keys()
    for name in weights:
        assert torch.allclose(weights[name].float(), again[name].float(), atol=1e-5), name
    git_commit(project, f"after a kill in {rule}")


def test_a_bad_params_value_stops_both_tools_and_deletes_nothing(project):
    before = results_digest(project)
    set_param(project, "train_autoshot", "steps", "1500")  # a string
    for command in (["snakemake", "-n", "--cores", "1"],
                    ["snakemake", "--cores", "1", "results/train_autoshot"]):
        result = attempt(command, project)
        assert result.returncode == 2, result.stderr[-2000:]
        assert "train_autoshot.steps: expected an integer" in result.stderr
        assert "Traceback" not in result.stderr
    result = attempt(["dvc", "repro", "train_autoshot"], project)
    assert result.returncode != 0
    assert "train_autoshot.steps: expected an integer" in result.stdout + result.stderr
    assert results_digest(project) == before
    restore(project, "params.yaml")

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["data"].update(source="folder", path="data/no_such_folder")
    params["annotate"]["source"] = "inverted"  # the simulated annotator needs the demo data
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    result = attempt(["snakemake", "-n", "--cores", "1"], project)
    assert result.returncode == 2
    assert "data.path: data/no_such_folder is not a folder" in result.stderr
    restore(project, "params.yaml")
    assert results_digest(project) == before


def test_unlock_works_and_the_two_tools_never_run_at_once(project):
    result = attempt(["snakemake", "--unlock"], project)
    assert result.returncode == 0, result.stderr[-2000:]
    # DVC running (its repository lock held): Snakemake refuses to start.
    import zc.lockfile

    (project / ".dvc/tmp").mkdir(exist_ok=True)
    held = zc.lockfile.LockFile(str(project / ".dvc/tmp/lock"))
    try:
        result = attempt(["snakemake", "--cores", "1", "--forcerun", "report"], project)
    finally:
        held.close()
    assert result.returncode == 2 and "DVC is running in this folder" in result.stderr
    # Snakemake running (its lock files present): a stage run by `dvc repro` refuses.
    locks = project / ".snakemake/locks"
    locks.mkdir(exist_ok=True)
    (locks / "0.input.lock").write_text("x")
    try:
        result = attempt(["dvc", "repro", "--force", "report"], project)
    finally:
        (locks / "0.input.lock").unlink()
    assert result.returncode != 0
    assert "Snakemake is running in this folder" in result.stdout + result.stderr
    assert (project / "results/report/report.md").is_file()
