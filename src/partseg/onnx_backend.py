"""Running an exported segmenter (`partseg export`) with ONNX Runtime, on the CPU.

OnnxSegmenter is a partseg.autoshot.segmenter.Segmenter whose network is an ONNX Runtime session. The
resizing before and after the network, the batching and the argmax stay Segmenter's own code,
so `partseg segment --model model.onnx` writes the label PNGs the .pt model writes (the logits
agree to ~1e-6). Classes and native resolution come from the model's metadata_props.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from partseg.autoshot.segmenter import Segmenter
from partseg.plumbing.errors import PartsegError
from partseg.export import INPUT_SPEC, ONNX_FORMAT, OUTPUT_SPEC, import_onnxruntime


def read_metadata(session, path: Path) -> tuple[dict, dict]:
    """The partseg metadata of a session's model -> (the checkpoint's meta dict: class_names,
    resolution, ...; the UNet config); PartsegError naming `path` if it is not a partseg
    export this version can feed."""
    props = session.get_modelmeta().custom_metadata_map
    if props.get("partseg.format") != ONNX_FORMAT:
        raise PartsegError(f"{path}: not a partseg segmenter export (no partseg metadata; make "
                           "one with partseg export model.pt model.onnx)")
    if props.get("partseg.format_version") != "1":
        raise PartsegError(f"{path}: partseg export format {props.get('partseg.format_version')}"
                           " is newer than this partseg reads (1); upgrade partseg")
    try:
        meta = json.loads(props.get("partseg.meta", "{}"))
        meta["class_names"] = json.loads(props["partseg.class_names"])
        meta["resolution"] = int(props["partseg.resolution"])
        spec = json.loads(props["partseg.input"])
        config = json.loads(props["partseg.unet"])
    except (KeyError, ValueError) as error:
        raise PartsegError(f"{path}: damaged partseg metadata ({error})") from None
    # Segmenter feeds exactly INPUT_SPEC (uint8 / 255, NCHW); refuse a model expecting other.
    if spec != INPUT_SPEC:
        raise PartsegError(f"{path}: expects input {spec}, but partseg feeds {INPUT_SPEC}")
    return meta, config


class _OnnxNetwork:
    """Stands in for the UNet in Segmenter: float [B,3,H,W] tensor -> logits tensor.
    `config` is the UNet's (Segmenter reads its depth to count the padded pixels)."""

    def __init__(self, session, config: dict):
        self.session = session
        self.config = config

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        images = np.ascontiguousarray(batch.detach().cpu().numpy(), dtype=np.float32)
        logits = self.session.run([OUTPUT_SPEC["name"]], {INPUT_SPEC["name"]: images})[0]
        return torch.from_numpy(logits)


class OnnxSegmenter(Segmenter):
    """Segmenter(model_path) for a .onnx export: same predict/predict_batch, same outputs."""

    def __init__(self, model_path: str | os.PathLike, device: str | torch.device | None = None,
                 size: int | None = None, flip: bool = False):
        # Not Segmenter.__init__ (it loads a torch checkpoint); this sets the same attributes,
        # which tests/test_export_onnx.py checks so the two cannot drift apart.
        path = Path(model_path)
        if device is not None and str(device).strip().lower() not in ("cpu", "auto"):
            raise PartsegError(f"{path}: ONNX models run on the CPU here (ONNX Runtime's CPU "
                               f"provider); drop --device {device} or use the .pt model")
        onnxruntime = import_onnxruntime(f"{path}: running an ONNX model")
        if not path.is_file():
            raise PartsegError(f"{path}: ONNX model not found")
        options = onnxruntime.SessionOptions()
        # The thread budget of the PyTorch path (torch.set_num_threads, OMP_NUM_THREADS).
        options.intra_op_num_threads = torch.get_num_threads()
        try:
            session = onnxruntime.InferenceSession(str(path), options,
                                                   providers=["CPUExecutionProvider"])
        except Exception as error:  # ORT raises its own exception types for a bad file
            raise PartsegError(f"{path}: not a readable ONNX model ({type(error).__name__})"
                               ) from None
        self.meta, config = read_metadata(session, path)
        self.model = _OnnxNetwork(session, config)
        self.device = torch.device("cpu")
        self.class_names: list[str] = list(self.meta["class_names"])
        self.resolution = int(self.meta["resolution"])
        self.size = self.resolution if size is None else int(size)
        self.flip = flip


def open_segmenter(model_path: str | os.PathLike, device: str | torch.device | None = None,
                   size: int | None = None, flip: bool = False) -> Segmenter:
    """The backend for a model file: ONNX Runtime for *.onnx, PyTorch otherwise."""
    backend = OnnxSegmenter if str(model_path).lower().endswith(".onnx") else Segmenter
    return backend(model_path, device=device, size=size, flip=flip)
