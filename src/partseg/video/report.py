"""The video experiment's outputs for people: pictures, overlay videos, tables and its section
of the experiments' report (section.md). Everything here is computed from the stage's numbers
(partseg.video.experiment.measure); the prose states what was measured.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from partseg.video.experiment import METHODS

VIDEO_SCALE = 4  # the overlay videos enlarge the 32 px frames (nearest neighbour)


# ---------------------------------------------------------------------------- pictures

def clip_strip(images: list, masks, classes: list[str], every: int) -> np.ndarray:
    """Every `every`-th frame of the clip above its mask overlaid, with the class legend."""
    from partseg.visualize import legend, overlay, stack_vertical, titled_grid

    picks = list(range(0, len(images), every))
    grid = titled_grid([[images[i] for i in picks], [overlay(images[i], masks[i]) for i in picks]],
                       [f"frame {i}" for i in picks], upscale=3)
    return stack_vertical([grid, legend(classes, width=grid.shape[1])])


def strip_picture(frames, masks, labels: dict, count: int) -> np.ndarray:
    """`count` frames evenly spaced: the frame, its ground truth, then each method's labels."""
    from partseg.visualize import colorize, stack_vertical, text_strip, titled_grid

    picks = np.linspace(0, len(frames) - 1, count).round().astype(int)
    rows = [[frames[i] for i in picks], [colorize(masks[i]) for i in picks]]
    rows += [[colorize(method_labels[i]) for i in picks] for method_labels in labels.values()]
    grid = titled_grid(rows, [f"frame {i}" for i in picks], upscale=3)
    names = ", ".join(["frame", "ground truth"] + [METHODS[m] for m in labels])
    return stack_vertical([grid, text_strip(f"rows, top to bottom: {names}", grid.shape[1])])


class _Chart:
    """A line chart of values in [0, 1] over frame steps, drawn with PIL (no plotting library
    in the pipeline's environment): margins for the y labels, the legend and the x ticks."""

    left, right, top, bottom = 36, 150, 10, 24

    def __init__(self, count: int, width: int, height: int):
        from PIL import Image, ImageDraw

        self.count, self.width, self.height = count, width, height
        self.canvas = Image.new("RGB", (width, height), (255, 255, 255))
        self.draw = ImageDraw.Draw(self.canvas)
        self.plot_w = width - self.left - self.right
        self.plot_h = height - self.top - self.bottom

    def xy(self, step, value) -> tuple[float, float]:
        return (self.left + self.plot_w * step / max(1, self.count - 1),
                self.top + self.plot_h * (1.0 - value))

    def shade(self, steps) -> None:
        """Grey bands behind the given steps."""
        for step in steps:
            x0, _ = self.xy(step - 0.5, 0)
            x1, _ = self.xy(step + 0.5, 0)
            self.draw.rectangle([x0, self.top, x1, self.top + self.plot_h], fill=(230, 230, 230))

    def y_grid(self, values) -> None:
        for value in values:
            _, y = self.xy(0, value)
            self.draw.line([self.left, y, self.left + self.plot_w, y], fill=(200, 200, 200))
            self.draw.text((4, y - 6), f"{value:.2f}", fill=(0, 0, 0))

    def line(self, steps, values, colour) -> None:
        self.draw.line([self.xy(s, v) for s, v in zip(steps, values)], fill=colour, width=2)

    def legend(self, names: list[str], colours: list, note: str) -> None:
        x = self.width - self.right + 8
        for row, (name, colour) in enumerate(zip(names, colours)):
            y = self.top + 14 * row
            self.draw.rectangle([x, y + 3, x + 12, y + 9], fill=colour)
            self.draw.text((x + 16, y), name, fill=(0, 0, 0))
        self.draw.text((x, self.top + 14 * len(names) + 4), note, fill=(90, 90, 90))

    def x_ticks(self, every: int, label: str) -> None:
        for step in range(0, self.count, every):
            x, y = self.xy(step, 0.0)
            self.draw.line([x, y, x, y + 3], fill=(0, 0, 0))
            self.draw.text((x - 6, y + 4), str(step), fill=(0, 0, 0))
        self.draw.text((self.width - self.right + 8, self.height - self.bottom + 4), label,
                       fill=(0, 0, 0))


def per_frame_picture(table: pd.DataFrame, methods: list[str], gone: np.ndarray,
                      width: int = 640, height: int = 220) -> np.ndarray:
    """Per-frame mIoU of each method over time; frames without the person shaded."""
    from partseg.visualize import palette

    chart = _Chart(len(table), width, height)
    chart.shade(np.flatnonzero(gone))
    chart.y_grid((0.0, 0.25, 0.5, 0.75, 1.0))
    colours = [tuple(int(c) for c in colour) for colour in palette(len(methods) + 1)[1:]]
    for method, colour in zip(methods, colours):
        chart.line(table["step"], table[f"miou_{method}"], colour)
    chart.legend([METHODS[m] for m in methods], colours, "grey: no person")
    chart.x_ticks(10 if len(table) <= 150 else 50, "per-frame mIoU")
    return np.asarray(chart.canvas)


def write_videos(out: Path, frames, masks, labels: dict, fps: float) -> None:
    """overlay_autoshot.mp4, overlay_oneshot.mp4 (labels over the frames) and comparison.gif
    (frame, ground truth, each method side by side)."""
    from partseg.video.io import write_video
    from partseg.visualize import colorize, enlarge, image_grid, overlay

    for method in ("autoshot", "oneshot"):
        write_video(out / f"overlay_{method}.mp4",
                    (enlarge(overlay(f, l), VIDEO_SCALE) for f, l in zip(frames, labels[method])),
                    fps)
    panels = (image_grid([[frame, colorize(mask)] + [colorize(l[i]) for l in labels.values()]],
                         upscale=3)
              for i, (frame, mask) in enumerate(zip(frames, masks)))
    write_video(out / "comparison.gif", panels, fps)


# ---------------------------------------------------------------------------- tables

def _fixed(value, digits: int = 1, scale: float = 100.0) -> str:
    """A number as table text (report.markdown_table would rescale floats below 1)."""
    return "–" if not _known(value) else f"{scale * value:.{digits}f}"


def _known(value) -> bool:
    return value is not None and not np.isnan(value)


def per_class_table(metrics: dict) -> pd.DataFrame:
    """Clip-level IoU, one row per class, one column per method."""
    return pd.DataFrame({METHODS[m]: s["per_class_iou"]
                         for m, s in metrics["methods"].items()}).rename_axis("class")


def results_table(metrics: dict) -> pd.DataFrame:
    rows = []
    for method, name in METHODS.items():
        if method not in metrics["methods"]:
            continue
        m = metrics["methods"][method]
        rows.append({"method": name,
                     "per-frame mIoU": _fixed(m["miou_per_frame_mean"]),
                     "with person": _fixed(m["miou_with_person"]),
                     "without person": _fixed(m["miou_without_person"]),
                     "clip mIoU": _fixed(m["miou_clip"]),
                     "flicker %": _fixed(m["flicker"], 2),
                     "part pixels when gone %": _fixed(m["false_person_pixels_when_gone"]),
                     "ms / frame": _fixed(m["seconds_per_frame"], 1, 1000.0)})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------- the section

def section_markdown(metrics: dict, info: dict, settings) -> str:
    """section.md: the clip, the methods, what each number means, the table, the pictures and
    a paragraph that states the measured comparisons."""
    from partseg.report import markdown_table

    gone = info["frames_without_person"]
    gone_text = f"frames {gone[0]}..{gone[-1]}" if gone else "no frame of this length"
    methods = metrics["methods"]
    lines = [
        "## Video: auto-shot and one-shot frame by frame",
        "",
        f"The demo clip (stage `video_clip`): {info['frames']} frames at {info['resolution']} px, "
        f"{info['fps']:g} fps, one procedural face that turns left and right, rolls, grows, "
        f"shrinks, slides out of the frame (nothing of the person is left in {gone_text}) and "
        "comes back, with exact masks. No method smooths its labels over time. One-shot inverts "
        f"the first frame cold ({settings.steps_first} steps) and every later one from the "
        f"previous frame's latents and noise maps ({settings.steps_warm} steps); the cold "
        f"baseline inverts every frame from the mean latent ({settings.steps_first} steps).",
        "",
        "Per-frame mIoU is the mean IoU over the classes in the frame's ground truth or "
        "prediction (background included), averaged over frames: a frame without the person "
        "scores 100 when nothing is predicted there, and each part predicted there adds an IoU "
        "of 0. Clip mIoU pools every pixel of the clip. Flicker: the fraction of pixels whose "
        "ground truth is the same in consecutive frames but whose predicted label changes (0 is "
        "steady). Part pixels when gone: pixels labelled as any part in the frames without "
        f"the person. ms / frame: wall time here, {metrics['threads']} torch thread(s).",
        "",
        markdown_table(results_table(metrics)),
        "",
        "![frames, ground truth and predictions](strip.png)",
        "",
        "![per-frame mIoU](per_frame.png)",
        "",
        reading(methods["autoshot"], methods["oneshot"], methods.get("oneshot_cold")),
        "",
        "Videos: `overlay_autoshot.mp4`, `overlay_oneshot.mp4`, `comparison.gif` (frame, ground "
        "truth, then each method); per-frame numbers in `per_frame.tsv`.",
        "",
    ]
    return "\n".join(lines)


def _compare(what: str, first: str, value, second: str, other, digits: int = 1,
             unit: str = "") -> str:
    """"auto-shot's per-frame mIoU is 4.8 points above one-shot's (61.2 against 56.4)": two
    fractions and their difference in percentage points, computed from the printed values
    (`first` and `second` are possessives)."""
    a, b = (_fixed(v, digits) + (unit if _known(v) else "") for v in (value, other))
    if not (_known(value) and _known(other)):
        return f"{first} {what} is {a}, {second} {b}"
    difference = round(100 * value, digits) - round(100 * other, digits)
    relation = "the same as" if abs(difference) < 0.5 * 10 ** -digits else \
        f"{abs(difference):.{digits}f} points {'above' if difference > 0 else 'below'}"
    return f"{first} {what} is {relation} {second} ({a} against {b})"


def reading(auto: dict, warm: dict, cold: dict | None) -> str:
    """One paragraph stating the measured numbers and the differences between them."""
    text = (_compare("per-frame mIoU", "Auto-shot's", auto["miou_per_frame_mean"],
                     "one-shot's", warm["miou_per_frame_mean"])
            + f"; with the person in frame, {_fixed(auto['miou_with_person'])} against "
            f"{_fixed(warm['miou_with_person'])}. ")
    if auto["false_person_pixels_when_gone"] is not None:
        text += (f"In the frames without the person, auto-shot labels "
                 f"{_fixed(auto['false_person_pixels_when_gone'])} % of the pixels as parts and "
                 f"one-shot {_fixed(warm['false_person_pixels_when_gone'])} %. ")
    if cold is not None:
        text += (_compare("flicker", "Warm-started one-shot's", warm["flicker"],
                          "the cold baseline's", cold["flicker"], 2, " %")
                 + "; " + _compare("per-frame mIoU", "its", warm["miou_per_frame_mean"],
                                   "the baseline's", cold["miou_per_frame_mean"])
                 + f"; {warm['seconds_per_frame']:.2f} s per frame against "
                 f"{cold['seconds_per_frame']:.2f} s (the cold inversions run batched, the warm "
                 "ones one after the other). ")
    text += (_compare("flicker", "Auto-shot's", auto["flicker"], "one-shot's", warm["flicker"],
                      2, " %")
             + f"; auto-shot takes {1000 * auto['seconds_per_frame']:.1f} ms per frame.")
    return text
