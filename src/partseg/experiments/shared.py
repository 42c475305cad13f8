"""What the experiments share: the inverted test images they are scored on, and the files each
one writes (metrics.json, per_class.csv, its pictures, section.md).

Every experiment trains the same few-shot net (partseg.fewshot.evaluate.fewshot_scores) and
scores it on invert_test's `test` split, so that their numbers can be read side by side.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from partseg.plumbing.errors import PartsegError
from partseg.plumbing.io import atomic_path, load_json, save_json, save_png

# Test images shown in an experiment's predictions picture (rows).
SHOWN_TEST_IMAGES = 6


def inverted_test_set(dataset_dir: Path, inversions: Path) -> tuple:
    """(images, masks or None, stems) of the test images invert_test inverted: the first ones
    of the split, as many as it inverted. Its features (inversions/cache) are of these images
    in this order, so a dataset rebuilt since is refused rather than scored against them."""
    from partseg.data.folder import load_split_arrays

    stems = load_json(inversions / "stems.json")["stems"]
    images, masks, dataset_stems = load_split_arrays(dataset_dir, "test", limit=len(stems))
    if list(dataset_stems) != list(stems):
        raise PartsegError(f"{inversions}: its images are not the first {len(stems)} of "
                           f"{dataset_dir}/test (rerun invert_test)")
    return images, masks, stems


def write_results(out: Path, *, metrics: dict, per_class: pd.DataFrame,
                  pictures: dict[str, np.ndarray], section: str, **csv_options) -> None:
    """An experiment's files in `out` (the stage's atomic folder); csv_options go to to_csv."""
    save_json(metrics, out / "metrics.json")
    with atomic_path(out / "per_class.csv") as part:
        per_class.to_csv(part, **csv_options)
    for name, picture in pictures.items():
        save_png(picture, out / name)
    (out / "section.md").write_text(section)
