"""The experiments' shared parts: the few-shot recipe in one call, the k-shot subset of a
cache, the protocols' tables and the combined report."""

import numpy as np
import pytest

from partseg.plumbing.errors import PartsegError
from partseg.features import write_cache_from_arrays
from partseg.fewshot.evaluate import first_images_cache, fewshot_scores

SETTINGS = dict(network="linear", ensemble=1, steps=60, batch_pixels=512, tile=8, lr=0.05,
                weight_decay=0.0, class_balance=True, seed=0)


def labelled_features(masks: np.ndarray, classes: int, noise: float, seed: int) -> np.ndarray:
    """NHWC features that say each pixel's class (one-hot) under Gaussian noise."""
    rng = np.random.default_rng(seed)
    onehot = np.eye(classes, dtype=np.float32)[masks]
    return onehot + noise * rng.standard_normal(onehot.shape).astype(np.float32)


def squares(n: int, size: int = 16, seed: int = 0) -> np.ndarray:
    from conftest import two_squares

    return two_squares(n, size, seed)[1]


@pytest.fixture
def caches(tmp_path):
    shot_masks, test_masks = squares(3, seed=1), squares(4, seed=2)
    layout = dict(layers=["onehot"], channels_per_layer=[3])
    shots = write_cache_from_arrays(tmp_path / "shots", labelled_features(shot_masks, 3, 0.3, 0),
                                    **layout)
    tests = write_cache_from_arrays(tmp_path / "test", labelled_features(test_masks, 3, 0.3, 1),
                                    **layout)
    return shots, shot_masks, tests, test_masks


def test_fewshot_scores_learn_what_the_features_say(caches):
    shots, shot_masks, tests, test_masks = caches
    confusion, predicted = fewshot_scores(shots, shot_masks, tests, test_masks, num_classes=3,
                                          settings=SETTINGS, device="cpu")
    assert predicted.shape == test_masks.shape and predicted.dtype == np.uint8
    assert confusion.total == test_masks.size
    assert confusion.miou() > 0.9


def test_fewshot_scores_fail_on_features_that_say_nothing(tmp_path, caches):
    shots, shot_masks, _, test_masks = caches
    rng = np.random.default_rng(0)
    noise = write_cache_from_arrays(tmp_path / "noise",
                                    rng.standard_normal((4, 16, 16, 3)).astype(np.float32),
                                    layers=["onehot"], channels_per_layer=[3])
    confusion, _ = fewshot_scores(shots, shot_masks, noise, test_masks, num_classes=3,
                                  settings=SETTINGS, device="cpu")
    assert confusion.miou() < 0.6


def test_test_masks_must_match_the_test_images(caches):
    shots, shot_masks, tests, test_masks = caches
    with pytest.raises(PartsegError, match="4 images but 3 test masks"):
        fewshot_scores(shots, shot_masks, tests, test_masks[:3], num_classes=3,
                       settings=SETTINGS, device="cpu")


def test_first_images_cache_is_the_first_k_images(tmp_path, caches):
    shots = caches[0]
    first = first_images_cache(shots, 2, tmp_path / "first2")
    assert first.num_images == 2 and first.layers == shots.layers
    for i in range(2):
        assert np.array_equal(first.image_features(i).numpy(), shots.image_features(i).numpy())
    with pytest.raises(PartsegError, match="4 shots asked for, the cache holds 3"):
        first_images_cache(shots, 4, tmp_path / "first4")


def test_protocol_tables_put_the_paper_beside_each_protocol():
    from partseg.experiments.protocols import comparison_tables

    scores = {"face4": {1: {"background": 0.9, "eye": 0.2, "mouth": 0.3, "nose": 0.4,
                            "mean": 0.45}}}
    table = comparison_tables(scores)["face4"]
    assert list(table.columns) == ["background", "eye", "mouth", "nose", "mean"]
    assert table.loc["partseg, k = 1", "eye"] == 20.0
    paper = [row for row in table.index if row.startswith("paper")]
    assert len(paper) == 1 and "other data" in paper[0]
    assert table.loc[paper[0], "nose"] == 76.0


def test_report_joins_sections_and_copies_their_pictures(tmp_path, monkeypatch):
    import sys

    from PIL import Image

    first, second = tmp_path / "alpha", tmp_path / "beta"
    for folder, text in ((first, "## Alpha\n\n![a](strip.png)\n"), (second, "## Beta\n")):
        folder.mkdir()
        (folder / "section.md").write_text(text)
    Image.new("RGB", (4, 4)).save(first / "strip.png")
    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "alpha.tsv").write_text("s\th:m:s\n12.5\t0:00:12\n")
    out = tmp_path / "report"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("{}\n")
    monkeypatch.setattr(sys, "argv", ["experiments_report", "--sections", str(first), str(second),
                                      "--benchmarks", str(bench), "--timed-stages", "alpha",
                                      "--out", str(out)])
    run_report()
    text = (out / "report.md").read_text()
    assert text.index("## Alpha") < text.index("## Beta")
    assert "](alpha/strip.png)" in text and (out / "alpha" / "strip.png").is_file()
    assert "| alpha | 12 |" in text or "| alpha | 13 |" in text


def test_report_names_a_missing_section(tmp_path, monkeypatch, capsys):
    import sys

    (tmp_path / "params.yaml").write_text("{}\n")
    (tmp_path / "gamma").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["experiments_report", "--sections", "gamma",
                                      "--benchmarks", str(tmp_path / "benchmarks"),
                                      "--out", str(tmp_path / "report")])
    with pytest.raises(SystemExit):
        run_report()
    assert "gamma/section.md: missing" in capsys.readouterr().err
    assert not (tmp_path / "report").exists()


def run_report():
    import runpy

    runpy.run_module("stages.experiments_report", run_name="__main__")


def test_protocol_pictures_draw_each_class_in_one_colour():
    from partseg.data.synthetic import FACE_CLASSES
    from partseg.experiments.protocols import predictions_picture, reading

    classes = list(FACE_CLASSES)
    images = np.zeros((2, 8, 8, 3), np.uint8)
    face10 = np.full((2, 8, 8), classes.index("eye"), np.uint8)
    face4 = np.full((2, 8, 8), 1, np.uint8)  # face4's id 1 is eye too
    picture = predictions_picture(images, {"face10": face10, "face4": face4},
                                  {("face10", 1): face10, ("face4", 1): face4}, classes)
    assert picture.ndim == 3 and picture.shape[2] == 3
    from partseg.visualize import colorize
    eye = colorize(face10[0])[0, 0]
    # Both protocols' eye columns exist in the picture in the same colour: count its pixels.
    assert (picture == eye).all(axis=2).sum() >= 4 * 96 * 96

    words = reading({"face4": {1: {"eye": 0.1, "nose": 0.2, "background": 0.9, "mean": 0.4},
                               10: {"eye": 0.5, "nose": 0.3, "background": 0.9, "mean": 0.6}}})
    assert words == ["- face4: k = 10 instead of 1 moves the mean from 40.0 to 60.0; the largest "
                     "gains are eye +40.0, nose +10.0."]
