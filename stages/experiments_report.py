"""Stage experiments_report (experiments): one report of the paper's other experiments.

Each experiment stage writes a `section.md` (its tables and a reading of them) and its
pictures in its own folder. This stage puts the sections in one markdown file, in the order
given, copies the pictures each section shows beside it (links rewritten to the copies), and
adds how long each experiment stage took (Snakemake's benchmark files, when present):
partseg.experiments.report.

Writes experiments/results/experiments_report/report.md and <experiment>/<picture>.png.
"""

from pathlib import Path

from partseg.plumbing.io import atomic_dir
from partseg.plumbing.stage import log, run_stage, stage_parser


def build(args, params):
    from partseg.experiments.report import report_text

    folders = [Path(section) for section in args.sections]
    with atomic_dir(args.out) as tmp:
        text = report_text(folders, Path(args.benchmarks), args.timed_stages, tmp)
        (tmp / "report.md").write_text(text)
    log(f"[experiments_report] {len(folders)} sections in {Path(args.out) / 'report.md'}")


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--sections", nargs="+", required=True,
                        help="experiment output folders, each with a section.md, in report order")
    parser.add_argument("--benchmarks", required=True)
    parser.add_argument("--timed-stages", nargs="*", default=[],
                        help="experiment stages whose benchmark files give the Time table")
    parser.add_argument("--out", required=True)
    run_stage("experiments_report", parser, build)
