"""NVlabs StyleGAN2 network pickles (`.pkl`), read without running the code inside them.

stylegan2-ada-pytorch and the stylegan3 repository save `dict(G, D, G_ema, augment_pipe,
training_set_kwargs)` with plain `pickle`. Every network is a "persistent" object: it pickles as
`torch_utils.persistence._reconstruct_persistent_obj(meta)`, where `meta` holds the module's
whole Python source (`module_src`), the class name and the module's `__dict__` (`state`: the
`_parameters`, `_buffers`, `_modules` and `_init_kwargs`). NVlabs' own loader `exec`s that
source, so loading such a file their way runs whatever code it carries.

Here a restricted `pickle.Unpickler` resolves only the globals below; anything else is refused
with a PartsegError naming the file and the global, before it is called:

- `torch_utils.persistence._reconstruct_persistent_obj` -> `_persistent_record`, which returns
  the `meta` dict as a `PersistentRecord`. The source is kept as a string, never compiled.
- `dnnlib.util.EasyDict` (and `dnnlib.EasyDict`) -> our `EasyDict`, a plain dict subclass that
  ignores any pickled attribute state: constructing it runs no code from the file.
- `collections.OrderedDict`, `builtins.set`/`frozenset`: containers of already-unpickled items.
- `torch._utils._rebuild_tensor_v2`, `_rebuild_parameter`, `_rebuild_parameter_with_state`:
  wrapped so they only build a tensor (or Parameter) over a storage; pickled backward hooks are
  dropped and a non-empty hook dict is refused, so no callable from the file is attached.
- `torch.storage._load_from_bytes` -> `_storage_from_bytes`: the same bytes (a legacy
  `torch.save` of one storage) read with `torch.load(weights_only=True)`, torch's own
  restricted unpickler, instead of torch's helper (which uses `weights_only=False`).
- torch dtypes (`torch.float32`, ...), storage classes (`torch.FloatStorage`, ...), `torch.Size`,
  `torch.device`: type objects / value constructors that take numbers and strings only.
- numpy, under `numpy.core.multiarray` (numpy 1 files) and `numpy._core.multiarray` (numpy 2):
  `scalar` (a number from its raw bytes), `_reconstruct` with `numpy.ndarray` (an empty array
  that BUILD then fills from raw bytes or from already-unpickled items), `numpy.dtype`. NVlabs'
  layers store numpy floats as attributes; StyleGAN3 files also hold small arrays.
- Persistent ids (`persistent_load`) are refused: NVlabs pickles have none.

The file's objects are never used as modules: their tensors are renamed into the rosinality
layout (see REFERENCES.md, "Formats") and copied into partseg's Generator / Discriminator.

Supported: StyleGAN2 networks of stylegan2-ada-pytorch (`training.networks`) and the stylegan2
networks of the stylegan3 repository (`training.networks_stylegan2`, the same names):
unconditional (c_dim 0), 'skip' generator, any number of mapping layers (2 for 'auto'/'cifar',
8 for the paper configs) of width z_dim == w_dim, any channel_base/channel_max, fp16 blocks.
The discriminator is mapped when it is the 'resnet' architecture with one minibatch-stddev
channel; otherwise the checkpoint simply has no `d`.
Refused, with a message naming what the file holds: conditional networks (c_dim > 0), 'orig' or
'resnet' generators, StyleGAN3 ('t'/'r') generators, TensorFlow-era pickles, truncated files,
pickles of anything else.

fp16 and conv_clamp: weights are stored in fp32 whatever num_fp16_res is; NVlabs runs the top
num_fp16_res resolutions in fp16 on GPU and clamps their activations to +-conv_clamp (times the
lrelu gain) to avoid fp16 overflow. partseg runs fp32 without a clamp, which equals NVlabs'
`force_fp32=True` render (the fixtures check this to 1e-3); their fp16 GPU render differs by
fp16 rounding, and the clamp only changes activations beyond +-256*sqrt(2). The minibatch-stddev
group size is fixed at 4 in partseg; it only matters for batches larger than that.
"""

from __future__ import annotations

import argparse
import collections
import io
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from partseg.plumbing.errors import PartsegError

PICKLE_SUFFIXES = (".pkl", ".pickle")
# Legacy (non-zip) torch.save files are pickles too; they start with torch's magic number.
TORCH_LEGACY_HEAD = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
SUPPORTED = ("supported: unconditional StyleGAN2 'skip' generators of stylegan2-ada-pytorch or "
             "of the stylegan3 repository (--cfg=stylegan2)")


# ---- the restricted unpickler --------------------------------------------------------------

class EasyDict(dict):
    """Stands in for dnnlib.util.EasyDict: a plain dict; pickled attribute state is ignored."""

    def __setstate__(self, state: Any) -> None:
        pass


class PersistentRecord(dict):
    """The `meta` of one NVlabs persistent object: class_name, module_src (text), state."""

    @property
    def class_name(self) -> str:
        return str(self.get("class_name"))

    @property
    def state(self) -> dict:
        state = self.get("state")
        return state if isinstance(state, dict) else {}


class _Refused(Exception):
    """A global outside the allow-list (carried to the caller, who names the file)."""


def _persistent_record(meta: Any) -> PersistentRecord:
    # Replaces NVlabs' _reconstruct_persistent_obj: keep the data, never exec module_src.
    if not isinstance(meta, dict):
        raise _Refused("torch_utils.persistence._reconstruct_persistent_obj with a non-dict")
    return PersistentRecord(meta)


def _storage_from_bytes(data: bytes) -> Any:
    # torch.storage._load_from_bytes with torch's own weights-only unpickler.
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def _no_hooks(hooks: Any) -> None:
    # A tensor's pickled backward hooks would attach callables from the file: refuse them.
    if hooks:
        raise _Refused("a tensor with pickled backward hooks")


def _rebuild_tensor(storage, offset, size, stride, requires_grad, hooks, metadata=None):
    _no_hooks(hooks)
    return torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False,
                                           collections.OrderedDict())


def _rebuild_parameter(data, requires_grad, hooks, state=None):
    _no_hooks(hooks)
    return torch.nn.Parameter(data, requires_grad=False)  # attribute `state` is not restored


def _numpy_globals() -> dict[tuple[str, str], Any]:
    multiarray = getattr(getattr(np, "_core", None), "multiarray", None) or np.core.multiarray
    found = {}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        found[(module, "scalar")] = multiarray.scalar
        found[(module, "_reconstruct")] = multiarray._reconstruct
    found[("numpy", "ndarray")] = np.ndarray
    found[("numpy", "dtype")] = np.dtype
    return found


def _torch_type_globals() -> dict[tuple[str, str], Any]:
    found = {("torch", "Size"): torch.Size, ("torch", "device"): torch.device}
    for name in dir(torch):
        value = getattr(torch, name, None)
        storage_class = isinstance(value, type) and name.endswith("Storage")
        if isinstance(value, torch.dtype) or storage_class:
            found[("torch", name)] = value
    return found


ALLOWED: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _persistent_record,
    ("dnnlib.util", "EasyDict"): EasyDict,
    ("dnnlib", "EasyDict"): EasyDict,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _storage_from_bytes,
    **_torch_type_globals(),
    **_numpy_globals(),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            raise _Refused(f"{module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        raise _Refused(f"a persistent id ({type(pid).__name__})")


def is_network_pickle(path: str | os.PathLike) -> bool:
    """A .pkl file, or a plain pickle (protocol header, not a zip, not a legacy torch file)."""
    path = Path(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        return True
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(TORCH_LEGACY_HEAD))
    except OSError:
        return False
    return (head[:1] == b"\x80" and not head.startswith(TORCH_LEGACY_HEAD)
            and not zipfile.is_zipfile(path))


def read_network_pickle(path: str | os.PathLike) -> Any:
    """Unpickle `path` with the allow-list above; persistent objects become PersistentRecords."""
    path = Path(path)
    if not path.is_file():
        raise PartsegError(f"{path}: network pickle not found")
    try:
        with open(path, "rb") as handle:
            return _RestrictedUnpickler(handle).load()
    except _Refused as refused:
        if str(refused).startswith("dnnlib.tflib"):
            raise PartsegError(f"{path}: a TensorFlow-era StyleGAN pickle ({refused}); "
                               f"partseg reads PyTorch ones; {SUPPORTED}") from None
        raise PartsegError(
            f"{path}: refused to load: the pickle references {refused}, which is not plain "
            "network data (allowed: NVlabs persistent networks, tensors, numpy numbers, "
            "containers; loading it NVlabs' way could run arbitrary code)") from None
    except (EOFError, pickle.UnpicklingError, ValueError, TypeError, RuntimeError,
            AttributeError, IndexError, KeyError) as error:
        raise PartsegError(f"{path}: not a readable network pickle (truncated or corrupt: "
                           f"{type(error).__name__}: {str(error)[:200]})") from None


# ---- walking the persistent objects ---------------------------------------------------------

def _tensors(record: PersistentRecord, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every parameter and buffer below `record`, by dotted name (like a state_dict)."""
    found = {}
    for group in ("_parameters", "_buffers"):
        for name, value in (record.state.get(group) or {}).items():
            if isinstance(value, torch.Tensor):
                found[prefix + name] = value.detach().float()
    for name, child in (record.state.get("_modules") or {}).items():
        if isinstance(child, PersistentRecord):
            found.update(_tensors(child, f"{prefix}{name}."))
    return found


def _child(record: PersistentRecord, name: str, where: str) -> PersistentRecord:
    child = (record.state.get("_modules") or {}).get(name)
    if not isinstance(child, PersistentRecord):
        raise PartsegError(f"{where}: {record.class_name} has no sub-network '{name}'; "
                           f"not a StyleGAN2 network ({SUPPORTED})")
    return child


def _attr(record: PersistentRecord, name: str, default: Any = None) -> Any:
    """A constructor argument or attribute, as NVlabs stored it (the state wins)."""
    if name in record.state:
        return record.state[name]
    return (record.state.get("_init_kwargs") or {}).get(name, default)


def _network(data: Any, key: str, path: Path) -> PersistentRecord:
    """data[key] as a persistent record, or a PartsegError saying what the file holds."""
    if not isinstance(data, dict) or not any(isinstance(v, PersistentRecord)
                                             for v in data.values()):
        found = (f"a dict with keys {sorted(map(str, data))[:10]}" if isinstance(data, dict)
                 else f"a {type(data).__name__}")
        raise PartsegError(f"{path}: not an NVlabs network pickle (expected a dict with G_ema, "
                           f"G, D of stylegan2-ada-pytorch / stylegan3; found {found})")
    record = data.get(key)
    if not isinstance(record, PersistentRecord):
        raise PartsegError(f"{path}: the network pickle has no '{key}' network "
                           f"(found {sorted(map(str, data))})")
    return record


# ---- what a generator is, and refusing what partseg cannot run ------------------------------

def _stylegan3_config(g: PersistentRecord, synthesis: PersistentRecord) -> str | None:
    """'r' or 't' when G is a StyleGAN3 generator (alias-free synthesis), else None."""
    modules = synthesis.state.get("_modules") or {}
    layer_states = [m.state for m in modules.values() if isinstance(m, PersistentRecord)]
    is_sg3 = (isinstance(modules.get("input"), PersistentRecord)
              and modules["input"].class_name == "SynthesisInput") \
        or any("magnitude_ema_beta" in s for s in layer_states)
    if not is_sg3:
        return None
    return "r" if _attr(g, "conv_kernel", _attr(synthesis, "conv_kernel")) == 1 else "t"


def _refuse_generator(g: PersistentRecord, where: str) -> None:
    """PartsegError unless G is an unconditional StyleGAN2 'skip' generator with RGB output."""
    if g.class_name != "Generator":
        raise PartsegError(f"{where}: holds a {g.class_name}, not a Generator; {SUPPORTED}")
    synthesis = _child(g, "synthesis", where)
    config = _stylegan3_config(g, synthesis)
    if config:
        raise PartsegError(f"{where}: holds a StyleGAN3 generator (config '{config}', "
                           f"alias-free synthesis), another architecture; {SUPPORTED}")
    c_dim = int(_attr(g, "c_dim", 0) or 0)
    if c_dim > 0:
        raise PartsegError(f"{where}: holds a conditional generator (c_dim={c_dim}, "
                           f"class-conditioned); {SUPPORTED}")
    if int(_attr(g, "img_channels", 3)) != 3:
        raise PartsegError(f"{where}: holds a generator with {_attr(g, 'img_channels')} image "
                           f"channels; {SUPPORTED} (RGB)")
    for name, block in (synthesis.state.get("_modules") or {}).items():
        arch = _attr(block, "architecture", "skip")
        if arch != "skip":
            raise PartsegError(f"{where}: holds a StyleGAN2 generator with the '{arch}' "
                               f"architecture (block {name}); {SUPPORTED}")


def _check_filters(tensors: dict[str, torch.Tensor], where: str) -> None:
    """NVlabs' resample filters must be the [1,3,3,1] ones partseg builds itself."""
    taps = torch.tensor([1.0, 3.0, 3.0, 1.0])
    expected = torch.outer(taps, taps) / taps.sum() ** 2
    for name, value in tensors.items():
        if name.endswith("resample_filter") and (
                value.shape != expected.shape or not torch.allclose(value, expected)):
            raise PartsegError(f"{where}: {name} is not the [1,3,3,1] filter; {SUPPORTED}")


def _mapping_lr(mapping: PersistentRecord, where: str) -> tuple[int, float]:
    """(number of fc layers, their learning-rate multiplier); widths must all equal w_dim."""
    modules = mapping.state.get("_modules") or {}
    count = sum(1 for name in modules if name.startswith("fc") and name[2:].isdigit())
    layers = [_child(mapping, f"fc{i}", where) for i in range(count)]
    if not layers:
        raise PartsegError(f"{where}: the mapping network has no fc layers; {SUPPORTED}")
    gains = {float(_attr(fc, "bias_gain", 1.0)) for fc in layers}
    acts = {_attr(fc, "activation", "linear") for fc in layers}
    if len(gains) != 1 or acts != {"lrelu"}:
        raise PartsegError(f"{where}: mapping layers with mixed learning rates {gains} or "
                           f"activations {acts}; {SUPPORTED}")
    return len(layers), gains.pop()


# ---- renaming into the rosinality layout ----------------------------------------------------

class _Renamer:
    """Copies NVlabs tensors to rosinality names and remembers which ones were used."""

    def __init__(self, tensors: dict[str, torch.Tensor], where: str):
        self.tensors, self.where = tensors, where
        self.state: dict[str, torch.Tensor] = {}
        self.used: set[str] = set()

    def put(self, dst: str, src: str, shape: tuple[int, ...] | None = None) -> None:
        if src not in self.tensors:
            raise PartsegError(f"{self.where}: missing tensor {src}; {SUPPORTED}")
        value = self.tensors[src]
        self.state[dst] = value.reshape(shape) if shape else value
        self.used.add(src)

    def leftover(self) -> list[str]:
        # resample filters were checked and are rebuilt by partseg; w_avg becomes latent_avg.
        return sorted(k for k in self.tensors if k not in self.used
                      and not k.endswith("resample_filter") and k != "mapping.w_avg")


def _styled_conv(r: _Renamer, src: str, dst: str, noise_index: int, resolution: int) -> None:
    """SynthesisLayer -> StyledConv (+ its noise buffer); weights only gain a batch axis."""
    _modulated_conv(r, src, dst)
    r.put(f"{dst}.activate.bias", f"{src}.bias")
    noise = f"noises.noise_{noise_index}"
    if f"{src}.noise_strength" in r.tensors:
        r.put(f"{dst}.noise.weight", f"{src}.noise_strength", (1,))
        r.put(noise, f"{src}.noise_const", (1, 1, resolution, resolution))
    else:  # use_noise=False: no noise at all, which zero strength reproduces
        r.state[f"{dst}.noise.weight"] = torch.zeros(1)
        r.state[noise] = torch.zeros(1, 1, resolution, resolution)


def _modulated_conv(r: _Renamer, src: str, dst: str) -> None:
    """A layer's conv weight (which gains a batch axis) and its style affine."""
    weight = r.tensors.get(f"{src}.weight")
    if weight is None:
        raise PartsegError(f"{r.where}: missing tensor {src}.weight; {SUPPORTED}")
    r.put(f"{dst}.conv.weight", f"{src}.weight", (1, *weight.shape))
    r.put(f"{dst}.conv.modulation.weight", f"{src}.affine.weight")
    r.put(f"{dst}.conv.modulation.bias", f"{src}.affine.bias")


def _to_rgb(r: _Renamer, src: str, dst: str) -> None:
    _modulated_conv(r, src, dst)
    r.put(f"{dst}.bias", f"{src}.bias", (1, -1, 1, 1))


def _log2_resolution(record: PersistentRecord, where: str) -> int:
    resolution = int(_attr(record, "img_resolution", 0))
    log = resolution.bit_length() - 1
    if resolution < 4 or 2 ** log != resolution:
        raise PartsegError(f"{where}: image resolution {resolution} is not a power of two >= 4")
    return log


def generator_state(g: PersistentRecord, where: str) -> tuple[dict, float, torch.Tensor]:
    """(rosinality g_ema state without blur kernels, mapping lr multiplier, latent_avg [1, w])."""
    _refuse_generator(g, where)
    mapping = _child(g, "mapping", where)
    r = _Renamer(_tensors(g), where)
    _check_filters(r.tensors, where)
    n_mlp, lr_mlp = _mapping_lr(mapping, where)
    if _attr(mapping, "z_dim") != _attr(mapping, "w_dim"):
        raise PartsegError(f"{where}: z_dim {_attr(mapping, 'z_dim')} differs from w_dim "
                           f"{_attr(mapping, 'w_dim')}; partseg needs them equal")
    for i in range(n_mlp):  # style.0 is the PixelNorm (NVlabs' normalize_2nd_moment)
        r.put(f"style.{i + 1}.weight", f"mapping.fc{i}.weight")
        r.put(f"style.{i + 1}.bias", f"mapping.fc{i}.bias")
    const = r.tensors.get("synthesis.b4.const", torch.zeros(0))
    r.put("input.input", "synthesis.b4.const", (1, *const.shape))
    _styled_conv(r, "synthesis.b4.conv1", "conv1", 0, 4)
    _to_rgb(r, "synthesis.b4.torgb", "to_rgb1")
    for level in range(1, _log2_resolution(g, where) - 1):  # level i draws at 4 * 2**i px
        res, src = 4 * 2 ** level, f"synthesis.b{4 * 2 ** level}"
        _styled_conv(r, f"{src}.conv0", f"convs.{2 * level - 2}", 2 * level - 1, res)
        _styled_conv(r, f"{src}.conv1", f"convs.{2 * level - 1}", 2 * level, res)
        _to_rgb(r, f"{src}.torgb", f"to_rgbs.{level - 1}")
    if r.leftover():
        raise PartsegError(f"{where}: tensors partseg cannot place: {r.leftover()[:5]}; "
                           f"{SUPPORTED}")
    w_avg = r.tensors.get("mapping.w_avg")
    latent_avg = w_avg.reshape(1, -1) if w_avg is not None else None
    return r.state, lr_mlp, latent_avg


# The 4x4 epilogue: NVlabs b4.{conv, fc, out} -> rosinality final_conv / final_linear.
EPILOGUE = {"final_conv.0.weight": "b4.conv.weight", "final_conv.1.bias": "b4.conv.bias",
            "final_linear.0.weight": "b4.fc.weight", "final_linear.0.bias": "b4.fc.bias",
            "final_linear.1.weight": "b4.out.weight", "final_linear.1.bias": "b4.out.bias"}


def _unmappable_discriminator(d: Any) -> str | None:
    """Why partseg's Discriminator cannot hold D (None when it can)."""
    if not isinstance(d, PersistentRecord) or d.class_name != "Discriminator":
        return f"D is {getattr(d, 'class_name', type(d).__name__)}"
    blocks = d.state.get("_modules") or {}
    archs = {_attr(b, "architecture", "resnet") for b in blocks.values()}
    if archs != {"resnet"} or int(_attr(d, "c_dim", 0) or 0) > 0:
        return f"architecture {sorted(archs)} (partseg: resnet, unconditional)"
    epilogue = blocks.get("b4")
    mbstd = (epilogue.state.get("_modules") or {}).get("mbstd") if epilogue else None
    if not isinstance(mbstd, PersistentRecord) or int(_attr(mbstd, "num_channels", 1)) != 1:
        return "minibatch stddev with other than 1 channel"
    return None


def discriminator_state(d: Any, where: str) -> tuple[dict | None, str]:
    """(rosinality d state without blur kernels, or None; a note on what was done and why)."""
    reason = _unmappable_discriminator(d)
    if reason:
        return None, f"no discriminator mapped: {reason}"
    r = _Renamer(_tensors(d), where)
    _check_filters(r.tensors, where)
    size = 2 ** _log2_resolution(d, where)
    r.put("convs.0.0.weight", f"b{size}.fromrgb.weight")
    r.put("convs.0.1.bias", f"b{size}.fromrgb.bias")
    for k in range(1, _log2_resolution(d, where) - 1):  # block k reads size / 2**(k-1) px
        src, dst = f"b{size // 2 ** (k - 1)}", f"convs.{k}"
        r.put(f"{dst}.conv1.0.weight", f"{src}.conv0.weight")
        r.put(f"{dst}.conv1.1.bias", f"{src}.conv0.bias")
        r.put(f"{dst}.conv2.1.weight", f"{src}.conv1.weight")  # the downsampling conv
        r.put(f"{dst}.conv2.2.bias", f"{src}.conv1.bias")
        r.put(f"{dst}.skip.1.weight", f"{src}.skip.weight")
    for dst, src in EPILOGUE.items():
        r.put(dst, src)
    if r.leftover():
        return None, f"no discriminator mapped: unplaced tensors {r.leftover()[:5]}"
    return r.state, "discriminator mapped (resnet)"


def _complete(state: dict, module: torch.nn.Module, where: str) -> None:
    """Add partseg's fixed blur kernels to `state`, then check it loads into `module` exactly."""
    for key, value in module.state_dict().items():
        if key not in state and key.endswith("kernel"):
            state[key] = value.detach().clone()
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise PartsegError(f"{where}: tensors do not fit partseg's network: "
                           f"{str(error).splitlines()[-1].strip()[:300]}") from None


# ---- the public entry point --------------------------------------------------------------

def load_as_rosinality(path: str | os.PathLike) -> dict:
    """An NVlabs .pkl as a rosinality-layout checkpoint: g_ema, latent_avg, args, maybe d.

    `args` (an argparse.Namespace) carries lr_mlp, which rosinality does not store otherwise;
    `nvlabs` says whether the discriminator could be mapped.
    """
    from partseg.gan.checkpoint import infer_discriminator_config, infer_generator_config
    from partseg.gan.discriminator import Discriminator
    from partseg.gan.generator import Generator

    path = Path(path)
    data = read_network_pickle(path)
    where = f"{path} [G_ema]"
    g_state, lr_mlp, latent_avg = generator_state(_network(data, "G_ema", path), where)
    config = infer_generator_config(g_state, where, lr_mlp=lr_mlp)
    _complete(g_state, Generator(**config), where)
    args = argparse.Namespace(size=config["size"], latent=config["style_dim"],
                              n_mlp=config["n_mlp"], lr_mlp=lr_mlp)
    ckpt: dict[str, Any] = {"g_ema": g_state, "args": args}
    if latent_avg is not None:
        ckpt["latent_avg"] = latent_avg
    d_state, note = discriminator_state(data.get("D"), f"{path} [D]")
    if d_state is not None:
        where = f"{path} [D]"
        _complete(d_state, Discriminator(**infer_discriminator_config(d_state, where)), where)
        ckpt["d"] = d_state
    ckpt["nvlabs"] = {"discriminator": note}
    return ckpt
