"""Drawing the detector's output onto video frames: pure functions of a frame, a map and scores.

Every function here takes a frame (``(H, W)`` gray or ``(H, W, 3)`` BGR ``uint8``) and returns a new BGR
frame of the same size; the input is never modified. :func:`annotate_frame` composes the four layers
``aed detect --overlay`` draws:

1. the finest anomaly map (the student's 16x16 ``L`` head) upsampled to the frame, colour-mapped and
   alpha-blended only where it is high (:func:`blend_anomaly_map`);
2. the smoothed score and the threshold as text in the top-left corner (:func:`draw_score_label`);
3. a red border when the smoothed score is above the threshold (:func:`draw_alarm_border`);
4. a strip at the bottom with the recent history of smoothed scores and the threshold line
   (:func:`draw_timeline`).

>>> style = OverlayStyle.for_threshold(0.42)
>>> out = annotate_frame(frame, l_map, score=0.51, threshold=0.42, history=recent_scores, style=style)
>>> out.shape == frame.shape[:2] + (3,)
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

RED = (0, 0, 255)  # BGR
WHITE = (255, 255, 255)
YELLOW = (0, 220, 255)
GREEN = (80, 220, 80)


@dataclass(frozen=True)
class OverlayStyle:
    """How the overlay looks.

    ``map_low`` / ``map_high`` set the colour scale of the anomaly map: values at or below ``map_low`` are
    not drawn at all, values at or above ``map_high`` get the hottest colour at full ``alpha``; in between,
    colour and opacity rise together, so normal regions keep the original pixels. ``score_max`` is the top of
    the timeline's vertical axis (scores above it are drawn at the top edge).
    """

    map_low: float
    map_high: float
    score_max: float
    alpha: float = 0.6
    colormap: int = cv2.COLORMAP_JET
    timeline_frames: int = 250
    timeline_fraction: float = 0.14  # strip height as a fraction of the frame height

    def __post_init__(self) -> None:
        if not self.map_high > self.map_low:
            raise ValueError(f"map_high ({self.map_high}) must be above map_low ({self.map_low})")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        if self.score_max <= 0:
            raise ValueError(f"score_max must be > 0, got {self.score_max}")

    @classmethod
    def for_threshold(cls, threshold: float, **kwargs: float | int) -> OverlayStyle:
        """A style scaled to a frame-score threshold: maps drawn from ``threshold`` up to ``2 * threshold``.

        A map cell above the frame threshold is at least as anomalous as the frames the detector calls
        abnormal, so that is where colour starts; the timeline's axis runs to twice the threshold so the
        threshold line sits at mid height.
        """
        unit = max(float(threshold), 1e-6)
        low = max(float(threshold), 0.0)
        return cls(map_low=low, map_high=low + unit, score_max=2.0 * unit, **kwargs)  # type: ignore[arg-type]


def to_bgr(frame: np.ndarray) -> np.ndarray:
    """A BGR copy of a gray ``(H, W)`` or BGR ``(H, W, 3)`` uint8 frame."""
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if frame.ndim == 3 and frame.shape[2] == 3:
        return frame.copy()
    if frame.ndim == 3 and frame.shape[2] == 1:
        return cv2.cvtColor(frame[:, :, 0], cv2.COLOR_GRAY2BGR)
    raise ValueError(f"expected a (H, W) or (H, W, 3) frame, got shape {frame.shape}")


def blend_anomaly_map(frame: np.ndarray, anomaly_map: np.ndarray, style: OverlayStyle) -> np.ndarray:
    """The frame with ``anomaly_map`` (any ``(h, w)``, e.g. 16x16) colour-blended where it is high."""
    out = to_bgr(frame)
    _blend_map_inplace(out, anomaly_map, style)
    return out


def draw_score_label(frame: np.ndarray, score: float, threshold: float) -> np.ndarray:
    """The frame with ``score`` and ``threshold`` printed in the top-left corner (red text when above)."""
    out = to_bgr(frame)
    _draw_label_inplace(out, score, threshold)
    return out


def draw_alarm_border(frame: np.ndarray, colour: tuple[int, int, int] = RED) -> np.ndarray:
    """The frame with a border in ``colour`` (BGR), thickness scaled to the frame size."""
    out = to_bgr(frame)
    _draw_border_inplace(out, colour)
    return out


def draw_timeline(
    frame: np.ndarray,
    history: Sequence[float] | np.ndarray,
    threshold: float,
    style: OverlayStyle,
    score_max: float | None = None,
) -> np.ndarray:
    """The frame with a score strip at the bottom: ``history`` (oldest first, newest at the right edge).

    The strip's axis runs from 0 to ``score_max`` (default ``style.score_max``); higher scores touch its top.
    """
    out = to_bgr(frame)
    _draw_timeline_inplace(out, np.asarray(history, dtype=np.float64), threshold, style, score_max)
    return out


def annotate_frame(
    frame: np.ndarray,
    anomaly_map: np.ndarray,
    score: float,
    threshold: float,
    history: Sequence[float] | np.ndarray,
    style: OverlayStyle,
    score_max: float | None = None,
) -> np.ndarray:
    """All four overlay layers on a BGR copy of ``frame`` (see the module docstring).

    ``score`` is the frame's smoothed score, ``history`` the smoothed scores of the recent frames ending with
    this one, ``anomaly_map`` the finest map of this frame; ``score_max`` (default ``style.score_max``) tops
    the timeline's axis.
    """
    out = to_bgr(frame)
    _blend_map_inplace(out, anomaly_map, style)
    _draw_timeline_inplace(out, np.asarray(history, dtype=np.float64), threshold, style, score_max)
    _draw_label_inplace(out, score, threshold)
    if score > threshold:
        _draw_border_inplace(out, RED)
    return out


# --- drawing onto a frame the caller owns -------------------------------------------------------------


def _blend_map_inplace(out: np.ndarray, anomaly_map: np.ndarray, style: OverlayStyle) -> None:
    h, w = out.shape[:2]
    cells = np.asarray(anomaly_map, dtype=np.float32)
    if cells.ndim != 2:
        raise ValueError(f"anomaly_map must be 2-D (h, w), got shape {cells.shape}")
    # (h, w) map -> (H, W) weights in [0, 1]; bilinear keeps the 16x16 cells readable without blockiness.
    up = cv2.resize(cells, (w, h), interpolation=cv2.INTER_LINEAR)
    weight = np.clip((up - style.map_low) / (style.map_high - style.map_low), 0.0, 1.0)
    if not weight.any():
        return  # nothing anomalous enough to draw: keep the frame untouched
    colour = cv2.applyColorMap((weight * 255.0).astype(np.uint8), style.colormap)  # (H, W, 3) BGR
    a = (weight * style.alpha)[:, :, None]  # (H, W, 1) opacity, 0 where the map is low
    blended = out.astype(np.float32) * (1.0 - a) + colour.astype(np.float32) * a
    out[:] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)


def _font_scale(out: np.ndarray) -> float:
    return max(0.35, out.shape[0] / 480.0)


def _draw_label_inplace(out: np.ndarray, score: float, threshold: float) -> None:
    scale = _font_scale(out)
    thickness = 1 if scale < 0.8 else 2
    text = f"score {score:.3f}  thr {threshold:.3f}"
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    pad = max(3, int(4 * scale))
    x0, y0 = pad * 2, pad * 2
    # A dark box behind the text keeps it readable on bright frames.
    box = out[y0 : y0 + th + base + 2 * pad, x0 : x0 + tw + 2 * pad]
    box[:] = (box.astype(np.uint16) * 2 // 5).astype(np.uint8)
    colour = RED if score > threshold else WHITE
    org = (x0 + pad, y0 + pad + th)
    cv2.putText(out, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thickness, cv2.LINE_AA)


def _draw_border_inplace(out: np.ndarray, colour: tuple[int, int, int]) -> None:
    h, w = out.shape[:2]
    t = max(3, min(h, w) // 60)
    out[:t, :] = colour
    out[h - t :, :] = colour
    out[:, :t] = colour
    out[:, w - t :] = colour


def _draw_timeline_inplace(
    out: np.ndarray,
    history: np.ndarray,
    threshold: float,
    style: OverlayStyle,
    score_max: float | None = None,
) -> None:
    h, w = out.shape[:2]
    strip_h = min(max(16, round(h * style.timeline_fraction)), h)
    top = h - strip_h
    strip = out[top:, :]
    strip[:] = (strip.astype(np.uint16) // 2).astype(np.uint8)  # darken the strip; the scene stays visible
    y_max = style.score_max if score_max is None else max(float(score_max), 1e-9)
    margin = 2

    def y_of(value: np.ndarray | float) -> np.ndarray:
        frac = np.clip(np.asarray(value, dtype=np.float64) / y_max, 0.0, 1.0)
        return np.round(top + margin + (1.0 - frac) * (strip_h - 1 - 2 * margin)).astype(np.int32)

    y_thr = int(y_of(threshold))
    cv2.line(out, (0, y_thr), (w - 1, y_thr), YELLOW, 1, cv2.LINE_AA)

    values = history[-style.timeline_frames :]
    values = values[np.isfinite(values)]
    n = values.size
    if n == 0:
        return
    # Newest frame at the right edge; the strip spans `timeline_frames` frames, so x advances per frame.
    step = (w - 1) / max(style.timeline_frames - 1, 1)
    xs = np.round((w - 1) - (n - 1 - np.arange(n)) * step).astype(np.int32)
    points = np.stack([xs, y_of(values)], axis=1).reshape(-1, 1, 2)  # (n, 1, 2) as cv2 wants
    above = values > threshold
    if n >= 2:
        cv2.polylines(out, [points], False, GREEN, 1, cv2.LINE_AA)
        # Runs of frames above the threshold are redrawn in red (one polyline per run) so alarms stand out.
        edges = np.flatnonzero(np.diff(np.r_[0, above.astype(np.int8), 0]))
        runs = [points[max(a - 1, 0) : b] for a, b in zip(edges[::2], edges[1::2], strict=True)]
        runs = [r for r in runs if len(r) >= 2]
        if runs:
            cv2.polylines(out, runs, False, RED, 2, cv2.LINE_AA)
    x_last, y_last = (int(v) for v in points[-1, 0])
    cv2.circle(out, (x_last, y_last), 3, RED if above[-1] else GREEN, -1, cv2.LINE_AA)
