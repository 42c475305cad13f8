"""The report's targets: each one met or missed, and by how much."""

import pandas as pd

from partseg.report import targets_table


def metrics_of(autoshot_test, ten_test, autoshot_shifted, ten_shifted, full, oneshot, shifted_subset):
    return {"test": {"autoshot": {"miou": autoshot_test}, "unet_k10": {"miou": ten_test},
                     "unet_full": {"miou": full}},
            "test_shifted": {"autoshot": {"miou": autoshot_shifted}, "unet_k10": {"miou": ten_shifted}},
            "test_shifted_inverted_subset": {"autoshot": {"miou": shifted_subset},
                                             "oneshot_cnn": {"miou": oneshot}}}


def per_class_of(**ious):
    return pd.DataFrame([{"split": "test", "method": "autoshot", **ious},
                         {"split": "test", "method": "unet_k10", "eye": 0.0}])


def test_each_target_is_checked_with_its_margin():
    parts = dict(eye=0.20, eyebrow=0.14, nose=0.30, mouth=0.25, ear=0.15)
    table = targets_table(metrics_of(0.42, 0.389, 0.25, 0.266, 0.712, 0.13, 0.25),
                          per_class_of(**parts)).set_index("target")
    result = table["result"]
    assert result["auto-shot mIoU ≥ 10-label UNet, test"] == "met"
    assert result["auto-shot mIoU ≥ 10-label UNet, test_shifted"] == "**missed by 1.6**"
    assert result["auto-shot eyebrow IoU, test"] == "**missed by 1.0**"
    assert result["auto-shot ear IoU, test"] == "met"  # 15.0 is at the goal
    assert result["auto-shot ≥ one-shot + 10, inverted test_shifted subset"] == "met"
    assert result["auto-shot ≥ 0.70 × all-label UNet, test"] == "**missed by 7.8**"
    assert table.loc["stretch: auto-shot ≥ 0.85 × all-label UNet, test", "goal"] == "≥ 60.5"
    assert len(table) == 10


def test_targets_need_the_methods_they_compare():
    assert targets_table({}, pd.DataFrame(columns=["split", "method"])) is None
