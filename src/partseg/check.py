"""`partseg check`: validate params.yaml (and the dataset folder it names) up front."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", default="params.yaml", help="params file (default params.yaml)")


def run(args: argparse.Namespace) -> int:
    from partseg.params import load_params

    params = load_params(args.params)
    print(f"{args.params}: ok (data.source={params.data.source}, "
          f"resolution={params.data.resolution}, annotate.source={params.annotate.source})")
    if params.data.source == "folder":
        from partseg.data.folder import validate_folder_dataset

        summary = validate_folder_dataset(params.data.path)
        print(f"{params.data.path}: ok ({summary})")
    return 0
