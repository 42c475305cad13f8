# The shots every few-shot experiment shares (see stages/shots.py).


rule shots:
    input:
        code=stage_code("shots"),
        dataset="data/dataset",
        generator="results/train_gan",
        samples="results/sample",
        annotator="results/train_annotator",
    output:
        directory("experiments/results/shots"),
    params:
        section("annotate.source", "shots", "features"),
    log:
        f"{LOGS}/shots.log",
    benchmark:
        f"{BENCH}/shots.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        EXPERIMENTS_CONDA_ENV
    shell:
        "python -m stages.shots --threads {threads} --dataset {input.dataset} "
        "--generator {input.generator} --samples {input.samples} "
        "--annotator {input.annotator}/annotator.pt --out {output} 2>&1 | tee {log}"
