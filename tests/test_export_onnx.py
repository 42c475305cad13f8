"""`partseg export` and `partseg segment --model x.onnx`: ONNX Runtime reproduces PyTorch."""

import json
import sys

import numpy as np
import pytest
import torch
from PIL import Image

onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")

from conftest import two_squares  # noqa: E402

from partseg import __version__, cli  # noqa: E402
from partseg.autoshot.segmenter import Segmenter, load_segmenter, save_segmenter  # noqa: E402
from partseg.autoshot.train import train_segmenter  # noqa: E402
from partseg.autoshot.unet import UNet  # noqa: E402
from partseg.plumbing.errors import PartsegError  # noqa: E402
from partseg.export import INPUT_SPEC, OPSET, export_bytes, export_segmenter  # noqa: E402
from partseg.imaging import images_to_unit_tensor  # noqa: E402
from partseg.plumbing.io import read_mask  # noqa: E402
from partseg.onnx_backend import OnnxSegmenter, open_segmenter  # noqa: E402

RESOLUTION = 16
CLASSES = ["background", "red", "green"]
# (batch, height, width): a multiple of 2**depth and an odd size that the graph must pad
SHAPES = [(1, 16, 16), (3, 29, 45)]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    """A tiny segmenter that knows the two coloured squares (trained for a second or two)."""
    images, masks = two_squares(6, RESOLUTION, 0, noise=10)
    model, _ = train_segmenter(images, masks, num_classes=3, target_kind="hard",
                               unet_config={"base_channels": 8, "depth": 2}, steps=60,
                               batch_size=6, lr=1e-2, weight_decay=0.0, augment=None, seed=0,
                               device="cpu")
    path = tmp_path_factory.mktemp("model") / "model.pt"
    save_segmenter(path, model, {"class_names": CLASSES, "resolution": RESOLUTION})
    return path


@pytest.fixture(scope="module")
def onnx_path(model_path):
    path = model_path.with_name("model.onnx")
    export_segmenter(model_path, path)
    return path


@pytest.fixture(scope="module")
def default_config_path(tmp_path_factory):
    """The default run's UNet (params.yaml: base 16, depth 3), random weights and BatchNorm
    statistics that are not the identity, so folding them into the convs is exercised."""
    torch.manual_seed(0)
    model = UNet(len(CLASSES), base_channels=16, depth=3).eval()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    path = tmp_path_factory.mktemp("default") / "model.pt"
    save_segmenter(path, model, {"class_names": CLASSES, "resolution": 32})
    return path


def session(path):
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("which", ["trained", "default_config"])
def test_onnx_runtime_logits_equal_pytorch_at_two_sizes_and_batch_sizes(which, model_path,
                                                                       default_config_path,
                                                                       tmp_path):
    source = model_path if which == "trained" else default_config_path
    target = tmp_path / "model.onnx"
    report = export_segmenter(source, target)
    assert report["max_logit_gap"] < 1e-4
    model, runtime = load_segmenter(source, "cpu"), session(target)
    generator = torch.Generator().manual_seed(3)
    for batch, height, width in SHAPES:
        images = torch.rand(batch, 3, height, width, generator=generator)
        with torch.no_grad():
            expected = model(images).numpy()
        got = runtime.run(None, {"images": images.numpy()})[0]
        assert got.shape == (batch, len(CLASSES), height, width)
        assert np.abs(got - expected).max() <= 1e-4
        assert (got.argmax(1) == expected.argmax(1)).all()


def test_metadata_says_how_to_feed_and_read_the_model(onnx_path):
    proto = onnx.load(str(onnx_path))
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["partseg.class_names"]) == CLASSES
    assert int(props["partseg.resolution"]) == RESOLUTION
    assert props["partseg.version"] == __version__
    spec = json.loads(props["partseg.input"])
    # what Segmenter feeds: uint8 RGB / 255, NCHW float32, no mean/std
    assert spec == INPUT_SPEC
    assert (spec["layout"], spec["range"], spec["mean"], spec["std"]) == (
        "NCHW", [0.0, 1.0], [0.0] * 3, [1.0] * 3)
    image = np.full((4, 5, 3), 255, np.uint8)
    assert float(images_to_unit_tensor(image[None]).max()) == spec["range"][1]
    assert json.loads(props["partseg.unet"])["base_channels"] == 8
    assert {o.domain: o.version for o in proto.opset_import}[""] == OPSET
    dims = [[d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
            for value in (proto.graph.input[0], proto.graph.output[0])]
    assert dims == [["batch", 3, "height", "width"], ["batch", len(CLASSES), "height", "width"]]


def test_onnx_segmenter_is_a_segmenter_with_the_same_state_and_labels(model_path, onnx_path):
    torch_backend, onnx_backend = Segmenter(model_path), open_segmenter(onnx_path)
    assert isinstance(onnx_backend, OnnxSegmenter)
    # OnnxSegmenter sets Segmenter's attributes itself: it must keep up with Segmenter
    assert set(vars(onnx_backend)) == set(vars(torch_backend))
    assert onnx_backend.class_names == CLASSES and onnx_backend.resolution == RESOLUTION
    assert onnx_backend.model.config == torch_backend.model.config
    # at native size (--size 0), large images meet the working pixel cap, which counts the
    # padding to a multiple of 2**depth: the ONNX backend must know the depth too
    native_pt, native_onnx = Segmenter(model_path, size=0), open_segmenter(onnx_path, size=0)
    for shape in [(20, 30), (1001, 999), (723, 1023)]:
        assert native_onnx.working_size(*shape) == native_pt.working_size(*shape)
    images, _ = two_squares(2, 24, 7, noise=10)
    for image in images:
        assert np.array_equal(onnx_backend.predict(image), torch_backend.predict(image))
    # test-time flip (partseg segment --flip) on either backend
    flip_pt, flip_onnx = Segmenter(model_path, flip=True), open_segmenter(onnx_path, flip=True)
    for image in images:
        assert np.array_equal(flip_onnx.predict(image), flip_pt.predict(image))


def test_segment_with_onnx_writes_the_same_pngs_as_with_pt(model_path, onnx_path, tmp_path,
                                                           monkeypatch):
    monkeypatch.setattr(sys, "argv", ["partseg"])  # cli.main rewrites sys.argv
    images, _ = two_squares(3, RESOLUTION, 5, noise=10)
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(images[0]).save(folder / "a.png")
    Image.fromarray(images[1]).resize((30, 20), Image.BILINEAR).save(folder / "b.png")
    Image.fromarray(images[2]).resize((40, 40), Image.BILINEAR).save(folder / "c.png")
    outputs = {}
    for model in (model_path, onnx_path):
        out = tmp_path / model.suffix[1:]
        assert cli.main(["segment", str(folder), "-m", str(model), "-o", str(out)]) == 0
        outputs[model.suffix] = out
    for name in ("a.png", "b.png", "c.png"):
        for kind in ("labels", "overlays"):
            pt, ox = (np.asarray(Image.open(outputs[s] / kind / name)) for s in (".pt", ".onnx"))
            assert np.array_equal(pt, ox), (kind, name)
    assert read_mask(outputs[".onnx"] / "labels" / "b.png").shape == (20, 30)


def one_line_error(capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


def test_export_refuses_bad_input_with_one_line_naming_the_file(model_path, tmp_path, capsys,
                                                                monkeypatch):
    monkeypatch.setattr(sys, "argv", ["partseg"])
    out = tmp_path / "out.onnx"
    missing = tmp_path / "missing.pt"
    assert str(missing) in one_line_error(capsys, ["export", str(missing), str(out)])
    not_model = tmp_path / "notes.pt"
    not_model.write_text("not a checkpoint")
    err = one_line_error(capsys, ["export", str(not_model), str(out)])
    assert str(not_model) in err and "not a readable model file" in err
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    assert "not a partseg segmenter" in one_line_error(capsys, ["export", str(other), str(out)])
    assert not out.exists() and not list(tmp_path.glob("*.partial*"))
    err = one_line_error(capsys, ["export", str(model_path), str(tmp_path / "out.bin")])
    assert "out.bin" in err and ".onnx" in err
    assert "--opset" in one_line_error(capsys, ["export", str(model_path), str(out),
                                                "--opset", "9"])


def test_export_command_writes_the_file_and_says_so(model_path, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["partseg"])
    out = tmp_path / "sub" / "model.onnx"
    assert cli.main(["export", str(model_path), str(out)]) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and "max logit difference" in printed
    assert out.is_file() and not list(out.parent.glob("*.partial*"))


def test_segment_refuses_an_onnx_file_that_is_not_a_partseg_export(model_path, tmp_path, capsys,
                                                                   monkeypatch):
    monkeypatch.setattr(sys, "argv", ["partseg"])
    bare = tmp_path / "bare.onnx"  # a valid ONNX model without partseg metadata
    bare.write_bytes(export_bytes(load_segmenter(model_path, "cpu")))
    garbage = tmp_path / "garbage.onnx"
    garbage.write_text("not onnx")
    image = tmp_path / "a.png"
    Image.fromarray(two_squares(1, RESOLUTION)[0][0]).save(image)
    for model, words in [(bare, "not a partseg segmenter export"),
                         (garbage, "not a readable ONNX model"),
                         (tmp_path / "missing.onnx", "ONNX model not found")]:
        err = one_line_error(capsys, ["segment", str(image), "-m", str(model),
                                      "-o", str(tmp_path / "out")])
        assert str(model) in err and words in err


def test_missing_onnxruntime_says_how_to_install(onnx_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import now raises ImportError
    with pytest.raises(PartsegError, match=r"pip install 'partseg\[onnx\]'"):
        OnnxSegmenter(onnx_path)
