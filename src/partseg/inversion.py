"""GAN inversion: find the latents (and noise maps) that make the generator draw a given image.

One-shot segmentation of a real image needs the generator's features of that image, so the
image is first projected into the generator: the recipe of the StyleGAN2 / rosinality projector,
written for batches.

- Start every image at the mean latent (`G.latent_avg`, else `G.mean_latent()`), in W+ (one w
  per layer, the default) or W (one w shared by all layers).
- Loss per image: pixel MSE, plus a perceptual distance that needs no downloaded weights (the
  trained discriminator's intermediate activations, each unit-normalised along channels as LPIPS
  does, when `D` is given; or any `perceptual(a, b) -> [N]` callable, e.g. LPIPS for users who
  have its weights), plus the noise-map regulariser.
- Noise maps: optimised per image, as the rosinality projector does, starting from the
  generator's constant maps. A trained generator's noise carries the fine stochastic detail
  (hair strands, texture) that no latent can reproduce; keeping it constant would force the
  latents to bend to explain that detail. The regulariser (squared autocorrelation at 1-pixel
  shifts, at every scale down to 8 px) and a renormalisation to zero mean, unit variance after
  every step stop the maps from turning into a copy of the image. `optimize_noise=False` keeps
  the constant maps (then features of the inverted image need no per-image noise).
- Ramped learning rate (linear warm-up over the first 5 % of the steps, cosine ramp-down over the
  last 25 %) and a decaying Gaussian perturbation of the latents during the first 75 % (as the
  StyleGAN2 projector) to step out of poor local minima.
- Targets at another resolution than the generator are compared at the target's size: the
  generator's output is area-downsampled (bilinear-upsampled when the target is larger).

The features of an inverted image are then `FeatureExtractor(G, ...)(result["wplus"],
noise=result["noises"])`, or `write_feature_cache(..., result["wplus"], noises=result["noises"])`
for a batch on disk: `noises` is None or a list of [N, 1, h, w] maps in `G.noise_maps()` order.
"""

from __future__ import annotations

import contextlib
import math
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from partseg.plumbing.errors import PartsegError
from partseg.imaging import images_to_signed_tensor, psnr, signed_tensor_to_images
from partseg.plumbing.progress import progress

PerceptualFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

LR_RAMPUP = 0.05         # fraction of steps with a linear learning-rate warm-up
LR_RAMPDOWN = 0.25       # fraction of steps with a cosine ramp-down to zero
LATENT_NOISE_END = 0.75  # the latent perturbation decays to zero at this fraction of the steps
STD_SAMPLES = 4096       # mapping samples used to measure the spread of W


def invert_images(G: torch.nn.Module, images, *, D: torch.nn.Module | None = None,
                  space: str = "wplus", steps: int = 200, lr: float = 0.05, batch_size: int = 50,
                  pixel_weight: float = 1.0, perceptual_weight: float = 0.1,
                  noise_reg_weight: float = 1e5, optimize_noise: bool = True,
                  latent_noise: float = 0.05, perceptual: PerceptualFn | None = None,
                  init_wplus: torch.Tensor | None = None, init_noises=None,
                  seed: int = 0, device: torch.device | str | None = None,
                  show_progress: bool = True) -> dict:
    """Invert `images` into `G`; see the module docstring for the method.

    images: uint8 numpy [N, H, W, 3] (or one [H, W, 3]), or a float tensor [N, 3, H, W] in
    [-1, 1] (the generator's range). Square images only; any size.
    D: the trained discriminator, whose features give the perceptual term (ignored when
    `perceptual` is given; without either, the perceptual term is off).
    device: where to run; None means G's device. G (and D) are moved there.
    init_wplus: [N, n_latent, style_dim] starting latents instead of the mean latent (a warm
    start: the previous video frame's result, or an encoder's guess); in `space` w their mean
    over layers is the start. init_noises: starting noise maps (a list in `G.noise_maps()`
    order, each [N, 1, h, w]) instead of the generator's constant maps.

    Returns a dict: `wplus` float32 [N, n_latent, style_dim] (W results are broadcast), `noises`
    (list of float32 [N, 1, h, w], or None when `optimize_noise` is False), `reconstructions`
    uint8 [N, H, W, 3] at the target size, `psnr` float64 [N] (dB, against the uint8 targets),
    `loss` float64 [N] (final total loss per image). All on the CPU.
    """
    if space not in ("w", "wplus"):
        raise PartsegError(f"inversion.space: {space!r} is not one of 'w', 'wplus'")
    if steps < 1 or batch_size < 1:
        raise PartsegError(f"inversion.steps and inversion.batch_size must be at least 1 "
                           f"(got {steps}, {batch_size})")
    device = torch.device(device) if device is not None else next(G.parameters()).device
    G.to(device)
    if D is not None:
        D.to(device)
    targets = inversion_targets(images)
    w_mean, w_std = latent_statistics(G, device)
    starts = _starting_points(G, len(targets), init_wplus, init_noises)

    batches = list(_chunks(len(targets), batch_size))
    bar = progress(total=len(batches) * steps, desc="invert", unit="step") if show_progress else None
    results = []
    with _frozen(G), _frozen(D):
        for index, (start, stop) in enumerate(batches):
            generator = torch.Generator(device=device).manual_seed(seed + index)
            results.append(_invert_batch(
                G, targets[start:stop].to(device), D=D, perceptual=perceptual, space=space,
                steps=steps, lr=lr, weights=(pixel_weight, perceptual_weight, noise_reg_weight),
                optimize_noise=optimize_noise, latent_noise=latent_noise * w_std,
                start=_start_rows(starts, start, stop, w_mean, G, space, device),
                generator=generator, bar=bar))
    if bar is not None:
        bar.close()
    return _merge(results, targets)


# ----------------------------------------------------------------------------- inputs

def inversion_targets(images) -> torch.Tensor:
    """The images to invert, checked: uint8 [N, H, W, 3] / [H, W, 3] numpy (converted by
    partseg.imaging.images_to_signed_tensor), or float [N, 3, H, W] in [-1, 1] -> float32
    [N, 3, H, W] in [-1, 1]."""
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8:
            raise PartsegError(f"images to invert: numpy arrays must be uint8 [N, H, W, 3], "
                               f"got {images.dtype}")
        if images.ndim == 3:
            images = images[None]
        if images.ndim != 4 or images.shape[-1] != 3:
            raise PartsegError(f"images to invert: expected [N, H, W, 3], got {list(images.shape)}")
        tensor = images_to_signed_tensor(images)
    elif isinstance(images, torch.Tensor):
        tensor = images.detach().float().cpu()
        if tensor.dim() != 4 or tensor.shape[1] != 3:
            raise PartsegError(f"images to invert: a tensor must be [N, 3, H, W] in [-1, 1], "
                               f"got {list(tensor.shape)}")
    else:
        raise PartsegError(f"images to invert: expected a uint8 numpy array or a float tensor, "
                           f"got {type(images).__name__}")
    if tensor.shape[-1] != tensor.shape[-2]:
        raise PartsegError(f"images to invert must be square, got {tensor.shape[-2]}x{tensor.shape[-1]}")
    if len(tensor) == 0:
        raise PartsegError("images to invert: no images given")
    return tensor


def latent_statistics(G: torch.nn.Module, device: torch.device) -> tuple[torch.Tensor, float]:
    """The mean latent [style_dim] and the spread of W (root mean squared distance to it)."""
    with torch.no_grad():
        if getattr(G, "latent_avg", None) is not None:
            w_mean = G.latent_avg.detach().reshape(-1)[-G.style_dim:].to(device).float()
        else:
            w_mean = G.mean_latent(n=STD_SAMPLES, seed=0).reshape(-1).to(device).float()
        z = torch.randn(STD_SAMPLES, G.style_dim, generator=torch.Generator().manual_seed(1))
        w = G.mapping(z.to(device))
        w = w.reshape(STD_SAMPLES, -1, G.style_dim)[:, 0]
        w_std = float(((w - w_mean) ** 2).sum(dim=1).mean().sqrt())
    return w_mean, w_std


def _chunks(count: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, count, size):
        yield start, min(count, start + size)


@contextlib.contextmanager
def _frozen(module: torch.nn.Module | None):
    """Turn off gradients of a module's parameters for the duration (restored after)."""
    if module is None:
        yield
        return
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for parameter, _ in flags:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter, flag in flags:
            parameter.requires_grad_(flag)


def _starting_points(G, count: int, init_wplus, init_noises) -> dict:
    """The warm start, checked against the generator and the number of images."""
    if init_wplus is not None:
        expected = (count, G.n_latent, G.style_dim)
        if tuple(init_wplus.shape) != expected:
            raise PartsegError(f"inversion init_wplus: shape {tuple(init_wplus.shape)}, expected "
                               f"{expected} (images, generator layers, style_dim)")
    if init_noises is not None:
        expected = [(count, 1, *n.shape[-2:]) for n in G.noise_maps()]
        if [tuple(n.shape) for n in init_noises] != expected:
            raise PartsegError(f"inversion init_noises: shapes {[tuple(n.shape) for n in init_noises]}, "
                               f"expected {expected}")
    return {"wplus": init_wplus, "noises": init_noises}


def _start_rows(starts: dict, start: int, stop: int, w_mean, G, space: str, device) -> dict:
    """One batch's starting latents [n, rows, style_dim] and noise maps (or None: constant)."""
    count = stop - start
    if starts["wplus"] is None:
        rows = 1 if space == "w" else G.n_latent
        w = w_mean.reshape(1, 1, -1).repeat(count, rows, 1)
    else:
        w = starts["wplus"][start:stop].to(device).float()
        w = w.mean(dim=1, keepdim=True) if space == "w" else w.clone()
    noises = None if starts["noises"] is None else \
        [n[start:stop].to(device).float() for n in starts["noises"]]
    return {"w": w, "noises": noises}


# ----------------------------------------------------------------------------- the optimisation

def _invert_batch(G, targets, *, D, perceptual, space, steps, lr, weights, optimize_noise,
                  latent_noise, start, generator, bar) -> dict:
    pixel_weight, perceptual_weight, noise_reg_weight = weights
    count = len(targets)
    w_opt = start["w"].detach().clone().requires_grad_(True)
    initial_noises = start["noises"] or [n.detach().to(targets.device).float()
                                         .expand(count, 1, *n.shape[-2:]) for n in G.noise_maps()]
    noises = [n.clone().requires_grad_(optimize_noise) for n in initial_noises]
    optimizer = torch.optim.Adam([w_opt] + (noises if optimize_noise else []), lr=lr)
    target_features = _discriminator_features(D, _resize(targets, G.size)) \
        if D is not None and perceptual is None and perceptual_weight > 0 else None

    def loss_per_image(ws: torch.Tensor) -> torch.Tensor:
        rendered = G.synthesis(ws, noise=noises if optimize_noise else "const")
        loss = pixel_weight * ((_resize(rendered, targets.shape[-1]) - targets) ** 2).mean(dim=(1, 2, 3))
        if perceptual_weight > 0 and perceptual is not None:
            loss = loss + perceptual_weight * perceptual(rendered, _resize(targets, G.size)).reshape(count)
        elif perceptual_weight > 0 and target_features is not None:
            loss = loss + perceptual_weight * _feature_distance(
                _discriminator_features(D, rendered), target_features)
        if optimize_noise and noise_reg_weight > 0:
            loss = loss + noise_reg_weight * noise_regularisation(noises)
        return loss

    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = warmup_flat_rampdown_lr(step, steps, lr)
        strength = latent_noise * max(0.0, 1.0 - step / (LATENT_NOISE_END * steps)) ** 2
        perturbation = torch.randn(w_opt.shape, generator=generator, device=w_opt.device) * strength
        ws = (w_opt + perturbation).expand(count, G.n_latent, -1)
        optimizer.zero_grad(set_to_none=True)
        # Summed, not averaged: each image's gradient is independent of the batch size.
        loss_per_image(ws).sum().backward()
        optimizer.step()
        if optimize_noise:
            normalise_noises(noises)
        if bar is not None:
            bar.update(1)

    with torch.no_grad():
        ws = w_opt.detach().expand(count, G.n_latent, -1).contiguous()
        final_loss = loss_per_image(ws)
        rendered = G.synthesis(ws, noise=noises if optimize_noise else "const")
    return {"wplus": ws.cpu(), "noises": [n.detach().cpu() for n in noises] if optimize_noise else None,
            "reconstructions": signed_tensor_to_images(_resize(rendered, targets.shape[-1])),
            "loss": final_loss.double().cpu().numpy()}


def warmup_flat_rampdown_lr(step: int, steps: int, peak: float) -> float:
    """Inversion's schedule (StyleGAN2's projector): linear warm-up over the first 5 % of
    steps, flat at the peak, cosine ramp-down to 0 over the last 25 %."""
    progress_fraction = step / steps
    ramp = min(1.0, (1.0 - progress_fraction) / LR_RAMPDOWN)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    ramp *= min(1.0, (step + 1) / max(1.0, LR_RAMPUP * steps))
    return peak * ramp


def noise_regularisation(noises: Sequence[torch.Tensor]) -> torch.Tensor:
    """Per image: squared autocorrelation of each noise map at 1-pixel shifts (both axes),
    at the map's scale and at every 2x-downsampled scale down to 8 px. White noise scores ~0."""
    total = noises[0].new_zeros(noises[0].shape[0])
    for noise in noises:
        while True:
            total = total + (noise * noise.roll(1, dims=3)).mean(dim=(1, 2, 3)) ** 2 \
                + (noise * noise.roll(1, dims=2)).mean(dim=(1, 2, 3)) ** 2
            if noise.shape[-1] <= 8:
                break
            noise = F.avg_pool2d(noise, 2)
    return total


def normalise_noises(noises: Sequence[torch.Tensor]) -> None:
    """Zero mean, unit variance per image and map, in place."""
    with torch.no_grad():
        for noise in noises:
            mean = noise.mean(dim=(1, 2, 3), keepdim=True)
            std = noise.std(dim=(1, 2, 3), keepdim=True).clamp_min(1e-8)
            noise.sub_(mean).div_(std)


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    if images.shape[-1] == size:
        return images
    if images.shape[-1] > size:
        return F.interpolate(images, size=(size, size), mode="area")
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)


def _discriminator_features(D, images: torch.Tensor) -> list[torch.Tensor]:
    _, activations = D(images, return_features=True)
    return list(activations)


def _feature_distance(features: Sequence[torch.Tensor], targets: Sequence[torch.Tensor]) -> torch.Tensor:
    """LPIPS without learned weights: unit-normalise each activation vector along channels,
    squared distance, averaged over positions, then over layers. [N]."""
    per_layer = []
    for a, b in zip(features, targets, strict=True):
        a = a / (a.norm(dim=1, keepdim=True) + 1e-8)
        b = b / (b.norm(dim=1, keepdim=True) + 1e-8)
        distance = ((a - b) ** 2).sum(dim=1)
        per_layer.append(distance.reshape(len(distance), -1).mean(dim=1))
    return torch.stack(per_layer).mean(dim=0)


# ----------------------------------------------------------------------------- results

def _merge(results: list[dict], targets: torch.Tensor) -> dict:
    reconstructions = np.concatenate([r["reconstructions"] for r in results])
    noises = None if results[0]["noises"] is None else \
        [torch.cat(maps) for maps in zip(*(r["noises"] for r in results))]
    return {"wplus": torch.cat([r["wplus"] for r in results]),
            "noises": noises,
            "reconstructions": reconstructions,
            "psnr": psnr(reconstructions, signed_tensor_to_images(targets)),
            "loss": np.concatenate([r["loss"] for r in results])}
