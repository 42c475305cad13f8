"""The Snakefile and dvc.yaml describe one DAG: same stages, data deps, outputs and params."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from conftest import required_stage_arguments
from partseg.plumbing.params import Params

ROOT = Path(__file__).resolve().parent.parent
SHARD = re.compile(r"results/synthesize/shard_(\d+|\{shard[^}]*\}|\$\{item\})$")


def normalise(path: str) -> str:
    """One spelling for sharded paths: Snakemake's wildcard and DVC's foreach item."""
    return SHARD.sub("results/synthesize/shard_{shard}", str(path))


def collapse_shards(paths: set[str]) -> set[str]:
    """Snakemake lists each shard folder as an input; DVC depends on their parent folder."""
    return {"results/synthesize" if SHARD.match(p) and "{" not in p else p for p in paths}


def snakemake_rules() -> dict[str, dict]:
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import OutputSettings, ResourceSettings

    with SnakemakeApi(OutputSettings()) as api:
        workflow = api.workflow(resource_settings=ResourceSettings(cores=1),
                                snakefile=ROOT / "Snakefile", workdir=ROOT)._workflow
        rules = {}
        for rule in workflow.rules:
            if rule.name in ("all", "experiments"):
                continue
            params = rule.params[0] if len(rule.params) else {}
            rules[rule.name] = {
                "deps": {normalise(p) for p in collapse_shards({str(p) for p in rule.input})},
                "outs": {normalise(p).replace(",\\d+", "") for p in rule.output},
                "params": set(params),
                "log": [str(p) for p in rule.log],
                "benchmark": rule.benchmark,
                "resources": dict(rule.resources),
                "shell": rule.shellcmd,
                "command": command(rule),
            }
        return rules


def command(rule) -> str:
    """A rule's shell command with its named inputs, output and shard wildcard filled in."""
    def fill(match):
        kind, _, name = match.group(1).partition(".")
        if kind == "input" and name:
            value = rule.input[name]
            return " ".join(map(str, value)) if isinstance(value, list) else str(value)
        if kind == "output":
            return normalise(str(rule.output[0])).replace(",\\d+", "")
        if kind == "wildcards":
            return "{" + name + "}"
        return match.group(0)

    return re.sub(r"\{([a-z_.]+)\}", fill, rule.shellcmd.split(" 2>&1")[0])


def arguments(cmd: str) -> dict[str, list[str]]:
    """A stage command's arguments, `--name value ...` -> {name: [value, ...]}, without the ones
    only Snakemake passes (threads and processes: its scheduling, not the stage's inputs)."""
    import shlex

    args, name = {}, None
    for word in shlex.split(cmd)[3:]:  # after `python -m stages.<name>`
        if word.startswith("--"):
            name = word[2:]
            args[name] = []
        else:
            args[name].append(normalise(word.replace("${item}", "{shard}")))
    return {k: v for k, v in args.items() if k not in ("threads", "processes")}


def out_path(out) -> str:
    """A dvc.yaml out: a path, or {path: {persist: true, ...}}."""
    return out if isinstance(out, str) else next(iter(out))


def experiment_path(path: str) -> str:
    """experiments/dvc.yaml's paths are relative to experiments/: one spelling from the root."""
    return path[3:] if path.startswith("../") else f"experiments/{path}"


def experiment_params(entries: list) -> set[str]:
    """experiments/dvc.yaml names the top-level params file: `- ../params.yaml: [keys]`."""
    keys = set()
    for entry in entries:
        assert isinstance(entry, dict) and set(entry) == {"../params.yaml"}, entry
        keys.update(entry["../params.yaml"])
    return keys


def dvc_stages() -> dict[str, dict]:
    values = yaml.safe_load((ROOT / "params.yaml").read_text())

    def resolve(text: str) -> str:
        def lookup(match):
            section, _, key = match.group(1).partition(".")
            return "{shard}" if section == "item" else str(values[section][key])

        return normalise(re.sub(r"\$\{([^}]+)\}", lookup, text))

    stages = {}
    for name, stage in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].items():
        body = stage.get("do", stage)
        stages[name] = {
            "deps": {resolve(d) for d in body.get("deps", [])},
            "outs": {resolve(out_path(o)) for o in body.get("outs", [])},
            "params": set(body.get("params", [])),
            "cmd": body["cmd"],
        }
    experiments = yaml.safe_load((ROOT / "experiments" / "dvc.yaml").read_text())["stages"]
    for name, body in (experiments or {}).items():
        deps = {experiment_path(d) for d in body.get("deps", [])}
        stages[name] = {
            "deps": deps,
            "outs": {experiment_path(out_path(o)) for o in body.get("outs", [])},
            "params": experiment_params(body.get("params", [])),
            "cmd": body["cmd"].removeprefix("cd .. && "),
        }
    return stages


@pytest.fixture(scope="module")
def both():
    return snakemake_rules(), dvc_stages()


def test_same_stage_names(both):
    rules, stages = both
    assert set(rules) == set(stages)


@pytest.mark.parametrize("what", ["deps", "outs", "params"])
def test_same_deps_outs_and_params(both, what):
    rules, stages = both
    for name in stages:
        assert rules[name][what] == stages[name][what], f"{name}: {what} differ"


def test_every_rule_has_log_benchmark_threads_and_resources(both):
    rules, _ = both
    for name, rule in rules.items():
        assert rule["log"], name
        assert rule["benchmark"], name
        assert {"mem_mb", "runtime"} <= set(rule["resources"]), name


def test_each_stage_runs_its_own_module(both):
    rules, stages = both
    for name in stages:
        module = f"python -m stages.{name} "
        assert stages[name]["cmd"].startswith(module), name
        assert rules[name]["shell"].startswith(module), name
        assert (ROOT / "stages" / f"{name}.py").is_file(), name


def test_both_tools_pass_the_same_paths(both):
    """Paths are said once, by the DAG: a stage has no default path, so each tool's command
    passes every one, and the two commands pass the same."""
    rules, stages = both
    for name in stages:
        dvc = arguments(stages[name]["cmd"])
        assert arguments(rules[name]["command"]) == dvc, name
        missing = required_stage_arguments(name) - set(dvc)
        assert not missing, f"{name}: the commands do not pass {missing}"


def test_params_sections_exist(both):
    _, stages = both
    known = set(Params.__dataclass_fields__)
    for name, stage in stages.items():
        for key in stage["params"]:
            assert key.split(".")[0] in known, f"{name}: unknown params section {key}"


def test_snakefile_keeps_dvc_in_step():
    """The hooks of src/partseg/plumbing/dvc_sync.py: adopt DVC's builds on load, commit on success."""
    text = (ROOT / "Snakefile").read_text()
    assert "dvc_sync.adopt_dvc_builds(workflow)" in text
    onsuccess = text[text.index("\nonsuccess:"):]
    assert "dvc_sync.record_snakemake_run_in_dvc(workflow)" in onsuccess
    onerror = text[text.index("\nonerror:"):]
    assert "dvc_sync.record_snakemake_run_in_dvc(workflow, failed=True)" in onerror


def test_only_stages_dvc_built_and_proves_up_to_date_are_adopted():
    from partseg.plumbing.dvc_sync import _rules_to_adopt

    def entry(md5):
        return {"cmd": "c", "outs": [{"path": f"results/{md5}", "md5": md5}]}

    agreed = {"train_gan": entry("g"), "sample": entry("s"), "synthesize@0": entry("a"),
              "synthesize@1": entry("b")}
    locked = {**agreed, "sample": entry("s2"), "synthesize@0": entry("a2"), "features": entry("f")}
    # sample and features were built by DVC since; synthesize@0 too, but @1 is stale for DVC;
    # train_gan is as Snakemake last knew it.
    assert _rules_to_adopt(locked, agreed, changed={"synthesize@1"}) == {
        "sample": ["results/s2"], "features": ["results/f"]}
    assert _rules_to_adopt(locked, {}, changed=set())["train_gan"] == ["results/g"]
    assert _rules_to_adopt(locked, locked, changed=set()) == {}


def test_experiments_stay_out_of_the_default_run(tmp_path):
    """`snakemake --cores all` (target all) plans no experiment; the target `experiments` does,
    and top-level DVC does not see the experiments' DVC project (experiments/.dvc)."""
    import os
    import subprocess

    env = {**os.environ, "PARTSEG_DVC_SYNC": "1"}  # plan only: no DVC bookkeeping
    plan = subprocess.run(["snakemake", "-n", "--cores", "1", "--forceall"], cwd=ROOT,
                          capture_output=True, text=True, env=env, timeout=300)
    assert plan.returncode == 0, plan.stderr[-2000:]
    assert "experiments/results" not in plan.stdout + plan.stderr
    assert (ROOT / "experiments" / ".dvc" / "config").is_file()
    raw = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    experiments = yaml.safe_load((ROOT / "experiments" / "dvc.yaml").read_text())["stages"] or {}
    assert not set(raw) & set(experiments)
