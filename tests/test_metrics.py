"""Confusion matrix, IoU, mIoU and pixel accuracy against hand-computed values."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from partseg.plumbing.errors import PartsegError
from partseg.metrics import ConfusionMatrix, confusion_png

# (target, prediction) pairs kept: (0,0) (0,1) (1,1) (1,1) (2,1); the 255 pixel is ignored.
TARGET = np.array([[0, 0, 1], [1, 2, 255]], np.uint8)
PRED = np.array([[0, 1, 1], [1, 1, 0]], np.int64)


def hand_example(num_classes=4):
    return ConfusionMatrix(num_classes).update(PRED, TARGET)


def test_matrix_counts_rows_target_columns_prediction():
    cm = hand_example()
    expected = np.zeros((4, 4), np.int64)
    expected[0, 0] = expected[0, 1] = expected[2, 1] = 1
    expected[1, 1] = 2
    np.testing.assert_array_equal(cm.matrix, expected)
    assert cm.total == 5  # the ignored pixel (predicted 0) is not counted


def test_iou_per_class_by_hand():
    iou = hand_example().iou()
    # class 0: TP 1, FP 0, FN 1 -> 1/2; class 1: TP 2, FP 2, FN 0 -> 2/4;
    # class 2: TP 0, FN 1 -> 0; class 3: never in target or prediction -> nan
    np.testing.assert_allclose(iou[:3], [0.5, 0.5, 0.0])
    assert math.isnan(iou[3])


def test_miou_and_pixel_accuracy_by_hand():
    cm = hand_example()
    assert cm.miou() == pytest.approx((0.5 + 0.5 + 0.0) / 3)  # nan class left out
    assert cm.miou(include_background=False) == pytest.approx(0.25)
    assert cm.pixel_accuracy() == pytest.approx(3 / 5)


def test_accumulates_over_images_and_takes_torch_tensors():
    cm = hand_example()
    cm.update(torch.from_numpy(PRED), torch.from_numpy(TARGET.astype(np.int64)))
    assert cm.total == 10
    np.testing.assert_allclose(cm.iou()[:3], [0.5, 0.5, 0.0])
    other = hand_example()
    other += hand_example()
    np.testing.assert_array_equal(other.matrix, cm.matrix)


def test_all_ignored_gives_nan_not_an_error():
    cm = ConfusionMatrix(2).update(np.zeros((3, 3), np.uint8), np.full((3, 3), 255, np.uint8))
    assert cm.total == 0
    assert math.isnan(cm.pixel_accuracy()) and math.isnan(cm.miou())


def test_perfect_prediction_scores_one():
    target = np.array([0, 1, 2, 2, 255])
    cm = ConfusionMatrix(3).update(np.array([0, 1, 2, 2, 1]), target)
    assert cm.miou() == 1.0 and cm.pixel_accuracy() == 1.0


@pytest.mark.parametrize("pred, target, message", [
    (np.array([0, 1]), np.array([0, 3]), "target has label id 3; valid ids are 0..2 and 255"),
    (np.array([0, 5]), np.array([0, 1]), "prediction has label id 5; valid ids are 0..2"),
    (np.array([0, 1, 1]), np.array([0, 1]), "shape"),
    (np.array([0.0, 1.0]), np.array([0, 1]), "integer label ids"),
])
def test_bad_labels_are_refused(pred, target, message):
    with pytest.raises(PartsegError, match=message):
        ConfusionMatrix(3).update(pred, target)


def test_prediction_under_an_ignored_pixel_may_be_anything():
    cm = ConfusionMatrix(3).update(np.array([0, 200]), np.array([0, 255]))
    assert cm.total == 1


def test_to_frame_has_one_row_per_class():
    frame = hand_example().to_frame(["background", "skin", "hair", "eye"])
    assert list(frame["class"]) == ["background", "skin", "hair", "eye"]
    assert list(frame.columns) == ["id", "class", "iou", "accuracy", "target_pixels", "predicted_pixels"]
    np.testing.assert_allclose(frame["iou"][:3], [0.5, 0.5, 0.0])
    np.testing.assert_allclose(frame["accuracy"][:3], [0.5, 1.0, 0.0])  # recall
    assert list(frame["target_pixels"]) == [2, 2, 1, 0]
    assert list(frame["predicted_pixels"]) == [1, 4, 0, 0]
    with pytest.raises(PartsegError, match="3 class names given for 4 classes"):
        hand_example().to_frame(["a", "b", "c"])


def test_row_normalised_matrix():
    normalized = hand_example().normalized()
    np.testing.assert_allclose(normalized[0], [0.5, 0.5, 0, 0])
    np.testing.assert_allclose(normalized[2], [0, 1, 0, 0])
    np.testing.assert_allclose(normalized[3], [0, 0, 0, 0])  # absent class: a row of zeros


def test_confusion_png_is_written_and_grows_with_classes(tmp_path):
    small, large = tmp_path / "small.png", tmp_path / "plots" / "large.png"
    confusion_png(ConfusionMatrix(2).update(np.array([0, 1]), np.array([0, 1])), ["bg", "part"], small)
    confusion_png(hand_example(), ["background", "skin", "hair", "eyebrow"], large)
    small_image, large_image = Image.open(small), Image.open(large)
    assert small_image.mode == "RGB" and large_image.mode == "RGB"
    assert large_image.width > small_image.width and large_image.height > small_image.height
    pixels = np.asarray(small_image)
    assert (pixels.min(axis=2) < 100).any()  # there are dark (full-diagonal) cells and text
    assert sorted(p.name for p in tmp_path.rglob("*.png")) == ["large.png", "small.png"]
    with pytest.raises(PartsegError, match="square"):
        confusion_png(np.zeros((2, 3)), None, tmp_path / "bad.png")
