# Few-shot: the shots' GAN pixel features, cached, and the few-shot net trained on them.


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
