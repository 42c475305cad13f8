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

from partseg import lazy_exports

# name -> submodule; imported on first use (see partseg.lazy_exports)
_EXPORTS = {
    "FACE_CLASSES": "synthetic",
    "FolderSplit": "folder",
    "generate_synthetic_dataset": "synthetic",
    "import_celebamask": "celebamask",
    "load_classes": "folder",
    "load_split_arrays": "folder",
    "pack_folder_dataset": "packed",
    "prepare_folder_dataset": "folder",
    "render_face_sample": "synthetic",
    "split_fingerprint": "packed",
    "validate_folder_dataset": "folder",
    "write_preview": "preview",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
