# The dataset every later rule reads (data/dataset): the demo's procedural faces, the user's
# folder or CelebAMask-HQ (data.source), packed with its splits.


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
