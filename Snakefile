# partseg: the pipeline for `snakemake --cores all`.
#
# One rule per stage, named as in dvc.yaml, stages/<name>.py and params.yaml; each runs
# `python -m stages.<name>` with the same paths as dvc.yaml (tests/test_dag.py checks that
# both files declare the same stages, data dependencies, outputs and params sections).
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
CONDA_ENV = "envs/partseg.yaml"  # only used with --use-conda
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


rule dataset:
    input:
        code=stage_code("dataset"),
        user_data=config["data"]["path"],
    output:
        directory("data/dataset"),
    params:
        section("data", "dataset"),
    log:
        f"{LOGS}/dataset.log",
    benchmark:
        f"{BENCH}/dataset.tsv"
    threads: CORES  # runs alone, first: render with every core
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        CONDA_ENV
    shell:
        "python -m stages.dataset --threads {threads} --out {output} 2>&1 | tee {log}"


rule train_gan:
    input:
        code=stage_code("train_gan"),
        pretrained="data/pretrained/demo_gan",
        dataset="data/dataset",
    output:
        directory("results/train_gan"),
    params:
        section("data", "dataset.seed", "train_gan"),
    log:
        f"{LOGS}/train_gan.log",
    benchmark:
        f"{BENCH}/train_gan.tsv"
    threads: LONG_BRANCH
    priority: CRITICAL_PATH
    resources:
        mem_mb=4000,
        runtime=24 * 60,
        gpu=GPUS,
        processes=PROCESSES,
    conda:
        CONDA_ENV
    shell:
        "python -m stages.train_gan --threads {threads} --processes {resources.processes} "
        "--dataset {input.dataset} "
        "--snapshots checkpoints/train_gan --out {output} 2>&1 | tee {log}"


rule sample:
    input:
        code=stage_code("sample"),
        generator="results/train_gan",
    output:
        directory("results/sample"),
    params:
        section("sample"),
    log:
        f"{LOGS}/sample.log",
    benchmark:
        f"{BENCH}/sample.tsv"
    threads: 1
    priority: CRITICAL_PATH
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        CONDA_ENV
    shell:
        "python -m stages.sample --threads {threads} --generator {input.generator} "
        "--out {output} 2>&1 | tee {log}"


rule baselines:
    input:
        code=stage_code("baselines"),
        dataset="data/dataset",
    output:
        directory("results/baselines"),
    params:
        section("data", "baselines", "train_autoshot.unet", "train_autoshot.augment",
                "train_autoshot.batch_size", "train_autoshot.lr", "train_autoshot.weight_decay"),
    log:
        f"{LOGS}/baselines.log",
    benchmark:
        f"{BENCH}/baselines.tsv"
    threads: LONG_BRANCH
    priority: LONG_BRANCH_PRIORITY
    resources:
        mem_mb=4000,
        runtime=4 * 60,
        gpu=GPUS,
    conda:
        CONDA_ENV
    shell:
        "python -m stages.baselines --threads {threads} --dataset {input.dataset} "
        "--snapshots checkpoints/baselines --out {output} 2>&1 | tee {log}"


rule train_annotator:
    input:
        code=stage_code("train_annotator"),
        pretrained="data/pretrained/annotator",
        dataset="data/dataset",
    output:
        directory("results/train_annotator"),
    params:
        section("data", "annotate.source", "train_annotator"),
    log:
        f"{LOGS}/train_annotator.log",
    benchmark:
        f"{BENCH}/train_annotator.tsv"
    threads: BESIDE_BASELINES
    priority: CRITICAL_PATH
    resources:
        mem_mb=4000,
        runtime=2 * 60,
        gpu=GPUS,
    conda:
        CONDA_ENV
    shell:
        "python -m stages.train_annotator --threads {threads} --dataset {input.dataset} "
        "--snapshots checkpoints/train_annotator --out {output} 2>&1 | tee {log}"


rule annotate:
    input:
        code=stage_code("annotate"),
        dataset="data/dataset",
        generator="results/train_gan",
        samples="results/sample",
        annotator="results/train_annotator",
        manual_dir=config["annotate"]["manual_dir"],
    output:
        directory("results/annotate"),
    params:
        section("annotate", "inversion"),
    log:
        f"{LOGS}/annotate.log",
    benchmark:
        f"{BENCH}/annotate.tsv"
    threads: BESIDE_BASELINES
    priority: CRITICAL_PATH
    resources:
        mem_mb=2000,
        runtime=60,
    conda:
        CONDA_ENV
    shell:
        "python -m stages.annotate --threads {threads} --dataset {input.dataset} "
        "--generator {input.generator} --samples {input.samples} "
        "--annotator {input.annotator}/annotator.pt --out {output} 2>&1 | tee {log}"


rule features:
    input:
        code=stage_code("features"),
        generator="results/train_gan",
        annotations="results/annotate",
    output:
        directory("results/features"),
    params:
        section("features"),
    log:
        f"{LOGS}/features.log",
    benchmark:
        f"{BENCH}/features.tsv"
    threads: BESIDE_BASELINES
    priority: CRITICAL_PATH
    resources:
        mem_mb=2000,
        runtime=60,
        gpu=GPUS,
    conda:
        CONDA_ENV
    shell:
        "python -m stages.features --threads {threads} --generator {input.generator} "
        "--annotations {input.annotations} --out {output} 2>&1 | tee {log}"


rule train_fewshot:
    input:
        code=stage_code("train_fewshot"),
        features="results/features",
        annotations="results/annotate",
    output:
        directory("results/train_fewshot"),
    params:
        section("train_fewshot"),
    log:
        f"{LOGS}/train_fewshot.log",
    benchmark:
        f"{BENCH}/train_fewshot.tsv"
    threads: BESIDE_BASELINES
    priority: CRITICAL_PATH
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=GPUS,
    conda:
        CONDA_ENV
    shell:
        "python -m stages.train_fewshot --threads {threads} --features {input.features} "
        "--annotations {input.annotations} --out {output} 2>&1 | tee {log}"


rule invert_test:
    input:
        code=stage_code("invert_test"),
        dataset="data/dataset",
        generator="results/train_gan",
    output:
        directory("results/invert_test"),
    params:
        section("dataset", "inversion", "features", "invert_test"),
    log:
        f"{LOGS}/invert_test.log",
    benchmark:
        f"{BENCH}/invert_test.tsv"
    threads: BESIDE_BASELINES
    resources:
        mem_mb=4000,
        runtime=4 * 60,
        gpu=GPUS,
    conda:
        CONDA_ENV
    shell:
        "python -m stages.invert_test --threads {threads} --dataset {input.dataset} "
        "--generator {input.generator} --out {output} 2>&1 | tee {log}"


rule predict_oneshot:
    input:
        code=stage_code("predict_oneshot"),
        inversions="results/invert_test",
        fewshot="results/train_fewshot",
    output:
        directory("results/predict_oneshot"),
    params:
        section("data"),
    log:
        f"{LOGS}/predict_oneshot.log",
    benchmark:
        f"{BENCH}/predict_oneshot.tsv"
    threads: BESIDE_BASELINES
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        CONDA_ENV
    shell:
        "python -m stages.predict_oneshot --threads {threads} --inversions {input.inversions} "
        "--fewshot {input.fewshot} --out {output} 2>&1 | tee {log}"


rule synthesize:
    input:
        code=stage_code("synthesize"),
        generator="results/train_gan",
        fewshot="results/train_fewshot",
    output:
        directory("results/synthesize/shard_{shard}"),
    params:
        section("features", "synthesize"),
    log:
        f"{LOGS}/synthesize_shard_{{shard}}.log",
    benchmark:
        f"{BENCH}/synthesize_shard_{{shard}}.tsv"
    wildcard_constraints:
        shard=r"\d+",
    threads: 1
    priority: CRITICAL_PATH
    resources:
        mem_mb=4000,
        runtime=2 * 60,
        gpu=GPUS,
    conda:
        CONDA_ENV
    shell:
        "python -m stages.synthesize --threads {threads} --shard {wildcards.shard} "
        "--generator {input.generator} --fewshot {input.fewshot} --out {output} 2>&1 | tee {log}"


rule train_autoshot:
    input:
        code=stage_code("train_autoshot"),
        shards=expand("results/synthesize/shard_{shard}", shard=SHARDS),
        dataset="data/dataset",
    output:
        directory("results/train_autoshot"),
    params:
        section("data", "synthesize.shards", "train_autoshot"),
    log:
        f"{LOGS}/train_autoshot.log",
    benchmark:
        f"{BENCH}/train_autoshot.tsv"
    threads: BESIDE_BASELINES
    priority: CRITICAL_PATH
    resources:
        mem_mb=4000,
        runtime=4 * 60,
        gpu=GPUS,
        processes=PROCESSES,
    conda:
        CONDA_ENV
    shell:
        "python -m stages.train_autoshot --threads {threads} --processes {resources.processes} "
        "--shards results/synthesize "
        "--dataset {input.dataset} --snapshots checkpoints/train_autoshot --out {output} "
        "2>&1 | tee {log}"


rule evaluate:
    input:
        code=stage_code("evaluate"),
        dataset="data/dataset",
        annotations="results/annotate",
        oneshot="results/predict_oneshot",
        inversions="results/invert_test",
        autoshot="results/train_autoshot",
        baselines="results/baselines",
        shards=expand("results/synthesize/shard_{shard}", shard=SHARDS),
        annotator="results/train_annotator",
    output:
        directory("results/evaluate"),
    params:
        section("train_fewshot.network", "evaluate"),
    log:
        f"{LOGS}/evaluate.log",
    benchmark:
        f"{BENCH}/evaluate.tsv"
    threads: CORES
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        CONDA_ENV
    shell:
        "python -m stages.evaluate --threads {threads} --dataset {input.dataset} "
        "--annotations {input.annotations} --oneshot {input.oneshot} "
        "--inversions {input.inversions} --autoshot {input.autoshot} "
        "--baselines {input.baselines} --shards results/synthesize "
        "--annotator {input.annotator}/annotator.pt --out {output} 2>&1 | tee {log}"


rule report:
    input:
        code=stage_code("report"),
        params_file="params.yaml",
        evaluation="results/evaluate",
        annotations="results/annotate",
        generator="results/train_gan",
    output:
        directory("results/report"),
    log:
        f"{LOGS}/report.log",
    benchmark:
        f"{BENCH}/report.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        CONDA_ENV
    shell:
        "python -m stages.report --threads {threads} --evaluation {input.evaluation} "
        "--annotations {input.annotations} --generator {input.generator} "
        "--benchmarks results/benchmarks --out {output} 2>&1 | tee {log}"


# ---- The paper's other experiments (not in `all`) ---------------------------------------
# `snakemake --cores all experiments` builds them after the default run's results; DVC's
# stages for them are in experiments/dvc.yaml, a DVC project of its own so that the default
# `dvc repro` leaves them out too (experiments/README.md). Each experiments/rules/<name>.smk
# adds its output folder to EXPERIMENTS.
EXPERIMENTS = {}
# A conda env path in an included file is read from that file's folder (experiments/rules/).
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
# dvc.lock) and ignores the other's. These hooks translate (src/partseg/dvc_sync.py says
# why this way): after a successful run, `dvc commit -f` the stages that ran, so `dvc status`
# is up to date and `dvc repro` has nothing to do; and, as the Snakefile loads, adopt what
# `dvc repro` built since the last agreement (`snakemake --touch` of exactly the stages
# dvc.lock proves up to date), so `snakemake -n` has nothing to do and a later param change
# reruns exactly its dependants under either tool. Both only warn if DVC is absent or fails.
import sys

try:
    from partseg import dvc_sync
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
