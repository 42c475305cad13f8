"""params.yaml is validated on load: unknown keys, wrong types and bad values name the key."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from partseg.plumbing.errors import PartsegError
from partseg.plumbing.params import Params, load_params, parse_params

ROOT = Path(__file__).resolve().parent.parent


def test_committed_params_are_the_documented_defaults():
    assert dataclasses.asdict(load_params(ROOT / "params.yaml")) == dataclasses.asdict(Params())


@pytest.mark.parametrize("raw, message", [
    ({"train_fewshot": {"lrate": 0.1}}, "unknown params key train_fewshot.lrate"),
    ({"nonsense": {}}, "unknown params key nonsense"),
    ({"train_fewshot": {"lr": "fast"}}, "train_fewshot.lr: expected a number"),
    ({"train_gan": {"steps": 1.5}}, "train_gan.steps: expected an integer"),
    ({"train_gan": {"steps": True}}, "train_gan.steps: expected an integer"),
    ({"train_fewshot": {"class_balance": "yes"}}, "train_fewshot.class_balance: expected true or false"),
    ({"train_fewshot": {"network": "rnn"}}, "train_fewshot.network: 'rnn' is not one of"),
    ({"data": {"resolution": 16}}, "data.resolution: 16 is below the minimum 32"),
    ({"data": {"resolution": 48}}, "data.resolution: 48 must be a power of two"),
    ({"sample": {"truncation": 1.5}}, "sample.truncation: 1.5 is above the maximum"),
    ({"train_autoshot": {"augment": {"rotaton": 3}}}, "unknown params key train_autoshot.augment.rotaton"),
    ({"synthesize": {"shards": [0, "a"]}}, "synthesize.shards[1]: expected an integer"),
    ({"synthesize": {"shards": [0, 0]}}, "synthesize.shards: shard ids must be unique"),
    ({"annotate": {"k": 40}}, "annotate.k: 40 shots need at least as many samples"),
    ({"data": {"source": "folder"}}, "annotate.source: 'simulated' stands in for a person"),
    ({"features": {"resolution": 64}}, "features.resolution: 64 is larger than data.resolution"),
    ({"dataset": 3}, "dataset: expected a mapping"),
    ({"annotate": {"pick": "best"}}, "annotate.pick: 'best' is not one of auto, first"),
])
def test_bad_params_name_the_key(raw, message):
    with pytest.raises(PartsegError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_params(raw)


def test_valid_overrides_are_typed():
    params = parse_params({"train_fewshot": {"lr": 1, "network": "mlp"},
                           "features": {"layers": ["convs.0", "convs.1"]}})
    assert params.train_fewshot.lr == 1.0 and isinstance(params.train_fewshot.lr, float)
    assert params.features.layers == ["convs.0", "convs.1"]
    assert params.train_gan.steps == Params().train_gan.steps


def test_load_names_the_file(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"train_gan": {"stepz": 1}}))
    with pytest.raises(PartsegError, match=f"{path}: unknown params key train_gan.stepz"):
        load_params(path)
    path.write_text("train_gan: [unclosed")
    with pytest.raises(PartsegError, match="not valid YAML"):
        load_params(path)


def test_check_command_prints_one_line_error_without_traceback(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"train_fewshot": {"lr": "fast"}}))
    result = subprocess.run([sys.executable, "-m", "partseg.cli", "check", "--params", str(path)],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {path}: params key train_fewshot.lr: expected a number, got 'fast'"
    assert "Traceback" not in result.stderr
