"""Events: runs of consecutive frames whose smoothed score is above the threshold.

>>> tracker = EventTracker(fps=25.0)
>>> for frame, smoothed in scored: tracker.update(frame, smoothed, smoothed > thr)
>>> tracker.finish()                      # [Event(start_frame=120, end_frame=174, ...), ...]
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Event:
    """A run of consecutive abnormal frames (``end_frame`` inclusive) and its highest smoothed score."""

    start_frame: int
    end_frame: int
    start_s: float
    end_s: float
    peak_score: float
    peak_frame: int

    @property
    def frames(self) -> int:
        return self.end_frame - self.start_frame + 1

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "frames": self.frames}


class EventTracker:
    """Turns ``(frame, smoothed, abnormal)`` updates into :class:`Event` runs; only the open run is kept."""

    def __init__(self, fps: float) -> None:
        self.fps = fps
        self.events: list[Event] = []
        self.abnormal_frames = 0
        self._open: list[Any] | None = None  # [start, last, peak_score, peak_frame]

    def update(self, frame: int, smoothed: float, abnormal: bool) -> None:
        if abnormal:
            self.abnormal_frames += 1
            if self._open is None:
                self._open = [frame, frame, smoothed, frame]
            else:
                self._open[1] = frame
                if smoothed > self._open[2]:
                    self._open[2], self._open[3] = smoothed, frame
        elif self._open is not None:
            self._close()

    def finish(self) -> list[Event]:
        if self._open is not None:
            self._close()
        return self.events

    def _close(self) -> None:
        assert self._open is not None
        start, last, peak, peak_frame = self._open
        self.events.append(
            Event(
                start_frame=start,
                end_frame=last,
                start_s=round(start / self.fps, 4),
                end_s=round(last / self.fps, 4),
                peak_score=peak,
                peak_frame=peak_frame,
            )
        )
        self._open = None
