# One-shot segmentation of real images: the test images inverted into the GAN, then
# labelled by the few-shot net.


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
