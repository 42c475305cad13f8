"""How long `dvc status` takes on the dataset, for the packed layout and the old PNG folder.

    python bench/bench_dvc_status.py                       # data/dataset (built by the stage)
    python bench/bench_dvc_status.py --dataset DIR --folder OLD_PNG_DIR
    python bench/bench_dvc_status.py --repo .              # also time `dvc status` right here

For each layout it makes a scratch DVC project holding only that dataset as the output of one
stage (`dataset`), and times what a user meets: `dvc status` before any lock (DVC hashes every
file to compare), `dvc commit -f` (hash and cache everything once), then `dvc status` with the
lock, twice (the second is the usual case: DVC's state database answers by mtime and size, but
it still stats every file of the output). The old layout, one PNG per image and mask, is made
from the packed dataset when --folder is not given, with the same file count as the stage used
to write; a one-file output shows DVC's fixed cost (start-up, reading dvc.yaml). Prints one
table. On a shared machine the seconds depend on the load.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pandas as pd
from PIL import Image

from partseg.data.folder import load_split_arrays
from partseg.data.packed import is_packed, load_manifest

ENV = {**os.environ, "DVC_NO_ANALYTICS": "1"}


def unpack_to_folder(packed: Path, out: Path) -> None:
    """The folder layout (images/ and masks/ PNGs per split) of a packed dataset."""
    out.mkdir(parents=True)
    for name in ("classes.yaml", "preview.png"):
        if (packed / name).is_file():
            shutil.copyfile(packed / name, out / name)
    for split in load_manifest(packed)["splits"]:
        images, masks, stems = load_split_arrays(packed, split)
        (out / split / "images").mkdir(parents=True)
        if masks is not None:
            (out / split / "masks").mkdir(parents=True)
        for i, stem in enumerate(stems):
            Image.fromarray(images[i]).save(out / split / "images" / f"{stem}.png")
            if masks is not None:
                Image.fromarray(masks[i]).save(out / split / "masks" / f"{stem}.png")


def timed(args: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(args, cwd=cwd, env=ENV, check=True, capture_output=True, text=True)
    return time.perf_counter() - started


def bench_layout(name: str, dataset: Path, scratch: Path) -> dict:
    project = scratch / name
    (project / "data").mkdir(parents=True)
    shutil.copytree(dataset, project / "data" / "dataset")
    (project / "dvc.yaml").write_text(
        "stages:\n  dataset:\n    cmd: python -m stages.dataset --out data/dataset\n"
        "    outs:\n      - data/dataset\n")
    for command in (["git", "init", "-q"], ["dvc", "init", "-q"]):
        subprocess.run(command, cwd=project, env=ENV, check=True, capture_output=True)
    files = sum(1 for p in (project / "data" / "dataset").rglob("*") if p.is_file())
    megabytes = sum(p.stat().st_size for p in (project / "data" / "dataset").rglob("*")
                    if p.is_file()) / 1e6
    row = {"layout": name, "files in data/dataset": files, "MB": round(megabytes, 1)}
    row["status, no lock (s)"] = timed(["dvc", "status"], project)
    row["commit -f (s)"] = timed(["dvc", "commit", "-f", "-q"], project)
    row["status, locked (s)"] = timed(["dvc", "status"], project)
    row["again (s)"] = timed(["dvc", "status"], project)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=Path("data/dataset"),
                        help="the dataset stage's output (packed, or an old PNG folder)")
    parser.add_argument("--folder", type=Path, default=None,
                        help="a PNG folder of the same data (default: unpack --dataset)")
    parser.add_argument("--repo", type=Path, default=None,
                        help="also time `dvc status` in this DVC project as it is")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_dvc_status_") as tmp:
        scratch = Path(tmp)
        layouts = {}
        if is_packed(args.dataset):
            layouts["packed (npy per split)"] = args.dataset
            if args.folder is None:
                unpack_to_folder(args.dataset, scratch / "unpacked")
                args.folder = scratch / "unpacked"
        else:
            args.folder = args.folder or args.dataset
        # A one-file output: what `dvc status` costs whatever the data (start-up, dvc.yaml).
        (scratch / "empty").mkdir()
        shutil.copyfile(args.folder / "classes.yaml", scratch / "empty" / "classes.yaml")
        layouts = {"PNG folder (one file per image/mask)": args.folder, **layouts,
                   "one file (DVC's fixed cost)": scratch / "empty"}
        for name, path in layouts.items():
            rows.append(bench_layout(name.split(" ")[0] + "_project", path, scratch))
            rows[-1]["layout"] = name
    if args.repo is not None:
        rows.append({"layout": f"whole pipeline in {args.repo} (as it is)",
                     "status, locked (s)": timed(["dvc", "status"], args.repo),
                     "again (s)": timed(["dvc", "status"], args.repo)})
    pd.set_option("display.float_format", "{:.2f}".format)
    pd.set_option("display.width", 200)
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
