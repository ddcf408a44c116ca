"""From maps to decisions, shared by ``eval``, ``detect`` and ``bench``: frame scores, temporal smoothing,
thresholds from normal video, and events.

>>> raw = frame_scores(maps.s, maps.m, maps.l)                   # (N,)
>>> smooth = smooth_scores(raw, sigma=3.0)                       # (N,)
>>> thr = threshold_from_normal({"Train006": normal_raw}, sigma=3.0)
"""

from aedcli.scoring.events import Event, EventTracker
from aedcli.scoring.frame_scores import frame_scores, teacher_scores
from aedcli.scoring.smoothing import (
    DEFAULT_SIGMA,
    BatchSmoother,
    CentredSmoother,
    LiveSmoother,
    StreamingSmoother,
    gaussian_kernel,
    kernel_radius,
    smooth_scores,
)
from aedcli.scoring.thresholds import (
    MIN_THRESHOLD_FRAMES,
    Threshold,
    per_video_minmax,
    threshold_from_normal,
    threshold_source,
)

__all__ = [
    "DEFAULT_SIGMA",
    "MIN_THRESHOLD_FRAMES",
    "BatchSmoother",
    "CentredSmoother",
    "Event",
    "EventTracker",
    "LiveSmoother",
    "StreamingSmoother",
    "Threshold",
    "frame_scores",
    "gaussian_kernel",
    "kernel_radius",
    "per_video_minmax",
    "smooth_scores",
    "teacher_scores",
    "threshold_from_normal",
    "threshold_source",
]
