# Helpers of the Snakefile's rules (Snakemake keeps functions apart from rules).

import sys

# The library is importable from this checkout even where it is not installed.
sys.path.insert(0, str(workflow.basedir) + "/src")

from partseg.code_deps import stage_code  # a rule's code= inputs: its module's import closure


def section(*keys):
    """The params.yaml values a rule reads, keyed by `section` or `section.key`.

    Snakemake reruns a rule when its params change, so each rule lists exactly what it reads.
    A section params.yaml lacks (a file written before the experiments' sections existed)
    has the defaults the stage itself would use (src/partseg/params.py).
    """
    values = {}
    for key in keys:
        name, _, sub = key.partition(".")
        part = config[name] if name in config else default_section(name)
        values[key] = part[sub] if sub else part
    return values


def default_section(name):
    """A params section's defaults, as partseg.params documents them."""
    import dataclasses

    from partseg.params import Params

    return dataclasses.asdict(Params())[name]
