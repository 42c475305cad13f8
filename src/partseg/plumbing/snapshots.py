"""Training snapshots, one way for every trainer (GAN, VAE, UNet segmenter): write, find, resume.

A snapshot is a dict of plain values and tensors, written atomically (partseg.plumbing.io.save_torch:
a snapshot file that exists is complete) and read back with torch.load(weights_only=True).
Two layouts, each trainer keeping its own so that existing snapshots still resume:

    numbered     <folder>/snapshot-<step:06d>.pt, the newest `keep` kept (GAN, VAE): save_numbered,
                 snapshot_steps, newest_snapshot
    one file     overwritten at every snapshot (the segmenter's segmenter_snapshot.pt): save

A run's fingerprint is the options that define its result (`fingerprint` drops those free to
change on resume, such as a GAN's `steps`, which may be raised to extend a finished run).
load_snapshot compares it with the snapshot's and, on a mismatch or an unreadable file, does
what the trainer asks: "restart" prints one line saying why and returns None (train from
scratch: the segmenter's snapshot is a cache), "refuse" raises PartsegError (hours of GAN or VAE
training are never silently thrown away).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterable

import torch

from partseg.plumbing.errors import PartsegError
from partseg.plumbing.io import save_torch


def fingerprint(options: dict, free: Iterable[str] = ()) -> dict:
    """The options that define a run's result: all but those `free` to change on resume."""
    free = set(free)
    return {k: v for k, v in options.items() if k not in free}


def save(state: dict, path: str | os.PathLike) -> None:
    """Write one snapshot atomically."""
    save_torch(state, path)


def snapshot_path(folder: str | os.PathLike, step: int) -> Path:
    return Path(folder) / f"snapshot-{step:06d}.pt"


def snapshot_steps(folder: str | os.PathLike) -> list[int]:
    """Steps of the complete numbered snapshots in a folder (complete = renamed into place)."""
    steps = []
    for path in Path(folder).glob("snapshot-*.pt"):
        suffix = path.stem.split("-", 1)[1]
        if suffix.isdigit():
            steps.append(int(suffix))
    return sorted(steps)


def save_numbered(state: dict, folder: str | os.PathLike, step: int, keep: int) -> None:
    """snapshot-<step>.pt, then delete all but the newest `keep` numbered snapshots."""
    save(state, snapshot_path(folder, step))
    for old in snapshot_steps(folder)[:-keep]:
        snapshot_path(folder, old).unlink(missing_ok=True)


def newest_snapshot(folder: str | os.PathLike, steps: int) -> Path | None:
    """The newest numbered snapshot at or below `steps`, or None."""
    candidates = [s for s in snapshot_steps(folder) if s <= steps]
    return snapshot_path(folder, candidates[-1]) if candidates else None


def load_snapshot(path: str | os.PathLike | None, expected: dict | None = None, *,
                  key: str = "fingerprint", free: Iterable[str] = (), on_problem: str = "restart",
                  what: str = "snapshot", map_location="cpu") -> dict | None:
    """The snapshot at `path` if it can be resumed, else None.

    None without a word when there is no file. expected: this run's fingerprint, compared with
    fingerprint(snapshot[key], free) (None: no check). An unreadable file or another
    fingerprint: on_problem "restart" prints one line and returns None, "refuse" raises
    PartsegError naming the file (`what` names the kind of snapshot).
    """
    if path is None or not Path(path).exists():
        return None
    path = Path(path)
    try:
        snapshot = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # a broken snapshot: skipped ("restart") or named ("refuse")
        if on_problem == "refuse":
            raise PartsegError(f"{path}: unreadable {what} ({error}); delete it to resume from "
                               "an older one") from None
        print(f"{path}: unreadable {what} ({error}); training from scratch", file=sys.stderr)
        return None
    if expected is not None:
        stored = fingerprint(snapshot.get(key) or {}, free)
        if stored != expected:
            if on_problem == "refuse":
                changed = sorted(k for k in expected if stored.get(k) != expected[k])
                raise PartsegError(f"{path.parent}: its snapshots were trained with other options "
                                   f"({', '.join(changed)}); use another snapshot folder")
            print(f"{path}: {what} was made with other arguments; training from scratch",
                  file=sys.stderr)
            return None
    return snapshot
