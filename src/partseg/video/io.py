"""Video in and out: video files through PyAV (FFmpeg's decoders and encoders, bundled in
its wheels), and folders of frame images.

    from partseg.video import open_video, VideoWriter
    with open_video("clip.mp4") as video:            # or a folder of frames: open_video("frames/")
        print(video.fps, video.frame_count, video.size)
        for index, frame in enumerate(video):        # HxWx3 uint8 RGB, one at a time
            ...
    with VideoWriter("out.mp4", fps=25) as writer:   # .mp4 .m4v .mov .mkv .avi .webm .gif
        writer.write(frame)

Frames are decoded one at a time, so a long video never sits in memory. A folder of frames
is read in natural order (frame_2.png before frame_10.png); it has no frame rate of its own,
so the caller gives one (default 25).

Bad input stops with one PartsegError naming the file: a file FFmpeg cannot open, a video
with no video stream or no decodable frame, a frame that fails to decode (its index is
named), a file that ends before the frame count its header declares, a frame image that is
unreadable, and a frame whose size differs from the first one's.

Writing: H.264 (libx264, yuv420p, crf 18: plays in browsers and players) for mp4/m4v/mov/mkv,
MPEG-4 part 2 for avi, VP9 for webm, and GIF with a palette per frame (PIL's median-cut
quantiser, no dithering: label colours stay flat). yuv420p stores colour at half resolution,
so frames of odd width or height are padded by one copied edge pixel to an even size. The
file is written under a temporary name and renamed when closed: a killed run never leaves
a half-written video that looks finished.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from partseg.plumbing.errors import PartsegError
from partseg.plumbing.io import IMAGE_SUFFIXES, check_image_size, list_images, read_image

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".avi", ".webm", ".gif")
DEFAULT_FPS = 25.0

# suffix -> (encoder, pixel format, encoder options)
ENCODERS = {
    ".mp4": ("libx264", "yuv420p", {"crf": "18", "preset": "medium"}),
    ".m4v": ("libx264", "yuv420p", {"crf": "18", "preset": "medium"}),
    ".mov": ("libx264", "yuv420p", {"crf": "18", "preset": "medium"}),
    ".mkv": ("libx264", "yuv420p", {"crf": "18", "preset": "medium"}),
    ".avi": ("mpeg4", "yuv420p", {"qscale": "3"}),
    ".webm": ("libvpx-vp9", "yuv420p", {"crf": "30", "b": "0"}),
    ".gif": ("gif", "pal8", {}),
}


def is_video_file(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def natural_key(path: Path) -> list:
    """Sort key that orders embedded numbers by value: frame_2 < frame_10."""
    return [int(part) if part.isdigit() else part.lower()
            for part in re.split(r"(\d+)", path.name)]


def list_frames(folder: str | os.PathLike) -> list[Path]:
    """The frame images of a folder (.png/.jpg), in natural order; none is an error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PartsegError(f"{folder}: no such folder of frames")
    frames = sorted(list_images(folder), key=natural_key)
    if not frames:
        raise PartsegError(f"{folder}: folder has no frame images ({', '.join(IMAGE_SUFFIXES)})")
    return frames


@dataclass
class _Shape:
    """The first frame's size, which every later frame must share."""
    height: int | None = None
    width: int | None = None

    def check(self, frame: np.ndarray, where: str, index: int) -> None:
        if self.height is None:
            self.height, self.width = frame.shape[:2]
        elif frame.shape[:2] != (self.height, self.width):
            raise PartsegError(f"{where}: frame {index} is {frame.shape[1]}x{frame.shape[0]} "
                               f"but the first frame is {self.width}x{self.height}; every "
                               "frame of a video must have one size")


class VideoFile:
    """A video file opened with PyAV; iterate for HxWx3 uint8 RGB frames (decoded lazily)."""

    def __init__(self, path: str | os.PathLike):
        import av

        self.path = Path(path)
        if not self.path.is_file():
            raise PartsegError(f"{self.path}: no such video file")
        try:
            self._container = av.open(str(self.path))
        except (av.error.FFmpegError, OSError, ValueError) as error:
            raise PartsegError(f"{self.path}: unreadable video ({_reason(error)})") from None
        if not self._container.streams.video:
            self.close()
            raise PartsegError(f"{self.path}: the file has no video stream")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"  # FFmpeg decodes with its own threads
        rate = self._stream.average_rate or self._stream.guessed_rate or self._stream.base_rate
        self.fps = float(rate) if rate else DEFAULT_FPS
        # Container headers may not know the count (webm, some gifs): None then.
        self.frame_count: int | None = int(self._stream.frames) or None
        self.size = (int(self._stream.height), int(self._stream.width))
        try:  # frames are images: the same limit, from the header, before decoding any
            check_image_size(f"{self.path} (frame size)", self.size[1], self.size[0])
        except PartsegError:
            self.close()
            raise

    def __iter__(self) -> Iterator[np.ndarray]:
        import av

        index, shape = 0, _Shape()
        try:
            for frame in self._container.decode(self._stream):
                picture = frame.to_ndarray(format="rgb24")
                shape.check(picture, str(self.path), index)
                yield picture
                index += 1
        except av.error.FFmpegError as error:
            raise PartsegError(f"{self.path}: frame {index} is unreadable or corrupt "
                               f"({_reason(error)}); frames 0..{index - 1} decoded") from None
        if index == 0:
            raise PartsegError(f"{self.path}: no video frame could be decoded")
        if self.frame_count is not None and index < self.frame_count:
            raise PartsegError(f"{self.path}: frame {index} is missing: the file ends after "
                               f"{index} of the {self.frame_count} frames its header declares "
                               "(truncated or corrupt)")

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> "VideoFile":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class FrameFolder:
    """A folder of frame images as a video: same interface as VideoFile."""

    def __init__(self, folder: str | os.PathLike, fps: float | None = None):
        self.path = Path(folder)
        self.files = list_frames(self.path)
        self.fps = float(fps) if fps else DEFAULT_FPS
        self.frame_count: int | None = len(self.files)
        self.size = read_image(self.files[0]).shape[:2]

    def __iter__(self) -> Iterator[np.ndarray]:
        shape = _Shape()
        for index, path in enumerate(self.files):
            picture = read_image(path)  # an unreadable frame: PartsegError naming its file
            shape.check(picture, str(path), index)
            yield picture

    def close(self) -> None:
        pass

    def __enter__(self) -> "FrameFolder":
        return self

    def __exit__(self, *exc_info) -> None:
        pass


def open_video(source: str | os.PathLike, fps: float | None = None) -> VideoFile | FrameFolder:
    """A video file or a folder of frames. `fps` sets a frame folder's rate (a file has its own)."""
    source = Path(source)
    if fps is not None and fps <= 0:
        raise PartsegError(f"fps: must be positive, got {fps}")
    if source.is_dir():
        return FrameFolder(source, fps)
    if not is_video_file(source):
        raise PartsegError(f"{source}: not a video file ({', '.join(VIDEO_SUFFIXES)}) "
                           "or a folder of frames")
    return VideoFile(source)


def read_video(source: str | os.PathLike, fps: float | None = None,
               limit: int | None = None) -> tuple[np.ndarray, float]:
    """All frames (or the first `limit`) as uint8 [N, H, W, 3], and the frame rate.
    For short clips; stream long videos with `open_video` instead."""
    frames = []
    with open_video(source, fps) as video:
        for frame in video:
            if limit is not None and len(frames) >= limit:
                break
            frames.append(frame)
        return np.stack(frames), video.fps


class VideoWriter:
    """Encode RGB frames into a video file; the codec follows the suffix (see ENCODERS)."""

    def __init__(self, path: str | os.PathLike, fps: float = DEFAULT_FPS):
        import av

        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in ENCODERS:
            raise PartsegError(f"{self.path}: cannot write this kind of video; use one of "
                               f"{', '.join(ENCODERS)}")
        if not fps > 0:
            raise PartsegError(f"{self.path}: fps must be positive, got {fps}")
        self.fps = float(fps)
        self.frames_written = 0
        self._codec, self._pix_fmt, self._options = ENCODERS[suffix]
        self._tmp = self.path.with_name(f"{self.path.stem}.partial{self.path.suffix}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._container = av.open(str(self._tmp), "w")
        self._stream = None
        self._size: tuple[int, int] | None = None

    def _open_stream(self, height: int, width: int) -> None:
        rate = Fraction(self.fps).limit_denominator(1001)
        self._stream = self._container.add_stream(self._codec, rate=rate)
        if self._pix_fmt == "yuv420p":
            height, width = _even(height), _even(width)
        self._stream.height, self._stream.width = height, width
        self._stream.pix_fmt = self._pix_fmt
        self._stream.options = dict(self._options)

    def write(self, frame: np.ndarray) -> None:
        """Append one HxWx3 uint8 RGB frame (every frame the size of the first)."""
        import av

        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"VideoWriter.write: expected HxWx3 uint8, got {frame.dtype} "
                             f"{frame.shape}")
        if self._stream is None:
            self._size = frame.shape[:2]
            self._open_stream(*self._size)
        elif frame.shape[:2] != self._size:
            raise ValueError(f"{self.path}: frame {self.frames_written} is {frame.shape[:2]}, "
                             f"the first was {self._size}")
        padded = _pad_even(frame) if self._pix_fmt == "yuv420p" else frame
        picture = _palette_frame(padded) if self._pix_fmt == "pal8" else \
            av.VideoFrame.from_ndarray(np.ascontiguousarray(padded), format="rgb24")
        self._container.mux(self._stream.encode(picture))
        self.frames_written += 1

    def close(self) -> None:
        """Flush the encoder and move the file into place (at least one frame is required)."""
        if self._container is None:
            return
        if self._stream is None:
            self.abort()
            raise PartsegError(f"{self.path}: no frames were written")
        self._container.mux(self._stream.encode(None))
        self._container.close()
        self._container = None
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        """Drop the partial file (after an error)."""
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # an encoder in a bad state: the file is discarded anyway
                pass
            self._container = None
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_video(path: str | os.PathLike, frames, fps: float = DEFAULT_FPS) -> Path:
    """Write an iterable of HxWx3 uint8 frames as one video file; returns its path."""
    with VideoWriter(path, fps) as writer:
        for frame in frames:
            writer.write(frame)
    return Path(path)


def _even(n: int) -> int:
    return n + (n % 2)


def _pad_even(frame: np.ndarray) -> np.ndarray:
    height, width = frame.shape[:2]
    if height % 2 == 0 and width % 2 == 0:
        return frame
    return np.pad(frame, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")


def _palette_frame(frame: np.ndarray):
    """An RGB frame as a 256-colour paletted PyAV frame (GIF)."""
    import av
    from PIL import Image

    quantised = Image.fromarray(frame).quantize(256, method=Image.Quantize.MEDIANCUT,
                                                 dither=Image.Dither.NONE)
    colours = np.asarray(quantised.getpalette()[:768], np.uint8).reshape(-1, 3)
    argb = np.zeros((256, 4), np.uint8)
    argb[:, 0] = 255
    argb[: len(colours), 1:] = colours
    return av.VideoFrame.from_ndarray((np.asarray(quantised), argb), format="pal8")


def _reason(error: BaseException) -> str:
    """FFmpeg's reason, without PyAV's errno prefix and repeated file name."""
    text = getattr(error, "strerror", None) or str(error)
    return str(text).strip() or type(error).__name__
