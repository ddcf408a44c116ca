"""Dense optical flow between consecutive frames: what the teachers see of motion.

OpenCV's DIS optical flow (Kroeger et al., "Fast Optical Flow using Dense Inverse Search", ECCV 2016), medium
preset, on gray frames at the teachers' working size (:func:`working_size`: at most 240 rows, the aspect kept,
like the student's input). Frame t's flow is the motion from frame t - 1 to frame t, in working pixels per
frame; frame 0 takes frame 1's. A clip of one frame has no motion.

>>> for frame, flow in clip_flows(clip.frames(gray=True)):    # (h, w) uint8, (h, w, 2) float32
...     ...
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import cv2
import numpy as np

MAX_ROWS = 240
"""Teachers analyse frames of at most this many rows (aspect kept): enough to resolve a walker's motion."""


def working_size(height: int, width: int) -> tuple[int, int]:
    """``(rows, cols)`` the teachers analyse a ``height x width`` frame at."""
    scale = min(1.0, MAX_ROWS / height)
    return max(8, round(height * scale)), max(8, round(width * scale))


def to_working(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A frame as the teachers see it: gray uint8 at ``size`` (rows, cols)."""
    if frame.ndim == 3:
        frame = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    if frame.shape != size:
        frame = cv2.resize(frame, (size[1], size[0]), interpolation=cv2.INTER_AREA)
    return frame


def clip_flows(frames: Iterable[np.ndarray]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(frame, flow)`` for every frame: the gray working frame and the flow that led to it.

    The flow of frame 0 is that of frame 1 (it has no predecessor); only two frames are held at a time, plus
    the first frame until the second arrives.
    """
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    size: tuple[int, int] | None = None
    previous: np.ndarray | None = None
    first: np.ndarray | None = None
    for raw in frames:
        if size is None:
            size = working_size(*raw.shape[:2])
        frame = to_working(raw, size)
        if previous is None:
            first = frame
        else:
            flow = dis.calc(previous, frame, None)  # (h, w, 2): pixels moved from previous to frame
            if first is not None:
                yield first, flow
                first = None
            yield frame, flow
        previous = frame
    if first is not None:  # a clip of one frame: no motion
        yield first, np.zeros((*first.shape, 2), np.float32)
