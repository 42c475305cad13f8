"""The results report (results/report/report.md): tables, pictures, params and timings.

Everything in it is read from the stages' outputs; nothing is typed in by hand. The same
tables are printed by `python -m stages.report`, and the README shows the default run's.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import yaml

from partseg.io import atomic_path, load_json

# The paper's face table columns (CelebAMask-HQ, 10 classes), in its order.
PAPER_FACE_COLUMNS = ["background", "skin", "hair", "eye", "eyebrow", "nose", "mouth", "ear",
                      "neck", "cloth"]
METHOD_NAMES = {"autoshot": "auto-shot (UNet on GAN-labelled data)",
                "unet_full": "UNet, all labels (upper bound)"}


def describe_method(method: str) -> str:
    if method.startswith("oneshot_"):
        return f"one-shot ({method.removeprefix('oneshot_')} on inverted features)"
    if method.startswith("unet_k"):
        return f"UNet, {method.removeprefix('unet_k')} real labelled images"
    return METHOD_NAMES.get(method, method)


def markdown_table(frame: pd.DataFrame) -> str:
    """A pandas frame as a GitHub markdown table (no extra dependency)."""
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def _cell(value) -> str:
    if isinstance(value, float):
        return "–" if pd.isna(value) else f"{100 * value:.1f}" if value <= 1.0 else f"{value:.1f}"
    return str(value)


def comparison_table(metrics: dict, k: int, source: str) -> pd.DataFrame:
    """Methods x splits: mIoU (%) per split."""
    splits = [s for s, v in metrics.items() if isinstance(v, dict) and "autoshot" in v]
    methods = list(dict.fromkeys(m for s in splits for m in metrics[s]))
    rows = []
    for method in methods:
        row = {"method": describe_method(method), "k": k if not method.startswith("unet") else "–"}
        for split in splits:
            row[f"{split} mIoU"] = metrics[split].get(method, {}).get("miou", float("nan"))
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame.attrs["source"] = source
    return frame


def per_class_table(per_class: pd.DataFrame, split: str) -> pd.DataFrame:
    table = per_class[per_class["split"] == split]
    columns = [c for c in PAPER_FACE_COLUMNS if c in table.columns] or \
        [c for c in table.columns if c not in ("split", "method", "miou")]
    table = table[["method", *columns, "miou"]].copy()
    table["method"] = table["method"].map(describe_method)
    return table.rename(columns={"miou": "mean"})


def timings_table(benchmark_dir: Path) -> pd.DataFrame | None:
    """Stage wall times and peak memory from Snakemake's benchmark files, if any."""
    rows = []
    for path in sorted(benchmark_dir.glob("*.tsv")):
        bench = pd.read_csv(path, sep="\t")
        rows.append({"stage": path.stem, "wall time (s)": f"{bench['s'].iloc[-1]:.1f}",
                     "peak RSS (MB)": f"{bench['max_rss'].iloc[-1]:.0f}"
                     if "max_rss" in bench and pd.notna(bench["max_rss"].iloc[-1]) else "–"})
    if not rows:
        return None
    frame = pd.DataFrame(rows)
    total = sum(float(r["wall time (s)"]) for r in rows)
    return pd.concat([frame, pd.DataFrame([{"stage": "**total**",
                                            "wall time (s)": f"{total:.1f}",
                                            "peak RSS (MB)": ""}])])


def copy_pictures(sources: dict[str, Path], out_dir: Path) -> list[tuple[str, str]]:
    """Copy the pictures into the report folder so it is self-contained."""
    shown = []
    for title, path in sources.items():
        if path.is_file():
            shutil.copyfile(path, out_dir / path.name)
            shown.append((title, path.name))
    return shown


def build_report(*, evaluate_dir: Path, annotate_dir: Path, gan_dir: Path, params_file: Path,
                 benchmark_dir: Path, out_dir: Path) -> str:
    metrics = load_json(evaluate_dir / "metrics.json")
    per_class = pd.read_csv(evaluate_dir / "per_class.csv")
    annotations = load_json(annotate_dir / "annotations.json")
    k, source = annotations["k"], annotations["source"]
    lines = ["# partseg results", "",
             f"Annotations: k = {k}, source **{source}**"
             + (" (a supervised UNet stands in for a person: demo data only)"
                if annotations.get("simulated") else "") + ".", "",
             "## mIoU (%) per method and split", "",
             markdown_table(comparison_table(metrics, k, source)), "",
             "`*_inverted_subset`: the first images of the split, the ones inverted for one-shot; "
             "every method is scored on them so the comparison is like for like.", ""]
    if "inversion_psnr_db" in metrics:
        psnr = ", ".join(f"{s}: {v:.1f} dB" for s, v in metrics["inversion_psnr_db"].items())
        lines += [f"Inversion reconstruction PSNR: {psnr}.", ""]
    for split in dict.fromkeys(per_class["split"]):
        lines += [f"## Per-class IoU (%), {split}", "",
                  markdown_table(per_class_table(per_class, split)), ""]
    pictures = {"GAN samples": gan_dir / "samples.png",
                **{f"Qualitative, {p.stem.removeprefix('qualitative_')}": p
                   for p in sorted(evaluate_dir.glob("qualitative_*.png"))},
                **{f"Auto-shot confusion matrix, {p.stem.removeprefix('confusion_')}": p
                   for p in sorted(evaluate_dir.glob("confusion_*.png"))}}
    lines += ["## Pictures", ""]
    for title, name in copy_pictures(pictures, out_dir):
        lines += [f"**{title}**", "", f"![{title}]({name})", ""]
    for path in sorted(evaluate_dir.glob("qualitative_*.json")):
        columns = load_json(path)["columns"]
        lines += [f"Columns of {path.stem}: {', '.join(columns)}.", ""]
    timings = timings_table(benchmark_dir)
    if timings is not None:
        lines += ["## Stage timings (Snakemake benchmark files)", "", markdown_table(timings), ""]
    lines += ["## Params used", "", "```yaml", yaml.safe_dump(
        yaml.safe_load(params_file.read_text()), sort_keys=False).strip(), "```", ""]
    text = "\n".join(lines)
    with atomic_path(out_dir / "report.md") as tmp:
        tmp.write_text(text)
    return text
