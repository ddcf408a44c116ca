"""From the student's maps to frame scores, smoothed scores and a threshold (method.md section 5).

- :func:`frame_scores` turns the three outputs ``S (N,)``, ``M (N, 4, 4)``, ``L (N, 16, 16)`` into one raw
  score per frame: the mean of ``S``, ``max(M)`` and ``max(L)``.
- :func:`smooth_scores` applies a centred temporal Gaussian to one video's scores. The kernel is truncated at
  ``radius = ceil(3 * sigma)`` frames and renormalised; past either end of the video the first or last score
  is repeated ("nearest" edges). Repeating the edge keeps the ends unbiased (zero padding, as in the public
  Fast-AED code, pulls the first and last ``radius`` frames down) and is exactly what a live stream can do:
  before frame 0 it knows frame 0, and when the stream ends it knows the last frame.
- :class:`StreamingSmoother` is the same filter for live sources. It waits ``lag`` frames for the future half
  of the kernel, so the smoothed score of frame ``t`` comes out when frame ``t + lag`` arrives. With the
  default ``lag = radius`` its output equals :func:`smooth_scores` for every frame, ends included.
- :class:`Threshold` and :func:`threshold_from_normal`: the score above which a frame is called abnormal,
  taken from normal training video only, never from test data.

>>> raw = frame_scores(maps.s, maps.m, maps.l)          # (N,)
>>> smooth = smooth_scores(raw, sigma=3.0)               # (N,), same length
>>> thr = threshold_from_normal({"Train001": train_scores}, sigma=3.0)
>>> abnormal = smooth > thr.value
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

KERNEL_TRUNCATE = 3.0
"""The Gaussian kernel reaches ``ceil(3 * sigma)`` frames each side (99.7% of its mass), renormalised."""

EDGE_RULE = "nearest"
"""Outside a video the first / last score is repeated; see the module docstring for why."""


def _to_numpy(x: Any) -> np.ndarray:
    """A float64 numpy copy of a numpy array, list or torch tensor (detached, on the CPU)."""
    if hasattr(x, "detach"):  # torch.Tensor without importing torch here
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def frame_scores(s: Any, m: Any, l: Any) -> np.ndarray:  # noqa: E741 - names follow the paper's S, M, L
    """Raw anomaly score per frame: ``(S + max(M) + max(L)) / 3``.

    ``s`` is ``(N,)``, ``m`` is ``(N, 4, 4)`` and ``l`` is ``(N, 16, 16)`` (any trailing map shape works);
    numpy arrays or torch tensors. Returns a float64 numpy array of shape ``(N,)``.
    """
    s_np, m_np, l_np = _to_numpy(s), _to_numpy(m), _to_numpy(l)
    n = s_np.shape[0]
    if s_np.shape != (n,) or m_np.shape[0] != n or l_np.shape[0] != n:
        raise ValueError(
            f"frame_scores needs s (N,), m (N, ...), l (N, ...); got {s_np.shape}, {m_np.shape}, {l_np.shape}"
        )
    m_max = m_np.reshape(n, -1).max(axis=1) if n else np.zeros(0)
    l_max = l_np.reshape(n, -1).max(axis=1) if n else np.zeros(0)
    return (s_np + m_max + l_max) / 3.0


def kernel_radius(sigma: float) -> int:
    """Half-width of the smoothing kernel in frames: ``ceil(3 * sigma)``, 0 when smoothing is off."""
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0 frames, got {sigma}")
    return math.ceil(KERNEL_TRUNCATE * sigma) if sigma > 0 else 0


def gaussian_kernel(sigma: float) -> np.ndarray:
    """The normalised Gaussian taps ``w[-radius..radius]`` used by both smoothers; ``[1.0]`` for sigma 0."""
    radius = kernel_radius(sigma)
    if radius == 0:
        return np.ones(1)
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    weights = np.exp(-0.5 * (offsets / sigma) ** 2)
    return weights / weights.sum()


def smooth_scores(scores: Any, sigma: float) -> np.ndarray:
    """Smooth one video's scores with a centred Gaussian of ``sigma`` frames (0 = return them unchanged).

    Edges repeat the first / last score ("nearest"); the output has the input's length, float64.
    """
    x = _to_numpy(scores)
    if x.ndim != 1:
        raise ValueError(f"smooth_scores takes one video's scores of shape (N,), got {x.shape}")
    radius = kernel_radius(sigma)
    if radius == 0 or x.size == 0:
        return x.copy()
    padded = np.pad(x, radius, mode="edge")
    # The kernel is symmetric, so convolution and correlation agree.
    return np.convolve(padded, gaussian_kernel(sigma), mode="valid")


class StreamingSmoother:
    """Fixed-lag Gaussian smoothing for live sources: one score in, smoothed scores out ``lag`` frames later.

    The smoothed score of frame ``t`` needs frames up to ``t + radius``; it is emitted by the :meth:`push` of
    frame ``t + lag``. With the default ``lag = radius = ceil(3 * sigma)`` the output equals
    :func:`smooth_scores` on the whole video for every frame: before frame 0 the first score is repeated,
    and :meth:`flush` (at the end of the stream) repeats the last score for the frames still waiting. A
    smaller ``lag`` trades accuracy for latency: the kernel's future half is cut at ``lag`` frames and the
    remaining taps renormalised, so results then differ from the offline filter.

    The delay is :attr:`latency_frames` frames, :meth:`latency_seconds` at a given frame rate (sigma 3 ->
    9 frames, 0.9 s at 10 fps; the paper's sigma 21 -> 63 frames, 6.3 s).

    >>> smoother = StreamingSmoother(sigma=3.0)
    >>> for score in live_scores:
    ...     for frame_index, smoothed in smoother.push(score):
    ...         handle(frame_index, smoothed)
    >>> for frame_index, smoothed in smoother.flush():
    ...     handle(frame_index, smoothed)
    """

    def __init__(self, sigma: float, lag: int | None = None) -> None:
        self.sigma = float(sigma)
        self.radius = kernel_radius(sigma)
        self.lag = self.radius if lag is None else int(lag)
        if not 0 <= self.lag <= self.radius:
            raise ValueError(f"lag must be between 0 and the kernel radius {self.radius} frames, got {lag}")
        full = gaussian_kernel(sigma)
        # Taps for offsets -radius .. +lag; renormalised so that a shortened kernel still averages.
        taps = full[: self.radius + self.lag + 1]
        self._weights = taps / taps.sum()
        self._window: deque[float] = deque(maxlen=len(self._weights))
        self._newest = -1  # index of the newest value in the window (past the end while flushing)
        self._emitted = 0  # smoothed scores emitted so far = index of the next frame to emit

    @property
    def latency_frames(self) -> int:
        """Frames between a score arriving and its smoothed value being emitted."""
        return self.lag

    def latency_seconds(self, fps: float) -> float:
        """The delay in seconds at ``fps`` frames per second."""
        if fps <= 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        return self.lag / fps

    def push(self, score: float) -> list[tuple[int, float]]:
        """Add the next frame's raw score; return the ``(frame_index, smoothed)`` pairs now complete."""
        value = float(score)
        if self._newest < 0:
            # Frames before 0 repeat frame 0 (nearest edge), so the window starts with `radius` copies.
            self._window.extend([value] * self.radius)
        self._window.append(value)
        self._newest += 1
        return self._emit_ready()

    def flush(self) -> list[tuple[int, float]]:
        """End of stream: emit every frame still waiting, repeating the last score past the end, and reset."""
        out: list[tuple[int, float]] = []
        frames = self._newest + 1
        if frames > 0:
            last = self._window[-1]
            while self._emitted < frames:
                self._window.append(last)
                self._newest += 1
                out.extend(self._emit_ready())
        self.reset()
        return out

    def reset(self) -> None:
        """Forget the stream so the smoother can start on the next video."""
        self._window.clear()
        self._newest = -1
        self._emitted = 0

    def _emit_ready(self) -> list[tuple[int, float]]:
        # Frame t is complete once the window's newest value is frame t + lag; at most one frame per step.
        if self._newest - self.lag < self._emitted:
            return []
        values = np.fromiter(self._window, dtype=np.float64, count=len(self._window))
        frame = self._emitted
        self._emitted += 1
        return [(frame, float(values @ self._weights))]


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
    x = _to_numpy(scores)
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
