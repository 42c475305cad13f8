# The GAN: StyleGAN2 trained on the unlabelled split (or a pretrained one adopted), and
# the generated candidates the shots are chosen among.


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
