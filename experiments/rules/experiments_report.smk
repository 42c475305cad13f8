# One report of the experiments (see stages/experiments_report.py). Included last: its input
# is every experiment's output folder, in the order EXPERIMENTS was filled.


rule experiments_report:
    input:
        code=stage_code("experiments_report"),
        sections=list(EXPERIMENTS.values()),
    output:
        directory("experiments/results/experiments_report"),
    log:
        f"{LOGS}/experiments_report.log",
    benchmark:
        f"{BENCH}/experiments_report.tsv"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    conda:
        EXPERIMENTS_CONDA_ENV
    shell:
        "python -m stages.experiments_report --threads {threads} --sections {input.sections} "
        "--benchmarks results/benchmarks --timed-stages shots protocols train_vae representations "
        "partitions video_clip video --out {output} 2>&1 | tee {log}"
