"""Loading and saving GAN checkpoints: our own format and rosinality/stylegan2-pytorch's.

Our format is a dict with `format: "partseg.stylegan2"`, the generator `config`, the EMA
generator `g_ema` (its state dict), optionally `g`, `d` (+ `d_config`), `latent_avg` and
`extra` (plain data). A rosinality checkpoint is a dict with `g_ema` (same key names), often
`g`, `d`, optimiser states, `args` (a pickled argparse.Namespace) and `latent_avg`; its
architecture is not stored, so it is inferred from the keys and tensor shapes.

Loading is safe: `torch.load(weights_only=True)` with exactly one extra allowed global,
argparse.Namespace (rosinality's `args`). Any other pickled object is refused, naming it.
NVlabs network pickles (`.pkl`) are read by nvlabs.py (an allow-listed unpickler that never
runs their embedded code) and come back in the rosinality layout.
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from partseg.plumbing.errors import PartsegError
from partseg.gan.discriminator import Discriminator
from partseg.gan.generator import Generator
from partseg.plumbing.io import save_torch

FORMAT = "partseg.stylegan2"
FORMAT_VERSION = 1
# rosinality hard-codes the mapping network's learning-rate multiplier; it is not stored.
ROSINALITY_LR_MLP = 0.01
# Preferred channel_base values when several fit (published multipliers 2 and 1).
PUBLISHED_BASES = (32768, 16384)


# ---- reading files safely ----------------------------------------------------------------

def load_checkpoint_file(path: str | os.PathLike) -> Any:
    """torch.load with weights_only=True, allowing argparse.Namespace and nothing else."""
    path = Path(path)
    if not path.is_file():
        raise PartsegError(f"{path}: checkpoint file not found")
    from partseg.gan import nvlabs  # imported here: nvlabs.py uses this module's helpers

    if nvlabs.is_network_pickle(path):  # NVlabs .pkl: restricted unpickler, rosinality layout
        return nvlabs.load_as_rosinality(path)
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"GLOBAL ([\w.]+)", str(error))
        what = found.group(1) if found else str(error).splitlines()[-1]
        raise PartsegError(
            f"{path}: refused to load: the checkpoint contains a pickled Python object "
            f"({what}) that is not plain tensor data; only tensors, containers and "
            "argparse.Namespace are allowed (loading it could run arbitrary code)") from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise PartsegError(f"{path}: not a readable PyTorch checkpoint ({error})") from None


# ---- inferring the architecture of a rosinality state dict -------------------------------

def infer_channel_rule(widths: dict[int, int], where: str) -> tuple[int, int]:
    """(channel_base, channel_max) such that min(base // r, max) gives `widths` at every r."""
    channel_max = max(widths.values())
    candidates = list(PUBLISHED_BASES) + sorted({c * r for r, c in widths.items()})
    for base in candidates:
        if all(min(base // r, channel_max) == c for r, c in widths.items()):
            return base, channel_max
    found = ", ".join(f"{r}px: {c}" for r, c in sorted(widths.items()))
    raise PartsegError(f"{where}: channel widths ({found}) do not follow "
                       "min(channel_base // resolution, channel_max); unsupported architecture")


def _count_indexed(state: dict, prefix: str, suffix: str) -> int:
    pattern = re.compile(rf"^{re.escape(prefix)}(\d+){re.escape(suffix)}$")
    indices = {int(m.group(1)) for key in state if (m := pattern.match(key))}
    return max(indices) + 1 if indices else 0


def _require(state: dict, keys: list[str], where: str) -> None:
    missing = [k for k in keys if k not in state]
    if missing:
        raise PartsegError(f"{where}: not a StyleGAN2 generator state dict: missing keys "
                           f"{missing[:5]} (found e.g. {list(state)[:5]})")


def infer_generator_config(state: dict, where: str, lr_mlp: float = ROSINALITY_LR_MLP) -> dict:
    """Generator constructor arguments from rosinality-layout keys and shapes."""
    _require(state, ["style.1.weight", "input.input", "conv1.conv.weight"], where)
    n_mlp = _count_indexed(state, "style.", ".weight") - 1
    style_dim = int(state["style.1.weight"].shape[1])
    n_convs = _count_indexed(state, "convs.", ".conv.weight")
    if n_convs % 2:
        raise PartsegError(f"{where}: odd number of styled convs ({n_convs}) in g_ema")
    log_size = 2 + n_convs // 2
    widths = {4: int(state["input.input"].shape[1])}
    for k in range(n_convs // 2):
        widths[2 ** (k + 3)] = int(state[f"convs.{2 * k}.conv.weight"].shape[1])
    channel_base, channel_max = infer_channel_rule(widths, where)
    blur_kernel = [1, 3, 3, 1]
    if "convs.0.conv.blur.kernel" in state and state["convs.0.conv.blur.kernel"].shape[0] != 4:
        raise PartsegError(f"{where}: blur kernel of size "
                           f"{state['convs.0.conv.blur.kernel'].shape[0]} is not supported (4 taps)")
    return dict(size=2 ** log_size, style_dim=style_dim, n_mlp=n_mlp, channel_base=channel_base,
                channel_max=channel_max, lr_mlp=lr_mlp, blur_kernel=blur_kernel)


def infer_discriminator_config(state: dict, where: str) -> dict:
    """Discriminator constructor arguments from rosinality-layout keys and shapes."""
    if "convs.0.0.weight" not in state or "final_conv.0.weight" not in state:
        raise PartsegError(f"{where}: not a StyleGAN2 discriminator state dict "
                           f"(found e.g. {list(state)[:5]})")
    n_blocks = _count_indexed(state, "convs.", ".conv1.0.weight") - 1  # convs.0 is fromRGB
    n_blocks = max(n_blocks, 0)
    size = 4 * 2 ** n_blocks
    widths = {size: int(state["convs.0.0.weight"].shape[0])}
    for k in range(1, n_blocks + 1):
        widths[size // 2 ** k] = int(state[f"convs.{k}.conv2.1.weight"].shape[0])
    channel_base, channel_max = infer_channel_rule(widths, where)
    return dict(size=size, channel_base=channel_base, channel_max=channel_max,
                blur_kernel=[1, 3, 3, 1])


# ---- building models from checkpoints -----------------------------------------------------

def _kind(ckpt: Any) -> str:
    if isinstance(ckpt, dict):
        if ckpt.get("format") == FORMAT:
            return "partseg"
        if isinstance(ckpt.get("g_ema"), dict):
            return "rosinality"
        if "style.1.weight" in ckpt and "input.input" in ckpt:
            return "bare_generator"  # a g_ema state dict saved on its own
    return "unknown"


def _unknown(path: Path, ckpt: Any) -> PartsegError:
    if isinstance(ckpt, dict):
        found = f"a dict with top-level keys {sorted(map(str, ckpt))[:20]}"
    else:
        found = f"a {type(ckpt).__name__}"
    return PartsegError(
        f"{path}: not a StyleGAN2 checkpoint: expected a rosinality/stylegan2-pytorch checkpoint "
        f"(a dict with 'g_ema') or a partseg checkpoint (format: {FORMAT}); found {found}")


def _load_state(module: torch.nn.Module, state: dict, where: str,
                optional_prefix: str | None = None) -> None:
    result = module.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys
               if optional_prefix is None or not k.startswith(optional_prefix)]
    if missing or result.unexpected_keys:
        raise PartsegError(f"{where}: state dict does not match the inferred architecture: "
                           f"missing {missing[:5]}, unexpected {result.unexpected_keys[:5]}")


def _build_generator(config: dict, state: dict, where: str) -> Generator:
    generator = Generator(**config)
    try:
        # Some converted checkpoints have no noise buffers: keep random ones then.
        _load_state(generator, state, where, optional_prefix="noises.")
    except RuntimeError as error:  # shape mismatch
        raise PartsegError(f"{where}: state dict does not fit the inferred architecture "
                           f"{config}: {str(error).splitlines()[-1].strip()}") from None
    return generator


def _latent_avg(value: Any, style_dim: int) -> torch.Tensor | None:
    if not isinstance(value, torch.Tensor):
        return None
    return value.detach().float().reshape(1, style_dim)


def load_generator(path: str | os.PathLike, device: str | torch.device = "cpu") -> Generator:
    """The EMA generator of a partseg or rosinality checkpoint, in eval mode on `device`."""
    path = Path(path)
    ckpt = load_checkpoint_file(path)
    kind = _kind(ckpt)
    if kind == "partseg":
        generator = _build_generator(ckpt["config"], ckpt["g_ema"], f"{path} [g_ema]")
    elif kind in ("rosinality", "bare_generator"):
        state = ckpt["g_ema"] if kind == "rosinality" else ckpt
        lr_mlp = getattr(ckpt.get("args"), "lr_mlp", ROSINALITY_LR_MLP)
        config = infer_generator_config(state, f"{path} [g_ema]", lr_mlp=lr_mlp)
        generator = _build_generator(config, state, f"{path} [g_ema]")
    else:
        raise _unknown(path, ckpt)
    generator.latent_avg = _latent_avg(ckpt.get("latent_avg"), generator.style_dim)
    generator = generator.to(device).eval()
    if generator.latent_avg is not None:
        generator.latent_avg = generator.latent_avg.to(device)
    return generator


def load_discriminator(path: str | os.PathLike,
                       device: str | torch.device = "cpu") -> Discriminator | None:
    """The discriminator of a checkpoint (eval mode), or None when the file has none."""
    path = Path(path)
    ckpt = load_checkpoint_file(path)
    kind = _kind(ckpt)
    if kind == "unknown":
        raise _unknown(path, ckpt)
    state = ckpt.get("d") if isinstance(ckpt, dict) and kind != "bare_generator" else None
    if not isinstance(state, dict):
        return None
    config = ckpt.get("d_config") if kind == "partseg" else None
    config = config or infer_discriminator_config(state, f"{path} [d]")
    discriminator = Discriminator(**config)
    try:
        _load_state(discriminator, state, f"{path} [d]")
    except RuntimeError as error:
        raise PartsegError(f"{path} [d]: state dict does not fit the inferred architecture "
                           f"{config}: {str(error).splitlines()[-1].strip()}") from None
    return discriminator.to(device).eval()


# ---- saving -------------------------------------------------------------------------------

def _cpu_state(module: torch.nn.Module | None) -> dict | None:
    if module is None:
        return None
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def save_checkpoint(path: str | os.PathLike, *, g_ema: Generator, d: Discriminator | None = None,
                    g: Generator | None = None, extra: dict | None = None) -> None:
    """Write a partseg checkpoint atomically (loadable with weights_only=True).

    `latent_avg` is g_ema.latent_avg when set, otherwise g_ema.mean_latent(), so truncation
    gives the same centre after reloading. `extra` must hold plain data (numbers, strings,
    lists, dicts, tensors).
    """
    latent_avg = g_ema.latent_avg if g_ema.latent_avg is not None else g_ema.mean_latent()
    ckpt = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "config": dict(g_ema.config),
        "g_ema": _cpu_state(g_ema),
        "g": _cpu_state(g),
        "d": _cpu_state(d),
        "d_config": dict(d.config) if d is not None else None,
        "latent_avg": latent_avg.detach().to("cpu").reshape(1, -1),
        "extra": dict(extra or {}),
    }
    save_torch(ckpt, path)
