"""Temporal smoothing of frame scores: a centred Gaussian per video, and its fixed-lag form for live sources.

- :func:`smooth_scores` applies a centred temporal Gaussian to one video's scores. The kernel is truncated at
  ``radius = ceil(3 * sigma)`` frames and renormalised; past either end of the video the first or last score
  is repeated ("nearest" edges). Repeating the edge keeps the ends unbiased (zero padding, as in the public
  Fast-AED code, pulls the first and last ``radius`` frames down) and is exactly what a live stream can do:
  before frame 0 it knows frame 0, and when the stream ends it knows the last frame.
- :class:`CentredSmoother` is :func:`smooth_scores` on a stream of batches, bit-identical to smoothing the
  whole video at once (what ``aed eval`` does), ``radius`` frames behind.
- :class:`StreamingSmoother` is the fixed-lag filter for live sources: the smoothed score of frame ``t``
  comes out when frame ``t + lag`` arrives. With the default ``lag = radius`` its output equals
  :func:`smooth_scores` for every frame, ends included. :class:`LiveSmoother` gives it the batch interface.

>>> smooth = smooth_scores(raw, sigma=3.0)               # (N,), same length
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, Protocol

import numpy as np

from aedcli.scoring.frame_scores import as_numpy

DEFAULT_SIGMA = 3.0
"""Frames of temporal smoothing when neither the weights nor the user say otherwise."""

KERNEL_TRUNCATE = 3.0
"""The Gaussian kernel reaches ``ceil(3 * sigma)`` frames each side (99.7% of its mass), renormalised."""

EDGE_RULE = "nearest"
"""Outside a video the first / last score is repeated; see the module docstring for why."""


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
    x = as_numpy(scores)
    if x.ndim != 1:
        raise ValueError(f"smooth_scores takes one video's scores of shape (N,), got {x.shape}")
    radius = kernel_radius(sigma)
    if radius == 0 or x.size == 0:
        return x.copy()
    padded = np.pad(x, radius, mode="edge")
    # The kernel is symmetric, so convolution and correlation agree.
    return np.convolve(padded, gaussian_kernel(sigma), mode="valid")


class BatchSmoother(Protocol):
    """What detect and bench push scores through: batches in, ``(frame, smoothed)`` pairs out."""

    @property
    def latency_frames(self) -> int: ...

    def push_many(self, scores: np.ndarray) -> list[tuple[int, float]]: ...

    def flush(self) -> list[tuple[int, float]]: ...


class CentredSmoother:
    """:func:`smooth_scores` on a stream: values identical to smoothing the whole clip.

    The centred Gaussian of frame ``t`` needs the scores up to ``t + radius``; this keeps a window of raw
    scores, runs ``smooth_scores`` on it once per batch and emits the frames whose future half has arrived.
    A window starting ``radius`` frames before the first frame it emits (or at frame 0) and ending
    ``radius`` after the last (or at the true end, in :meth:`flush`) sees exactly the inputs and edges the
    whole-clip filter sees, so the outputs are bit-identical. Memory: about ``3 * radius`` scores.

    >>> smoother = CentredSmoother(sigma=3.0)
    >>> ready = smoother.push_many(batch_scores)    # [(frame, smoothed), ...], `radius` frames behind
    >>> ready += smoother.flush()                    # at the end of the clip
    """

    def __init__(self, sigma: float) -> None:
        self.sigma = float(sigma)
        self.radius = kernel_radius(sigma)
        self._buffer = np.zeros(0, dtype=np.float64)  # raw scores of frames _start .. _received-1
        self._start = 0
        self._received = 0
        self._emitted = 0

    @property
    def latency_frames(self) -> int:
        """Frames a smoothed score trails its raw score (the kernel radius)."""
        return self.radius

    def push_many(self, scores: np.ndarray) -> list[tuple[int, float]]:
        """Add consecutive raw scores; return the ``(frame, smoothed)`` pairs now final."""
        self._buffer = np.concatenate([self._buffer, np.asarray(scores, dtype=np.float64).ravel()])
        self._received += int(np.size(scores))
        return self._emit(self._received - self.radius, final=False)

    def flush(self) -> list[tuple[int, float]]:
        """End of the clip: emit the frames still waiting (edges repeat the last score), then reset."""
        out = self._emit(self._received, final=True)
        self._buffer = np.zeros(0, dtype=np.float64)
        self._start = self._received = self._emitted = 0
        return out

    def _emit(self, stop: int, final: bool) -> list[tuple[int, float]]:
        if stop <= self._emitted:
            return []
        lo = max(0, self._emitted - self.radius)
        hi = self._received if final else stop + self.radius
        window = self._buffer[lo - self._start : hi - self._start]
        smoothed = smooth_scores(window, self.sigma)[self._emitted - lo : stop - lo]
        out = list(zip(range(self._emitted, stop), smoothed.tolist(), strict=True))
        self._emitted = stop
        keep_from = max(0, stop - self.radius)  # the next window starts here
        self._buffer = self._buffer[keep_from - self._start :]
        self._start = keep_from
        return out


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


class LiveSmoother:
    """:class:`StreamingSmoother` with the batch interface of :class:`CentredSmoother`."""

    def __init__(self, sigma: float, lag: int | None) -> None:
        self._smoother = StreamingSmoother(sigma, lag)
        self.radius = self._smoother.radius

    @property
    def latency_frames(self) -> int:
        return self._smoother.latency_frames

    def push_many(self, scores: np.ndarray) -> list[tuple[int, float]]:
        out: list[tuple[int, float]] = []
        for value in np.asarray(scores, dtype=np.float64).ravel().tolist():
            out.extend(self._smoother.push(value))
        return out

    def flush(self) -> list[tuple[int, float]]:
        return self._smoother.flush()
