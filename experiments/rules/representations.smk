# The representations experiment (see experiments/README.md).
