"""What every pipeline stage (stages/<name>.py) does before and after its real work.

A stage is run as `python -m stages.<name> --params params.yaml --<input> PATH ... --out PATH`
by both Snakemake and DVC. Its paths are required arguments (no defaults: the Snakefile and
dvc.yaml say them, once each; tests/test_dag.py checks the two agree). It parses its paths, loads and validates params.yaml, limits torch
to the threads Snakemake granted, seeds, logs what it is doing, and reports its wall time.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Callable


from partseg.plumbing.errors import exit_on_user_error
from partseg.plumbing.params import Params, load_params


def stage_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml", help="params file (default params.yaml)")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads for torch (0 = torch's default: all cores)")
    return parser


def log(message: str) -> None:
    """One line to stderr (Snakemake sends it to the rule's log file)."""
    print(message, file=sys.stderr, flush=True)


def available_splits(dataset_dir, splits: list[str], stage: str) -> list[str]:
    """The requested splits that have masks; a missing one is skipped with a note, not an error
    (CelebAMask-HQ and many users' folders have no `test_shifted`)."""
    from pathlib import Path

    from partseg.data.packed import is_packed, load_manifest

    if is_packed(dataset_dir):  # the dataset stage's output: the manifest says
        known = load_manifest(dataset_dir)["splits"]
        present = [s for s in splits if s in known and known[s]["masks"]]
    else:
        present = [s for s in splits if (Path(dataset_dir) / s / "masks").is_dir()]
    for split in splits:
        if split not in present:
            log(f"[{stage}] note: split '{split}' has no masks in {dataset_dir}; skipped")
    return present


def inputs_digest(paths) -> str:
    """A hash of the contents of files and folders (every file below, with its relative path):
    what a trainer's snapshot was made from."""
    import hashlib
    from pathlib import Path

    digest = hashlib.sha1()
    for root in map(Path, paths):
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for path in files:
            digest.update(f"{path.relative_to(root.parent)}\0".encode())
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 22), b""):
                    digest.update(block)
    return digest.hexdigest()[:16]


def snapshot_folder(snapshots, stage: str, inputs) -> "Path":
    """The folder of `stage`'s training snapshots for these inputs and this code.

    A trainer resumes only a snapshot of the same run: its own fingerprint covers its options,
    and this folder, `<snapshots>/inputs-<hash of the stage's code and of its inputs' contents>`,
    covers the rest, so new data or edited code trains afresh instead of resuming a model made
    from something else. Folders of other inputs are deleted (they cannot be resumed any more
    unless the inputs come back, and training snapshots are large).
    """
    import hashlib
    import shutil
    from pathlib import Path

    from partseg.plumbing.code_deps import code_fingerprint

    key = hashlib.sha1(f"{code_fingerprint(stage)} {inputs_digest(inputs)}".encode()).hexdigest()
    folder = Path(snapshots) / f"inputs-{key[:16]}"
    if Path(snapshots).is_dir():
        for other in Path(snapshots).iterdir():
            if other != folder and other.is_dir() and other.name.startswith("inputs-"):
                shutil.rmtree(other, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def default_processes() -> int:
    """Training processes of a data-parallel stage: $PARTSEG_PROCESSES, else $PARTSEG_GPUS
    (one process per GPU), else 1."""
    from partseg.plumbing.errors import PartsegError

    for variable in ("PARTSEG_PROCESSES", "PARTSEG_GPUS"):
        value = os.environ.get(variable, "").strip()
        if value:
            if not value.isdigit():
                raise PartsegError(f"{variable}={value!r}: expected a whole number of processes")
            return max(1, int(value))
    return 1


def refuse_beside_snakemake() -> None:
    """Under `dvc repro` (DVC sets DVC_STAGE), refuse to run while Snakemake runs jobs in this
    folder: both would write the same outputs."""
    from pathlib import Path

    from partseg.plumbing.errors import PartsegError

    if os.environ.get("DVC_STAGE"):
        # Snakemake holds these files while it runs jobs (the stage runs in its folder).
        locks = sorted(Path(".snakemake", "locks").glob("*.lock"))
        if locks:
            held = locks[0]
            raise PartsegError(f"Snakemake is running in this folder ({held}); wait for it to "
                               "finish, then run `dvc repro` again (if it crashed: "
                               "`snakemake --unlock`)")


def run_stage(name: str, parser: argparse.ArgumentParser,
              body: Callable[[argparse.Namespace, Params], None], *,
              distributed: bool = False) -> None:
    """Parse arguments, load params, run `body(args, params)`; user errors exit with one line.

    distributed: the stage trains data-parallel (partseg.plumbing.distributed): `--processes N` > 1
    re-launches it as N torchrun workers, which share --threads between them.
    """

    @exit_on_user_error
    def main() -> None:
        if distributed:
            parser.add_argument("--processes", type=int, default=default_processes(),
                                help="data-parallel training processes (torchrun; default "
                                     "$PARTSEG_PROCESSES or $PARTSEG_GPUS or 1)")
        args = parser.parse_args()
        refuse_beside_snakemake()
        if distributed:
            from partseg.plumbing import distributed as ranks

            code = ranks.relaunch_under_torchrun(args.processes, f"stages.{name}", sys.argv[1:])
            if code is not None:
                sys.exit(code)
            ranks.init_from_environment()
        if args.threads > 0:
            import torch

            local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
            torch.set_num_threads(max(1, args.threads // local_processes))
        params = load_params(args.params)
        log(f"[{name}] started")
        started = time.perf_counter()
        body(args, params)
        if distributed:
            ranks.shutdown()
        log(f"[{name}] done in {time.perf_counter() - started:.1f} s")

    main()
