"""The paper-scale presets: each one's params validate and its DAG plans with `snakemake -n`."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from partseg.plumbing.errors import PartsegError
from partseg.presets import PRESETS_DIR, apply_preset, dvc_flags, load_overlay, main, preset_names

ROOT = Path(__file__).resolve().parent.parent
PRESETS = preset_names()


def test_the_paper_scale_presets_exist():
    assert {"ffhq1024_celebamask", "ffhq256_celebamask"} <= set(PRESETS)


@pytest.mark.parametrize("name", PRESETS)
def test_preset_params_validate_and_change_only_their_keys(name):
    merged = apply_preset(name, ROOT / "params.yaml")
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    overlay = load_overlay(name)
    assert merged["data"]["resolution"] == overlay["data"]["resolution"]
    assert merged["features"]["resolution"] == overlay["features"]["resolution"]
    assert merged["train_fewshot"]["network"] == base["train_fewshot"]["network"]  # untouched


@pytest.mark.parametrize("name", PRESETS)
def test_preset_dag_plans_with_snakemake_dry_run(name, tmp_path):
    merged = apply_preset(name, ROOT / "params.yaml")
    celeba = tmp_path / "CelebAMask-HQ"  # the dataset stage's input must exist to plan
    celeba.mkdir()
    merged["data"]["path"] = str(celeba)
    config = tmp_path / "params.yaml"
    config.write_text(yaml.safe_dump(merged))
    result = subprocess.run(["snakemake", "-n", "--cores", "1", "--configfile", str(config),
                             "--forceall"], cwd=ROOT, capture_output=True, text=True,
                            timeout=300, env={**os.environ, "PARTSEG_DVC_SYNC": "1"})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    plan = result.stdout + result.stderr
    shards = len(merged["synthesize"]["shards"])
    assert plan.count("rule synthesize:") == shards
    for rule in ("dataset", "features", "train_fewshot", "train_autoshot", "evaluate", "report"):
        assert f"rule {rule}:" in plan


def test_misspelt_preset_key_names_the_key(tmp_path):
    (tmp_path / "bad.yaml").write_text("train_autoshot: {stepz: 3}\n")
    with pytest.raises(PartsegError, match="train_autoshot.stepz"):
        apply_preset("bad", ROOT / "params.yaml", folder=tmp_path)


def test_unknown_preset_lists_the_known(capsys):
    with pytest.raises(SystemExit):
        main(["no_such_preset"])
    assert "ffhq1024_celebamask" in capsys.readouterr().err


def test_dvc_flags_spell_every_leaf_without_spaces():
    flags = dvc_flags({"synthesize": {"shards": [0, 1]}, "data": {"source": "celebamask"}})
    assert flags == ["-S", "synthesize.shards=[0,1]", "-S", "data.source=celebamask"]
    assert (PRESETS_DIR / "ffhq1024_celebamask.yaml").is_file()
