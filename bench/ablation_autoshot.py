"""The k = 1 ablation of the default run: each row one `dvc exp run -S ...` from scratch.

Run it in a project whose default pipeline is built (`snakemake --cores all` or `dvc repro`):

    python bench/ablation_autoshot.py run cnn mlp cnn_scaled   # rows by name, one after another
    python bench/ablation_autoshot.py list                     # the rows and their commands
    python bench/ablation_autoshot.py table                    # the markdown table of rows run

Every row starts from the committed params.yaml (`git checkout params.yaml`), changes only the
keys it names, and retrains everything downstream of them: the shot, the test images and the
baselines are shared, and no row resumes another's snapshot (train_autoshot's snapshots are
keyed by its inputs). Each row's scores land in bench/ablation/<row>.json (or $ABLATION_OUT);
`table` reads them.
Rows named `<row>@<seed>` rerun a row with train_fewshot.seed, synthesize.seed and
train_autoshot.seed all set to <seed> (the seed rows of the README's table).
Two workspaces (two clones) can each run part of the rows at once, with OMP_NUM_THREADS=1.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

# Where each row's scores go (set ABLATION_OUT to keep them outside a workspace).
OUT = Path(os.environ.get("ABLATION_OUT", Path(__file__).resolve().parent / "ablation"))
# Row name -> the params it runs with beyond params.yaml ("key=value", as `dvc exp run -S`
# takes them).
NETWORKS = ("linear", "mlp", "mlp2", "cnn", "cnn_scaled", "mlp+cnn", "mlp+cnn_scaled")
# The table's rows were chosen before today's default existed: each names the params it ran
# on in full, so a row reruns to its figures whatever params.yaml says today. The base is an
# earlier release's default (the dilated CNN, 1500 UNet steps, no self-training, no flip, no
# prior correction). Rows run before train_autoshot.prior_correction existed ran without it:
# they name prior_correction=0.
PREVIOUS_DEFAULT = ["train_autoshot.steps=1500", "train_autoshot.self_train_images=0",
                    "evaluate.flip=false", "train_autoshot.prior_correction=0"]
# The previous release's default: today's, without the prior correction.
UNCORRECTED = ["train_autoshot.prior_correction=0"]


def changed(base: list[str], *changes: str) -> list[str]:
    """`base` with `changes` applied: a key named again takes its new value, in base's place."""
    values = dict(item.split("=", 1) for item in base)
    values.update(item.split("=", 1) for item in changes)
    return [f"{key}={value}" for key, value in values.items()]


ON_MLP = changed(PREVIOUS_DEFAULT, "train_fewshot.network=mlp")
ROWS = {
    **{network: changed(PREVIOUS_DEFAULT, f"train_fewshot.network={network}")
       for network in NETWORKS},
    # The rows below change the keys they name on the previous default with `network: mlp`.
    "ensemble3": changed(ON_MLP, "train_fewshot.ensemble=3"),
    "ensemble3+drop10": changed(ON_MLP, "train_fewshot.ensemble=3", "synthesize.drop_uncertain=0.1"),
    "synth5000": changed(ON_MLP, "synthesize.images_per_shard=2500"),
    "self-train": changed(ON_MLP, "train_autoshot.self_train_images=10000"),
    # Teacher and student 1000 steps each (self_train_steps 0 = steps): within the time budget.
    "self-train-1000": changed(ON_MLP, "train_autoshot.self_train_images=10000",
                                 "train_autoshot.steps=1000"),
    "flip": changed(ON_MLP, "evaluate.flip=true"),
    "balance0.75": changed(ON_MLP, "train_autoshot.class_balance_power=0.75"),
    # The previous release's default and the rows changed from it.
    "uncorrected": UNCORRECTED,
    # Self-training also keeps each class's most confident pixels (CBST-like), not only >= 0.9.
    "class-portion0.5": changed(UNCORRECTED, "train_autoshot.self_train_class_portion=0.5"),
    "class-portion0.25": changed(UNCORRECTED, "train_autoshot.self_train_class_portion=0.25"),
    # The teacher over-paints the small parts on real images (precision 0.12-0.22 for eye,
    # eyebrow, mouth, ear): a lighter class balance for teacher and student.
    "uncorrected-balance0.25": changed(UNCORRECTED, "train_autoshot.class_balance_power=0.25"),
    # Today's default (params.yaml as committed): the above with the prior correction, which
    # undoes the class weights' tilt in the final UNet's logits.
    "default": [],
}
SEED_KEYS = ("train_fewshot.seed", "synthesize.seed", "train_autoshot.seed")
SMALL_PARTS = ("eye", "eyebrow", "nose", "mouth", "ear")


def row_params(name: str, rows: dict[str, list[str]]) -> list[str]:
    """The -S values of a row; `<row>@<seed>` adds the three seeds."""
    base, _, seed = name.partition("@")
    if base not in rows:
        sys.exit(f"unknown row {base!r}; rows: {', '.join(rows)}")
    if not seed:
        return rows[base]
    # synthesize.seed's default is 1000: a seed row keeps its images apart from seed 0's.
    return rows[base] + [f"{key}={int(seed) + (1000 if key == 'synthesize.seed' else 0)}"
                         for key in SEED_KEYS]


def run_row(name: str, rows: dict[str, list[str]]) -> dict:
    """`dvc exp run` of one row from the committed params; its scores, saved as JSON."""
    subprocess.run(["git", "checkout", "-q", "params.yaml"], check=True)
    command = ["dvc", "exp", "run", "-n", name.replace("+", "-").replace("@", "-s")]
    for value in row_params(name, rows):
        command += ["-S", value]
    start = time.time()
    subprocess.run(command, check=True, env={**os.environ, "DVC_NO_ANALYTICS": "1"})
    scores = row_scores(Path("results/evaluate"))
    scores.update(row=name, command=" ".join(command[:3] + command[5:]),
                  seconds=round(time.time() - start))
    OUT.mkdir(exist_ok=True)
    (OUT / f"{name}.json").write_text(json.dumps(scores, indent=1) + "\n")
    subprocess.run(["git", "checkout", "-q", "params.yaml"], check=True)
    return scores


def row_scores(evaluation: Path) -> dict:
    """mIoU % of auto-shot (and one-shot where scored) per split, small parts on test."""
    metrics = json.loads((evaluation / "metrics.json").read_text())
    per_class = pd.read_csv(evaluation / "per_class.csv")

    def miou(split: str, method: str) -> float | None:
        value = metrics.get(split, {}).get(method, {}).get("miou")
        return None if value is None else round(100 * value, 1)

    subset = "test_shifted_inverted_subset"
    oneshot = next((m for m in metrics.get(subset, {}) if m.startswith("oneshot_")), "")
    test = per_class[(per_class["split"] == "test") & (per_class["method"] == "autoshot")].iloc[0]
    return {"test": miou("test", "autoshot"), "test_shifted": miou("test_shifted", "autoshot"),
            "shifted_subset": miou(subset, "autoshot"), "oneshot_shifted_subset": miou(subset, oneshot),
            "fewshot_vs_annotator": miou("generated", "fewshot_vs_annotator"),
            **{part: round(100 * float(test[part]), 1) for part in SMALL_PARTS if part in test},
            "unet_k10": {"test": miou("test", "unet_k10"), "test_shifted": miou("test_shifted", "unet_k10")}}


def table(folder: Path = OUT) -> str:
    """The rows run so far, as markdown: seeds of one row as mean ± half-range."""
    frame = pd.DataFrame([json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))])
    if frame.empty:
        return "no rows run yet"
    frame["base"] = frame["row"].str.partition("@")[0]
    order = {name: index for index, name in enumerate(ROWS)}
    frame = frame.sort_values("base", key=lambda names: names.map(order), kind="stable")
    columns = ["test", "test_shifted", "shifted_subset", "oneshot_shifted_subset",
               "fewshot_vs_annotator", *SMALL_PARTS]
    lines = ["| row | seeds | " + " | ".join(columns) + " | s |",
             "|---" * (len(columns) + 3) + "|"]
    for base, group in frame.groupby("base", sort=False):
        cells = []
        for column in columns:
            values = group[column].dropna()
            spread = (values.max() - values.min()) / 2
            cells.append(f"{values.mean():.1f}" + (f" ± {spread:.1f}" if len(values) > 1 else ""))
        seconds = group["seconds"].dropna()
        lines.append(f"| {base} | {len(group)} | " + " | ".join(cells)
                     + f" | {int(seconds.mean()) if len(seconds) else '–'} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("run", "list", "table"))
    parser.add_argument("rows", nargs="*")
    args = parser.parse_args()
    if args.action == "list":
        for name, values in ROWS.items():
            print(f"{name:16s} dvc exp run" + "".join(f" -S {v}" for v in values))
    elif args.action == "table":
        print(table())
    else:
        for name in args.rows:
            scores = run_row(name, ROWS)
            print(f"{name}: test {scores['test']}, test_shifted {scores['test_shifted']} "
                  f"({scores['seconds']} s)", flush=True)


if __name__ == "__main__":
    main()
