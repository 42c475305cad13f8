# Auto-shot: a synthetic labelled dataset (generated images, few-shot labels) in shards,
# and the UNet trained on it.


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
