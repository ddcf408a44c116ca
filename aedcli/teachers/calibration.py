"""Count correction: object scores made comparable between quiet and crowded frames.

A frame's score is the largest of its objects' scores, and the largest of K normal scores grows with K, so a
crowded normal frame can outrank a quiet frame with one abnormal object. :class:`CountCorrection` turns an
object's raw score ``s`` in a frame with ``K`` objects into

    -ln(1 - (1 - q(s)) ** K)

the negative log of the chance that at least one of K normal objects scores ``s`` or more, where ``q(s)`` is
the share of normal training objects scoring ``s`` or more. Within a frame the order of the objects is kept;
between frames, a score found among many objects counts for less than the same score alone. ``q`` is the
empirical tail of the training scores (stored as quantiles) up to their 99th percentile, and above it an
exponential tail fitted to the training scores that exceed it, so scores beyond anything seen in training
stay ordered instead of all reaching the same ceiling.

The same tail model, :class:`TailModel`, measures rarity among normal objects elsewhere too: it puts teacher
A's components and teacher B's task errors in one currency (``AppearanceMotionConfig.combine``,
``MultiTaskConfig.combine``) and can scale every teacher's maps (``train-rarity`` in
:mod:`aedcli.teachers.maps`).

>>> corr = CountCorrection.from_training(train_raw)
>>> corrected = corr.apply(raw, frames)          # frames: (N,) frame index of every object
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

FRAME_CORRECTIONS = ("count", "none")
QUANTILES = 1001
TAIL_PERCENTILE = 99.0
_Tail = TypeVar("_Tail", bound="TailModel")


@dataclass(frozen=True)
class TailModel:
    """The normal training objects' score distribution, kept as quantiles and an exponential upper tail."""

    quantiles: list[float] = field(default_factory=list)
    tail_start: float = 0.0
    tail_share: float = 0.01
    tail_scale: float = 1.0
    train_objects: int = 0

    @classmethod
    def from_training(cls: type[_Tail], raw: np.ndarray) -> _Tail:
        raw = np.asarray(raw, np.float64).reshape(-1)
        raw = raw[np.isfinite(raw)]
        if raw.size == 0:
            return cls([0.0, 1.0], 1.0, 1.0, 1.0, 0)
        qs = np.percentile(raw, np.linspace(0.0, 100.0, QUANTILES))
        start = float(np.percentile(raw, TAIL_PERCENTILE))
        excess = raw[raw > start] - start
        scale = float(excess.mean()) if excess.size else 0.0
        if scale <= 1e-9:
            scale = float(max(np.std(raw), 1e-6))
        share = float((np.count_nonzero(raw >= start) + 1) / (raw.size + 1))
        return cls([float(v) for v in qs], start, share, scale, int(raw.size))

    def survival(self, raw: np.ndarray) -> np.ndarray:
        """q(s): the share of normal training objects scoring ``s`` or more, (N,) float64 in (0, 1]."""
        s = np.asarray(raw, np.float64).reshape(-1)
        qs = np.asarray(self.quantiles, np.float64)
        levels = np.linspace(1.0, 0.0, len(qs))  # share at or above each quantile
        body = np.interp(s, qs, levels, left=1.0, right=self.tail_share)
        tail = self.tail_share * np.exp(-np.maximum(s - self.tail_start, 0.0) / self.tail_scale)
        above = s > self.tail_start
        q = np.where(above, np.minimum(tail, self.tail_share), np.maximum(body, self.tail_share))
        return np.clip(np.nan_to_num(q, nan=1.0), 1e-300, 1.0)

    def rarity(self, raw: np.ndarray) -> np.ndarray:
        """-ln q(s): 0 for the lowest normal scores, about ln(100) = 4.6 at their 99th percentile, (N,)."""
        return (-np.log(self.survival(raw))).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {
            "quantiles": list(self.quantiles),
            "tail_start": self.tail_start,
            "tail_share": self.tail_share,
            "tail_scale": self.tail_scale,
            "train_objects": self.train_objects,
        }

    @classmethod
    def from_dict(cls: type[_Tail], d: dict[str, Any]) -> _Tail:
        return cls(
            [float(v) for v in d["quantiles"]],
            float(d["tail_start"]),
            float(d["tail_share"]),
            float(d["tail_scale"]),
            int(d.get("train_objects", 0)),
        )


@dataclass(frozen=True)
class CountCorrection(TailModel):
    """A :class:`TailModel` of raw object scores that also knows how many objects share each frame."""

    def apply(self, raw: np.ndarray, frames: np.ndarray) -> np.ndarray:
        """Corrected scores (N,) float32 of objects with raw scores ``raw`` in frames ``frames`` (N,) int."""
        raw = np.asarray(raw, np.float64).reshape(-1)
        frames = np.asarray(frames).reshape(-1).astype(np.int64)
        if raw.size == 0:
            return np.zeros(0, np.float32)
        _, inverse, counts = np.unique(frames, return_inverse=True, return_counts=True)
        k = counts[inverse].astype(np.float64)
        q = self.survival(raw)
        # 1 - (1 - q)^K, computed without cancellation for tiny q
        p_any = -np.expm1(k * np.log1p(-np.minimum(q, 1.0 - 1e-12)))
        return (-np.log(np.maximum(p_any, 1e-300))).astype(np.float32)


__all__ = ["FRAME_CORRECTIONS", "CountCorrection", "TailModel"]
