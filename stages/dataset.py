"""Stage dataset: the packed dataset every later stage reads (data/dataset/).

data.source = synthetic   generate the built-in procedural faces (seeded, deterministic)
data.source = folder      validate your folder dataset and write a normalised copy
data.source = celebamask  import CelebAMask-HQ into the 10-class face protocol
data.protocol = face4     then merge the 10 face classes into background, eye, mouth, nose
                          (partseg.data.protocols; face10 keeps the source's classes)

Each source first writes the folder format (images/ and masks/ PNGs per split, classes.yaml,
preview.png) to a scratch folder beside the output; that is then packed into a few array
files per split (partseg.data.packed), so DVC checks a dozen files instead of one per image.
Read the result with partseg.data.folder.load_split_arrays.
"""

import shutil
from pathlib import Path

from partseg.plumbing.stage import log, run_stage, stage_parser


def write_folder_dataset(folder: Path, data, split_sizes, threads) -> dict:
    """Write the dataset of `data.source` in the folder format to `folder`; its summary."""
    if data.source == "synthetic":
        from partseg.data.synthetic import generate_synthetic_dataset

        return generate_synthetic_dataset(
            folder, resolution=data.resolution, seed=split_sizes.seed,
            n_train=split_sizes.n_train, n_labeled=split_sizes.n_labeled,
            n_test=split_sizes.n_test, n_test_shifted=split_sizes.n_test_shifted,
            workers=threads or None)
    if data.source == "folder":
        from partseg.data.folder import prepare_folder_dataset

        return prepare_folder_dataset(data.path, folder, resolution=data.resolution)
    from partseg.data.celebamask import import_celebamask

    return import_celebamask(
        data.path, folder, resolution=data.resolution, n_train=split_sizes.n_train,
        n_labeled=split_sizes.n_labeled, n_test=split_sizes.n_test, seed=split_sizes.seed)


def build(args, params):
    from partseg.data.packed import pack_folder_dataset
    from partseg.data.protocols import merge_folder_dataset

    out = Path(args.out)
    # Scratch space next to the output (same file system, and ignored by git via *.tmp/).
    folder = out.with_name(out.name + ".folder.tmp")
    try:
        summary = write_folder_dataset(folder, params.data, params.dataset, args.threads)
        # data.protocol merges classes here, once, so every later stage sees the same labels.
        summary = merge_folder_dataset(folder, params.data.protocol, summary)
        pack_folder_dataset(folder, out, summary=summary)  # atomic: replaces `out` as a whole
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    log(f"[dataset] wrote {args.out}: " + ", ".join(
        f"{key}={value}" for key, value in summary.items() if not isinstance(value, dict)))


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--out", required=True)
    run_stage("dataset", parser, build)
