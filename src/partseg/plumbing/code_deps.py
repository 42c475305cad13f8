"""A stage's code dependencies: the project files its module imports, followed transitively.

Snakemake and DVC rerun a stage when one of its inputs changes, so every project file a stage
runs must be one of its inputs, and no other: list too few and an edit to the library is served
from a stale cache; list too many and every edit reruns the whole pipeline. Keeping such lists
by hand drifts, so they are computed here from the source itself:

- each `import` and `from ... import` statement of a module, wherever it is (at the top, inside a
  function: a lazy import still runs), is read with `ast` (nothing is imported or executed);
- a module of the project (`partseg.*` under src/, `stages.*`) maps to its file, and so does
  every package `__init__.py` on its way (Python runs those first);
- `from package import name`, where `name` is not a submodule, resolves through the package's
  `_EXPORTS` table (name -> submodule; packages export lazily so that importing one function
  does not run the whole package), else to the package's `__init__.py` alone;
- anything else (the standard library, torch, numpy, ...) is not the project's and is skipped.

The Snakefile calls `stage_code(name)` for each rule's `code=` inputs; dvc.yaml holds the same
lists, rewritten by `python -m partseg.plumbing.code_deps --write` (tests/test_code_deps.py fails when
dvc.yaml is out of date). `code_fingerprint(name)` hashes the closure's contents, so a trainer
can tell a snapshot made by other code (partseg.plumbing.snapshots).
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import sys
from functools import lru_cache
from pathlib import Path

# The repository: src/partseg/plumbing/code_deps.py -> the root that holds stages/ and src/.
ROOT = Path(__file__).resolve().parents[3]
# Top-level import names that belong to the project, and the folder each lives in.
PROJECT_PACKAGES = {"partseg": ROOT / "src", "stages": ROOT}


@lru_cache(maxsize=None)
def module_file(module: str) -> Path | None:
    """The file of a project module (`partseg.gan.train` -> src/partseg/gan/train.py), or None
    when `module` is not the project's or does not exist."""
    top = module.split(".")[0]
    if top not in PROJECT_PACKAGES:
        return None
    path = PROJECT_PACKAGES[top].joinpath(*module.split("."))
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    return None


def _packages_on_the_way(module: str) -> list[str]:
    """`a.b.c` -> [`a`, `a.b`]: the packages Python initialises before the module."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _is_package(module: str) -> bool:
    found = module_file(module)
    return found is not None and found.name == "__init__.py"


def _absolute(node: ast.ImportFrom, module: str) -> str:
    """The absolute module name of a `from ... import` (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    package = module if _is_package(module) else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


@lru_cache(maxsize=None)
def _exports(package: str) -> dict[str, str]:
    """A package's `_EXPORTS = {name: submodule}` table (read from its source; {} if none)."""
    init = module_file(package)
    if init is None or init.name != "__init__.py":
        return {}
    for node in ast.parse(init.read_text(), str(init)).body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and getattr(node.targets[0], "id", None) == "_EXPORTS"):
            table = ast.literal_eval(node.value)
            return {name: (sub if sub.startswith(package + ".") else f"{package}.{sub}")
                    for name, sub in table.items()}
    return {}


@lru_cache(maxsize=None)
def imported_modules(module: str) -> frozenset[str]:
    """The project modules one module imports directly (anywhere in its source)."""
    path = module_file(module)
    if path is None:
        return set()
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, module)
            found.add(base)
            for alias in node.names:
                if module_file(f"{base}.{alias.name}") is not None:
                    found.add(f"{base}.{alias.name}")  # a submodule
                elif alias.name in _exports(base):
                    found.add(_exports(base)[alias.name])  # a lazily exported name
    return frozenset(name for name in found if module_file(name) is not None)


@lru_cache(maxsize=None)
def module_closure(module: str) -> frozenset[str]:
    """Every project module that importing `module` can run, itself included."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen or module_file(name) is None:
            continue
        seen.add(name)
        todo.extend(_packages_on_the_way(name))
        todo.extend(imported_modules(name))
    return frozenset(seen)


def stage_code(stage: str) -> list[str]:
    """The project files (paths relative to the repository, sorted) that `python -m
    stages.<stage>` runs: the stage's code dependencies."""
    files = {module_file(name).relative_to(ROOT).as_posix()
             for name in module_closure(f"stages.{stage}")}
    return sorted(files)


def code_fingerprint(stage: str) -> str:
    """A hash of the contents of the stage's code dependencies."""
    digest = hashlib.sha1()
    for name in stage_code(stage):
        digest.update(name.encode() + b"\0" + (ROOT / name).read_bytes() + b"\0")
    return digest.hexdigest()[:16]


# ---- dvc.yaml: the same lists, written by a command --------------------------------------

def _is_code(path: str) -> bool:
    """A dvc.yaml dep that is project code (a file or a folder of stages/ or src/)."""
    return path.removeprefix("../").startswith(("stages/", "src/"))


def _dvc_files() -> list[tuple[Path, str]]:
    """Each DVC project's dvc.yaml and the prefix its paths need to reach the repository."""
    return [(ROOT / "dvc.yaml", ""), (ROOT / "experiments" / "dvc.yaml", "../")]


def updated_deps(deps: list[str], stage: str, prefix: str) -> list[str]:
    """A stage's dvc.yaml deps with its code entries replaced by the computed ones (first)."""
    data = [dep for dep in deps if not _is_code(str(dep))]
    return [prefix + name for name in stage_code(stage)] + data


def make_persistent(outs: list) -> None:
    """A stage's dvc.yaml outs, each `persist: true`.

    DVC deletes a stage's outputs before running its command, so a bad params value (the stage
    refuses it at once) or a kill would leave a hole; `persist` keeps the previous result until
    the stage replaces it atomically (partseg.plumbing.io.atomic_dir). dvc.lock still names the inputs
    it was made from, so DVC reruns the stage all the same. (DVC does not restore persistent
    outputs from its run-cache, which would also check files out under a running Snakemake.)
    """
    from ruamel.yaml.comments import CommentedMap

    for index, out in enumerate(outs):
        path, options = (out, {}) if isinstance(out, str) else next(iter(out.items()))
        options = CommentedMap({**dict(options), "persist": True})
        comment = outs.ca.items.pop(index, None)  # what followed the entry (blank lines, notes)
        if comment:
            options.ca.items["persist"] = [None, None, comment[0], None]
        outs[index] = CommentedMap({str(path): options})


def _all_persistent(outs: list) -> bool:
    return all(isinstance(out, dict) and next(iter(out.values())).get("persist") for out in outs)


def sync_dvc_yaml(write: bool) -> list[str]:
    """Compare (or rewrite) the code deps and persistent outs of every dvc.yaml stage; the
    stages that differ."""
    from ruamel.yaml import YAML  # DVC's own YAML library: keeps comments and layout

    yaml = YAML()
    yaml.width = 4096  # never fold a long `cmd:` line
    yaml.indent(mapping=2, sequence=4, offset=2)  # the layout dvc.yaml is written in
    differ = []
    for path, prefix in _dvc_files():
        document = yaml.load(path.read_text())
        for name, stage in (document.get("stages") or {}).items():
            body = stage.get("do", stage)
            current = [str(dep) for dep in body.get("deps", [])]
            wanted = updated_deps(current, name, prefix)
            outs = body.get("outs", [])
            if current != wanted or not _all_persistent(outs):
                differ.append(f"{path.relative_to(ROOT)}: {name}")
                body["deps"][:] = wanted  # in place: the list keeps its comments
                make_persistent(outs)
        if write and differ:
            with path.open("w") as stream:
                yaml.dump(document, stream)
    return differ


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m partseg.plumbing.code_deps",
        description="Print a stage's code dependencies, or check/update those in dvc.yaml.")
    parser.add_argument("stage", nargs="?", help="print this stage's code dependencies")
    parser.add_argument("--write", action="store_true",
                        help="rewrite the code deps of every stage in dvc.yaml and "
                             "experiments/dvc.yaml")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if a dvc.yaml's code deps are out of date")
    args = parser.parse_args(argv)
    if args.stage:
        print("\n".join(stage_code(args.stage)))
        return 0
    differ = sync_dvc_yaml(write=args.write)
    for line in differ:
        print(("updated " if args.write else "out of date: ") + line)
    if differ and not args.write:
        print("run `python -m partseg.plumbing.code_deps --write` to update them", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
