# partseg: the pipeline for `snakemake --cores all`.
#
# This file holds the configuration, the targets and the hooks; the rules are in rules/*.smk,
# one file per topic, included in the order the default run's data flows, and in
# experiments/rules/*.smk (the paper's other experiments). One rule per stage, named as in
# dvc.yaml, stages/<name>.py and params.yaml; each runs `python -m stages.<name>` with the
# paths dvc.yaml gives it, all of which the stage requires (tests/test_dag.py checks that both
# files declare the same stages, data dependencies, outputs, params sections and arguments).
# Each rule's `params:` holds the params.yaml sections it reads, so changing one of them
# reruns exactly that rule and what depends on it. Logs: results/logs/, timings:
# results/benchmarks/ (the report reads them). Stages that use a GPU when one is present
# declare `gpu=GPUS` (0 unless PARTSEG_GPUS is set; profiles/slurm sets gpu=1 per rule).
# train_gan and train_autoshot train data-parallel on `processes` torchrun workers (one per
# GPU): PARTSEG_PROCESSES, else PARTSEG_GPUS, else 1; the SLURM profile asks for as many GPUs.

import os

configfile: "params.yaml"


include: "rules/common.smk"  # section(), stage_code(): the params and code a rule reads


# A bad params.yaml stops here, with `partseg check`'s message, before any job starts.
check_params_or_stop()

GPUS = int(os.environ.get("PARTSEG_GPUS", "0"))
PROCESSES = max(1, int(os.environ.get("PARTSEG_PROCESSES") or GPUS or 1))
SHARDS = config["synthesize"]["shards"]
# Only used with --use-conda. A conda env path in an included file is read from that file's
# folder: CONDA_ENV from rules/, EXPERIMENTS_CONDA_ENV (below) from experiments/rules/.
CONDA_ENV = "../envs/partseg.yaml"
LOGS = "results/logs"
BENCH = "results/benchmarks"
CORES = total_cores()

# Threads: the supervised baselines (and GAN training from scratch) take half the cores for
# most of the run; the stages that run meanwhile (the few-shot chain up to train_autoshot, and
# the test inversion) take the other half, so neither waits for the other. Stages that run
# alone (dataset first, evaluate and report last) take every core. train_autoshot used to take
# every core too, which made it wait for the baselines to finish while one core stood idle.
LONG_BRANCH = max(1, CORES // 2)
BESIDE_BASELINES = max(1, CORES - LONG_BRANCH)
# When cores are short, Snakemake starts the higher priority first: the few-shot chain up to
# auto-shot is the critical path, the baselines the longest job beside it; the test inversion
# (needed only by predict_oneshot and evaluate) fills the gaps.
CRITICAL_PATH = 2
LONG_BRANCH_PRIORITY = 1


rule all:
    input:
        "results/report",
        "results/evaluate",
    default_target: True


# ---- The default run's rules, by topic ---------------------------------------------------
include: "rules/data.smk"
include: "rules/gan.smk"
include: "rules/baselines.smk"
include: "rules/shots.smk"
include: "rules/fewshot.smk"
include: "rules/oneshot.smk"
include: "rules/autoshot.smk"
include: "rules/evaluate.smk"


# ---- The paper's other experiments (not in `all`) ---------------------------------------
# `snakemake --cores all experiments` builds them after the default run's results; DVC's
# stages for them are in experiments/dvc.yaml, a DVC project of its own so that the default
# `dvc repro` leaves them out too (experiments/README.md). Each experiments/rules/<name>.smk
# adds its output folder to EXPERIMENTS.
EXPERIMENTS = {}
EXPERIMENTS_CONDA_ENV = "../../envs/partseg.yaml"


include: "experiments/rules/shots.smk"
include: "experiments/rules/protocols.smk"
include: "experiments/rules/representations.smk"
include: "experiments/rules/video.smk"
include: "experiments/rules/partitions.smk"
include: "experiments/rules/experiments_report.smk"


rule experiments:
    input:
        "experiments/results/experiments_report",


# ---- Snakemake and DVC agree -------------------------------------------------------------
# Each tool keeps its own record of what was built (Snakemake: .snakemake/metadata; DVC:
# dvc.lock) and ignores the other's. These hooks translate (src/partseg/plumbing/dvc_sync.py says
# why this way): after a successful run, `dvc commit -f` the stages that ran, so `dvc status`
# is up to date and `dvc repro` has nothing to do; and, as the Snakefile loads, adopt what
# `dvc repro` built since the last agreement (`snakemake --touch` of exactly the stages
# dvc.lock proves up to date), so `snakemake -n` has nothing to do and a later param change
# reruns exactly its dependants under either tool. Both only warn if DVC is absent or fails.
import sys

try:
    from partseg.plumbing import dvc_sync
except ImportError as error:  # partseg not installed in this environment: nothing to sync
    dvc_sync = None
    print(f"partseg: WARNING: cannot import partseg ({error}); Snakemake and DVC records "
          "are not kept in step", file=sys.stderr)

if dvc_sync is not None:
    dvc_sync.stop_if_dvc_is_running(workflow)
    dvc_sync.adopt_dvc_builds(workflow)

# A killed job's output is gone while the results made from it remain: rebuild it.
rebuild_missing_intermediates()


onsuccess:
    if dvc_sync is not None:
        dvc_sync.record_snakemake_run_in_dvc(workflow)


onerror:
    if dvc_sync is not None:
        dvc_sync.record_snakemake_run_in_dvc(workflow, failed=True)
