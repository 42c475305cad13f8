"""Stage dataset: the folder dataset every later stage reads (data/dataset/).

data.source = synthetic   generate the built-in procedural faces (seeded, deterministic)
data.source = folder      validate your folder dataset and write a normalised copy
data.source = celebamask  import CelebAMask-HQ into the 10-class face protocol
"""

from partseg.io import atomic_dir
from partseg.stage import log, run_stage, stage_parser


def build(args, params):
    data, split_sizes = params.data, params.dataset
    with atomic_dir(args.out) as tmp:
        if data.source == "synthetic":
            from partseg.data.synthetic import generate_synthetic_dataset

            summary = generate_synthetic_dataset(
                tmp, resolution=data.resolution, seed=split_sizes.seed,
                n_train=split_sizes.n_train, n_labeled=split_sizes.n_labeled,
                n_test=split_sizes.n_test, n_test_shifted=split_sizes.n_test_shifted,
                workers=args.threads or None)
        elif data.source == "folder":
            from partseg.data.folder import prepare_folder_dataset

            summary = prepare_folder_dataset(data.path, tmp, resolution=data.resolution)
        else:
            from partseg.data.celebamask import import_celebamask

            summary = import_celebamask(
                data.path, tmp, resolution=data.resolution, n_train=split_sizes.n_train,
                n_labeled=split_sizes.n_labeled, n_test=split_sizes.n_test, seed=split_sizes.seed)
    log(f"[dataset] wrote {args.out}: " + ", ".join(
        f"{key}={value}" for key, value in summary.items() if not isinstance(value, dict)))


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--out", default="data/dataset")
    run_stage("dataset", parser, build)
