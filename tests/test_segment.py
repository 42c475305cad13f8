"""`partseg segment`: folders, globs, any size, unreadable files skipped and named, Python API."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from partseg import cli
from partseg.autoshot.segmenter import Segmenter, save_segmenter
from partseg.autoshot.train import train_segmenter
from partseg.plumbing.io import read_mask
from conftest import two_squares
from partseg.segment import expand_inputs, segment_paths

RESOLUTION = 16


def squares(n, size=RESOLUTION, seed=0):
    return two_squares(n, size, seed, noise=10)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    """A tiny segmenter that knows the two coloured squares (trained for a second or two)."""
    images, masks = squares(6)
    model, _ = train_segmenter(images, masks, num_classes=3, target_kind="hard",
                               unet_config={"base_channels": 8, "depth": 2}, steps=60,
                               batch_size=6, lr=1e-2, weight_decay=0.0, augment=None, seed=0,
                               device="cpu")
    path = tmp_path_factory.mktemp("model") / "model.pt"
    save_segmenter(path, model, {"class_names": ["background", "red", "green"],
                                 "resolution": RESOLUTION})
    return path


@pytest.fixture
def folder(tmp_path):
    """Two good images of different sizes and formats, one corrupt PNG, and a non-image."""
    images, _ = squares(2, seed=5)
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(images[0]).save(folder / "a.png")
    Image.fromarray(images[1]).resize((30, 20), Image.NEAREST).save(folder / "b.jpg", quality=95)
    (folder / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    (folder / "notes.txt").write_text("not an image, not an input")
    return folder


def test_folder_with_a_corrupt_file_segments_the_rest_and_names_it(model_path, folder, tmp_path,
                                                                  monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["partseg"])  # cli.main rewrites sys.argv
    out = tmp_path / "out"
    status = cli.main(["segment", str(folder), "-m", str(model_path), "-o", str(out)])
    err = capsys.readouterr().err
    assert status == 1
    assert "bad.png" in err and "unreadable" in err
    assert sorted(p.name for p in (out / "labels").iterdir()) == ["a.png", "b.png"]
    assert sorted(p.name for p in (out / "overlays").iterdir()) == ["a.png", "b.png"]
    assert read_mask(out / "labels" / "b.png").shape == (20, 30)  # the image's own size
    assert np.asarray(Image.open(out / "overlays" / "b.png")).shape == (20, 30, 3)
    assert read_mask(out / "labels" / "a.png").max() <= 2


def test_command_line_program_reports_the_bad_file(model_path, folder, tmp_path):
    program = shutil.which("partseg")
    command = [program] if program else [sys.executable, "-m", "partseg.cli"]
    out = tmp_path / "out"
    result = subprocess.run(command + ["segment", str(folder / "*.png"), str(folder / "b.jpg"),
                                       "--model", str(model_path), "--out", str(out),
                                       "--batch-size", "2"],
                            capture_output=True, text=True, env={**os.environ, "PARTSEG_DEVICE": "cpu"})
    assert result.returncode == 1, result.stderr
    assert "bad.png" in result.stderr
    assert "Traceback" not in result.stderr
    assert (out / "labels" / "a.png").is_file() and (out / "labels" / "b.png").is_file()


@pytest.mark.parametrize("make_input,message", [
    (lambda tmp: str(tmp / "nothing" / "*.png"), "no image files match this pattern"),
    (lambda tmp: str(tmp / "missing.png"), "missing.png: no such file or folder"),
    (lambda tmp: str(tmp), "folder has no images"),
])
def test_inputs_that_match_nothing_stop_with_a_clear_error(model_path, tmp_path, monkeypatch,
                                                           capsys, make_input, message):
    monkeypatch.setattr(sys, "argv", ["partseg"])
    with pytest.raises(SystemExit) as stop:
        cli.main(["segment", make_input(tmp_path), "-m", str(model_path), "-o", str(tmp_path / "o")])
    assert stop.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_missing_model_is_named(tmp_path, folder, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["partseg"])
    with pytest.raises(SystemExit):
        cli.main(["segment", str(folder), "-m", str(tmp_path / "none.pt")])
    assert "none.pt: segmenter model not found" in capsys.readouterr().err


def test_segmenter_finds_the_parts_at_any_image_size(model_path):
    """A 3x larger photo is brought back to the training scale, then labels return to 48 px."""
    images, masks = squares(3, seed=9)
    segmenter = Segmenter(model_path, device="cpu")
    assert segmenter.class_names == ["background", "red", "green"]
    for image, mask in zip(images, masks):
        assert (segmenter.predict(image) == mask).mean() > 0.9
        big = np.repeat(np.repeat(image, 3, 0), 3, 1)
        big_mask = np.repeat(np.repeat(mask, 3, 0), 3, 1)
        labels = segmenter.predict(big)
        assert labels.shape == (48, 48) and labels.dtype == np.uint8
        assert (labels == big_mask).mean() > 0.85


def test_working_size_keeps_the_aspect_ratio(model_path):
    segmenter = Segmenter(model_path, device="cpu")
    assert segmenter.working_size(64, 128) == (16, 32)
    assert segmenter.working_size(8, 12) == (16, 24)
    native = Segmenter(model_path, device="cpu", size=0)
    assert native.working_size(64, 128) == (64, 128)


def test_python_api_report(model_path, folder, tmp_path):
    report = segment_paths(model_path, [folder, folder / "a.png"], tmp_path / "out",
                           batch_size=1, device="cpu")
    assert sorted(report["segmented"].values()) == ["a", "b"]  # a.png given twice: once
    assert [item["path"] for item in report["failed"]] == [str(folder / "bad.png")]
    assert report["size"] == RESOLUTION


def test_same_stem_in_two_places_does_not_overwrite(tmp_path):
    first, second = tmp_path / "x", tmp_path / "y"
    first.mkdir(), second.mkdir()
    for path in (first / "img.png", second / "img.png"):
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(path)
    from partseg.segment import _output_stems
    assert _output_stems(expand_inputs([first, second])) == ["img", "img-2"]


def test_flip_segments_the_mirror_image_as_the_mirrored_labels(model_path, folder, tmp_path,
                                                               monkeypatch):
    images, _ = squares(2, seed=11)
    plain, flipped = Segmenter(model_path, device="cpu"), Segmenter(model_path, flip=True)
    for image in images:
        labels = flipped.predict(image)
        assert labels.shape == image.shape[:2]
        assert (labels == plain.predict(image)).mean() > 0.9  # the same parts, found
        # flip-averaging is mirror-equivariant (a plain UNet need not be)
        assert np.array_equal(flipped.predict(np.ascontiguousarray(image[:, ::-1]))[:, ::-1],
                              labels)
    # the command line option reaches the segmenter
    monkeypatch.setattr(sys, "argv", ["partseg"])
    assert cli.main(["segment", str(folder / "a.png"), "-m", str(model_path), "--flip",
                     "-o", str(tmp_path / "out"), "--device", "cpu"]) == 0
    written = read_mask(tmp_path / "out" / "labels" / "a.png")
    assert np.array_equal(written, flipped.predict(folder / "a.png"))
