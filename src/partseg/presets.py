"""Paper-scale params presets (presets/<name>.yaml): overlays on params.yaml.

    python -m partseg.presets                                   # list the presets
    python -m partseg.presets ffhq1024_celebamask --out params.yaml
    dvc exp run $(python -m partseg.presets ffhq1024_celebamask --dvc-flags)

A preset names only the keys that differ from params.yaml. Applying it merges the two,
validates the result like any params file (a misspelt key stops with its name) and writes it
atomically; `--dvc-flags` prints the same overlay as `-S key=value` flags for `dvc exp run`.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import yaml

from partseg.plumbing.errors import PartsegError, exit_on_user_error
from partseg.plumbing.params import parse_params

PRESETS_DIR = Path(__file__).resolve().parents[2] / "presets"


def preset_names(folder: Path = PRESETS_DIR) -> list[str]:
    return sorted(path.stem for path in folder.glob("*.yaml"))


def load_overlay(name: str, folder: Path = PRESETS_DIR) -> dict:
    path = folder / f"{name}.yaml"
    if not path.is_file():
        raise PartsegError(f"preset {name!r} not found in {folder} (presets: "
                           f"{', '.join(preset_names(folder)) or 'none'})")
    overlay = yaml.safe_load(path.read_text())
    if not isinstance(overlay, dict):
        raise PartsegError(f"{path}: a preset is a mapping of params sections")
    return overlay


def merge(base: dict, overlay: dict) -> dict:
    """base with overlay's keys replaced, recursively (lists are replaced whole)."""
    merged = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def apply_preset(name: str, base: str | Path = "params.yaml", folder: Path = PRESETS_DIR) -> dict:
    """The validated params of `base` with preset `name` applied (a plain dict)."""
    merged = merge(yaml.safe_load(Path(base).read_text()), load_overlay(name, folder))
    parse_params(merged, source=f"{base} + preset {name}")
    return merged


def dvc_flags(overlay: dict, prefix: str = "") -> list[str]:
    """`-S key=value` flags for `dvc exp run`, one per leaf of the overlay."""
    flags = []
    for key, value in overlay.items():
        if isinstance(value, dict):
            flags += dvc_flags(value, f"{prefix}{key}.")
        else:
            text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
            flags += ["-S", f"{prefix}{key}={text}"]
    return flags


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", nargs="?", help="preset name (none: list them)")
    parser.add_argument("--params", default="params.yaml", help="the params file it overlays")
    parser.add_argument("--out", help="write the merged params here (default: print them)")
    parser.add_argument("--dvc-flags", action="store_true", help="print `dvc exp run` flags")
    args = parser.parse_args(argv)
    if not args.name:
        print("\n".join(preset_names()))
        return
    merged = apply_preset(args.name, args.params)
    if args.dvc_flags:
        print(" ".join(dvc_flags(load_overlay(args.name))))
        return
    text = f"# params.yaml with preset {args.name} (presets/{args.name}.yaml) applied\n" \
           + yaml.safe_dump(merged, sort_keys=False)
    if args.out is None:
        sys.stdout.write(text)
        return
    from partseg.plumbing.io import atomic_path

    with atomic_path(args.out) as tmp:
        Path(tmp).write_text(text)
    print(f"wrote {args.out} (preset {args.name})", file=sys.stderr)


if __name__ == "__main__":
    main()
