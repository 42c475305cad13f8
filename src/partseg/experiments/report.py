"""The experiments' report (stage experiments_report): each experiment's section.md in one
markdown file, the pictures each section shows copied beside it, and how long each experiment
stage took. The sections themselves are written by the experiments (partseg.experiments.*);
this module only assembles them, as partseg.report assembles the default run's.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from partseg.plumbing.errors import PartsegError

# A link to a picture beside the section (no folder in its name): those are copied.
PICTURE_LINK = re.compile(r"\]\(([^)/\s]+\.(?:png|gif|jpg|mp4))\)")
INTRODUCTION = [
    "# The paper's other experiments", "",
    "Built by `snakemake --cores all experiments` (or `cd experiments && dvc repro`) on the "
    "default run's results: the shipped 32 px demo GAN, synthetic faces, the simulated "
    "annotator. Each section says what it measured.", ""]


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


def report_text(folders: list[Path], benchmarks: Path, timed_stages: list[str], out: Path) -> str:
    """The report's markdown, in the order of `folders`; their pictures copied into `out`."""
    parts = list(INTRODUCTION)
    for folder in folders:
        parts += [relink_pictures(read_section(folder), folder, out), ""]
    parts += timings_lines(benchmarks, timed_stages)
    return "\n".join(parts)
