"""The feature cache on disk: fp16, channel-last, streamed in and read back in small pieces.

DatasetGAN holds its features in RAM (about 128 GB for 16 faces at 512 px); here they go to
disk and are read back a few pixels or tiles at a time, so memory stays bounded whatever the
number of images and the resolution. A cache is one folder:

    manifest.json   layers, channels per layer, resolution, num_channels, num_images, dtype,
                    layout, generator checksum, the params that made it, file names
    features.f16    raw float16, shape [num_images, R, R, C] (channel-last: the C values of one
                    pixel are contiguous, so a random pixel costs one small read)
    images.npy      the generated (or reconstructed) images, uint8 [num_images, H, W, 3]
    latents.pt      the W+ latents, float32 [num_images, n_latent, style_dim]
    noises.pt       only when per-image noise maps were used (inverted images): a list of
                    float32 [num_images, 1, h, w] tensors, in the generator's noise order

Writing streams: batch by batch, features go from the extractor's fp16 buffer to the file
with plain sequential writes (not through a writable memory map, whose dirty pages would count
in the process's RSS and grow with N). `write_cache_from_arrays` writes the same format from an
array already in memory (tests, benchmarks, features computed elsewhere); such a cache has no
images or latents. The folder is built under a temporary name and renamed into place: a killed
build leaves no cache that looks finished. A cache whose manifest does not match the generator,
the params, the layers, the resolution or the latents is rebuilt, with the reason logged.

Reading never maps the features file: each call copies the requested values out with positional
reads (`os.pread`) on one file descriptor per FeatureCache, one read per pixel (its C values are
contiguous), per tile row, or per band of image rows. The pages read stay in the OS page cache,
outside the process, so the reader's RSS does not grow with the cache (see FeatureCache).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from partseg.plumbing.errors import PartsegError
from partseg.features.extract import FeatureExtractor
from partseg.imaging import signed_tensor_to_images
from partseg.plumbing.io import atomic_dir, file_sha256, load_json, load_weights
from partseg.plumbing.progress import progress

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
FEATURES_FILE = "features.f16"
IMAGES_FILE = "images.npy"
LATENTS_FILE = "latents.pt"
NOISES_FILE = "noises.pt"
FEATURE_DTYPE = np.float16


# ----------------------------------------------------------------------------- checksums

def generator_checksum(source: str | os.PathLike | torch.nn.Module) -> str:
    """sha256 of a checkpoint file's bytes, or of a module's state dict (names, dtypes, shapes,
    values). The two differ for the same weights: a stage must always pass the same kind."""
    digest = hashlib.sha256()
    if isinstance(source, torch.nn.Module):
        for name, tensor in sorted(source.state_dict().items()):
            tensor = tensor.detach().cpu().contiguous().reshape(-1)
            digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
            digest.update(tensor.view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()
    path = Path(source)
    if not path.is_file():
        raise PartsegError(f"{path}: generator checkpoint not found")
    return file_sha256(path)


def _normalised(params: dict) -> dict:
    """Params as they read back from JSON (tuples become lists), for comparison."""
    try:
        return json.loads(json.dumps(params, sort_keys=True))
    except TypeError as error:
        raise PartsegError(f"feature cache params must be JSON values: {error}") from None


# ----------------------------------------------------------------------------- writing

def write_feature_cache(out_dir: str | os.PathLike, extractor: FeatureExtractor, ws: torch.Tensor, *,
                        batch_size: int, generator_checksum: str, params: dict,
                        extra_manifest: dict | None = None,
                        noises: Sequence[torch.Tensor] | None = None,
                        show_progress: bool = True) -> "FeatureCache":
    """Extract the features of latents `ws` [N, n_latent, style_dim] (or [N, style_dim]) batch by
    batch into a new cache at `out_dir` (replacing any previous one) and open it.

    `noises`: per-image noise maps (from `invert_images`), sliced per batch alongside `ws`;
    None renders with the generator's constant noise. `params` (JSON values) and `extra_manifest`
    are recorded in the manifest; `params` takes part in the staleness check, `extra_manifest`
    (e.g. image stems) does not.
    """
    if batch_size < 1:
        raise PartsegError(f"features batch_size: must be at least 1, got {batch_size}")
    ws = extractor.as_wplus(ws).cpu()
    noises = _check_noises(noises, len(ws))
    params = _normalised(params)
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        torch.save(ws.clone(), tmp / LATENTS_FILE)
        if noises is not None:
            torch.save([n.clone() for n in noises], tmp / NOISES_FILE)
        image_size = _stream_batches(tmp, extractor, ws, noises, batch_size, show_progress)
        manifest = {
            "format_version": FORMAT_VERSION,
            **extractor.describe(),
            "num_images": len(ws),
            "dtype": np.dtype(FEATURE_DTYPE).name,
            "layout": "NHWC",
            "features_file": FEATURES_FILE,
            "images_file": IMAGES_FILE,
            "image_size": image_size,
            "latents_file": LATENTS_FILE,
            "noises_file": NOISES_FILE if noises is not None else None,
            "generator_checksum": generator_checksum,
            "generator_size": int(extractor.G.size),
            "params": params,
            "extra": _normalised(extra_manifest or {}),
        }
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    return FeatureCache(out_dir)


def _check_noises(noises, count: int):
    if noises is None:
        return None
    noises = [torch.as_tensor(n, dtype=torch.float32).cpu() for n in noises]
    for index, noise in enumerate(noises):
        if noise.dim() != 4 or noise.shape[0] != count:
            raise PartsegError(f"noise map {index}: expected [{count}, 1, h, w] per-image maps, "
                               f"got {list(noise.shape)}")
    return noises


def _stream_batches(folder: Path, extractor: FeatureExtractor, ws: torch.Tensor, noises,
                    batch_size: int, show_progress: bool) -> int:
    """Write features.f16 and images.npy one batch at a time; return the image size."""
    count, size = len(ws), extractor.G.size
    bar = progress(total=count, desc="features", unit="img") if show_progress else None
    with open(folder / FEATURES_FILE, "wb") as features_out, open(folder / IMAGES_FILE, "wb") as images_out:
        np.lib.format.write_array_header_1_0(images_out, {
            "descr": np.dtype(np.uint8).str, "fortran_order": False, "shape": (count, size, size, 3)})
        for start in range(0, count, batch_size):
            stop = min(count, start + batch_size)
            noise = "const" if noises is None else [n[start:stop].to(extractor.device) for n in noises]
            features, images = extractor.extract(ws[start:stop], noise, dtype=torch.float16,
                                                 channels_last=True)
            _append(features_out, features.cpu().numpy())
            pixels = signed_tensor_to_images(images)
            if pixels.shape[1:] != (size, size, 3):
                raise RuntimeError(f"generator returned images of shape {pixels.shape[1:]}, "
                                   f"expected {(size, size, 3)}")
            _append(images_out, pixels)
            del features, images, pixels  # the next batch must not coexist with this one
            if bar is not None:
                bar.update(stop - start)
        for handle in (features_out, images_out):
            handle.flush()
            os.fsync(handle.fileno())
    if bar is not None:
        bar.close()
    return size


def _append(handle, array: np.ndarray) -> None:
    """Append one batch and flush it: what is written leaves the process's memory."""
    handle.write(memoryview(np.ascontiguousarray(array)).cast("B"))
    handle.flush()


def write_cache_from_arrays(out_dir: str | os.PathLike, features, *, layers: Sequence[str],
                            channels_per_layer: Sequence[int], params: dict | None = None,
                            layout: str = "auto") -> "FeatureCache":
    """Write `features` [N, R, R, C] or [N, C, R, R] as a new cache at `out_dir` (replacing any
    previous one) and open it. `features`: a numpy array, a torch tensor, or anything with a
    `.shape` whose `[i]` gives image i (a lazy source larger than RAM).

    C must equal sum(channels_per_layer); `layout` ("NHWC", "NCHW" or "auto") says which axis
    holds it, and "auto" tells them apart by that sum (R == C is ambiguous: name the layout).
    Written one image at a time in fp16. The cache records no generator, images or latents.
    """
    layers, channels_per_layer = list(layers), [int(c) for c in channels_per_layer]
    if len(layers) != len(channels_per_layer):
        raise PartsegError(f"write_cache_from_arrays: {len(layers)} layers but "
                           f"{len(channels_per_layer)} channels_per_layer entries")
    channels_last = _channels_last(tuple(features.shape), sum(channels_per_layer), layout)
    count, resolution = int(features.shape[0]), int(features.shape[1 if channels_last else 2])
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        with open(tmp / FEATURES_FILE, "wb") as handle:
            for index in range(count):  # one image at a time: no full fp16 copy of the array
                image = features[index]
                if isinstance(image, torch.Tensor):
                    image = image.detach().cpu().numpy()
                image = np.asarray(image) if channels_last else np.asarray(image).transpose(1, 2, 0)
                _append(handle, image.astype(FEATURE_DTYPE))
            os.fsync(handle.fileno())
        manifest = {
            "format_version": FORMAT_VERSION, "layers": layers,
            "channels_per_layer": channels_per_layer, "resolution": resolution,
            "num_channels": sum(channels_per_layer), "num_images": count,
            "dtype": np.dtype(FEATURE_DTYPE).name, "layout": "NHWC",
            "features_file": FEATURES_FILE, "images_file": None, "image_size": None,
            "latents_file": None, "noises_file": None, "generator_checksum": None,
            "params": _normalised(params or {}), "extra": {},
        }
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    return FeatureCache(out_dir)


def _channels_last(shape: tuple, channels: int, layout: str) -> bool:
    """Whether an [N, ., ., .] feature array of this shape holds its `channels` last."""
    if layout not in ("auto", "NHWC", "NCHW"):
        raise PartsegError("write_cache_from_arrays layout: expected auto, NHWC or NCHW, "
                           f"got {layout!r}")
    fits = {"NHWC": len(shape) == 4 and shape[3] == channels and shape[1] == shape[2],
            "NCHW": len(shape) == 4 and shape[1] == channels and shape[2] == shape[3]}
    candidates = [name for name, fit in fits.items() if fit and layout in ("auto", name)]
    if len(candidates) == 2:
        raise PartsegError(f"write_cache_from_arrays: features of shape {list(shape)} read as NHWC "
                           "and as NCHW; pass layout=")
    if not candidates:
        raise PartsegError(f"write_cache_from_arrays: features of shape {list(shape)} are not "
                           f"[N, R, R, C] or [N, C, R, R] with C = sum(channels_per_layer) = "
                           f"{channels}" + ("" if layout == "auto" else f" (layout {layout})"))
    return candidates[0] == "NHWC"


# ----------------------------------------------------------------------------- staleness

def stale_reason(cache_dir: str | os.PathLike, generator_checksum: str, params: dict, *,
                 extractor: FeatureExtractor | None = None, ws: torch.Tensor | None = None,
                 noises: Sequence[torch.Tensor] | None = None) -> str | None:
    """Why the cache at `cache_dir` cannot be reused (None when it can).

    Always compared: the manifest's format, the generator checksum and the params. With
    `extractor`: the layers and resolution. With `ws` (and `noises`): the latents themselves.
    """
    cache_dir = Path(cache_dir)
    if not (cache_dir / MANIFEST_FILE).is_file():
        return "no manifest (new or unfinished cache)"
    try:
        cache = FeatureCache(cache_dir)
    except PartsegError as error:
        return f"unreadable cache ({error})"
    manifest = cache.manifest
    if manifest.get("format_version") != FORMAT_VERSION:
        return f"format version {manifest.get('format_version')} != {FORMAT_VERSION}"
    if manifest.get("generator_checksum") != generator_checksum:
        return (f"generator checksum changed ({str(manifest.get('generator_checksum'))[:12]} -> "
                f"{generator_checksum[:12]})")
    if manifest.get("params") != _normalised(params):
        return f"params changed ({_diff(manifest.get('params') or {}, _normalised(params))})"
    if extractor is not None:
        for key, value in extractor.describe().items():
            if manifest.get(key) != value:
                return f"{key} changed ({manifest.get(key)} -> {value})"
    if ws is not None:
        if manifest.get("latents_file") is None:
            return "no latents stored"
        if not torch.equal(cache.latents(), extractor.as_wplus(ws).cpu() if extractor else
                           torch.as_tensor(ws, dtype=torch.float32).cpu()):
            return "latents changed"
        saved = cache.noises()
        if (saved is None) != (noises is None) or (noises is not None and not all(
                torch.equal(a, torch.as_tensor(b, dtype=torch.float32).cpu())
                for a, b in zip(saved, noises, strict=True))):
            return "noise maps changed"
    return None


def _diff(old: dict, new: dict) -> str:
    keys = sorted(set(old) | set(new))
    changed = [f"{k}: {old.get(k, '<unset>')!r} -> {new.get(k, '<unset>')!r}"
               for k in keys if old.get(k) != new.get(k)]
    return "; ".join(changed)


def cache_is_current(cache_dir: str | os.PathLike, generator_checksum: str, params: dict,
                     **compare) -> bool:
    """True when the cache matches the generator and params (see `stale_reason`)."""
    return stale_reason(cache_dir, generator_checksum, params, **compare) is None


def build_or_reuse(out_dir: str | os.PathLike, extractor: FeatureExtractor, ws: torch.Tensor, *,
                   batch_size: int, generator_checksum: str, params: dict,
                   extra_manifest: dict | None = None,
                   noises: Sequence[torch.Tensor] | None = None,
                   show_progress: bool = True) -> "FeatureCache":
    """Open the cache at `out_dir` if it matches everything; otherwise log why and rebuild it."""
    reason = stale_reason(out_dir, generator_checksum, params, extractor=extractor, ws=ws,
                          noises=noises)
    if reason is None:
        log.info("feature cache %s is current; reusing it", out_dir)
        return FeatureCache(out_dir)
    if Path(out_dir, MANIFEST_FILE).exists():
        log.warning("rebuilding feature cache %s: %s", out_dir, reason)
    else:
        log.info("building feature cache %s: %s", out_dir, reason)
    return write_feature_cache(out_dir, extractor, ws, batch_size=batch_size,
                               generator_checksum=generator_checksum, params=params,
                               extra_manifest=extra_manifest, noises=noises,
                               show_progress=show_progress)


# ----------------------------------------------------------------------------- reading

# POSIX has positional reads; Windows does not, and seeks then reads under a lock instead.
_HAS_PREAD = hasattr(os, "pread")
# Whole-image reads go through a band buffer of about this many bytes of fp16 rows, so reading
# an image costs its float32 output plus this much, never a second copy of the image.
BAND_BYTES = 16 << 20
# One read call asks for at most this much (Linux caps a single read a little under 2 GiB).
MAX_READ = 1 << 30


def _as_rng(rng) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _cast_into(target: np.ndarray, source: np.ndarray) -> None:
    """target[...] = source (fp16 -> fp32, any strides) through torch: its half-to-float copy
    is vectorised, numpy's is several times slower."""
    torch.from_numpy(target).copy_(torch.from_numpy(source))


class FeatureCache:
    """Read access to a cache folder. Reads copy the requested values out of features.f16 with
    positional reads on one file descriptor and return float32 torch tensors; nothing loads a
    whole file and nothing maps it.

    Why not a memory map: while a mapped read runs, the kernel maps whole page-cache folios around
    every random pixel into the process, so the peak RSS of few-shot training grew with the cache
    size (3.2 GB for a 2.5 GiB cache). A positional read copies just the bytes asked for; the
    pages stay in the OS page cache, outside the process.

    The descriptor opens on the first read and stays open until `close()` (or the end of a
    `with` block, or garbage collection); a read after `close()` opens it again. A forked child
    opens its own on its first read, and a pickled cache travels without it. The descriptor
    follows the file it opened: a cache rebuilt in place is seen by a new FeatureCache, not by
    one that has already read (and on Windows, close the old one before rebuilding).
    """

    def __init__(self, cache_dir: str | os.PathLike):
        self.dir = Path(cache_dir)
        manifest_path = self.dir / MANIFEST_FILE
        if not manifest_path.is_file():
            raise PartsegError(f"{manifest_path}: no feature cache here (run the features stage)")
        try:
            self.manifest = load_json(manifest_path)
            self.num_images = int(self.manifest["num_images"])
            self.num_channels = int(self.manifest["num_channels"])
            self.resolution = int(self.manifest["resolution"])
        except (ValueError, KeyError, TypeError) as error:
            raise PartsegError(f"{manifest_path}: damaged manifest ({error!r})") from None
        self.shape = (self.num_images, self.resolution, self.resolution, self.num_channels)
        self.features_path = self.dir / self.manifest.get("features_file", FEATURES_FILE)
        expected = int(np.prod(self.shape)) * np.dtype(FEATURE_DTYPE).itemsize
        actual = self.features_path.stat().st_size if self.features_path.is_file() else -1
        if actual != expected:
            raise PartsegError(f"{self.features_path}: {actual} bytes, manifest implies {expected} "
                               "(truncated or replaced); delete the folder and rerun the features stage")
        self._pixel_bytes = self.num_channels * np.dtype(FEATURE_DTYPE).itemsize
        self._reset_descriptor()

    def __len__(self) -> int:
        return self.num_images

    @property
    def layers(self) -> list[str]:
        return list(self.manifest["layers"])

    @property
    def channels_per_layer(self) -> list[int]:
        return list(self.manifest["channels_per_layer"])

    # ------------------------------------------------------------------ the file descriptor

    def _reset_descriptor(self) -> None:
        """No descriptor yet, a fresh lock, owned by this process."""
        self._fd: int | None = None
        self._lock = threading.Lock()
        self._owner_pid = os.getpid()

    def _descriptor(self) -> int:
        """The open descriptor of features.f16, opened on first use (and again after a fork)."""
        if self._owner_pid != os.getpid():
            self._forget_parent_descriptor()
        fd = self._fd
        if fd is None:
            with self._lock:
                if self._fd is None:
                    self._fd = os.open(self.features_path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
                fd = self._fd
        return fd

    def _forget_parent_descriptor(self) -> None:
        """In a forked child: the inherited descriptor shares its file offset with the parent's
        (seek + read would race with it) and the lock may have been copied while held."""
        inherited = self._fd
        self._reset_descriptor()
        if inherited is not None:
            with contextlib.suppress(OSError):
                os.close(inherited)  # the child's copy; the parent's stays open

    def close(self) -> None:
        """Close the file descriptor (a later read opens it again). Do not call it while another
        thread is reading from this cache."""
        if self._owner_pid != os.getpid():
            self._forget_parent_descriptor()
            return
        with self._lock:
            fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> "FeatureCache":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __del__(self):
        if getattr(self, "_fd", None) is not None:
            with contextlib.suppress(Exception):  # at interpreter exit, modules may be gone
                self.close()

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        for name in ("_fd", "_lock", "_owner_pid"):
            state.pop(name)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._reset_descriptor()

    # ------------------------------------------------------------------ raw reads

    def _positional_read(self):
        """read(fd, size, offset) -> bytes, leaving the file offset alone where the OS can."""
        return os.pread if _HAS_PREAD else self._seek_and_read

    def _seek_and_read(self, fd: int, size: int, offset: int) -> bytes:
        with self._lock:  # seek and read are two calls on one shared file offset
            os.lseek(fd, offset, os.SEEK_SET)
            return os.read(fd, size)

    def _read_into(self, fd: int, target: np.ndarray, offset: int) -> None:
        """Fill the C-contiguous array `target` with the file's bytes from `offset` on."""
        view = memoryview(target).cast("B")
        read = self._positional_read()
        filled = 0
        while filled < len(view):
            data = read(fd, min(len(view) - filled, MAX_READ), offset + filled)
            if not data:
                raise PartsegError(f"{self.features_path}: ends before byte {offset + len(view)} "
                                   "(truncated or replaced while open); delete the folder and rerun "
                                   "the features stage")
            view[filled:filled + len(data)] = data
            filled += len(data)

    def _offset(self, image: int, y: int, x: int) -> int:
        return ((image * self.resolution + y) * self.resolution + x) * self._pixel_bytes

    def _read_rows_into(self, fd: int, out: np.ndarray, image: int, y0: int, y1: int) -> None:
        """Rows y0:y1 of one image into `out` float32 [C, y1 - y0, R], one read per band of rows
        (whole rows are contiguous on disk)."""
        row_bytes = self.resolution * self._pixel_bytes
        rows_per_band = max(1, min(y1 - y0, BAND_BYTES // row_bytes))
        band = np.empty((rows_per_band, self.resolution, self.num_channels), FEATURE_DTYPE)
        for start in range(y0, y1, rows_per_band):
            stop = min(y1, start + rows_per_band)
            rows = band[:stop - start]
            self._read_into(fd, rows, self._offset(image, start, 0))
            _cast_into(out[:, start - y0:stop - y0], rows.transpose(2, 0, 1))

    # ------------------------------------------------------------------ validation

    def _image_choice(self, images: Sequence[int] | None) -> np.ndarray:
        choice = np.arange(self.num_images) if images is None else np.asarray(images, dtype=np.int64)
        if choice.size == 0 or choice.min() < 0 or choice.max() >= self.num_images:
            raise PartsegError(f"{self.dir}: image indices must lie in [0, {self.num_images})")
        return choice

    def _positions(self, img, y, x, size: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(img, y, x) as flat int64 arrays, checked so that a size x size window fits at each."""
        img, y, x = (np.asarray(v, dtype=np.int64).reshape(-1)
                     for v in np.broadcast_arrays(np.asarray(img), np.asarray(y), np.asarray(x)))
        if img.size and (img.min() < 0 or img.max() >= self.num_images):
            raise PartsegError(f"{self.dir}: image indices must lie in [0, {self.num_images})")
        last = self.resolution - size
        if y.size and (min(y.min(), x.min()) < 0 or max(y.max(), x.max()) > last):
            raise PartsegError(f"{self.dir}: positions must lie in [0, {last}] "
                               f"(resolution {self.resolution}, window {size})")
        return img, y, x

    # ------------------------------------------------------------------ public reads

    def pixels(self, img: np.ndarray, y: np.ndarray, x: np.ndarray) -> torch.Tensor:
        """Features at the given pixels: float32 [n, C] (generally: the broadcast shape of the
        index arrays, then C). One read per pixel (its C values are contiguous on disk)."""
        shape = np.broadcast(np.asarray(img), np.asarray(y), np.asarray(x)).shape
        img, y, x = self._positions(img, y, x)
        offsets = ((img * self.resolution + y) * self.resolution + x) * self._pixel_bytes
        out = np.empty((len(offsets), self.num_channels), FEATURE_DTYPE)
        if out.size:
            self._read_pixels_into(out, offsets.tolist())
        return torch.from_numpy(out).float().reshape(*shape, self.num_channels)

    def _read_pixels_into(self, out: np.ndarray, offsets: list[int]) -> None:
        """The hot loop of pixel training (4096 reads a step): plain reads, no helper per pixel."""
        fd, read, size = self._descriptor(), self._positional_read(), self._pixel_bytes
        view = memoryview(out).cast("B")
        for k, offset in enumerate(offsets):
            data = read(fd, size, offset)
            if len(data) == size:
                view[k * size:(k + 1) * size] = data
            else:  # a short read: the general reader retries, or says the file is truncated
                self._read_into(fd, out[k], offset)

    def random_pixels(self, n: int, rng, images: Sequence[int] | None = None
                      ) -> tuple[torch.Tensor, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """n pixels drawn uniformly (from `images` when given): float32 [n, C] and (img, y, x)."""
        rng = _as_rng(rng)
        img = rng.choice(self._image_choice(images), size=n)
        y = rng.integers(0, self.resolution, size=n)
        x = rng.integers(0, self.resolution, size=n)
        return self.pixels(img, y, x), (img, y, x)

    def tiles(self, img: np.ndarray, y0: np.ndarray, x0: np.ndarray, size: int) -> torch.Tensor:
        """size x size tiles with top-left corners (y0, x0): float32 [n, C, size, size].
        One read per tile row (size x C contiguous values), one per tile when it spans whole rows."""
        if not 1 <= size <= self.resolution:
            raise PartsegError(f"tile size {size} must be between 1 and the feature resolution "
                               f"{self.resolution} of {self.dir}")
        img, y0, x0 = self._positions(img, y0, x0, size)
        out = np.empty((len(img), self.num_channels, size, size), dtype=np.float32)
        tile = np.empty((size, size, self.num_channels), FEATURE_DTYPE)
        fd = self._descriptor()
        for k, (i, top, left) in enumerate(zip(img.tolist(), y0.tolist(), x0.tolist())):
            if size == self.resolution:
                self._read_into(fd, tile, self._offset(i, top, 0))
            else:
                for r in range(size):
                    self._read_into(fd, tile[r], self._offset(i, top + r, left))
            _cast_into(out[k], tile.transpose(2, 0, 1))
        return torch.from_numpy(out)

    def random_tiles(self, n: int, size: int, rng, images: Sequence[int] | None = None
                     ) -> tuple[torch.Tensor, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """n random size x size tiles: float32 [n, C, size, size] and (img, y0, x0)."""
        if not 1 <= size <= self.resolution:
            raise PartsegError(f"tile size {size} must be between 1 and the feature resolution "
                               f"{self.resolution} of {self.dir}")
        rng = _as_rng(rng)
        img = rng.choice(self._image_choice(images), size=n)
        y0 = rng.integers(0, self.resolution - size + 1, size=n)
        x0 = rng.integers(0, self.resolution - size + 1, size=n)
        return self.tiles(img, y0, x0, size), (img, y0, x0)

    def image_features(self, index: int) -> torch.Tensor:
        """All features of one image: float32 [C, R, R]."""
        return self.batch_features(range(index, index + 1))[0]

    def image_rows(self, index: int, y0: int, y1: int) -> torch.Tensor:
        """Rows y0:y1 of one image: float32 [C, y1 - y0, R]. At paper scale one whole image is
        5.3 GB in fp32; inference can walk it in bands of rows instead."""
        self._image_choice([index])
        if not 0 <= y0 <= y1 <= self.resolution:
            raise PartsegError(f"{self.dir}: rows {y0}:{y1} must lie within 0:{self.resolution}")
        out = np.empty((self.num_channels, y1 - y0, self.resolution), np.float32)
        self._read_rows_into(self._descriptor(), out, int(index), int(y0), int(y1))
        return torch.from_numpy(out)

    def batch_features(self, indices: Sequence[int]) -> torch.Tensor:
        """Features of several images: float32 [B, C, R, R]."""
        indices = self._image_choice(list(indices))
        out = np.empty((len(indices), self.num_channels, self.resolution, self.resolution),
                       np.float32)
        fd = self._descriptor()
        for slot, index in zip(out, indices.tolist()):
            self._read_rows_into(fd, slot, index, 0, self.resolution)
        return torch.from_numpy(out)

    def iter_batches(self, batch_size: int = 8) -> Iterator[tuple[range, torch.Tensor]]:
        """(indices, float32 [B, C, R, R]) over all images in order, one batch in memory at a time."""
        for start in range(0, self.num_images, batch_size):
            indices = range(start, min(self.num_images, start + batch_size))
            yield indices, self.batch_features(indices)

    def __iter__(self) -> Iterator[torch.Tensor]:
        for _, batch in self.iter_batches():
            yield from batch

    def images(self, indices: Sequence[int] | None = None) -> np.ndarray:
        """The rendered images, uint8 [n, H, W, 3] (all when `indices` is None)."""
        name = self.manifest.get("images_file", IMAGES_FILE)
        if name is None:
            raise PartsegError(f"{self.dir}: this cache stores no images (written from arrays)")
        stored = np.load(self.dir / name, mmap_mode="r")
        return np.array(stored if indices is None else stored[self._image_choice(list(indices))])

    def latents(self) -> torch.Tensor:
        """The W+ latents the features were computed from, float32 [N, n_latent, style_dim]."""
        name = self.manifest.get("latents_file")
        if name is None:
            raise PartsegError(f"{self.dir}: this cache stores no latents (written from arrays)")
        return load_weights(self.dir / name)  # weights only: a tampered cache cannot run code

    def noises(self) -> list[torch.Tensor] | None:
        """The per-image noise maps used, or None for the generator's constant noise."""
        name = self.manifest.get("noises_file")
        return None if name is None else load_weights(self.dir / name)
