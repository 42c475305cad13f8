"""Video: reading and writing it, segmenting it one-shot, scoring it.

    from partseg.video import open_video, write_video, OneShotVideo

io          video files (PyAV) and folders of frames, read lazily and written atomically
oneshot     one-shot segmentation of a clip: GAN inversion warm-started frame to frame
metrics     per-frame mIoU and temporal flicker of a segmented clip against its ground truth
"""

from partseg import lazy_exports

# name -> submodule; imported on first use (see partseg.lazy_exports)
_EXPORTS = {
    "DEFAULT_FPS": "io",
    "FrameFolder": "io",
    "OneShotVideo": "oneshot",
    "VIDEO_SUFFIXES": "io",
    "VideoFile": "io",
    "VideoWriter": "io",
    "clip_confusion": "metrics",
    "flicker_per_pair": "metrics",
    "is_video_file": "io",
    "list_frames": "io",
    "open_video": "io",
    "per_frame_miou": "metrics",
    "read_video": "io",
    "temporal_flicker": "metrics",
    "write_video": "io",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
