"""Stage experiments_report (experiments): one report of the paper's other experiments.

Each experiment stage writes a `section.md` (its tables and a reading of them) and its
pictures in its own folder. This stage puts the sections in one markdown file, in the order
given, copies the pictures each section shows beside it (links rewritten to the copies), and
adds how long each experiment stage took (Snakemake's benchmark files, when present).

Writes experiments/results/experiments_report/report.md and <experiment>/<picture>.png.
"""

import re
import shutil
from pathlib import Path

from partseg.errors import PartsegError
from partseg.io import atomic_dir
from partseg.stage import log, run_stage, stage_parser

PICTURE_LINK = re.compile(r"\]\(([^)/\s]+\.(?:png|gif|jpg|mp4))\)")


def read_section(folder: Path) -> str:
    path = folder / "section.md"
    if not path.is_file():
        raise PartsegError(f"{path}: missing; rerun the stage that writes {folder}")
    return path.read_text().strip()


def relink_pictures(text: str, folder: Path, out: Path) -> str:
    """Copy every picture the section links to into out/<folder name>/ and point the link there."""
    def copy(match: re.Match) -> str:
        name = match.group(1)
        source = folder / name
        if not source.is_file():
            return match.group(0)
        (out / folder.name).mkdir(exist_ok=True)
        shutil.copyfile(source, out / folder.name / name)
        return f"]({folder.name}/{name})"

    return PICTURE_LINK.sub(copy, text)


def timings_lines(benchmarks: Path, stages: list[str]) -> list[str]:
    """`stage: N s` for each experiment stage Snakemake timed (DVC runs leave no timing)."""
    import pandas as pd

    lines = []
    for stage in stages:
        path = benchmarks / f"{stage}.tsv"
        if path.is_file():
            seconds = float(pd.read_csv(path, sep="\t")["s"].iloc[-1])
            lines.append(f"| {stage} | {seconds:.0f} |")
    if not lines:
        return []
    return ["## Time", "", "Wall time of each experiment stage in its last Snakemake run "
            "(results/benchmarks/):", "", "| stage | seconds |", "|---|---|", *lines, ""]


def build(args, params):
    folders = [Path(section) for section in args.sections]
    with atomic_dir(args.out) as tmp:
        parts = ["# The paper's other experiments", "",
                 "Built by `snakemake --cores all experiments` (or `cd experiments && dvc repro`) "
                 "on the default run's results: the shipped 32 px demo GAN, synthetic faces, the "
                 "simulated annotator. Each section says what it measured and how to read it.", ""]
        for folder in folders:
            parts += [relink_pictures(read_section(folder), folder, tmp), ""]
        parts += timings_lines(Path(args.benchmarks), args.timed_stages)
        (tmp / "report.md").write_text("\n".join(parts))
    log(f"[experiments_report] {len(folders)} sections in {Path(args.out) / 'report.md'}")


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--sections", nargs="+", required=True,
                        help="experiment output folders, each with a section.md, in report order")
    parser.add_argument("--benchmarks", default="results/benchmarks")
    parser.add_argument("--timed-stages", nargs="*", default=[],
                        help="experiment stages whose benchmark files give the Time table")
    parser.add_argument("--out", default="experiments/results/experiments_report")
    run_stage("experiments_report", parser, build)
