"""Decision thresholds: the smoothed score above which a frame is called abnormal, from normal video only.

:func:`threshold_from_normal` takes a high percentile of smoothed scores on normal training video the student
did not train on; it takes no labels and no test data on purpose, so a threshold (and any detection made
with it) never depends on the videos being judged. :func:`per_video_minmax` is the labelled option for
comparing with papers that rescale each test video by its own range.

>>> thr = threshold_from_normal({"Train001": train_scores}, sigma=3.0)
>>> abnormal = smooth_scores(raw, 3.0) > thr.value
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from aedcli.scoring.frame_scores import as_numpy
from aedcli.scoring.smoothing import smooth_scores

MIN_THRESHOLD_FRAMES = 200
"""Fewest normal frames a 99th-percentile threshold should rest on: with fewer, one or two frames set it."""


@dataclass(frozen=True)
class Threshold:
    """A decision threshold on smoothed scores and where it came from.

    ``value`` applies to scores smoothed with ``sigma`` frames; ``percentile`` is the percentile of normal
    training scores it was set at; ``source`` says so in words, for example "99th percentile of smoothed
    scores (sigma=3 frames) on 16 normal training videos (2,550 frames)".
    """

    value: float
    sigma: float
    percentile: float
    source: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (stored with the weights)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Threshold:
        """Rebuild a threshold from :meth:`to_dict`'s output."""
        return cls(
            value=float(data["value"]),
            sigma=float(data["sigma"]),
            percentile=float(data["percentile"]),
            source=str(data["source"]),
        )


def threshold_from_normal(
    scores_by_video: Mapping[str, Any], sigma: float, percentile: float = 99.0
) -> Threshold:
    """The ``percentile`` of smoothed scores over normal training videos, as a :class:`Threshold`.

    Pass raw scores of *normal training* video only: the function takes no labels and no test data on
    purpose, so a threshold (and any detection made with it) never depends on the videos being judged. Each
    video is smoothed on its own with ``sigma`` before the percentile is taken over all frames together.
    """
    if not 0.0 < percentile <= 100.0:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}")
    smoothed = [smooth_scores(scores, sigma) for scores in scores_by_video.values()]
    smoothed = [s for s in smoothed if s.size]
    if not smoothed:
        raise ValueError("threshold_from_normal needs the scores of at least one normal training frame")
    all_scores = np.concatenate(smoothed)
    value = float(np.percentile(all_scores, percentile))
    source = threshold_source(percentile, sigma, len(smoothed), all_scores.size)
    return Threshold(value=value, sigma=float(sigma), percentile=float(percentile), source=source)


def threshold_source(
    percentile: float,
    sigma: float,
    videos: int,
    frames: int,
    kind: tuple[str, str] = ("normal training video", "normal training videos"),
) -> str:
    """Where a percentile threshold came from, in words; ``kind`` names the videos (singular, plural)."""
    return (
        f"{_ordinal(percentile)} percentile of smoothed scores (sigma={sigma:g} frames) on {videos} "
        f"{kind[videos != 1]} ({frames:,} frames)"
    )


def per_video_minmax(scores: Any) -> np.ndarray:
    """Rescale one video's scores to [0, 1] with its own minimum and maximum (a constant video gives 0).

    For comparison with published numbers only: it uses statistics of the very video being judged, which a
    deployed detector cannot know (method.md section 5), so ``aed`` never applies it by default.
    """
    x = as_numpy(scores)
    if x.size == 0:
        return x.copy()
    low, high = float(x.min()), float(x.max())
    if high <= low:
        return np.zeros_like(x)
    return (x - low) / (high - low)


def _ordinal(value: float) -> str:
    """99 -> '99th', 99.5 -> '99.5th', 1 -> '1st'."""
    if value != int(value):
        return f"{value:g}th"
    n = int(value)
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"
