# Parts of any shape: one inverted real shot, its parts under several definitions (see
# stages/partitions.py).


rule partitions:
    input:
        code=stage_code("partitions"),
        dataset="data/dataset",
        generator="results/train_gan",
        inversions="results/invert_test",
    output:
        directory("experiments/results/partitions"),
    params:
        section("partitions", "inversion", "features", "train_fewshot"),
    log:
        f"{LOGS}/partitions.log",
    benchmark:
        f"{BENCH}/partitions.tsv"
    threads: CORES
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        EXPERIMENTS_CONDA_ENV
    shell:
        "python -m stages.partitions --threads {threads} --dataset {input.dataset} "
        "--generator {input.generator} --inversions {input.inversions} --out {output} "
        "2>&1 | tee {log}"


EXPERIMENTS["partitions"] = "experiments/results/partitions"
