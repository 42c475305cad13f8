# The video experiment (see experiments/README.md): the demo clip (stages/video_clip.py) and
# auto-shot vs one-shot on it, frame by frame, with temporal flicker (stages/video.py).



rule video_clip:
    input:
        code=stage_code("video_clip"),
    output:
        directory("experiments/results/video_clip"),
    params:
        section("data", "video_clip"),
    log:
        f"{LOGS}/video_clip.log",
    benchmark:
        f"{BENCH}/video_clip.tsv"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    conda:
        EXPERIMENTS_CONDA_ENV
    shell:
        "python -m stages.video_clip --threads {threads} --out {output} 2>&1 | tee {log}"


rule video:
    input:
        code=stage_code("video"),
        clip="experiments/results/video_clip",
        generator="results/train_gan",
        fewshot="results/train_fewshot",
        autoshot="results/train_autoshot",
    output:
        directory("experiments/results/video"),
    params:
        section("inversion", "features", "video"),
    log:
        f"{LOGS}/video.log",
    benchmark:
        f"{BENCH}/video.tsv"
    threads: CORES
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        EXPERIMENTS_CONDA_ENV
    shell:
        "python -m stages.video --threads {threads} --clip {input.clip} "
        "--generator {input.generator} --fewshot {input.fewshot} --autoshot {input.autoshot} "
        "--out {output} 2>&1 | tee {log}"


EXPERIMENTS["video"] = "experiments/results/video"
