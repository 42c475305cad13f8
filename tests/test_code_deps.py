"""A stage's code dependencies are its import closure, the same in Snakemake and dvc.yaml."""

from __future__ import annotations

from pathlib import Path

from partseg.plumbing import code_deps

ROOT = Path(__file__).resolve().parent.parent
STAGES = sorted(p.stem for p in (ROOT / "stages").glob("*.py") if p.stem != "__init__")


def test_imports_inside_functions_count():
    # stages/train_autoshot.py imports the trainer inside build(); synthesize imports the
    # generator's sampling code through partseg.gan's lazy export of load_generator.
    assert "src/partseg/autoshot/train.py" in code_deps.stage_code("train_autoshot")
    assert "src/partseg/gan/checkpoint.py" in code_deps.stage_code("synthesize")
    assert "src/partseg/autoshot/synthesize.py" in code_deps.stage_code("synthesize")
    assert "src/partseg/shots/simulated_annotator.py" in code_deps.stage_code("annotate")


def test_a_closure_holds_what_the_stage_runs_and_nothing_else():
    # The baselines train UNets: they never run the GAN, the synthesis or the report.
    baselines = code_deps.stage_code("baselines")
    for unrelated in ("src/partseg/autoshot/synthesize.py", "src/partseg/gan/train.py",
                      "src/partseg/report.py", "src/partseg/features/extract.py"):
        assert unrelated not in baselines
    # Every package on the way is run first, so it is a dependency.
    assert {"src/partseg/__init__.py", "src/partseg/autoshot/__init__.py",
            "stages/__init__.py", "stages/baselines.py"} <= set(baselines)


def test_every_stage_has_a_closure_of_existing_files():
    for stage in STAGES:
        files = code_deps.stage_code(stage)
        assert f"stages/{stage}.py" in files
        assert all((ROOT / name).is_file() for name in files), stage


def test_package_exports_are_lazy_and_resolve():
    import partseg.gan as gan

    # Every exported name names a real attribute of the submodule it points to.
    for package in ("autoshot", "data", "features", "fewshot", "gan", "paint"):
        exports = code_deps._exports(f"partseg.{package}")
        assert exports, package
        for name, module in exports.items():
            assert code_deps.module_file(module) is not None, (package, name)
    assert gan.load_generator.__module__ == "partseg.gan.checkpoint"


def test_dvc_yaml_code_deps_are_up_to_date():
    """`python -m partseg.plumbing.code_deps --write` after changing imports keeps dvc.yaml in step."""
    assert code_deps.sync_dvc_yaml(write=False) == [], (
        "dvc.yaml is out of date: run `python -m partseg.plumbing.code_deps --write`")


def test_snakemake_code_inputs_are_the_closure():
    from test_dag import snakemake_rules

    rules = snakemake_rules()
    for stage in STAGES:
        assert set(code_deps.stage_code(stage)) <= rules[stage]["deps"], stage


def test_no_stage_imports_another():
    """Stages are thin: what two stages share lives in the library."""
    for stage in STAGES:
        others = [name for name in code_deps.module_closure(f"stages.{stage}")
                  if name.startswith("stages.") and name != f"stages.{stage}"]
        assert not others, f"stages/{stage}.py imports {others}"
