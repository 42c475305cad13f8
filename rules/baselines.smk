# The supervised baselines: UNets trained on n labelled real images (and on all of them),
# the comparison the few-shot methods are read against.


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
