# The face task in the paper's two protocols, k = 1 and 10 (see stages/protocols.py).


rule protocols:
    input:
        code=stage_code("protocols"),
        dataset="data/dataset",
        shots="experiments/results/shots",
        inversions="results/invert_test",
    output:
        directory("experiments/results/protocols"),
    params:
        section("shots", "protocols", "train_fewshot"),
    log:
        f"{LOGS}/protocols.log",
    benchmark:
        f"{BENCH}/protocols.tsv"
    threads: CORES
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        EXPERIMENTS_CONDA_ENV
    shell:
        "python -m stages.protocols --threads {threads} --dataset {input.dataset} "
        "--shots {input.shots} --inversions {input.inversions} --out {output} 2>&1 | tee {log}"


EXPERIMENTS["protocols"] = "experiments/results/protocols"
