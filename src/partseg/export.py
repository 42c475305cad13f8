"""`partseg export`: the auto-shot segmenter as an ONNX model, to run without partseg.

    partseg export results/train_autoshot/model.pt model.onnx
    partseg segment photos/ --model model.onnx -o out/     # same labels, via ONNX Runtime

The graph is the UNet alone: input "images" float32 [N,3,H,W] (RGB in [0,1], i.e. uint8 / 255;
no mean/std: the network centres its input itself), output "logits" float32 [N,K,H,W]; N, H
and W are dynamic (any size: the graph pads to a multiple of 2**depth and crops back). The
resizing around it (shorter side to the native resolution, probabilities back to the image's
size) stays outside, exactly as in partseg.autoshot.segmenter.Segmenter, so each caller can choose it.

What a caller needs to feed and read the model is stored in the ONNX model's metadata_props
(string key -> value; JSON where structured), see METADATA_KEYS. The file is written
atomically and only after ONNX Runtime (when installed) reproduced PyTorch's logits.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import warnings
from pathlib import Path

from partseg.plumbing.errors import PartsegError

OPSET = 17  # read by ONNX Runtime since 1.12 and by most other current runtimes
# 11: the first opset with Pad amounts computed in the graph (dynamic H, W need them);
# 20: the newest the TorchScript exporter (used here, see export_bytes) supports.
OPSET_RANGE = (11, 20)
ONNX_FORMAT = "partseg-segmenter-onnx"
INSTALL_HINT = "install with pip install 'partseg[onnx]'"
# ONNX Runtime vs PyTorch on a random batch: a larger gap means a wrong export, not rounding
# (measured gaps are ~1e-6; tests hold it to 1e-4).
CHECK_TOLERANCE = 1e-3

# metadata_props keys; every value is a string.
METADATA_KEYS = {
    "partseg.format": "ONNX_FORMAT, so a loader can tell a partseg export from any ONNX file",
    "partseg.format_version": "1",
    "partseg.version": "the partseg version that exported it",
    "partseg.class_names": "JSON list: output channel k is class_names[k]",
    "partseg.resolution": "native (training) resolution in px: resize the shorter side to it",
    "partseg.input": "JSON: name, layout, dtype, channels, range, mean, std of the input",
    "partseg.output": "JSON: name, layout, what the channels are",
    "partseg.preprocess": "one line: how partseg segment prepares an image",
    "partseg.postprocess": "one line: how partseg segment turns logits into labels",
    "partseg.unet": "JSON: the UNet configuration (num_classes, base_channels, depth, ...)",
    "partseg.meta": "JSON: the checkpoint's whole meta dict",
}
# What partseg.imaging.images_to_unit_tensor feeds the UNet: uint8 RGB / 255, NCHW float32.
INPUT_SPEC = {"name": "images", "layout": "NCHW", "dtype": "float32", "channels": "RGB",
              "range": [0.0, 1.0], "scale": "uint8 / 255", "mean": [0.0, 0.0, 0.0],
              "std": [1.0, 1.0, 1.0]}
OUTPUT_SPEC = {"name": "logits", "layout": "NCHW", "dtype": "float32",
               "channels": "one logit per class (class_names order); softmax over C, argmax = label"}
PREPROCESS = ("resize so the shorter side equals partseg.resolution (bilinear, antialiased when "
              "shrinking, aspect ratio kept), uint8 RGB / 255, HWC -> CHW, add the batch axis")
POSTPROCESS = ("softmax over C, resize the probabilities bilinearly back to the image's size, "
               "argmax over C -> uint8 label ids")


def import_onnx():
    try:
        import onnx
    except ImportError:
        raise PartsegError(f"ONNX export needs the onnx package: {INSTALL_HINT}") from None
    return onnx


def import_onnxruntime(required_by: str = "running an ONNX model"):
    try:
        import onnxruntime
    except ImportError:
        raise PartsegError(f"{required_by} needs onnxruntime: {INSTALL_HINT}") from None
    return onnxruntime


def metadata(model_meta: dict, unet_config: dict) -> dict[str, str]:
    """The metadata_props of an export of a segmenter with `model_meta` (class_names, ...)."""
    from partseg import __version__

    return {
        "partseg.format": ONNX_FORMAT,
        "partseg.format_version": "1",
        "partseg.version": __version__,
        "partseg.class_names": json.dumps(list(model_meta["class_names"])),
        "partseg.resolution": str(int(model_meta["resolution"])),
        "partseg.input": json.dumps(INPUT_SPEC),
        "partseg.output": json.dumps(OUTPUT_SPEC),
        "partseg.preprocess": PREPROCESS,
        "partseg.postprocess": POSTPROCESS,
        "partseg.unet": json.dumps(unet_config),
        # default=str: a checkpoint's meta is plain values, but an odd one must not stop export
        "partseg.meta": json.dumps(model_meta, default=str),
    }


def _trace_input(model):
    """An example batch for tracing, of a size that is *not* a multiple of 2**depth.

    The legacy exporter traces one run: UNet._pad_to_multiple's `if no padding needed` is
    frozen at the traced size. Traced with padding, the graph computes the pad amounts from
    the input's shape, so it is right for every size (a pad of 0 is a no-op); traced without,
    it would skip padding and fail on other sizes.
    """
    import torch

    multiple = 2 ** model.config["depth"]
    generator = torch.Generator().manual_seed(0)
    return torch.rand(2, model.config["in_channels"], 3 * multiple + 1, 4 * multiple + 3,
                      generator=generator)


def export_bytes(model, opset: int = OPSET) -> bytes:
    """The UNet (eval mode, CPU) -> a serialised ONNX model with dynamic N, H, W (no metadata)."""
    import torch

    buffer = io.BytesIO()
    axes = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings(), torch.no_grad():
        # Expected and harmless here: the legacy exporter's deprecation notice and the tracer's
        # note about the frozen padding branch (see _trace_input).
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        # dynamo=False: the TorchScript exporter needs no onnxscript and keeps H, W symbolic
        # through the shape arithmetic of the padding; torch.export would specialise on it.
        torch.onnx.export(model, (_trace_input(model),), buffer, dynamo=False,
                          opset_version=opset, input_names=[INPUT_SPEC["name"]],
                          output_names=[OUTPUT_SPEC["name"]],
                          dynamic_axes={INPUT_SPEC["name"]: axes, OUTPUT_SPEC["name"]: axes},
                          do_constant_folding=True)
    return buffer.getvalue()


def with_metadata(model_bytes: bytes, props: dict[str, str]) -> bytes:
    """Add metadata_props (replacing keys of the same name) and validate the model."""
    onnx = import_onnx()
    proto = onnx.load_from_string(model_bytes)
    kept = [p for p in proto.metadata_props if p.key not in props]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    for key, value in props.items():
        proto.metadata_props.add(key=key, value=value)
    proto.doc_string = "partseg auto-shot part segmenter (UNet); see metadata_props partseg.*"
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def max_logit_gap(model, model_bytes: bytes, shapes=((1, 32, 32), (2, 29, 45))) -> float | None:
    """Largest |ONNX Runtime - PyTorch| logit on random batches (N, H, W); None without
    onnxruntime (the export itself needs only torch and onnx)."""
    try:
        import onnxruntime
    except ImportError:
        return None
    import numpy as np
    import torch

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = onnxruntime.InferenceSession(model_bytes, options,
                                           providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(1)
    gap = 0.0
    for batch, height, width in shapes:
        images = torch.rand(batch, model.config["in_channels"], height, width, generator=generator)
        with torch.no_grad():
            expected = model(images).numpy()
        got = session.run(None, {INPUT_SPEC["name"]: images.numpy()})[0]
        gap = max(gap, float(np.abs(got - expected).max()))
    return gap


def export_segmenter(model_path: str | os.PathLike, onnx_path: str | os.PathLike,
                     opset: int = OPSET) -> dict:
    """Export a save_segmenter checkpoint to ONNX at `onnx_path` (atomically).

    Returns {"path", "classes", "resolution", "opset", "max_logit_gap" (None if unchecked)}.
    Raises PartsegError (one line naming the file) for a missing or non-segmenter input, a
    wrong output suffix, a missing onnx package or an export that ONNX Runtime disagrees with.
    """
    from partseg.autoshot.segmenter import load_segmenter
    from partseg.plumbing.io import atomic_path

    onnx_path = Path(onnx_path)
    if onnx_path.suffix.lower() != ".onnx":
        raise PartsegError(f"{onnx_path}: the output name must end in .onnx (partseg segment "
                           "picks ONNX Runtime by that suffix)")
    if not OPSET_RANGE[0] <= opset <= OPSET_RANGE[1]:
        raise PartsegError(f"--opset {opset}: choose {OPSET_RANGE[0]} to {OPSET_RANGE[1]} "
                           f"(default {OPSET})")
    import_onnx()  # fail before the (slower) load and trace
    model = load_segmenter(model_path, "cpu")  # PartsegError: missing / not a segmenter
    model_bytes = with_metadata(export_bytes(model, opset), metadata(model.meta, model.config))
    gap = max_logit_gap(model, model_bytes)
    if gap is not None and gap > CHECK_TOLERANCE:
        raise PartsegError(f"{model_path}: the ONNX export disagrees with PyTorch (max logit "
                           f"difference {gap:.3g}); nothing written to {onnx_path}")
    with atomic_path(onnx_path) as tmp:
        tmp.write_bytes(model_bytes)
    return {"path": str(onnx_path), "classes": list(model.meta["class_names"]),
            "resolution": int(model.meta["resolution"]), "opset": opset, "max_logit_gap": gap}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="trained segmenter (e.g. results/train_autoshot/model.pt)")
    parser.add_argument("output", help="ONNX file to write (must end in .onnx)")
    parser.add_argument("--opset", type=int, default=OPSET,
                        help=f"ONNX opset version, {OPSET_RANGE[0]}-{OPSET_RANGE[1]} "
                             f"(default {OPSET})")


def run(args: argparse.Namespace) -> int:
    report = export_segmenter(args.model, args.output, opset=args.opset)
    check = ("not checked: onnxruntime is not installed" if report["max_logit_gap"] is None
             else f"ONNX Runtime matches PyTorch: max logit difference "
                  f"{report['max_logit_gap']:.2g}")
    print(f"exported {args.model} -> {report['path']} (opset {report['opset']}, "
          f"{len(report['classes'])} classes, native resolution {report['resolution']} px; "
          f"{check})")
    return 0
