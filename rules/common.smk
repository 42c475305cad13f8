# Helpers of the Snakefile's rules (Snakemake keeps functions apart from rules).


def section(*keys):
    """The params.yaml values a rule reads, keyed by `section` or `section.key`.

    Snakemake reruns a rule when its params change, so each rule lists exactly what it reads.
    """
    values = {}
    for key in keys:
        name, _, sub = key.partition(".")
        values[key] = config[name][sub] if sub else config[name]
    return values
