"""The experiments under both tools, on tests/tiny_params.yaml: the target `experiments` builds
every experiment and the combined report; DVC's experiments project (experiments/) agrees
afterwards, and a param change is rebuilt by `cd experiments && dvc repro` (exactly its
dependants) and then adopted by Snakemake, as the default run's stages are (test_pipeline.py).
"""

from __future__ import annotations

import json

import pytest

from test_pipeline import (ALL_STAGES, copy_project, dvc_changed, dvc_repro, git_commit,
                           jobs_in_log, run, set_param)

pytestmark = pytest.mark.slow

EXPERIMENT_STAGES = {"shots", "protocols", "train_vae", "representations", "partitions",
                     "video_clip", "video", "experiments_report"}


def snakemake(project, *args) -> str:
    result = run(["snakemake", "--cores", "all", *args], project)
    output = result.stdout + result.stderr
    assert "partseg: WARNING" not in output, output[-3000:]
    assert "missing provenance" not in output, output[-2000:]
    return output


def test_experiments_build_under_snakemake_and_dvc_agrees(tmp_path_factory):
    project = copy_project(tmp_path_factory.mktemp("experiments"))
    output = snakemake(project, "experiments")
    built = jobs_in_log(output)
    assert EXPERIMENT_STAGES <= built
    report = (project / "experiments/results/experiments_report/report.md").read_text()
    for heading in ("## Both face protocols", "## Representations", "## Parts of any shape",
                    "## Video"):
        assert heading in report, heading
    metrics = json.loads((project / "experiments/results/protocols/metrics.json").read_text())
    assert set(metrics) == {"face10", "face4"}
    assert 0.0 <= metrics["face4"]["k1"]["mean"] <= 1.0

    # Snakemake recorded its run in both DVC projects: neither has anything to do.
    experiments = project / "experiments"
    assert dvc_changed(experiments) == set()
    assert dvc_repro(experiments) == set()
    # The default run's stages the experiments needed were built and recorded too (those they
    # do not need, e.g. the baselines, were not built).
    assert built & ALL_STAGES and not dvc_changed(project) & built
    git_commit(project, "built by snakemake")

    # A change of the protocols experiment's params: DVC reruns exactly it and the report...
    set_param(project, "protocols", "names", ["face4"])
    assert dvc_changed(experiments) == {"protocols"}
    assert dvc_repro(experiments) == {"protocols", "experiments_report"}
    # ... and Snakemake's next run adopts DVC's build: it runs nothing, no stage of the
    # default run either, and a dry run afterwards has nothing to do.
    adopted = run(["snakemake", "--cores", "1", "experiments"], project)
    assert jobs_in_log(adopted.stdout + adopted.stderr) == set(), adopted.stderr[-2000:]
    plan = run(["snakemake", "-n", "--cores", "1", "experiments"], project)
    assert jobs_in_log(plan.stdout + plan.stderr) == set(), plan.stdout[-2000:]
