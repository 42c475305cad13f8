# The end of the default run: every method scored on the test splits, and the report.


rule evaluate:
    input:
        code=stage_code("evaluate"),
        dataset="data/dataset",
        annotations="results/annotate",
        oneshot="results/predict_oneshot",
        inversions="results/invert_test",
        autoshot="results/train_autoshot",
        baselines="results/baselines",
        shards=expand("results/synthesize/shard_{shard}", shard=SHARDS),
        annotator="results/train_annotator",
    output:
        directory("results/evaluate"),
    params:
        section("train_fewshot.network", "evaluate"),
    log:
        f"{LOGS}/evaluate.log",
    benchmark:
        f"{BENCH}/evaluate.tsv"
    threads: CORES
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        CONDA_ENV
    shell:
        "python -m stages.evaluate --threads {threads} --dataset {input.dataset} "
        "--annotations {input.annotations} --oneshot {input.oneshot} "
        "--inversions {input.inversions} --autoshot {input.autoshot} "
        "--baselines {input.baselines} --shards results/synthesize "
        "--annotator {input.annotator}/annotator.pt --out {output} 2>&1 | tee {log}"


rule report:
    input:
        code=stage_code("report"),
        params_file="params.yaml",
        evaluation="results/evaluate",
        annotations="results/annotate",
        generator="results/train_gan",
    output:
        directory("results/report"),
    log:
        f"{LOGS}/report.log",
    benchmark:
        f"{BENCH}/report.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        CONDA_ENV
    shell:
        "python -m stages.report --threads {threads} --evaluation {input.evaluation} "
        "--annotations {input.annotations} --generator {input.generator} "
        "--benchmarks results/benchmarks --out {output} 2>&1 | tee {log}"
