"""What every object-centric teacher provides.

The pipeline (``aedcli/teachers/pipeline.py``) finds objects with ``proposals.py``, cuts an *object tube*
around each (the box's crop in frames ``t - k .. t + k``, resized to ``size x size``), hands batches of tubes
to a teacher for training (normal objects only) and scoring, then paints the scores into maps
(``maps.py``). A teacher never touches files or whole frames: it sees :class:`ObjectBatch` only, so each one
can be read, tested and swapped on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

TUBE_RADIUS = 3
"""Tubes hold frames t-3 .. t+3 (7 frames), matching the student's t-3 / t+3 offsets."""

TUBE_SIZE = 64
"""Tubes are resized to 64 x 64 pixels per frame."""


@dataclass
class ObjectBatch:
    """A batch of object tubes.

    tubes:      (N, 2*TUBE_RADIUS+1, S, S) uint8 gray crops; index TUBE_RADIUS is frame t. A neighbour
                outside the video repeats frame t (as in the student's stack).
    boxes:      (N, 4) float32 [x0, y0, x1, y1] of the object in source-frame pixels at frame t.
    frame_size: (height, width) of the source frames, so geometry-aware teachers can normalise boxes.
    frames:     (N,) int64 index of frame t in its clip.
    video:      index of the normal training video the objects come from (or were derived from), -1 for
                any other video. A teacher that keeps its training objects (the velocity teacher) leaves
                that video out when scoring, so a training object is never judged against itself.
    reach:      (N, 2) int64: how many real frames the tube holds before and after t (0..TUBE_RADIUS);
                fewer than TUBE_RADIUS near a clip's ends, where the missing neighbours repeat frame t and
                show no motion. None: every neighbour is real.
    """

    tubes: np.ndarray
    boxes: np.ndarray
    frame_size: tuple[int, int]
    frames: np.ndarray
    video: int = -1
    reach: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.tubes)

    def real_reach(self) -> np.ndarray:
        """(N, 2) real neighbours before and after t of every tube (all of them when ``reach`` is None)."""
        if self.reach is None:
            return np.full((len(self), 2), TUBE_RADIUS, np.int64)
        return self.reach


@runtime_checkable
class ObjectTeacher(Protocol):
    """An object scorer trained on objects of normal video only.

    ``score`` returns raw scores, higher = more abnormal; the pipeline scales them to [0, 1] with statistics
    of the training set before painting maps.
    """

    name: str

    def fit(self, batches: list[ObjectBatch], *, epochs: int | None = None, seed: int = 0) -> dict[str, Any]:
        """Train on normal objects; returns a small dict of training statistics (losses, counts)."""
        ...

    def score(self, batch: ObjectBatch) -> np.ndarray:
        """Raw anomaly score per object, shape (N,), float32."""
        ...

    def save(self, path: Path) -> None:
        """Write the trained teacher to ``path`` in a format that cannot carry code (safe torch or npz)."""
        ...

    @classmethod
    def load(cls, path: Path) -> ObjectTeacher:
        """Read a teacher written by :meth:`save`."""
        ...
