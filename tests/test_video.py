"""Video: reading and writing (PyAV), bad input named, the demo clip, `partseg segment` on
videos, the per-frame metrics, warm-started one-shot inversion, and the video stage."""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from conftest import tiny_generator, two_squares
from partseg import cli
from partseg.data.synthetic import FACE_CLASSES
from partseg.plumbing.errors import PartsegError
from partseg.plumbing.io import read_mask
from partseg.plumbing.params import Params
from partseg.video import (flicker_per_pair, list_frames, open_video, per_frame_miou, read_video,
                           temporal_flicker, write_video)

COLOURS = np.array([(200, 40, 40), (40, 200, 40), (40, 40, 200), (220, 220, 60), (30, 30, 30),
                    (240, 240, 240)], np.uint8)


def flat_frames(size=(32, 48)) -> list[np.ndarray]:
    """Six frames, each one flat colour: easy to recognise after a lossy codec."""
    return [np.broadcast_to(colour, (*size, 3)).copy() for colour in COLOURS]


def damaged_copy(source, target):
    """The file with its middle sixth overwritten: the demuxer still opens it, frames break."""
    data = bytearray(source.read_bytes())
    data[len(data) // 3: len(data) // 2] = bytes(len(data) // 2 - len(data) // 3)
    target.write_bytes(bytes(data))
    return target


# ---------------------------------------------------------------------------- reading, writing

@pytest.mark.parametrize("suffix", [".mp4", ".gif", ".webm"])
def test_video_roundtrip_keeps_frames_size_and_rate(tmp_path, suffix):
    frames = flat_frames()
    path = write_video(tmp_path / f"clip{suffix}", frames, fps=10)
    assert not list(tmp_path.glob("*.partial*"))
    decoded, fps = read_video(path)
    assert decoded.shape == (6, 32, 48, 3) and decoded.dtype == np.uint8
    assert fps == pytest.approx(10, rel=0.05)
    for got, colour in zip(decoded, COLOURS):
        assert np.abs(got.astype(int) - colour).mean() < 6, suffix


def test_odd_sized_frames_are_padded_for_h264_and_kept_in_gif(tmp_path):
    frames = flat_frames((15, 21))
    mp4, _ = read_video(write_video(tmp_path / "odd.mp4", frames, fps=5))
    gif, _ = read_video(write_video(tmp_path / "odd.gif", frames, fps=5))
    assert mp4.shape[1:3] == (16, 22) and gif.shape[1:3] == (15, 21)


def test_frame_folder_reads_in_natural_order_at_the_given_rate(tmp_path):
    for index, frame in enumerate(flat_frames((8, 8))):
        Image.fromarray(frame).save(tmp_path / f"frame_{index * 5}.png")  # 0, 5, 10, ... 25
    assert [p.name for p in list_frames(tmp_path)][:3] == ["frame_0.png", "frame_5.png",
                                                           "frame_10.png"]
    frames, fps = read_video(tmp_path, fps=7.5)
    assert fps == 7.5 and frames.shape == (6, 8, 8, 3)
    assert (frames[:, 0, 0] == COLOURS).all()  # PNG: lossless, in order


def test_unreadable_video_file_is_named(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, np.uint8).tobytes())
    with pytest.raises(PartsegError, match="junk.mp4: unreadable video"):
        read_video(junk)


def test_corrupt_frame_inside_a_video_stops_with_its_index(tmp_path):
    good = write_video(tmp_path / "good.mp4", flat_frames() * 4, fps=10)
    broken = damaged_copy(good, tmp_path / "broken.mp4")
    with pytest.raises(PartsegError) as error:
        read_video(broken)
    message = str(error.value)
    assert message.startswith(f"{broken}: frame ") and "\n" not in message


def test_frame_folder_problems_name_the_file(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    with pytest.raises(PartsegError, match="folder has no frame images"):
        read_video(folder)
    frames = flat_frames((8, 8))
    for index in range(3):
        Image.fromarray(frames[index]).save(folder / f"f{index}.png")
    (folder / "f3.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(PartsegError, match="f3.png: unreadable"):
        read_video(folder)
    Image.fromarray(np.zeros((9, 8, 3), np.uint8)).save(folder / "f3.png")
    with pytest.raises(PartsegError, match=r"f3.png: frame 3 is 8x9 but the first frame is 8x8"):
        read_video(folder)


def test_a_file_that_is_not_a_video_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(PartsegError, match="notes.txt: not a video file"):
        open_video(tmp_path / "notes.txt")


# ---------------------------------------------------------------------------- the demo clip

@pytest.fixture(scope="module")
def clip():
    from partseg.data.clip import render_clip

    frames = list(render_clip(seed=0, frames=72, resolution=32))
    return np.stack([f[0] for f in frames]), np.stack([f[1] for f in frames])


def test_clip_face_moves_scales_leaves_and_returns(clip):
    from partseg.data.clip import face_centre, face_fraction

    images, masks = clip
    assert images.shape == (72, 32, 32, 3) and masks.shape == (72, 32, 32)
    assert len(np.unique(masks[0])) == len(FACE_CLASSES)  # every part shown at the start
    fractions = np.array([face_fraction(m) for m in masks])
    gone = np.flatnonzero(fractions == 0)
    assert 3 <= len(gone) <= 15 and np.all(np.diff(gone) == 1)  # gone for a few frames in a row
    assert gone[0] > 30 and fractions[-1] > 0.2                  # after a while; then back
    assert fractions[:gone[0]].max() > 1.2 * fractions[0]         # it grows ...
    assert fractions[:gone[0]].min() < 0.8 * fractions[0]         # ... and shrinks
    xs = [face_centre(m)[0] for m in masks[:gone[0]]]
    assert max(xs) - min(xs) > 0.2                                # and moves across
    partly = [i for i in range(gone[0]) if 0 < fractions[i] < 0.5 * fractions[0]]
    assert partly  # half out of the frame before it is gone
    # Smooth: no frame-to-frame jump in the visible person's position.
    assert np.max(np.abs(np.diff(xs))) < 0.08


def test_clip_is_deterministic_and_seeded(clip):
    from partseg.data.clip import render_clip

    images, masks = clip
    again = list(render_clip(seed=0, frames=72, resolution=32))
    assert all((a == b).all() and (m == n).all()
               for (a, m), b, n in zip(again, images, masks))
    other = next(render_clip(seed=1, frames=72, resolution=32))[0]
    assert not np.array_equal(other, images[0])


def test_clip_is_refused_when_too_short():
    from partseg.data.clip import render_clip

    with pytest.raises(PartsegError, match="video_clip.frames"):
        next(render_clip(frames=4))


def test_video_clip_stage_writes_frames_masks_and_the_video(tmp_path):
    from stages.video_clip import build

    params = Params()
    params.video_clip.frames = 20
    params.data.protocol = "face4"
    build(SimpleNamespace(out=str(tmp_path / "clip")), params)
    out = tmp_path / "clip"
    info = json.loads((out / "clip.json").read_text())
    masks = np.load(out / "masks.npy")
    assert info["classes"] == ["background", "eye", "mouth", "nose"]
    assert masks.shape == (20, 32, 32) and masks.max() == 3  # merged to face4
    assert len(list((out / "frames").glob("frame_*.png"))) == 20
    video, fps = read_video(out / "clip.mp4")
    assert video.shape == (20, 128, 128, 3) and fps == 12
    poses = pd.read_csv(out / "poses.tsv", sep="\t")
    assert list(poses["step"]) == list(range(20))


# ---------------------------------------------------------------------------- metrics

def test_flicker_counts_label_changes_where_the_truth_stands_still():
    masks = np.zeros((3, 2, 4), np.uint8)
    masks[1:, 0, 0] = 1          # pixel (0,0) changes truth between frames 0 and 1
    labels = masks.copy()
    labels[1, 1, 3] = 2          # a label blinks on at frame 1 and off at frame 2
    labels[1, 0, 0] = 0          # wrong where the truth changed (not counted: truth moved)
    changed, stable = flicker_per_pair(labels, masks)
    assert list(stable) == [7, 8] and list(changed) == [1, 2]
    # pair 2: (1,3) blinks off and (0,0) goes 0 -> 1 while its truth stays 1
    assert temporal_flicker(labels, masks) == pytest.approx(3 / 15)
    assert temporal_flicker(masks, masks) == 0.0


def test_per_frame_miou_on_a_frame_without_the_person():
    empty = np.zeros((2, 4, 4), np.uint8)
    hallucinated = empty.copy()
    hallucinated[1, :2, :2] = 1
    miou = per_frame_miou(hallucinated, empty, num_classes=3)
    assert miou[0] == 1.0                            # nothing there, nothing predicted
    assert miou[1] == pytest.approx((12 / 16 + 0) / 2)  # background 12/16, class 1 IoU 0


def test_video_section_states_the_measured_differences():
    from partseg.video.report import reading

    auto = {"miou_per_frame_mean": 0.612, "miou_with_person": 0.5, "flicker": 0.02,
            "false_person_pixels_when_gone": 0.01, "seconds_per_frame": 0.001}
    warm = {"miou_per_frame_mean": 0.564, "miou_with_person": 0.45, "flicker": 0.03,
            "false_person_pixels_when_gone": 0.9, "seconds_per_frame": 0.5}
    text = reading(auto, warm, None)
    assert "per-frame mIoU is 4.8 points above one-shot's (61.2 against 56.4)" in text
    assert "flicker is 1.00 points below one-shot's (2.00 % against 3.00 %)" in text
    # the comparison follows the numbers: swap them and the text turns round
    assert "4.8 points below" in reading(warm, auto, None)
    cold = {**warm, "flicker": float("nan")}
    assert "is the same as the baseline's" in reading(auto, warm, cold)
    assert "flicker is 3.00 %, the cold baseline's –;" in reading(auto, warm, cold)


# ---------------------------------------------------------------------------- segment

@pytest.fixture(scope="module")
def squares_model(tmp_path_factory):
    from partseg.autoshot.segmenter import save_segmenter
    from partseg.autoshot.train import train_segmenter

    images, masks = two_squares(6, 16, 0, noise=10)
    model, _ = train_segmenter(images, masks, num_classes=3, target_kind="hard",
                               unet_config={"base_channels": 8, "depth": 2}, steps=60,
                               batch_size=6, lr=1e-2, weight_decay=0.0, augment=None, seed=0,
                               device="cpu")
    path = tmp_path_factory.mktemp("model") / "model.pt"
    save_segmenter(path, model, {"class_names": ["background", "red", "green"],
                                 "resolution": 16})
    return path


def test_segment_a_video_and_a_frame_folder(squares_model, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["partseg"])
    images, masks = two_squares(5, 16, 3, noise=0)
    write_video(tmp_path / "talk.mp4", images, fps=8)
    folder = tmp_path / "take1"
    folder.mkdir()
    for index, image in enumerate(images[:3]):
        Image.fromarray(image).save(folder / f"{index}.png")
    out = tmp_path / "out"
    status = cli.main(["segment", str(tmp_path / "talk.mp4"), str(folder), "--frames",
                       "--fps", "6", "-m", str(squares_model), "-o", str(out),
                       "--batch-size", "2"])
    assert status == 0, capsys.readouterr().err
    labels = sorted((out / "talk" / "labels").iterdir())
    assert [p.name for p in labels] == [f"frame_{i:05d}.png" for i in range(5)]
    assert read_mask(labels[0]).shape == (16, 16)
    overlay, fps = read_video(out / "talk" / "overlay.mp4")
    assert overlay.shape == (5, 16, 16, 3) and fps == 8
    # the frame folder: lossless frames, so the trained segmenter finds the squares
    frame_labels = [read_mask(out / "take1" / "labels" / f"frame_{i:05d}.png") for i in range(3)]
    assert np.mean([(l == m).mean() for l, m in zip(frame_labels, masks[:3])]) > 0.85
    assert read_video(out / "take1" / "overlay.mp4")[1] == 6
    assert "talk.mp4: 5 frames" in capsys.readouterr().out


def test_segment_names_a_broken_video_and_keeps_nothing_of_it(squares_model, tmp_path,
                                                              monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["partseg"])
    images, _ = two_squares(24, 16, 4, noise=20)
    good = write_video(tmp_path / "good.mp4", images, fps=8)
    damaged_copy(good, tmp_path / "broken.mp4")
    out = tmp_path / "out"
    status = cli.main(["segment", str(tmp_path / "*.mp4"), "-m", str(squares_model),
                       "-o", str(out)])
    err = capsys.readouterr().err
    assert status == 1
    assert f"{tmp_path / 'broken.mp4'}: frame " in err and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["good"]  # no partial "broken" folder
    assert len(list((out / "good" / "labels").iterdir())) == 24


def test_a_folder_without_frames_flag_is_still_a_set_of_images(squares_model, tmp_path):
    from partseg.segment import segment_paths

    folder = tmp_path / "photos"
    folder.mkdir()
    images, _ = two_squares(2, 16, 5)
    for index, image in enumerate(images):
        Image.fromarray(image).save(folder / f"p{index}.png")
    report = segment_paths(squares_model, [folder], tmp_path / "out", device="cpu")
    assert sorted(report["segmented"].values()) == ["p0", "p1"] and report["videos"] == {}
    assert (tmp_path / "out" / "labels" / "p0.png").is_file()


# ---------------------------------------------------------------------------- one-shot, video stage

@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """A tiny generator checkpoint, a random linear few-shot net on its features (10 face
    classes), and an auto-shot UNet trained for a step: enough to run the video stage."""
    from partseg.autoshot.segmenter import save_segmenter
    from partseg.autoshot.train import train_segmenter
    from partseg.features import FeatureExtractor
    from partseg.fewshot.networks import build_network
    from partseg.fewshot.train import save_fewshot_model
    from partseg.gan import save_checkpoint

    root = tmp_path_factory.mktemp("models")
    generator = tiny_generator(16)
    save_checkpoint(root / "train_gan" / "generator.pt", g_ema=generator)
    channels = FeatureExtractor(generator, "all", 16).num_channels
    torch.manual_seed(0)
    save_fewshot_model(root / "train_fewshot" / "model.pt", build_network("linear", channels, 10),
                       {"network": "linear", "in_channels": channels, "num_classes": 10,
                        "classes": list(FACE_CLASSES)})
    images, masks = two_squares(4, 32, 0)
    unet, _ = train_segmenter(images, masks, num_classes=10, target_kind="hard",
                              unet_config={"base_channels": 4, "depth": 1}, steps=1,
                              batch_size=4, lr=1e-3, weight_decay=0.0, augment=None, seed=0,
                              device="cpu")
    save_segmenter(root / "train_autoshot" / "model.pt", unet,
                   {"class_names": list(FACE_CLASSES), "resolution": 32})
    return root


def test_one_shot_tracking_starts_each_frame_from_the_previous(tiny_models, monkeypatch):
    import partseg.inversion
    from partseg.video import OneShotVideo

    calls, original = [], partseg.inversion.invert_images

    def recording(*args, **kwargs):
        result = original(*args, **kwargs)
        calls.append({"init": kwargs.get("init_wplus"), "steps": kwargs["steps"],
                      "latent_noise": kwargs.get("latent_noise"), "out": result["wplus"]})
        return result

    monkeypatch.setattr(partseg.inversion, "invert_images", recording)
    segmenter = OneShotVideo(tiny_models / "train_gan" / "generator.pt",
                             tiny_models / "train_fewshot" / "model.pt", layers="all",
                             feature_resolution=16)
    frames, _ = two_squares(3, 16, 1)
    inversion = {"space": "wplus", "batch_size": 4, "lr": 0.05}
    results = list(segmenter.track(frames, steps_first=3, steps_warm=2, lr_warm=0.01,
                                   inversion=inversion))
    assert [r["labels"].shape for r in results] == [(16, 16)] * 3
    assert calls[0]["init"] is None and calls[0]["steps"] == 3
    for previous, call in zip(calls, calls[1:]):
        assert call["steps"] == 2 and call["latent_noise"] == 0.0
        assert torch.equal(call["init"], previous["out"])


def test_video_stage_measures_both_methods(tiny_models, tmp_path):
    from stages.video import build
    from stages.video_clip import build as build_clip

    params = Params()
    params.video_clip.frames = 16
    params.features.resolution = 16
    params.inversion.batch_size = 16
    params.video.steps_first, params.video.steps_warm, params.video.strip_frames = 2, 1, 4
    build_clip(SimpleNamespace(out=str(tmp_path / "clip")), params)
    out = tmp_path / "video"
    build(SimpleNamespace(clip=str(tmp_path / "clip"), out=str(out),
                          generator=str(tiny_models / "train_gan"),
                          fewshot=str(tiny_models / "train_fewshot"),
                          autoshot=str(tiny_models / "train_autoshot")), params)
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["methods"]) == {"autoshot", "oneshot", "oneshot_cold"}
    for summary in metrics["methods"].values():
        assert 0.0 <= summary["miou_per_frame_mean"] <= 1.0 and 0.0 <= summary["flicker"] <= 1.0
    table = pd.read_csv(out / "per_frame.tsv", sep="\t")
    assert list(table["step"]) == list(range(16))
    assert table["miou_autoshot"].mean() == pytest.approx(
        metrics["methods"]["autoshot"]["miou_per_frame_mean"], abs=1e-4)
    section = (out / "section.md").read_text()
    assert section.startswith("## Video") and "strip.png" in section
    for name in ("strip.png", "per_frame.png", "overlay_autoshot.mp4", "overlay_oneshot.mp4",
                 "comparison.gif", "per_class.csv", "labels.npz"):
        assert (out / name).is_file(), name
    assert read_video(out / "overlay_oneshot.mp4")[0].shape[0] == 16


def test_video_stage_refuses_a_clip_in_other_classes(tiny_models, tmp_path):
    from stages.video import build
    from stages.video_clip import build as build_clip

    params = Params()
    params.video_clip.frames = 16
    params.data.protocol = "face4"
    build_clip(SimpleNamespace(out=str(tmp_path / "clip")), params)
    with pytest.raises(PartsegError, match="the clip is labelled"):
        build(SimpleNamespace(clip=str(tmp_path / "clip"), out=str(tmp_path / "video"),
                              generator=str(tiny_models / "train_gan"),
                              fewshot=str(tiny_models / "train_fewshot"),
                              autoshot=str(tiny_models / "train_autoshot")), params)
    assert not (tmp_path / "video").exists()
