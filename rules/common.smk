# Helpers of the Snakefile's rules (Snakemake keeps functions apart from rules).

import os
import sys

# The library is importable from this checkout even where it is not installed.
sys.path.insert(0, os.path.join(workflow.basedir, "src"))

from partseg.plumbing.code_deps import stage_code  # a rule's code= inputs: its module's import closure
from partseg.plumbing.errors import PartsegError


def total_cores():
    """--cores, or 1 for the commands that take none (`snakemake --unlock`, `--lint`,
    `--list-rules`): they run no job, but the rules' thread counts are still read."""
    from snakemake.exceptions import WorkflowError

    try:
        return workflow.cores
    except WorkflowError:
        return 1


def check_params_or_stop():
    """Stop at load, before any job starts or any output is removed, when params.yaml is bad:
    the one line `partseg check` prints, exit status 2."""
    from partseg.plumbing.check import check_before_running

    try:
        check_before_running("params.yaml")
    except PartsegError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def section(*keys):
    """The params.yaml values a rule reads, keyed by `section` or `section.key`.

    Snakemake reruns a rule when its params change, so each rule lists exactly what it reads.
    A section params.yaml lacks (a file written before the experiments' sections existed)
    has the defaults the stage itself would use (src/partseg/plumbing/params.py).
    """
    values = {}
    for key in keys:
        name, _, sub = key.partition(".")
        part = config[name] if name in config else default_section(name)
        values[key] = part[sub] if sub else part
    return values


def default_section(name):
    """A params section's defaults, as partseg.plumbing.params documents them."""
    import dataclasses

    from partseg.plumbing.params import Params

    return dataclasses.asdict(Params())[name]


def rebuild_missing_intermediates():
    """Rebuild a missing output that results still present were made from.

    Snakemake reruns a job whose output is missing only when something downstream must run
    (that is how temp() files stay deleted). So when a job is killed, Snakemake deletes its
    output, and a later run finds the results made from it present and plans nothing: the
    hole stays. Here, as the Snakefile loads, a rule whose outputs are present while one of
    its inputs is missing (and some rule makes that input) has its outputs dated back to
    1970: they are older than their inputs, so Snakemake reruns the rule, and first the job
    that makes the missing input. Only the timestamps change, never a file's content.
    """
    for consumer in workflow.rules:
        if consumer.has_wildcards() or not consumer.output:
            continue
        if not all(os.path.exists(path) for path in consumer.output):
            continue  # Snakemake reruns this rule itself
        missing = [str(path) for path in consumer.input if not os.path.exists(path)
                   and any(other.is_producer(str(path)) for other in workflow.rules)]
        if missing:
            print(f"partseg: {' '.join(missing)} is missing (a killed job?); rebuilding it "
                  f"and {consumer.name}, which used it", file=sys.stderr)
            for path in map(str, consumer.output):
                mark_out_of_date(path)


def mark_out_of_date(path):
    """Date an output (and Snakemake's timestamp file in an output folder) back to 1970."""
    stamp = os.path.join(path, ".snakemake_timestamp")
    for name in (stamp, path) if os.path.isdir(path) else (path,):
        if os.path.exists(name):
            os.utime(name, (1, 1))  # 0 would read as "no time" to Snakemake
