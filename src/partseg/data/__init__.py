"""Datasets and their formats.

- synthetic: the embedded procedural face dataset (`generate_synthetic_dataset`,
  `render_face_sample`, `FACE_CLASSES`)
- folder: the folder format for users' own data (`validate_folder_dataset`,
  `prepare_folder_dataset`, `FolderSplit`, `load_split_arrays`, `load_classes`)
- celebamask: the CelebAMask-HQ importer (`import_celebamask`)
- packed: the layout the `dataset` stage writes (`pack_folder_dataset`, `split_fingerprint`);
  read it, or a folder dataset, with `load_split_arrays`
- preview: a picture of a dataset (`write_preview`)
- protocols: `data.protocol` face10 / face4, the class merging (`merge_labels`,
  `protocol_classes`, `merge_folder_dataset`)
"""

from partseg.data.celebamask import import_celebamask
from partseg.data.folder import (FolderSplit, load_classes, load_split_arrays,
                                 prepare_folder_dataset, validate_folder_dataset)
from partseg.data.packed import pack_folder_dataset, split_fingerprint
from partseg.data.preview import write_preview
from partseg.data.synthetic import FACE_CLASSES, generate_synthetic_dataset, render_face_sample

__all__ = [
    "FACE_CLASSES", "FolderSplit", "generate_synthetic_dataset", "import_celebamask",
    "load_classes", "load_split_arrays", "pack_folder_dataset", "prepare_folder_dataset",
    "render_face_sample", "split_fingerprint", "validate_folder_dataset", "write_preview",
]
