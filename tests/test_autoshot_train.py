"""Training the segmenter: it learns, resumes exactly, reads shards/memmaps, saves and loads."""

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import two_squares

from partseg.autoshot import train as train_module
from partseg.autoshot.segmenter import load_segmenter, predict_labels, save_segmenter
from partseg.autoshot.train import ArrayStack, train_segmenter, warmup_cosine_decay_lr
from partseg.autoshot.unet import UNet
from partseg.plumbing.errors import PartsegError
from partseg.imaging import images_to_unit_tensor

TINY = {"base_channels": 8, "depth": 2}


def squares(n=4, size=16, seed=0):
    return two_squares(n, size, seed, noise=15)


def logits_from_masks(masks, num_classes=3, sharpness=6.0):
    one_hot = np.eye(num_classes, dtype=np.float32)[masks].transpose(0, 3, 1, 2)
    return (sharpness * one_hot).astype(np.float16)


def pixel_accuracy(model, images, masks):
    labels = np.stack([label for label, _ in predict_labels(model, images, batch_size=8)])
    return float((labels == masks).mean())


def test_overfits_a_tiny_set_with_hard_masks():
    images, masks = squares()
    model, history = train_segmenter(images, masks, num_classes=3, target_kind="hard",
                                     unet_config=TINY, steps=50, batch_size=4, lr=1e-2,
                                     weight_decay=0.0, augment=None, seed=0, device="cpu")
    assert pixel_accuracy(model, images, masks) > 0.9
    assert [set(row) for row in history] == [{"step", "loss", "accuracy", "lr"}] * 5
    assert [row["step"] for row in history] == [10, 20, 30, 40, 50]
    assert history[-1]["loss"] < history[0]["loss"]


def test_overfits_a_tiny_set_with_soft_logits_and_flips():
    images, masks = squares()
    model, _ = train_segmenter(images, logits_from_masks(masks), num_classes=3, target_kind="soft",
                               unet_config=TINY, steps=60, batch_size=4, lr=1e-2, weight_decay=0.0,
                               augment={"scale_min": 1.0, "scale_max": 1.0, "rotation": 0.0,
                                        "translate": 0.0, "flip": True, "color_jitter": 0.0},
                               seed=0, device="cpu")
    assert pixel_accuracy(model, images, masks) > 0.9


def test_ignored_pixels_do_not_count():
    """Masks entirely 255 except one class: the net never sees the others, loss stays finite."""
    images, masks = squares(n=2)
    masks = masks.copy()
    masks[masks != 1] = 255
    model, history = train_segmenter(images, masks, num_classes=3, target_kind="hard",
                                     unet_config=TINY, steps=20, batch_size=2, lr=1e-2,
                                     augment=None, seed=0, device="cpu", log_every=5)
    assert np.isfinite([row["loss"] for row in history]).all()
    labels = predict_labels(model, images)[0][0]
    assert (labels == 1).mean() > 0.9  # only class 1 was ever a target


def _short_run(tmp_path, **overrides):
    images, masks = squares(n=3)
    kwargs = dict(num_classes=3, target_kind="hard", unet_config=TINY, steps=6, batch_size=2,
                  lr=1e-2, weight_decay=1e-4, seed=3, device="cpu",
                  augment={"rotation": 10.0, "color_jitter": 0.2}, log_every=1)
    kwargs.update(overrides)
    return train_segmenter(images, masks, **kwargs)


def test_resume_after_interruption_gives_the_uninterrupted_result(tmp_path, monkeypatch, capsys):
    straight, _ = _short_run(tmp_path)

    snapshots, log = tmp_path / "snap", tmp_path / "loss.tsv"
    real_indices = train_module.BatchSampler.indices

    def interrupt_at_step_4(self, step):
        if step == 4:
            raise KeyboardInterrupt
        return real_indices(self, step)

    monkeypatch.setattr(train_module.BatchSampler, "indices", interrupt_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        _short_run(tmp_path, snapshot_dir=snapshots, snapshot_every=3, log_path=log)
    monkeypatch.setattr(train_module.BatchSampler, "indices", real_indices)
    assert pd.read_csv(log, sep="\t")["step"].max() == 4  # step 4 logged, snapshot at 3

    resumed, history = _short_run(tmp_path, snapshot_dir=snapshots, snapshot_every=3, log_path=log)
    assert "resuming at step 3" in capsys.readouterr().err
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    written = pd.read_csv(log, sep="\t")
    assert written["step"].tolist() == [1, 2, 3, 4, 5, 6]  # no duplicated steps after resuming
    assert [row["step"] for row in history] == [1, 2, 3, 4, 5, 6]


def test_snapshot_from_other_arguments_is_not_used(tmp_path, capsys):
    snapshots = tmp_path / "snap"
    _short_run(tmp_path, snapshot_dir=snapshots, snapshot_every=3)
    capsys.readouterr()
    _short_run(tmp_path, snapshot_dir=snapshots, snapshot_every=3, lr=5e-3)
    assert "other arguments; training from scratch" in capsys.readouterr().err


def test_finished_snapshot_returns_without_training(tmp_path, capsys):
    snapshots = tmp_path / "snap"
    first, _ = _short_run(tmp_path, snapshot_dir=snapshots)
    again, history = _short_run(tmp_path, snapshot_dir=snapshots)
    assert "resuming at step 6" in capsys.readouterr().err
    assert len(history) == 6
    for a, b in zip(first.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)


def test_shards_and_memmaps_train_like_one_array(tmp_path):
    images, masks = squares(n=5)
    common = dict(num_classes=3, target_kind="soft", unet_config=TINY, steps=4, batch_size=3,
                  seed=1, device="cpu", augment={"rotation": 5.0})
    logits = logits_from_masks(masks)
    whole, _ = train_segmenter(images, logits, **common)
    np.save(tmp_path / "logits.npy", logits)
    memmapped = np.load(tmp_path / "logits.npy", mmap_mode="r")
    sharded, _ = train_segmenter([images[:2], images[2:]], [memmapped[:2], memmapped[2:]], **common)
    for a, b in zip(whole.state_dict().values(), sharded.state_dict().values()):
        assert torch.equal(a, b)


def test_array_stack_takes_rows_in_the_order_asked():
    stack = ArrayStack([np.arange(3), np.arange(3, 7), np.arange(7, 8)], "x")
    assert len(stack) == 8
    assert stack.take(np.array([7, 0, 5, 3, 3])).tolist() == [7, 0, 5, 3, 3]


@pytest.mark.parametrize("case,message", [
    ("label_out_of_range", "mask 1 has label id 7"),
    ("soft_wrong_classes", "expected float logits"),
    ("image_not_uint8", "expected uint8 [N,H,W,3]"),
    ("count_mismatch", "targets: 2 entries for 3 images"),
    ("unknown_augment_key", "unknown key(s) shear"),
])
def test_bad_inputs_stop_with_a_clear_message(case, message):
    images, masks = squares(n=3)
    kwargs = dict(num_classes=3, target_kind="hard", steps=1, device="cpu", unet_config=TINY)
    if case == "label_out_of_range":
        masks[1, 0, 0] = 7
    elif case == "soft_wrong_classes":
        kwargs["target_kind"], masks = "soft", logits_from_masks(masks, num_classes=4)
    elif case == "image_not_uint8":
        images = images.astype(np.float32)
    elif case == "count_mismatch":
        masks = masks[:2]
    elif case == "unknown_augment_key":
        kwargs["augment"] = {"shear": 3}
    with pytest.raises(PartsegError, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[").replace("]", r"\]")):
        train_segmenter(images, masks, **kwargs)


def test_learning_rate_warms_up_then_decays_to_one_percent():
    rates = [warmup_cosine_decay_lr(step, 1000, 1e-3) for step in range(1000)]
    assert rates[0] < rates[49] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(rates[49:], rates[50:]))
    assert rates[-1] == pytest.approx(1e-5, rel=0.05)


def test_save_and_load_round_trip(tmp_path):
    model = UNet(3, **TINY).eval()
    path = tmp_path / "model.pt"
    save_segmenter(path, model, {"class_names": ["bg", "a", "b"], "resolution": 16, "note": "x"})
    assert isinstance(torch.load(path, weights_only=True), dict)  # safe to load
    loaded = load_segmenter(path, "cpu")
    assert loaded.meta == {"class_names": ["bg", "a", "b"], "resolution": 16, "note": "x"}
    save_segmenter(path, model, {"classes": ["bg", "a", "b"], "resolution": 16})  # alias
    assert load_segmenter(path).meta["class_names"] == ["bg", "a", "b"]
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_save_needs_class_names_and_resolution(tmp_path):
    with pytest.raises(ValueError, match="class_names"):
        save_segmenter(tmp_path / "m.pt", UNet(3, **TINY), {"class_names": ["a"], "resolution": 8})
    with pytest.raises(ValueError, match="resolution"):
        save_segmenter(tmp_path / "m.pt", UNet(1, **TINY), {"class_names": ["a"]})


def test_loading_a_wrong_file_names_it(tmp_path):
    with pytest.raises(PartsegError, match="missing.pt: segmenter model not found"):
        load_segmenter(tmp_path / "missing.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a model")
    with pytest.raises(PartsegError, match="garbage.pt: not a readable model file"):
        load_segmenter(garbage)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(1)}, other)
    with pytest.raises(PartsegError, match="other.pt: not a partseg segmenter"):
        load_segmenter(other)


def test_predict_labels_handles_mixed_sizes_in_order():
    model = UNet(3, **TINY).eval()
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, shape, dtype=np.uint8)
              for shape in [(16, 16, 3), (16, 16, 3), (9, 20, 3), (16, 16, 3)]]
    results = predict_labels(model, images, batch_size=2, return_probs=True)
    assert [labels.shape for labels, _ in results] == [(16, 16), (16, 16), (9, 20), (16, 16)]
    for image, (labels, probs) in zip(images, results):
        alone, _ = predict_labels(model, [image])[0]
        assert np.array_equal(labels, alone)
        assert probs.shape == (3, *image.shape[:2])
        assert np.allclose(probs.sum(0), 1.0, atol=1e-5)
        assert labels.dtype == np.uint8


def test_channels_last_step_matches_the_nchw_step():
    """The speed-ups (channels_last, fused Adam, max-indices accuracy) leave the maths alone."""
    images, masks = squares(n=4)
    x = images_to_unit_tensor(images)
    targets = train_module.targets_to_probabilities(masks, "hard", 3)
    valid = targets.sum(1) >= 0.5
    torch.manual_seed(0)
    plain = UNet(3, **TINY).train()
    fast = UNet(3, **TINY).train()
    fast.load_state_dict(plain.state_dict())
    fast.to(memory_format=torch.channels_last)
    results = []
    for model, fused in ((plain, False), (fast, True)):
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, fused=fused)
        results.append(train_module.training_step(model, optimizer, x, targets, valid,
                                                  lr=1e-2, grad_clip=1.0))
    # (loss, accuracy) as plain floats: pytest >= 9.2's approx refuses tuples of tensors
    plain_step, fast_step = ([float(value) for value in step] for step in results)
    assert plain_step == pytest.approx(fast_step, rel=1e-5)
    for (name, a), b in zip(plain.state_dict().items(), fast.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)


def test_trained_model_is_channels_last_and_saves_like_any_other(tmp_path):
    images, masks = squares()
    model, _ = train_segmenter(images, masks, num_classes=3, target_kind="hard",
                               unet_config=TINY, steps=2, batch_size=2, device="cpu")
    assert model.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
    save_segmenter(tmp_path / "m.pt", model, {"class_names": ["a", "b", "c"], "resolution": 16})
    loaded = load_segmenter(tmp_path / "m.pt")
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model(x), loaded(x), rtol=1e-4, atol=1e-5)


def test_class_balance_weights_follow_the_frequencies_and_lift_rare_classes():
    from partseg.autoshot.train import balanced_class_weights

    masks = np.zeros((4, 10, 10), np.uint8)  # class 0: 96 px per image, class 1: 4, class 2: none
    masks[:, :2, :2] = 1
    masks[0, 9, 9] = 255  # ignored pixels are not counted
    stack = ArrayStack(masks, "targets")
    assert balanced_class_weights(stack, "hard", 3, power=0.0) is None
    weights = balanced_class_weights(stack, "hard", 3, power=0.5).numpy()
    assert weights[2] == 0  # absent: never a target
    assert weights[[0, 1]].mean() == pytest.approx(1.0)
    assert weights[1] / weights[0] == pytest.approx((383 / 16) ** 0.5, rel=1e-4)
    full = balanced_class_weights(stack, "hard", 3, power=1.0).numpy()
    assert full[1] / full[0] == pytest.approx(383 / 16, rel=1e-4)
    # Soft targets are counted by their argmax: the same weights from logits.
    logits = np.stack([(masks == k).astype(np.float16) * 4 for k in range(3)], axis=1)
    logits[0, :, 9, 9] = [4, 0, 0]  # (the ignored pixel becomes class 0 here)
    soft = balanced_class_weights(ArrayStack(logits, "targets"), "soft", 3, power=0.5).numpy()
    assert soft[1] / soft[0] == pytest.approx((384 / 16) ** 0.5, rel=1e-4)


def test_class_balance_makes_a_rare_class_cost_more():
    """The weighted loss is the plain one with each class's term scaled by its weight."""
    from partseg.autoshot.train import soft_cross_entropy

    logits = torch.zeros(1, 2, 1, 2)
    targets = torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]]]])  # one pixel of each class
    valid = torch.ones(1, 1, 2, dtype=torch.bool)
    plain = soft_cross_entropy(logits, targets, valid)
    weighted = soft_cross_entropy(logits, targets, valid, torch.tensor([0.5, 1.5]))
    assert plain.item() == pytest.approx(np.log(2))
    assert weighted.item() == pytest.approx(np.log(2))  # mean weight 1 over these two pixels
    only_rare = soft_cross_entropy(logits[:, :, :, 1:], targets[:, :, :, 1:], valid[:, :, 1:],
                                   torch.tensor([0.5, 1.5]))
    assert only_rare.item() == pytest.approx(1.5 * np.log(2))


def test_undoing_class_weights_shifts_each_logit_by_minus_log_weight():
    """The folded head predicts logits - s * log(w); a class of weight 0 keeps its logit."""
    from partseg.autoshot.train import undo_class_weights

    torch.manual_seed(0)
    model = UNet(num_classes=3, **TINY).eval()
    images = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        before = model(images)
    weights = torch.tensor([0.25, 4.0, 0.0])
    offsets = undo_class_weights(model, weights, strength=0.5)
    assert offsets == pytest.approx([-0.5 * np.log(0.25), -0.5 * np.log(4.0), 0.0])
    with torch.no_grad():
        after = model(images)
    torch.testing.assert_close(after - before, torch.tensor(offsets, dtype=torch.float32)
                               .view(1, 3, 1, 1).expand_as(after), rtol=0, atol=1e-5)


def test_undoing_class_weights_hands_pixels_back_to_the_common_class():
    """A UNet trained with class weights paints the rare class wider than one trained
    without; undoing the weights takes back pixels from it, never gives it more."""
    from partseg.autoshot.train import balanced_class_weights, undo_class_weights

    images, masks = squares(n=8)
    model, _ = train_segmenter(images, masks, num_classes=3, target_kind="hard",
                               unet_config=TINY, steps=60, batch_size=8, lr=0.01, augment=None,
                               class_balance_power=1.0, seed=0)
    weights = balanced_class_weights(ArrayStack(masks, "targets"), "hard", 3, power=1.0)
    before = np.stack([label for label, _ in predict_labels(model, images)])
    undo_class_weights(model, weights)
    after = np.stack([label for label, _ in predict_labels(model, images)])
    common = int(np.argmax(np.bincount(masks.ravel(), minlength=3)))
    assert (after == common).sum() >= (before == common).sum()
    assert ((before == common) & (after != common)).sum() == 0
