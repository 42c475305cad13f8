"""Video: reading and writing it, segmenting it one-shot, scoring it, and the video experiment.

    from partseg.video import open_video, write_video, OneShotVideo, score_video

io          video files (PyAV) and folders of frames, read lazily and written atomically
oneshot     one-shot segmentation of a clip: GAN inversion warm-started frame to frame
metrics     per-frame mIoU and temporal flicker of a segmented clip against its ground truth
experiment  the video experiment (stages video_clip, video): the demo clip, both methods on it
report      its pictures, overlay videos, table and report section

The experiment's modules are used whole (`from partseg.video import experiment, report`);
the names below are the video API anyone may use.
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
    "score_video": "metrics",
    "temporal_flicker": "metrics",
    "write_video": "io",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
