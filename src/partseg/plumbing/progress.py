"""Progress bars with an ETA, on stderr, readable in a log file too."""

from __future__ import annotations

import sys
from typing import Iterable, TextIO, TypeVar

from tqdm import tqdm

T = TypeVar("T")


class _LogLines:
    """A stream for tqdm when stderr is a file or pipe (Snakemake logs): each update becomes
    one plain line instead of carriage-return redraws piling up on a single line."""

    def __init__(self, stream: TextIO):
        self.stream = stream

    def write(self, text: str) -> None:
        text = text.replace("\r", "").strip()
        if text:
            self.stream.write(text + "\n")

    def flush(self) -> None:
        self.stream.flush()


def progress(iterable: Iterable[T] | None = None, *, total: int | None = None, desc: str = "",
             unit: str = "it", initial: int = 0, disable: bool = False) -> tqdm:
    """A tqdm bar; when stderr is not a terminal, a line every 30 s instead of a live bar.
    disable: no output (e.g. on the ranks other than 0 of a distributed run)."""
    interactive = sys.stderr.isatty()
    return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, disable=disable,
                file=sys.stderr if interactive else _LogLines(sys.stderr),
                dynamic_ncols=interactive, mininterval=0.5 if interactive else 30.0,
                ascii=not interactive)
