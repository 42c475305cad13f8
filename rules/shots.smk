# The shots of the default run: the demo's simulated annotator (train_annotator), and the
# annotate stage, which chooses the k shots among the samples and gets their labels (from
# a person, inverted labelled images or the simulated annotator: annotate.source).


rule train_annotator:
    input:
        code=stage_code("train_annotator"),
        pretrained="data/pretrained/annotator",
        dataset="data/dataset",
    output:
        directory("results/train_annotator"),
    params:
        section("data", "annotate.source", "train_annotator"),
    log:
        f"{LOGS}/train_annotator.log",
    benchmark:
        f"{BENCH}/train_annotator.tsv"
    threads: BESIDE_BASELINES
    priority: CRITICAL_PATH
    resources:
        mem_mb=4000,
        runtime=2 * 60,
        gpu=GPUS,
    conda:
        CONDA_ENV
    shell:
        "python -m stages.train_annotator --threads {threads} --dataset {input.dataset} "
        "--snapshots checkpoints/train_annotator --out {output} 2>&1 | tee {log}"


rule annotate:
    input:
        code=stage_code("annotate"),
        dataset="data/dataset",
        generator="results/train_gan",
        samples="results/sample",
        annotator="results/train_annotator",
        manual_dir=config["annotate"]["manual_dir"],
    output:
        directory("results/annotate"),
    params:
        section("annotate", "inversion"),
    log:
        f"{LOGS}/annotate.log",
    benchmark:
        f"{BENCH}/annotate.tsv"
    threads: BESIDE_BASELINES
    priority: CRITICAL_PATH
    resources:
        mem_mb=2000,
        runtime=60,
    conda:
        CONDA_ENV
    shell:
        "python -m stages.annotate --threads {threads} --dataset {input.dataset} "
        "--generator {input.generator} --samples {input.samples} "
        "--annotator {input.annotator}/annotator.pt --out {output} 2>&1 | tee {log}"
