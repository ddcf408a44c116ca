"""The object teacher: how unusual each moving object's motion is among the objects of normal footage.

Objects come from motion, not from a detector (none can be downloaded, and a fixed camera needs none):
the pixels whose flow exceeds :attr:`ObjectConfig.min_speed` are split by direction (eight overlapping
sectors of two neighbouring 45-degree bins) and each connected region of one sector is an object candidate;
the largest candidates claim their pixels first, and a candidate mostly claimed already (the same object
seen from the neighbouring sector, or a piece of it) is dropped. Splitting by direction keeps apart people
who cross each other, and a cyclist from the walkers beside him, which a background-subtraction blob merges.

Each object is described by its mean velocity ``(vx, vy)`` (working pixels per frame), the median and 90th
percentile of its speed (log), and its area (log): how fast, which way and how big. Its score is the mean
distance to its ``k`` nearest neighbours among the normal training objects (features standardised; Ramaswamy
et al., SIGMOD 2000; the velocity features of Reiss & Hoshen's attribute-based video anomaly detection, 2022,
simplified). A training object is compared only with other videos' objects, so it is not judged against
itself. The frame's peak object score is scaled like every teacher's (:mod:`aedcli.teachers.maps`), and each
object's box is painted with its scaled score.

>>> boxes, features = find_objects(flow)         # (K, 4) working pixels, (K, 5)
>>> teacher = ObjectTeacher.fit(train_features, train_videos)
>>> distances = teacher.distances(features)      # (K,)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np
import torch

from aedcli.teachers.maps import Normaliser, paint_boxes, squash

NAME = "objects"
FEATURES = ("vx", "vy", "log_speed_p50", "log_speed_p90", "log_area")


@dataclass(frozen=True)
class ObjectConfig:
    """min_speed: working pixels per frame a pixel must move to belong to an object (DIS flow is accurate to
    about a tenth of a pixel); directions: 45-degree sectors; min_area: smallest object in working pixels;
    smoothing: box filter applied to the flow before splitting; k: neighbours averaged; max_bank: training
    objects kept (a seeded random subset beyond it)."""

    min_speed: float = 0.3
    directions: int = 8
    min_area: int = 20
    smoothing: int = 5
    k: int = 5
    max_bank: int = 50_000

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ObjectConfig:
        kinds = {k: type(v) for k, v in asdict(cls()).items()}
        return cls(**{k: kinds[k](v) for k, v in d.items()})


def find_objects(flow: np.ndarray, config: ObjectConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Moving objects of one frame's flow ``(h, w, 2)``: boxes ``(K, 4)`` float32 ``[x0, y0, x1, y1]`` and
    features ``(K, 5)`` float32 (:data:`FEATURES`); see the module docstring."""
    cfg = config or ObjectConfig()
    k = cfg.smoothing
    vx = cv2.blur(flow[..., 0], (k, k)) if k > 1 else flow[..., 0]
    vy = cv2.blur(flow[..., 1], (k, k)) if k > 1 else flow[..., 1]
    speed = cv2.magnitude(vx, vy)
    moving = speed > cfg.min_speed
    sector = ((np.arctan2(vy, vx) + np.pi) / (2 * np.pi) * cfg.directions).astype(np.int32) % cfg.directions
    candidates = []  # (area, x, y, w, h, the component's pixels within its box)
    for b in range(cfg.directions):
        mask = (moving & ((sector == b) | (sector == (b + 1) % cfg.directions))).astype(np.uint8)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        for i in range(1, n):
            x, y, w, h, area = (int(v) for v in stats[i])
            if area >= cfg.min_area:
                candidates.append((area, x, y, w, h, labels[y : y + h, x : x + w] == i))
    claimed = np.zeros(speed.shape, bool)
    boxes: list[tuple[float, float, float, float]] = []
    feats: list[tuple[float, ...]] = []
    for area, x, y, w, h, inside in sorted(candidates, key=lambda c: -c[0]):
        taken = claimed[y : y + h, x : x + w]
        if np.count_nonzero(taken & inside) > area / 2:
            continue  # the same object seen from the neighbouring sector, or a piece of a larger one
        taken |= inside
        s = speed[y : y + h, x : x + w][inside]
        p50, p90 = np.percentile(s, [50, 90])
        boxes.append((x, y, x + w, y + h))
        feats.append(
            (
                float(vx[y : y + h, x : x + w][inside].mean()),
                float(vy[y : y + h, x : x + w][inside].mean()),
                float(np.log1p(p50)),
                float(np.log1p(p90)),
                float(np.log(area)),
            )
        )
    found = np.asarray(boxes, np.float32).reshape(-1, 4)
    return found, np.asarray(feats, np.float32).reshape(-1, len(FEATURES))


class ObjectTeacher:
    """kNN density of normal objects' motion and size; see the module docstring."""

    name = NAME

    def __init__(
        self,
        bank: np.ndarray,
        videos: np.ndarray,
        mean: np.ndarray,
        std: np.ndarray,
        config: ObjectConfig | None = None,
        normaliser: Normaliser | None = None,
    ) -> None:
        self.config = config or ObjectConfig()
        self.bank = torch.from_numpy(np.asarray(bank, np.float32))  # (M, F) standardised
        self.videos = torch.from_numpy(np.asarray(videos, np.int64))  # (M,) training video of each
        self.mean = np.asarray(mean, np.float32)
        self.std = np.asarray(std, np.float32)
        self.normaliser = normaliser

    @classmethod
    def fit(
        cls, features: np.ndarray, videos: np.ndarray, config: ObjectConfig | None = None, seed: int = 0
    ) -> ObjectTeacher:
        """Keep (a seeded subset of) the normal training objects ``(M, F)`` and the video of each."""
        cfg = config or ObjectConfig()
        x = np.asarray(features, np.float32).reshape(-1, len(FEATURES))
        v = np.asarray(videos, np.int64).ravel()
        if len(x) > cfg.max_bank:
            keep = np.sort(np.random.default_rng(seed).choice(len(x), cfg.max_bank, replace=False))
            x, v = x[keep], v[keep]
        mean = x.mean(axis=0) if len(x) else np.zeros(len(FEATURES), np.float32)
        std = x.std(axis=0) + 1e-6 if len(x) else np.ones(len(FEATURES), np.float32)
        return cls((x - mean) / std, v, mean, std, cfg)

    def distances(self, features: np.ndarray, video: int = -1) -> np.ndarray:
        """Mean distance ``(K,)`` of each object to its ``k`` nearest normal objects, leaving out those of
        training video ``video`` (``-1``: none)."""
        x = torch.from_numpy(
            ((np.asarray(features, np.float32) - self.mean) / self.std).reshape(-1, len(FEATURES))
        )
        bank = self.bank if video < 0 else self.bank[self.videos != video]
        if len(x) == 0 or len(bank) == 0:
            return np.zeros(len(x), np.float32)
        k = min(self.config.k, len(bank))
        out = []
        for chunk in x.split(4096):
            d = torch.cdist(chunk, bank)  # (c, M)
            out.append(d.topk(k, dim=1, largest=False).values.mean(dim=1))
        return torch.cat(out).numpy()

    def fit_scale(self, frame_peaks: np.ndarray) -> None:
        """Set the score scale from the peak object distance of every normal training frame."""
        self.normaliser = Normaliser.fit(frame_peaks)

    def paint(self, boxes: np.ndarray, distances: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """One frame's fine grid ``shape``: each object's box painted with its scaled score."""
        if self.normaliser is None:
            raise RuntimeError("the object teacher has not been fitted")
        return paint_boxes(boxes, squash(self.normaliser(distances)), shape)

    def state(self) -> dict[str, Any]:
        """Tensors and plain values for the teacher file."""
        return {
            "config": self.config.to_dict(),
            "bank": self.bank,
            "videos": self.videos,
            "mean": torch.from_numpy(self.mean),
            "std": torch.from_numpy(self.std),
            "normaliser": self.normaliser.to_dict() if self.normaliser else None,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ObjectTeacher:
        norm = Normaliser.from_dict(state["normaliser"]) if state.get("normaliser") else None
        return cls(
            state["bank"].numpy(),
            state["videos"].numpy(),
            state["mean"].numpy(),
            state["std"].numpy(),
            ObjectConfig.from_dict(state["config"]),
            norm,
        )
