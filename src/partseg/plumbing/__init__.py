"""The pipeline's plumbing, apart from the method: what every stage and trainer stands on.

- `stage`: a stage's command line, params, threads, logging and atomic outputs.
- `params`: params.yaml's sections, every key checked on load; `check`: `partseg check`.
- `code_deps`: each stage's code closure, written into dvc.yaml and read by the Snakefile.
- `dvc_sync`: Snakemake and DVC share one state.
- `device`, `distributed`: where tensors live; data-parallel training over processes.
- `io`: atomic files and folders, safe image reads; `errors`: the one user-facing error type.
- `progress`: progress bars; `snapshots`: every trainer's resumable snapshots.
"""
