"""Is this footage like the footage the weights learnt from? One honest line when it is not.

A student learns what normal looks like for one camera. On another camera (another size, colour, frame rate,
scene or encoder) its scores can sit above its threshold all the time: confident nonsense. ``aed detect``
therefore compares:

- the source with the footage the weights were trained (or calibrated) on: frame size and aspect, colour,
  frame rate (:func:`footage_notes`);
- the level of the first seconds' raw scores with the normal range stored in the weights
  (:class:`ScoreLevelCheck`): when their median is above the 99th percentile of normal footage the student
  did not train on, the footage is not normal *for this model*, whatever happens in it.

Each difference is one sentence for the terminal and the summary's ``notes``, with the ``aed calibrate``
command that measures the threshold and normal range on normal footage of the new camera.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from aedcli.model.weights import Domain, NormalRange
from aedcli.video import VideoInfo

LEVEL_SECONDS = 5.0
"""Seconds of scores (at least :data:`LEVEL_MIN_FRAMES` frames) whose level is compared with normal."""
LEVEL_MIN_FRAMES = 50
SHORT_CLIP_FRAMES = 7
"""A clip shorter than the student's stack (t - 3 .. t + 3) shows it less motion than it learnt from."""


def calibrate_hint(weights: str) -> str:
    """The command that re-measures the threshold and normal range on a camera's normal footage."""
    return f"aed calibrate NORMAL_CLIPS... --weights {weights} --out my_camera.pt"


def is_colour(frame: np.ndarray) -> bool:
    """Whether a frame shows colour: a gray scene decoded to BGR (as video files are) has equal channels."""
    if frame.ndim == 2 or frame.shape[2] == 1:
        return False
    sample = frame[::4, ::4].astype(np.int16)
    return bool(np.abs(sample - sample.mean(axis=2, keepdims=True)).mean() > 2.0)


def footage_notes(info: VideoInfo, first_frame: np.ndarray, domain: Domain | None, weights: str) -> list[str]:
    """Sentences naming how the footage differs from ``domain`` (size, aspect, colour, frame rate)."""
    if domain is None:
        return []
    differences = []
    h, w = domain.frame_size
    if (info.height, info.width) != (h, w):
        differences.append(f"{info.width}x{info.height} frames instead of {w}x{h}")
        aspect, trained = info.width / max(info.height, 1), w / max(h, 1)
        if abs(math.log(aspect / trained)) > 0.05:
            differences.append(f"aspect {aspect:.2f} instead of {trained:.2f}")
    colour = is_colour(first_frame)
    if colour != (domain.channels == 3):
        differences.append("colour instead of gray" if colour else "gray instead of colour")
    if domain.fps and info.fps_reported and abs(math.log(info.fps / domain.fps)) > math.log(1.2):
        differences.append(f"{info.fps:g} fps instead of {domain.fps:g}")
    if not differences:
        return []
    return [
        f"this footage differs from what the weights were trained on ({domain.dataset}): "
        f"{', '.join(differences)}; scores and the threshold may not carry over, so calibrate on a few "
        f"minutes of this camera's normal footage: {calibrate_hint(weights)}"
    ]


@dataclass
class ScoreLevelCheck:
    """Collects the raw scores of a source's first seconds and compares their median with the normal range.

    >>> check = ScoreLevelCheck(normal, fps=25.0, weights="weights/ped2.pt")
    >>> for score in raw: check.add(score)
    >>> check.note()            # None, or one sentence
    """

    normal: NormalRange | None
    fps: float
    weights: str
    scores: list[float] = field(default_factory=list)

    @property
    def frames_wanted(self) -> int:
        return max(LEVEL_MIN_FRAMES, round(LEVEL_SECONDS * self.fps))

    @property
    def done(self) -> bool:
        return len(self.scores) >= self.frames_wanted

    def add(self, scores: np.ndarray) -> None:
        if not self.done:
            self.scores.extend(
                float(s) for s in np.asarray(scores).ravel()[: self.frames_wanted - len(self.scores)]
            )

    def note(self) -> str | None:
        """A sentence when the first seconds sit above the normal range (None when they do not, or when the
        weights carry no normal range)."""
        if self.normal is None or not self.scores:
            return None
        level = float(np.median(self.scores))
        if level <= self.normal.p99:
            return None
        seconds = len(self.scores) / self.fps
        return (
            f"the first {seconds:.1f} s score a median of {level:.3g}, above the 99th percentile "
            f"({self.normal.p99:.3g}) "
            f"of the normal footage these weights were checked on (median {self.normal.median:.3g}): "
            "unless the video starts with an anomaly, this camera looks abnormal to the model and its events "
            "are not to be trusted; calibrate on normal footage of this camera: "
            f"{calibrate_hint(self.weights)}"
        )


def short_clip_note(frames: int) -> str | None:
    """A sentence for a clip too short for the student's stack of frames t - 3 .. t + 3."""
    if frames >= SHORT_CLIP_FRAMES:
        return None
    return (
        f"the source has only {frames} frame(s), fewer than the {SHORT_CLIP_FRAMES} a frame's stack spans "
        "(t - 3 .. t + 3), so the student sees no motion and its scores say little; give it a longer clip"
    )
