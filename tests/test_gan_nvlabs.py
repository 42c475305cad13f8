"""NVlabs StyleGAN2 pickles: same images as NVlabs' code, refusals, no code from the file runs.

The fixtures in tests/fixtures/nvlabs were made with NVlabs' own code (see README.txt there).
"""

from __future__ import annotations

import collections
import os
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from partseg.cli import main as cli_main
from partseg.plumbing.errors import PartsegError
from partseg.gan import load_discriminator, load_generator
from partseg.gan.checkpoint import load_checkpoint_file
from partseg.gan.nvlabs import PersistentRecord, is_network_pickle, read_network_pickle

FIXTURES = Path(__file__).parent / "fixtures" / "nvlabs"
RENDERED = ["ada_paper64", "ada_auto32", "ada_widths64", "sg3repo_stylegan2_32"]
TOLERANCE = 1e-3  # max abs difference from NVlabs' fp32 render


def expected(name: str) -> dict[str, torch.Tensor]:
    with np.load(FIXTURES / f"{name}.npz") as data:
        return {key: torch.from_numpy(data[key]) for key in data.files}


def max_error(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return float((a - b).abs().max())


@torch.no_grad()
def render_both(generator, reference: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Images from the fixture's z and from its W+, with the file's const noise."""
    from_z = generator(reference["z"], noise="const", truncation=1.0)
    from_ws = generator.synthesis(reference["ws"], noise="const")
    return from_z, from_ws


# ---- same images as NVlabs -----------------------------------------------------------------

@pytest.mark.parametrize("name", RENDERED)
def test_generator_matches_nvlabs_render(name):
    reference = expected(name)
    generator = load_generator(FIXTURES / f"{name}.pkl")
    from_z, from_ws = render_both(generator, reference)
    assert max_error(from_z, reference["img_z"]) < TOLERANCE
    assert max_error(from_ws, reference["img_ws"]) < TOLERANCE
    assert torch.equal(generator.latent_avg.reshape(-1), reference["w_avg"])


@pytest.mark.parametrize("name", RENDERED)
def test_discriminator_matches_nvlabs(name):
    reference = expected(name)
    discriminator = load_discriminator(FIXTURES / f"{name}.pkl")
    with torch.no_grad():
        logits = discriminator(reference["d_in"])
    assert max_error(logits, reference["d_logits"]) < TOLERANCE


def test_config_follows_the_file():
    """Mapping depth, widths and the mapping learning rate come from the pickle."""
    assert load_generator(FIXTURES / "ada_paper64.pkl").config["n_mlp"] == 8
    widths = load_generator(FIXTURES / "ada_widths64.pkl")
    assert widths.config["n_mlp"] == 2 and widths.config["lr_mlp"] == pytest.approx(0.01)
    assert widths.channels == {4: 32, 8: 32, 16: 32, 32: 16, 64: 8}


# ---- refusals --------------------------------------------------------------------------------

def _refused(path: Path, *words: str) -> str:
    with pytest.raises(PartsegError) as caught:
        load_generator(path)
    message = str(caught.value)
    assert str(path) in message and "\n" not in message
    for word in words:
        assert word in message
    return message


def test_refuses_conditional():
    _refused(FIXTURES / "ada_conditional32.pkl", "conditional", "c_dim=4", "supported")


def test_refuses_stylegan3():
    _refused(FIXTURES / "sg3_r16.pkl", "StyleGAN3", "'r'", "supported")


def test_refuses_truncated(tmp_path):
    data = (FIXTURES / "ada_auto32.pkl").read_bytes()
    for cut in (len(data) // 2, 100, len(data) - 1):
        path = tmp_path / f"cut{cut}.pkl"
        path.write_bytes(data[:cut])
        _refused(path, "truncated")


def test_refuses_pickle_of_something_else(tmp_path):
    path = tmp_path / "other.pkl"
    path.write_bytes(pickle.dumps({"weights": [1.0, 2.0], "name": "not a GAN"}))
    _refused(path, "not an NVlabs network pickle", "weights")
    listed = tmp_path / "list.pkl"
    listed.write_bytes(pickle.dumps([1, 2, 3]))
    _refused(listed, "found a list")


def test_refuses_tensorflow_pickle(tmp_path, monkeypatch):
    class Network:  # stands in for dnnlib.tflib.network.Network of the TensorFlow releases
        def __reduce__(self):
            return Network, ()

    Network.__module__, Network.__qualname__ = "dnnlib.tflib.network", "Network"
    for name in ("dnnlib", "dnnlib.tflib", "dnnlib.tflib.network"):  # pickle imports each
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    sys.modules["dnnlib.tflib.network"].Network = Network
    path = tmp_path / "karras2019stylegan-ffhq.pkl"
    path.write_bytes(pickle.dumps((Network(), Network(), Network())))
    _refused(path, "TensorFlow", "supported")


def test_refuses_missing_file(tmp_path):
    _refused(tmp_path / "absent.pkl", "not found")


# ---- nothing from the file runs ---------------------------------------------------------------

class _Persistent:
    """Pickles like an NVlabs persistent object: _reconstruct_persistent_obj(meta)."""

    def __init__(self, meta: dict):
        self.meta = meta

    def __reduce__(self):
        return sys.modules["torch_utils.persistence"]._reconstruct_persistent_obj, (self.meta,)


class _RunsShell:
    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def _nvlabs_like(obj, module_src: str):
    """Rebuild a loaded record tree as NVlabs-style objects, with another module_src."""
    if isinstance(obj, PersistentRecord):
        meta = {k: _nvlabs_like(v, module_src) for k, v in obj.items()}
        meta["module_src"] = module_src
        return _Persistent(meta)
    if isinstance(obj, collections.OrderedDict):
        return collections.OrderedDict((k, _nvlabs_like(v, module_src)) for k, v in obj.items())
    if isinstance(obj, dict):
        return {k: _nvlabs_like(v, module_src) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_nvlabs_like(v, module_src) for v in obj]
    return obj


@pytest.fixture
def nvlabs_persistence(monkeypatch):
    """A stand-in torch_utils.persistence that, like NVlabs', execs module_src on load."""
    def _reconstruct_persistent_obj(meta):
        exec(compile(meta["module_src"], "<module_src>", "exec"), {})  # as NVlabs does
        return meta

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    package = types.ModuleType("torch_utils")
    module = types.ModuleType("torch_utils.persistence")
    module._reconstruct_persistent_obj = _reconstruct_persistent_obj
    package.persistence = module
    monkeypatch.setitem(sys.modules, "torch_utils", package)
    monkeypatch.setitem(sys.modules, "torch_utils.persistence", module)
    return module


def test_embedded_module_src_never_runs(tmp_path, nvlabs_persistence):
    marker = tmp_path / "module_src_ran"
    evil_src = f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"
    tree = _nvlabs_like(read_network_pickle(FIXTURES / "ada_auto32.pkl"), evil_src)
    path = tmp_path / "evil_src.pkl"
    path.write_bytes(pickle.dumps(tree))
    # Positive control: loading these bytes NVlabs' way runs the embedded source.
    pickle.loads(path.read_bytes())
    assert marker.read_text() == "ran"
    marker.unlink()
    # partseg reads the same file: the weights load, the source stays text.
    reference = expected("ada_auto32")
    from_z, _ = render_both(load_generator(path), reference)
    assert max_error(from_z, reference["img_z"]) < TOLERANCE
    assert not marker.exists()


def test_os_system_global_is_refused(tmp_path, nvlabs_persistence):
    marker = tmp_path / "shell_ran"
    tree = _nvlabs_like(read_network_pickle(FIXTURES / "ada_auto32.pkl"), "")
    tree["G_ema"].meta["state"]["_init_kwargs"]["payload"] = _RunsShell(f"touch {marker}")
    nested = tmp_path / "evil_nested.pkl"
    nested.write_bytes(pickle.dumps(tree))
    top = tmp_path / "evil_top.pkl"
    top.write_bytes(pickle.dumps({"G_ema": _RunsShell(f"touch {marker}")}))
    for path in (nested, top):
        message = _refused(path, "refused", f"{os.system.__module__}.system")
        assert "arbitrary code" in message
        with pytest.raises(PartsegError, match="system"):
            load_discriminator(path)
    assert not marker.exists()


def test_old_and_new_numpy_module_names(tmp_path):
    """numpy 1 files name numpy.core.multiarray, numpy 2 files numpy._core.multiarray."""
    values = {"f": np.float64(1.5), "i": np.int32(7), "b": np.bool_(True),
              "a": np.arange(6, dtype=np.float32).reshape(2, 3)}
    data = pickle.dumps(values, protocol=3)  # GLOBAL opcodes: names are plain text
    for module in (b"numpy.core.multiarray", b"numpy._core.multiarray"):
        renamed = data.replace(b"numpy._core.multiarray\n", module + b"\n")
        renamed = renamed.replace(b"numpy.core.multiarray\n", module + b"\n")
        path = tmp_path / "numbers.pkl"
        path.write_bytes(renamed)
        loaded = read_network_pickle(path)
        assert loaded["f"] == 1.5 and loaded["i"] == 7 and bool(loaded["b"])
        np.testing.assert_array_equal(loaded["a"], values["a"])


def test_which_files_are_network_pickles(tmp_path):
    legacy = tmp_path / "legacy.pt"
    torch.save({"x": torch.zeros(1)}, legacy, _use_new_zipfile_serialization=False)
    zipped = tmp_path / "zipped.pt"
    torch.save({"x": torch.zeros(1)}, zipped)
    bare = tmp_path / "network-snapshot"  # a pickle without the .pkl suffix
    bare.write_bytes((FIXTURES / "ada_auto32.pkl").read_bytes())
    assert not is_network_pickle(legacy) and not is_network_pickle(zipped)
    assert is_network_pickle(bare) and is_network_pickle(FIXTURES / "sg3_r16.pkl")
    assert load_generator(bare).config["size"] == 32


# ---- partseg convert -----------------------------------------------------------------------

@pytest.mark.parametrize("name", ["ada_paper64", "sg3repo_stylegan2_32"])
def test_convert_round_trip(tmp_path, monkeypatch, capsys, name):
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    out = tmp_path / f"{name}.pt"
    assert cli_main(["convert", str(FIXTURES / f"{name}.pkl"), str(out)]) == 0
    assert "discriminator mapped" in capsys.readouterr().out
    assert not is_network_pickle(out)
    ckpt = load_checkpoint_file(out)  # the rosinality path: torch.load(weights_only=True)
    assert set(ckpt) == {"g_ema", "latent_avg", "args", "d"}
    assert ckpt["args"].lr_mlp == pytest.approx(0.01)
    reference = expected(name)
    converted = render_both(load_generator(out), reference)
    direct = render_both(load_generator(FIXTURES / f"{name}.pkl"), reference)
    for ours, theirs, key in zip(converted, direct, ("img_z", "img_ws")):
        assert torch.equal(ours, theirs)
        assert max_error(ours, reference[key]) < TOLERANCE
    with torch.no_grad():
        logits = load_discriminator(out)(reference["d_in"])
    assert max_error(logits, reference["d_logits"]) < TOLERANCE


def test_convert_refuses_with_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    with pytest.raises(SystemExit) as caught:
        cli_main(["convert", str(FIXTURES / "sg3_r16.pkl"), str(tmp_path / "out.pt")])
    assert caught.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "StyleGAN3" in err and "\n" not in err
    assert not (tmp_path / "out.pt").exists()


def _state(persistent: _Persistent, *path: str) -> dict:
    """The state dict of a sub-network of an NVlabs-like tree, by child names."""
    for name in path:
        persistent = persistent.meta["state"]["_modules"][name]
    return persistent.meta["state"]


def test_other_architectures(tmp_path, nvlabs_persistence):
    """A non-resnet D leaves the checkpoint without one; a 'resnet' generator is refused."""
    tree = _nvlabs_like(read_network_pickle(FIXTURES / "ada_auto32.pkl"), "")
    _state(tree["D"], "b32")["architecture"] = "skip"
    path = tmp_path / "d_skip.pkl"
    path.write_bytes(pickle.dumps(tree))
    assert load_discriminator(path) is None
    assert load_generator(path).config["size"] == 32
    _state(tree["G_ema"], "synthesis", "b8")["architecture"] = "resnet"
    path.write_bytes(pickle.dumps(tree))
    _refused(path, "'resnet' architecture", "supported")
