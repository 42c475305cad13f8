"""Snakemake and DVC share one state: after either tool builds, the other has nothing to do.

The two tools keep separate records of what they built, and each ignores the other's:

- DVC decides from dvc.lock: per stage, the hashes of its deps and outs and its params values.
- Snakemake decides from file mtimes and from its metadata in .snakemake/metadata/: per
  output, the params, code, input list and shell command the job ran with ("rerun triggers").

So, without help:

1. After `snakemake --cores all`, DVC has no lock (or an old one): every stage looks changed and
   `dvc repro` would recompute the whole pipeline. Fix: `record_snakemake_run_in_dvc`, called
   from the Snakefile's `onsuccess:`, runs `dvc commit -f <stages>`. That is DVC's own command
   for "these outputs were produced outside `dvc repro`": it hashes each stage's deps, params
   and outs as they are now and writes their dvc.lock entries (and caches the outs), exactly
   what `dvc repro` records after running the same command (tests/test_dag.py checks that both
   files declare the same commands' paths). Only the stages this run *executed* are committed,
   plus any missing from dvc.lock: a stage Snakemake merely found up to date keeps whatever DVC
   knew about it, so a stage that DVC considers stale for a reason Snakemake does not track
   (DVC also depends on the library code under src/partseg/) stays stale for DVC.

2. After `dvc repro`, Snakemake has no metadata for the outputs (or metadata from an older
   run). With none it still says "Nothing to be done", but warns of "missing provenance" and
   can no longer see a param change (a missing record never triggers a rerun); with an old
   record it reruns stages that DVC already rebuilt for the current params. Fix:
   `adopt_dvc_builds`, called from the Snakefile as it loads (before Snakemake builds its
   DAG, so also for `snakemake -n`): when dvc.lock changed since the two tools last agreed, it
   asks `dvc status` which stages are up to date and runs Snakemake's own
   `snakemake --touch --forcerun <those rules>` on their outputs. Touch mode runs nothing; it
   records each job's metadata (params, code, input) as if it had run, through Snakemake's own
   code, so nothing here depends on the metadata's file format. Plain `--touch` is dangerous
   (it declares stale outputs fresh); here only stages whose dvc.lock entry matches the
   current params, code and inputs are adopted, so it declares exactly what DVC has proved.

The paper's other experiments are a DVC project of their own in experiments/ (so the default
`dvc repro` leaves them out); both hooks treat it the same way, with its own dvc.lock, stage
names and agreement file, and its outputs relative to experiments/.

The dvc.lock entries Snakemake's records match are kept in .snakemake/partseg_dvc_agreed.lock:
the adoption (a `dvc status` and a touch run, a few seconds) happens only when dvc.lock
differs from it, and covers only the stages whose entries differ (what DVC built or checked
out since); `snakemake -n` stays fast otherwise. Both helpers only warn when DVC is missing,
not initialised or fails: the Snakemake run itself never fails because of them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from dataclasses import dataclass

import yaml

# Set in the nested `snakemake --touch` run, which must neither adopt nor commit again.
NESTED = "PARTSEG_DVC_SYNC"


@dataclass(frozen=True)
class DvcProject:
    """One DVC project of the repository: its folder (relative to the Snakefile's, where
    Snakemake's paths start) and the file that remembers what the two tools last agreed on."""

    root: Path
    agreed: Path

    @property
    def lock(self) -> Path:
        return self.root / "dvc.lock"

    def snakemake_path(self, dvc_path: str) -> str:
        """An output path of this project's dvc.lock as the Snakefile spells it."""
        return dvc_path if self.root == Path(".") else str(self.root / dvc_path)


MAIN = DvcProject(Path("."), Path(".snakemake") / "partseg_dvc_agreed.lock")
EXPERIMENTS = DvcProject(Path("experiments"), Path(".snakemake") / "partseg_dvc_agreed_experiments.lock")
PROJECTS = (MAIN, EXPERIMENTS)


def _warn(message: str) -> None:
    print(f"partseg: WARNING: {message}", file=sys.stderr, flush=True)


def _info(message: str) -> None:
    print(f"partseg: {message}", file=sys.stderr, flush=True)


def _dvc(*args: str, project: DvcProject = MAIN,
         timeout: int = 600) -> subprocess.CompletedProcess | None:
    """Run dvc in `project`; None (after a warning) when it is not installed or not
    initialised there."""
    if not (project.root / ".dvc").is_dir():
        _warn(f"no .dvc/ in {project.root} (DVC not initialised): Snakemake's run is not recorded "
              "for DVC; run `dvc init` once to let `dvc repro` and `dvc status` see it")
        return None
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    try:
        return subprocess.run(["dvc", *args], capture_output=True, text=True, env=env,
                              timeout=timeout, cwd=project.root)
    except FileNotFoundError:
        _warn("`dvc` not found on PATH: Snakemake's run is not recorded for DVC")
    except subprocess.TimeoutExpired:
        _warn(f"`dvc {' '.join(args)}` took over {timeout} s and was stopped")
    return None


def _remember_agreement(project: DvcProject, stages=None) -> None:
    """Note that Snakemake's records match these stages' dvc.lock entries (all when None).

    A stage left out (stale for DVC, so not adopted) keeps its previous entry here, so it is
    adopted later, once DVC has rebuilt it, even if its lock entry has not changed by then.
    """
    locked = _locked_stages(project.lock)
    agreed = dict(locked) if stages is None else _locked_stages(project.agreed)
    agreed.update({name: locked[name] for name in (stages or ()) if name in locked})
    agreed = {name: entry for name, entry in agreed.items() if name in locked}
    project.agreed.parent.mkdir(exist_ok=True)
    project.agreed.write_text(yaml.safe_dump({"stages": agreed}, sort_keys=False))


def _locked_stages(lock: Path) -> dict:
    """A lock file's stages: name -> entry (deps, params, outs); {} if there is none."""
    try:
        return (yaml.safe_load(lock.read_text()) or {}).get("stages", {}) if lock.is_file() else {}
    except yaml.YAMLError:
        return {}


def _dvc_stage_bases(project: DvcProject) -> set[str]:
    """Stage names declared in the project's dvc.yaml (a `foreach` stage `s` yields `s@<item>`
    stages)."""
    try:
        return set((yaml.safe_load((project.root / "dvc.yaml").read_text()) or {})
                   .get("stages", {}) or {})
    except (OSError, yaml.YAMLError):
        return set()


def _stage_name(job) -> str:
    """The dvc.yaml stage of a Snakemake job: the rule's name, `rule@value` for a wildcard
    (rule synthesize with shard=0 is DVC's foreach stage synthesize@0)."""
    values = list(job.wildcards_dict.values())
    return job.rule.name + "".join(f"@{value}" for value in values)


# ---- 1. Snakemake built: record it in dvc.lock --------------------------------------------

def record_snakemake_run_in_dvc(workflow, failed: bool = False) -> None:
    """From the Snakefile's onsuccess: in each DVC project, `dvc commit -f` the stages this run
    executed (and any stage of the run's DAG that its dvc.lock lacks). From onerror
    (failed=True): the stages whose jobs finished before the failure, so that the next run,
    which does not run them again, leaves DVC knowing them too. Warns instead of failing."""
    if os.environ.get(NESTED):
        return
    try:
        dag = workflow.dag
        executed = set(dag.needrun_jobs(exclude_finished=False))
        if failed:
            executed &= set(dag.finished_jobs)
        jobs = [(job, job in executed) for job in dag.jobs if not failed or job in executed]
    except Exception as error:  # never fail a finished run over bookkeeping
        _warn(f"could not list the jobs of this run for DVC ({error!r}); "
              "run `dvc commit -f` to record them")
        return
    for project in PROJECTS:
        _commit_stages(project, jobs)


def _commit_stages(project: DvcProject, jobs: list) -> None:
    """`dvc commit -f` in `project` the stages of `jobs` ((job, executed) pairs) it declares
    that ran, or that its dvc.lock lacks."""
    declared, locked = _dvc_stage_bases(project), _locked_stages(project.lock)
    stages = sorted({_stage_name(job) for job, ran in jobs
                     if job.rule.name in declared and (ran or _stage_name(job) not in locked)})
    if not stages:
        return
    where = "" if project is MAIN else f" of {project.root}/"
    _info(f"recording {len(stages)} stage(s) in {project.lock} (dvc commit -f {' '.join(stages)}"
          f"{where})")
    result = _dvc("commit", "--force", "--quiet", *stages, project=project)
    if result is None:
        return
    if result.returncode != 0:
        _warn(f"`dvc commit` in {project.root} failed, so DVC does not know about this run "
              "(`dvc status` will list these stages as changed):\n"
              + (result.stderr or result.stdout)[-2000:])
        return
    _remember_agreement(project, stages)


# ---- 2. DVC built: record it in Snakemake's metadata -------------------------------------

def _rules_to_adopt(locked: dict, agreed: dict, changed: set[str]) -> dict[str, list[str]]:
    """rule -> its outputs, for the rules to record for Snakemake: some DVC stage of the rule
    has a new lock entry since the last agreement, and all of them are up to date for DVC."""
    rules: dict[str, list[str]] = {}
    new: set[str] = set()
    for name, entry in locked.items():
        rule = name.split("@")[0]
        rules.setdefault(rule, []).extend(out["path"] for out in entry.get("outs", []))
        if agreed.get(name) != entry:
            new.add(rule)
    stale = {name.split("@")[0] for name in changed}  # incl. a shard DVC has not built yet
    return {rule: outs for rule, outs in rules.items() if rule in new and rule not in stale and outs}


def is_dry_run(workflow) -> bool:
    settings = getattr(workflow, "output_settings", None)
    return bool(getattr(settings, "dryrun", False))


def adopt_dvc_builds(workflow) -> None:
    """From the Snakefile as it loads: give Snakemake the metadata of what `dvc repro` built.

    Only in the main Snakemake process (not in the per-job processes of cluster runs), and
    only for a DVC project whose dvc.lock changed since the two tools last agreed. Never in a
    dry run: a plan must not write records or take Snakemake's lock (two dry runs at once
    would clash); it says instead that the next real run records DVC's builds first.
    """
    mode = getattr(getattr(workflow, "exec_mode", None), "name", "DEFAULT")
    if os.environ.get(NESTED) or mode != "DEFAULT":
        return
    for project in PROJECTS:
        if is_dry_run(workflow):
            _note_pending_adoption(project)
        else:
            _adopt_project(workflow, project)


def _note_pending_adoption(project: DvcProject) -> None:
    locked, agreed = _locked_stages(project.lock), _locked_stages(project.agreed)
    if locked and locked != agreed:
        new = sorted(name for name, entry in locked.items() if agreed.get(name) != entry)
        _info(f"{project.lock} has builds Snakemake has not recorded yet ({' '.join(new)}); "
              "this dry run may list them, but a real run records what DVC proves up to date "
              "first and runs only the rest")


# ---- One tool at a time ------------------------------------------------------------------

def dvc_is_running() -> Path | None:
    """The lock file of a DVC project that a running `dvc` command holds, else None.

    DVC takes `.dvc/tmp/lock` (zc.lockfile, an fcntl lock) for the whole of `dvc repro`;
    trying to take it tells whether one is running, without waiting.
    """
    import zc.lockfile

    for project in PROJECTS:
        path = project.root / ".dvc" / "tmp" / "lock"
        if not path.is_file():
            continue
        try:
            zc.lockfile.LockFile(str(path)).close()
        except zc.lockfile.LockError:
            return path
    return None


def stop_if_dvc_is_running(workflow) -> None:
    """From the Snakefile as it loads (real runs): refuse to start while `dvc repro` runs in
    the same folder: both would write the same outputs."""
    if os.environ.get(NESTED) or is_dry_run(workflow):
        return
    held = dvc_is_running()
    if held is not None:
        print(f"error: DVC is running in this folder ({held} is held, e.g. by `dvc repro`); "
              "wait for it to finish, then run this command again", file=sys.stderr)
        raise SystemExit(2)



def _adopt_project(workflow, project: DvcProject) -> None:
    locked = _locked_stages(project.lock)
    if not locked or locked == _locked_stages(project.agreed):
        return
    status = _dvc("status", "--json", project=project, timeout=300)
    if status is None:
        return
    try:
        changed = {name.split(":")[-1] for name in json.loads(status.stdout or "{}")}
    except json.JSONDecodeError:
        changed = None
    if status.returncode != 0 or changed is None:
        _warn(f"`dvc status` in {project.root} failed; Snakemake keeps its own records:\n"
              + (status.stderr or status.stdout)[-2000:])
        return
    rules = _rules_to_adopt(locked, _locked_stages(project.agreed), changed)
    if rules and not _touch(workflow, rules, project):
        return
    _remember_agreement(project, [name for name in locked if name.split("@")[0] in rules])


def _touch(workflow, rules: dict[str, list[str]], project: DvcProject) -> bool:
    """`snakemake --touch` the outputs of `rules` (recorded as built, nothing run)."""
    targets = sorted({project.snakemake_path(out) for outs in rules.values() for out in outs})
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(workflow.main_snakefile),
               "--touch", "--cores", "1", "--forcerun", *sorted(rules),
               "--allowed-rules", *sorted(rules), "--", *targets]
    _info(f"recording for Snakemake what DVC built: snakemake --touch {' '.join(sorted(rules))} "
          "(up to date in dvc.lock; nothing is run)")
    result = subprocess.run(command, capture_output=True, text=True,
                            env={**os.environ, NESTED: "1"})
    if result.returncode != 0:
        _warn("recording DVC's build for Snakemake failed; Snakemake may rerun stages DVC "
              "already built:\n" + (result.stderr or result.stdout)[-2000:])
        return False
    return True
