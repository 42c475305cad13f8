# The representations experiment (see experiments/README.md): the few-shot net on the GAN's
# pixel features, a VAE decoder's, an untrained generator's and raw RGB + xy
# (stages/train_vae.py, stages/representations.py).


rule train_vae:
    input:
        code=stage_code("train_vae"),
        pretrained="data/pretrained/demo_vae",
        dataset="data/dataset",
        generator="results/train_gan",
    output:
        directory("experiments/results/train_vae"),
    params:
        section("data", "dataset.seed", "train_vae"),
    log:
        f"{LOGS}/train_vae.log",
    benchmark:
        f"{BENCH}/train_vae.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=6 * 60,
    conda:
        EXPERIMENTS_CONDA_ENV
    shell:
        "python -m stages.train_vae --threads {threads} --dataset {input.dataset} "
        "--generator {input.generator} --snapshots checkpoints/train_vae --out {output} "
        "2>&1 | tee {log}"


rule representations:
    input:
        code=stage_code("representations"),
        dataset="data/dataset",
        generator="results/train_gan",
        shots="experiments/results/shots",
        inversions="results/invert_test",
        vae="experiments/results/train_vae",
    output:
        directory("experiments/results/representations"),
    params:
        section("dataset.seed", "inversion", "features", "train_fewshot", "shots",
                "representations"),
    log:
        f"{LOGS}/representations.log",
    benchmark:
        f"{BENCH}/representations.tsv"
    threads: CORES
    resources:
        mem_mb=3000,
        runtime=60,
    conda:
        EXPERIMENTS_CONDA_ENV
    shell:
        "python -m stages.representations --threads {threads} --dataset {input.dataset} "
        "--generator {input.generator} --shots {input.shots} --inversions {input.inversions} "
        "--vae {input.vae} --out {output} 2>&1 | tee {log}"


EXPERIMENTS["representations"] = "experiments/results/representations"
