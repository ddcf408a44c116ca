"""From teacher scores to the maps the student learns: a fine grid, one scale for all teachers, three targets.

Every teacher paints a *fine grid* of cells of :data:`CELL` x :data:`CELL` working pixels (a cell takes the
largest value painted over it; 0 elsewhere, method.md section 3). Raw values are scaled with statistics of
normal training video only (:class:`Normaliser`): 0 at the median frame's peak, 1 at the 99th-percentile
frame's peak, and then squashed to ``z / (1 + z)`` in [0, 1), so every teacher speaks on one scale (a normal
training frame rarely exceeds 0.5) and no camera's far-off outlier stretches the range. The fine grid is
reduced to the three targets of method.md section 3 by adaptive max-pooling: ``s1`` (1x1), ``m4`` (4x4) and
``l16`` (16x16).

One target file per teacher and clip, ``<run>/targets/<teacher>/<split>/<clip>.npz`` (:class:`TargetPaths`),
holds ``s1 (N,)``, ``m4 (N, 4, 4)``, ``l16 (N, 16, 16)`` float32 and ``meta`` (a JSON string); it is read with
``allow_pickle=False``.

>>> fine = teacher.maps(raw)                     # (N, gh, gw) in [0, 1)
>>> s1, m4, l16 = pool_targets(fine)
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from aedcli.data.clips import Clip
from aedcli.files import save_npz_atomic

CELL = 8
"""Working pixels per side of a fine-grid cell."""

TARGETS_FORMAT = "aed-targets"
TARGETS_VERSION = 2
SCALES = (1, 4, 16)
"""The target maps' sizes: 1x1 (S), 4x4 (M), 16x16 (L)."""


def grid_shape(size: tuple[int, int]) -> tuple[int, int]:
    """Fine-grid cells ``(rows, cols)`` over a working frame of ``size`` (partial cells count)."""
    return max(1, -(-size[0] // CELL)), max(1, -(-size[1] // CELL))


def cell_max(x: np.ndarray) -> np.ndarray:
    """Per-cell maximum of non-negative maps ``(..., H, W)`` -> ``(..., gh, gw)`` (borders padded with 0)."""
    h, w = x.shape[-2:]
    gh, gw = grid_shape((h, w))
    pad = [(0, 0)] * (x.ndim - 2) + [(0, gh * CELL - h), (0, gw * CELL - w)]
    x = np.pad(x, pad) if pad[-1][1] or pad[-2][1] else x
    return x.reshape(*x.shape[:-2], gh, CELL, gw, CELL).max(axis=(-1, -3))


def paint_boxes(boxes: np.ndarray, values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A fine grid ``shape`` with every cell under box ``[x0, y0, x1, y1]`` (working pixels) set to the
    largest value painted over it."""
    grid = np.zeros(shape, np.float32)
    for (x0, y0, x1, y1), value in zip(
        np.asarray(boxes).reshape(-1, 4), np.asarray(values).ravel(), strict=True
    ):
        r0, c0 = int(y0) // CELL, int(x0) // CELL
        r1, c1 = min(shape[0], int(np.ceil(y1 / CELL))), min(shape[1], int(np.ceil(x1 / CELL)))
        cells = grid[r0 : max(r1, r0 + 1), c0 : max(c1, c0 + 1)]
        np.maximum(cells, value, out=cells)
    return grid


def squash(z: np.ndarray) -> np.ndarray:
    """``z / (1 + z)`` for ``z > 0``, 0 otherwise: a scaled score in [0, 1)."""
    z = np.maximum(np.asarray(z, np.float32), 0.0)
    return z / (1.0 + z)


@dataclass(frozen=True)
class Normaliser:
    """Scales a raw score: the median normal training frame's peak becomes 0, the 99th-percentile one 1."""

    median: float
    p99: float

    @classmethod
    def fit(cls, frame_peaks: np.ndarray) -> Normaliser:
        """From the peak raw score of every normal training frame."""
        peaks = np.asarray(frame_peaks, np.float64).ravel()
        if peaks.size == 0:
            return cls(0.0, 1.0)
        median, p99 = (float(v) for v in np.percentile(peaks, [50, 99]))
        return cls(median, p99)

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        spread = max(self.p99 - self.median, 1e-6)
        return (np.asarray(raw, np.float32) - self.median) / spread

    def to_dict(self) -> dict[str, float]:
        return {"median": self.median, "p99": self.p99}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Normaliser:
        return cls(float(d["median"]), float(d["p99"]))


def pool_targets(fine: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fine grids ``(N, gh, gw)`` -> targets ``s1 (N,)``, ``m4 (N, 4, 4)``, ``l16 (N, 16, 16)`` by adaptive
    max-pooling (PyTorch's windows, so they match the student's own pooling)."""
    x = torch.from_numpy(np.ascontiguousarray(fine, np.float32))[:, None]  # (N, 1, gh, gw)
    if x.shape[0] == 0:
        return np.zeros(0, np.float32), np.zeros((0, 4, 4), np.float32), np.zeros((0, 16, 16), np.float32)
    l16 = F.adaptive_max_pool2d(x, 16)[:, 0]
    m4 = F.adaptive_max_pool2d(x, 4)[:, 0]
    s1 = x.flatten(1).max(dim=1).values
    return s1.numpy(), m4.numpy(), l16.numpy()


@dataclass
class Targets:
    """One teacher's targets for one clip."""

    s1: np.ndarray  # (N,)
    m4: np.ndarray  # (N, 4, 4)
    l16: np.ndarray  # (N, 16, 16)
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.s1)

    @classmethod
    def from_fine(cls, fine: np.ndarray, meta: dict[str, Any] | None = None) -> Targets:
        s1, m4, l16 = pool_targets(fine)
        return cls(s1, m4, l16, {"format": TARGETS_FORMAT, "version": TARGETS_VERSION, **(meta or {})})

    @property
    def frame_scores(self) -> np.ndarray:
        """The teacher's own frame score: ``(S + max(M) + max(L)) / 3``, as for the student's head set."""
        n = len(self)
        return (self.s1 + self.m4.reshape(n, -1).max(1) + self.l16.reshape(n, -1).max(1)) / 3.0


class TargetsError(ValueError):
    """A target file that is missing arrays, inconsistent or unreadable."""


def save_targets(path: Path, targets: Targets) -> None:
    """Write one target file atomically."""
    save_npz_atomic(
        path,
        s1=targets.s1.astype(np.float32),
        m4=targets.m4.astype(np.float32),
        l16=targets.l16.astype(np.float32),
        meta=np.asarray(json.dumps(targets.meta, sort_keys=True)),
    )


def load_targets(path: Path) -> Targets:
    """Read a target file written by :func:`save_targets`; raises :class:`TargetsError` when it is broken."""
    try:
        with np.load(path, allow_pickle=False) as z:
            t = Targets(
                s1=np.asarray(z["s1"], np.float32),
                m4=np.asarray(z["m4"], np.float32),
                l16=np.asarray(z["l16"], np.float32),
                meta=json.loads(str(z["meta"])),
            )
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise TargetsError(f"{path}: {type(exc).__name__}: {exc}") from exc
    n = len(t.s1)
    if t.m4.shape != (n, 4, 4) or t.l16.shape != (n, 16, 16):
        raise TargetsError(f"{path}: target arrays disagree on the frame count")
    if t.meta.get("format") != TARGETS_FORMAT or t.meta.get("version") != TARGETS_VERSION:
        raise TargetsError(f"{path}: not a target file of this aed version")
    return t


@dataclass(frozen=True)
class TargetPaths:
    """Where a run keeps its teachers and their targets: the one path scheme of ``teach``, ``distill`` and
    ``eval``.

    ``<run>/teachers/<teacher>.pt`` (the fitted teachers) and ``<run>/targets/<teacher>/<split>/<clip>.npz``.
    """

    root: Path

    def teacher(self, name: str) -> Path:
        return self.root / "teachers" / f"{name}.pt"

    def targets(self, teacher: str, clip: Clip) -> Path:
        return self.root / "targets" / teacher / clip.split / f"{clip.name}.npz"

    def summary(self) -> Path:
        return self.root / "teachers" / "teach.json"
