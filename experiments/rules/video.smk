# The video experiment (see experiments/README.md).
