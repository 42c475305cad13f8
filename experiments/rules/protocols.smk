# The protocols experiment (see experiments/README.md).
