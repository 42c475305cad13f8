"""Stage report: results/report/report.md — the comparison table, the per-class table in the
paper's face columns, the pictures, the params used and the stage timings (from Snakemake's
benchmark files, when the pipeline ran under Snakemake)."""

from pathlib import Path

from partseg.plumbing.io import atomic_dir
from partseg.plumbing.stage import log, run_stage, stage_parser


def build(args, params):
    from partseg.report import build_report

    with atomic_dir(args.out) as tmp:
        text = build_report(evaluate_dir=Path(args.evaluation), annotate_dir=Path(args.annotations),
                            gan_dir=Path(args.generator), params_file=Path(args.params),
                            benchmark_dir=Path(args.benchmarks), out_dir=tmp)
    log(text.split("## Per-class")[0])


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--evaluation", required=True)
    parser.add_argument("--annotations", required=True)
    parser.add_argument("--generator", required=True)
    parser.add_argument("--benchmarks", required=True)
    parser.add_argument("--out", required=True)
    run_stage("report", parser, build)
