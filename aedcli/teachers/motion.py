"""The motion teacher: where, and how much, motion exceeds what normal footage shows, at the size of objects.

Optical flow magnitude alone is a strong cue (most anomalies on a walkway move faster than people walk; the
no-learning floor of ``aed eval --baseline flow`` is the 99th percentile of it). This teacher keeps that cue
and adds the *size* of what moves, measured against the camera's own objects. From each frame's flow
magnitude ``m`` it computes three maps:

- ``area``: ``m`` where it reaches the frame's 99th percentile, else 0 (the floor's own statistic, with its
  place);
- ``body@f``: the speed at which a whole disc of diameter ``f`` times the typical object height moves, i.e.
  ``m`` eroded by that disc (then averaged over it), for ``f`` in :attr:`MotionConfig.body_fractions`.
  A cyclist, a cart or a car moves as one solid body larger than a walker's torso; a walker's swinging legs
  do not.

The typical object height is the median height of the moving objects of the camera's normal training video
(:func:`aedcli.teachers.objects.find_objects`), so the sizes follow the camera, not a dataset. Each map is
max-pooled to the fine grid (:mod:`aedcli.teachers.maps`) and scaled by its own :class:`Normaliser` (peak of
a median normal training frame -> 0, of the 99th-percentile frame -> 1); the teacher's map is the mean of the
three, clipped at 0, squashed to [0, 1). No statistic is kept per location: per-place normal levels over-react
where normal footage rarely moves.

>>> teacher = MotionTeacher(object_height=33.0)
>>> raw = teacher.raw_maps(flow)                 # (3, gh, gw)
>>> teacher.fit(training_peaks)                  # (N, 3): each map's peak on normal training frames
>>> fine = teacher.maps(raw[None])               # (1, gh, gw) in [0, 1)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

from aedcli.teachers.maps import Normaliser, cell_max, squash

NAME = "motion"


@dataclass(frozen=True)
class MotionConfig:
    """area_percentile: the percentile of a frame's flow magnitude that marks its fastest area.
    body_fractions: diameters, as fractions of the typical object height, of the solid bodies measured."""

    area_percentile: float = 99.0
    body_fractions: tuple[float, ...] = (0.3, 0.5)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "body_fractions": list(self.body_fractions)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MotionConfig:
        return cls(float(d["area_percentile"]), tuple(float(f) for f in d["body_fractions"]))


class MotionTeacher:
    """Dense speed maps at the size of objects; see the module docstring."""

    name = NAME

    def __init__(
        self,
        object_height: float,
        config: MotionConfig | None = None,
        normalisers: list[Normaliser] | None = None,
    ) -> None:
        self.config = config or MotionConfig()
        self.object_height = float(object_height)
        self.normalisers = normalisers
        self._discs = [_disc(f * self.object_height) for f in self.config.body_fractions]

    @property
    def components(self) -> list[str]:
        return ["area", *(f"body@{f:g}" for f in self.config.body_fractions)]

    def raw_maps(self, flow: np.ndarray) -> np.ndarray:
        """``(C, gh, gw)`` float32: each component map of one frame's flow ``(h, w, 2)``, cell maxima."""
        m = cv2.magnitude(flow[..., 0], flow[..., 1])  # (h, w) working pixels per frame
        top = np.float32(np.percentile(m, self.config.area_percentile))
        layers = [np.where(m >= top, top, np.float32(0.0))]
        for disc in self._discs:
            k = disc.shape[0]
            layers.append(cv2.blur(cv2.erode(m, disc), (k, k)))
        return cell_max(np.stack(layers)).astype(np.float32)

    def fit(self, peaks: np.ndarray) -> None:
        """Set each component's scale from its peak on every normal training frame, ``(N, C)``."""
        peaks = np.asarray(peaks, np.float32).reshape(-1, len(self.components))
        self.normalisers = [Normaliser.fit(peaks[:, c]) for c in range(peaks.shape[1])]

    def maps(self, raw: np.ndarray) -> np.ndarray:
        """``(N, C, gh, gw)`` raw component maps -> the teacher's maps ``(N, gh, gw)`` in [0, 1)."""
        if self.normalisers is None:
            raise RuntimeError("the motion teacher has not been fitted")
        z = np.stack([np.maximum(norm(raw[:, c]), 0.0) for c, norm in enumerate(self.normalisers)], 1)
        return squash(z.mean(axis=1))

    def state(self) -> dict[str, Any]:
        """Plain values for the teacher file."""
        return {
            "config": self.config.to_dict(),
            "object_height": self.object_height,
            "normalisers": [n.to_dict() for n in self.normalisers or []],
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> MotionTeacher:
        norms = [Normaliser.from_dict(n) for n in state["normalisers"]] or None
        return cls(float(state["object_height"]), MotionConfig.from_dict(state["config"]), norms)


def _disc(diameter: float) -> np.ndarray:
    k = max(3, round(diameter) | 1)  # odd, at least 3
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
