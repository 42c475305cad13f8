"""Progress bars with an ETA, on stderr, readable in a log file too."""

from __future__ import annotations

import sys
from typing import Iterable, TypeVar

from tqdm import tqdm

T = TypeVar("T")


def progress(iterable: Iterable[T] | None = None, *, total: int | None = None, desc: str = "",
             unit: str = "it", initial: int = 0) -> tqdm:
    """A tqdm bar. When stderr is not a terminal (Snakemake logs), update every 10 s only."""
    interactive = sys.stderr.isatty()
    return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, file=sys.stderr,
                dynamic_ncols=interactive, mininterval=0.5 if interactive else 10.0,
                ascii=not interactive)
