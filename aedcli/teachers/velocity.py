"""Velocity teacher: is an object moving unusually fast, or the wrong way, for where it is in the frame?

A learning-light teacher in the spirit of the motion branches of object-centric detectors. Each object's
motion is measured with dense optical flow inside its tube between frames t-3 -> t and t -> t+3, converted
back to source pixels per frame (so speeds of small and large boxes compare), and summarised as the median
and 90th-percentile speed and the direction of the fastest pixels' mean flow. On a fixed camera the
normal speed and size of objects depend on where they are (perspective), so the density can be conditional: an
object can be compared only with the ``context_neighbours`` normal training objects closest to it in box
height and vertical position (off by default); its score is the mean distance, in standardised speeds plus
a lightly weighted direction, to the ``k`` nearest of its peers.

Three switches, set by the synthetic development set (``scripts/teacher_dev.py``, frame-level micro AUC;
never on a benchmark's test set): flow over three-frame pairs (t-3 -> t, t -> t+3) rather than
neighbouring frames (0.926 against 0.890: a walker moves about a pixel per frame, close to the flow's noise
on a small crop); slow objects flagged like fast ones rather than floored at the training median (the floor
fell to 0.602: an object that stops where everyone walks is abnormal there); and no perspective conditioning
by default (0.820 with it on a scene without depth). On a camera with strong perspective, try
``context_neighbours=256``; where people wait and stand, ``flag_slow=False``.

Flow: OpenCV's DIS (Kroeger et al., "Fast Optical Flow using Dense Inverse Search", ECCV 2016) on the
64 x 64 crops, about a millisecond per pair. kNN distance to normal features as the anomaly score follows
density-based outlier detection (Ramaswamy et al., SIGMOD 2000) and the velocity features of object-centric
video anomaly detection (Reiss & Hoshen, "Attribute-based Representations for Accurate and Interpretable
Video Anomaly Detection", 2022), which this teacher simplifies.

>>> teacher = VelocityTeacher()
>>> teacher.fit(train_batches)
>>> scores = teacher.score(test_batch)  # (N,) float32, higher = more abnormal
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from aedcli.errors import WeightsError
from aedcli.files import atomic_path
from aedcli.teachers.base import TUBE_RADIUS, ObjectBatch
from aedcli.teachers.objects import square_window

FORMAT = "aed-teacher-velocity"
VERSION = 1

_DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}

FEATURES = ("speed_p50", "speed_p90", "direction_x", "direction_y", "moving_speed", "box_height", "centre_y")
"""Columns of :func:`object_features`. Speeds are log1p of source pixels per frame (median and 90th
percentile over the box; ``moving_speed``: of the mean flow of its fastest decile of pixels); the direction
is the unit vector of that mean flow; box height and centre y are fractions of the frame height."""

SPEEDS = (0, 1)
DIRECTION = (2, 3)
MOVING_SPEED = 4
CONTEXT = (5, 6)


@dataclass
class VelocityConfig:
    """Settings of the velocity teacher (all JSON-able; stored with the fitted model).

    pairs:              tube index pairs (a, b) whose flow a -> b is measured; index TUBE_RADIUS is frame t.
                        The flow is divided by b - a, so every pair gives pixels per frame.
    k:                  neighbours whose motion distances are averaged into the score.
    context_neighbours: normal objects, nearest in box height and vertical position, that an object is
                        compared with; 0 compares with all of them (no perspective conditioning).
    direction_weight:   weight of the direction (a unit vector) against the standardised speeds: at 0.25 a
                        U-turn (difference 2) counts as half a standard deviation of speed.
    flag_slow:          also flag objects slower than normal (off: slowness is floored at the median).
    max_train:          cap on stored training objects (a seeded random subset beyond it).
    dis_preset:         DIS preset name ("ultrafast", "fast", "medium").
    finest_scale:       DIS finest pyramid level; 0 = full 64 x 64 resolution.
    crop_margin:        the margin the tubes were cut with (``objects.cut_tube``); it fixes how many source
                        pixels one crop pixel spans, so it must match the tube extraction.
    real_pairs_only:    measure only pairs whose frames both exist. Near a clip's ends a tube repeats frame t
                        for the missing neighbours, a pair reaching into them shows no motion, and with
                        ``flag_slow`` the object would read as stopped; the pairs that remain are used (all of
                        them when none remains, e.g. in a clip of one frame). Off reproduces teachers fitted
                        before this switch existed, which is what their files load with.
    """

    pairs: list[list[int]] = field(default_factory=lambda: [[0, TUBE_RADIUS], [TUBE_RADIUS, 2 * TUBE_RADIUS]])
    k: int = 10
    context_neighbours: int = 0
    direction_weight: float = 0.25
    flag_slow: bool = True
    max_train: int = 50_000
    dis_preset: str = "medium"
    finest_scale: int = 0
    crop_margin: float = 0.1
    real_pairs_only: bool = True


def real_pairs(pairs: list[list[int]], reach: np.ndarray) -> list[list[int]]:
    """The pairs (a, b) of tube indices that lie within an object's real frames, ``reach`` = (before, after).

    Index TUBE_RADIUS is frame t; all pairs are returned when none lies within them.
    """
    lo, hi = TUBE_RADIUS - int(reach[0]), TUBE_RADIUS + int(reach[1])
    inside = [[a, b] for a, b in pairs if lo <= min(a, b) and max(a, b) <= hi]
    return inside or list(pairs)


def tube_window(box: np.ndarray, frame_size: tuple[int, int], margin: float) -> tuple[int, int, int]:
    """The source window (x0, y0, side) that ``objects.cut_tube`` cut a box's tube from.

    The box's square window, slid back inside the frame where it fits (as the tube cutter does); only a
    window larger than the frame still reaches past it.
    """
    height, width = frame_size
    x0, y0, side = square_window(box, margin)
    if side <= width:
        x0 = min(max(x0, 0), width - side)
    if side <= height:
        y0 = min(max(y0, 0), height - side)
    return x0, y0, side


def crop_mask(
    box: np.ndarray, frame_size: tuple[int, int], crop: int, margin: float, *, box_only: bool = False
) -> np.ndarray:
    """(crop, crop) bool: the tube pixels that show the frame (and, with ``box_only``, the box itself).

    Where a window reaches past the frame the tube repeats the border pixels; those streaks move with the
    object and would read as motion (or as odd appearance), so teachers leave them out.
    """
    height, width = frame_size
    wx0, wy0, side = tube_window(box, frame_size, margin)
    src = (np.arange(crop, dtype=np.float32) + 0.5) * (side / crop)  # crop pixel centres, source offsets
    x_lo, x_hi, y_lo, y_hi = 0.0, float(width), 0.0, float(height)
    if box_only:
        x0, y0, x1, y1 = (float(v) for v in box[:4])
        x_lo, x_hi, y_lo, y_hi = max(x0, 0.0), min(x1, x_hi), max(y0, 0.0), min(y1, y_hi)
    cols = (wx0 + src >= x_lo) & (wx0 + src < x_hi)
    rows = (wy0 + src >= y_lo) & (wy0 + src < y_hi)
    return rows[:, None] & cols[None, :]


class _FlowMeter:
    """Dense DIS flow between two gray crops; one instance per call (DIS keeps internal buffers)."""

    def __init__(self, preset: str, finest_scale: int) -> None:
        if preset not in _DIS_PRESETS:
            raise ValueError(f"unknown DIS preset {preset!r}; choose one of {sorted(_DIS_PRESETS)}")
        self.dis = cv2.DISOpticalFlow_create(_DIS_PRESETS[preset])
        self.dis.setFinestScale(finest_scale)

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return self.dis.calc(np.ascontiguousarray(a), np.ascontiguousarray(b), None)  # (S, S, 2)


def object_features(batch: ObjectBatch, config: VelocityConfig) -> np.ndarray:
    """Motion and context features per object, (N, len(FEATURES)) float32."""
    meter = _FlowMeter(config.dis_preset, config.finest_scale)
    height = batch.frame_size[0]
    out = np.zeros((len(batch), len(FEATURES)), np.float32)
    crop = batch.tubes.shape[-1]
    reach = batch.real_reach()
    for i in range(len(batch)):
        y0, y1 = float(batch.boxes[i, 1]), float(batch.boxes[i, 3])
        # A tube is the box's square window (longer side plus margins) resized to crop x crop: one crop
        # pixel spans side / crop source pixels, so rescaling the flow keeps absolute speed comparable.
        scale = np.float32(square_window(batch.boxes[i], config.crop_margin)[2] / crop)
        # Only pixels inside the box count: the rest of the window is background.
        inside = crop_mask(batch.boxes[i], batch.frame_size, crop, config.crop_margin, box_only=True).ravel()
        if not inside.any():
            inside[:] = True
        flows = []
        pairs = real_pairs(config.pairs, reach[i]) if config.real_pairs_only else config.pairs
        for a, b in pairs:
            flow = meter(batch.tubes[i, a], batch.tubes[i, b]) * scale / float(b - a)
            flows.append(flow.reshape(-1, 2)[inside])
        vel = np.concatenate(flows)  # (pairs * pixels, 2) source pixels per frame
        mag = np.hypot(vel[:, 0], vel[:, 1])
        p50, p90 = np.percentile(mag, [50, 90])
        # The mean velocity of the fastest decile of pixels is the object's, not the background's.
        mean_v = vel[mag >= p90].mean(axis=0)
        speed = float(np.hypot(*mean_v))
        direction = mean_v / speed if speed > 1e-6 else np.zeros(2, np.float32)
        out[i] = [
            np.log1p(p50),
            np.log1p(p90),
            *direction,
            np.log1p(speed),
            (y1 - y0) / height,
            0.5 * (y0 + y1) / height,
        ]
    return out


class VelocityTeacher:
    """Conditional kNN density of normal objects' motion; score = mean distance to the k nearest."""

    name = "flow"

    def __init__(self, config: VelocityConfig | None = None) -> None:
        self.config = config or VelocityConfig()
        self.mean: np.ndarray | None = None  # (F,) feature means of the training objects
        self.std: np.ndarray | None = None  # (F,) feature spreads
        self.median: np.ndarray | None = None  # (F,) training medians: the floor for slowness
        self.bank: torch.Tensor | None = None  # (M, F) standardised training features
        self.videos: torch.Tensor | None = None  # (M,) training video of each stored object (-1 unknown)

    def features(self, batch: ObjectBatch) -> np.ndarray:
        """Raw (unstandardised) features per object, (N, len(FEATURES)) float32."""
        return object_features(batch, self.config)

    def _embed(self, features: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Standardised features (N, F) and the weight (N,) of each object's direction in distances.

        Unless ``flag_slow``, speeds below the training median are raised to it, and the direction of an
        object moving slower than the median counts in proportion to its speed: a barely moving object has
        no reliable direction, so it must not read as walking the wrong way. Directions stay unit vectors
        (their mean and spread are fixed at 0 and 1), so the weight alone sets their share.
        """
        assert self.mean is not None and self.std is not None and self.median is not None
        x = features.astype(np.float32).copy()
        weight = np.full(len(x), self.config.direction_weight, np.float32)
        if not self.config.flag_slow:
            speeds = list(SPEEDS)
            x[:, speeds] = np.maximum(x[:, speeds], self.median[speeds])
            moving = self.median[MOVING_SPEED]
            weight *= np.minimum(1.0, x[:, MOVING_SPEED] / moving) if moving > 0 else 1.0
        z = (x - self.mean) / self.std
        return torch.from_numpy(z.astype(np.float32)), torch.from_numpy(weight)

    def fit(
        self,
        batches: list[ObjectBatch],
        *,
        epochs: int | None = None,
        seed: int = 0,
        progress: Callable[[int, int], None] | None = None,
    ) -> dict[str, Any]:
        """Store standardised features of normal objects; ``epochs`` is ignored (nothing is trained).

        ``progress(done, total)`` is called after each batch's features (for a progress bar).
        """
        feats, videos = [], []
        for done, batch in enumerate(batches, start=1):
            if len(batch):
                feats.append(self.features(batch))
                videos.append(np.full(len(batch), batch.video, np.int64))
            if progress is not None:
                progress(done, len(batches))
        if not feats:
            raise ValueError("the velocity teacher needs at least one training object")
        return self.fit_features(np.concatenate(feats), np.concatenate(videos), seed=seed)

    def fit_features(self, x: np.ndarray, video: np.ndarray, *, seed: int = 0) -> dict[str, Any]:
        """:meth:`fit` from features already measured: ``x`` (M, F) from :meth:`features`, ``video`` (M,).

        Options that share the flow settings (``pairs``, ``dis_preset``, ``finest_scale``, ``crop_margin``,
        ``real_pairs_only``) share the features, so comparing the others needs the flow measured once.
        """
        if not len(x):
            raise ValueError("the velocity teacher needs at least one training object")
        total = len(x)
        if total > self.config.max_train:
            keep = np.sort(np.random.default_rng(seed).choice(total, self.config.max_train, replace=False))
            x, video = x[keep], video[keep]
        self.median = np.median(x, axis=0).astype(np.float32)
        floored = x.copy()
        if not self.config.flag_slow:
            floored[:, list(SPEEDS)] = np.maximum(x[:, list(SPEEDS)], self.median[list(SPEEDS)])
        self.mean = floored.mean(axis=0).astype(np.float32)
        # A floor on the spread keeps a constant feature (e.g. one box size in a tiny set) from exploding.
        self.std = np.maximum(floored.std(axis=0), 1e-3).astype(np.float32)
        self.mean[list(DIRECTION)], self.std[list(DIRECTION)] = 0.0, 1.0
        self.bank, bank_weight = self._embed(x)
        self.videos = torch.from_numpy(video)
        held_out = len(np.unique(video[video >= 0])) > 1
        if held_out:  # each object against the other videos: how scoring treats training video
            loo = self._knn_distance(self.bank, bank_weight, exclude_self=False, videos=self.videos)
        else:
            loo = self._knn_distance(self.bank, bank_weight, exclude_self=True)
        return {
            "objects": total,
            "stored": len(x),
            "held_out_videos": held_out,
            "train_score_median": float(np.median(loo)),
            "train_score_p99": float(np.percentile(loo, 99)),
        }

    def score(self, batch: ObjectBatch) -> np.ndarray:
        """Mean motion distance to the k nearest normal objects of similar context, (N,) float32.

        Objects of a training video (``batch.video >= 0``) are compared with the other training videos
        only: every object of its own video, the object itself included, is left out of the bank. Without
        that, training objects score near 0 (their own tracks sit a frame away) and their targets say
        nothing about how unusual they are.
        """
        if self.bank is None:
            raise RuntimeError("the velocity teacher must be fitted or loaded before scoring")
        if len(batch) == 0:
            return np.zeros(0, np.float32)
        return self.score_features(self.features(batch), batch.video)

    def score_features(self, features: np.ndarray, video: int = -1) -> np.ndarray:
        """:meth:`score` from features already measured (:meth:`features`) of objects of ``video``."""
        if self.bank is None:
            raise RuntimeError("the velocity teacher must be fitted or loaded before scoring")
        if len(features) == 0:
            return np.zeros(0, np.float32)
        queries, weight = self._embed(features)
        videos = None
        if video >= 0 and self.videos is not None and bool((self.videos != video).any()):
            videos = torch.full((len(queries),), video, dtype=torch.int64)
        return self._knn_distance(queries, weight, exclude_self=False, videos=videos)

    def _knn_distance(
        self,
        queries: torch.Tensor,
        weight: torch.Tensor,
        *,
        exclude_self: bool,
        videos: torch.Tensor | None = None,
        chunk: int = 256,
    ) -> np.ndarray:
        """Queries (Q, F) with direction weights (Q,) -> (Q,) mean motion distance to the k nearest peers.

        Distance^2 = |speed difference|^2 + weight^2 * |direction difference|^2 (standardised speeds, unit
        directions); peers are the ``context_neighbours`` training objects nearest in context (box height,
        centre y). ``videos`` (Q,) leaves out the bank objects of each query's own training video.
        """
        assert self.bank is not None
        speeds, directions, context = list(SPEEDS), list(DIRECTION), list(CONTEXT)
        bank_size = len(self.bank)
        if videos is not None:
            assert self.videos is not None
            own = torch.bincount(self.videos[self.videos >= 0], minlength=int(videos.max()) + 1)
            bank_size -= int(own[videos].max())  # the fewest objects any query may see
        peers = self.config.context_neighbours
        by_context = 0 < peers < bank_size  # else every (visible) bank object is a peer
        peers = peers if by_context else bank_size
        k = max(1, min(self.config.k + int(exclude_self), peers))
        out = []
        for start in range(0, len(queries), chunk):
            q, w = queries[start : start + chunk], weight[start : start + chunk, None]  # (C, F), (C, 1)
            hidden = None
            if videos is not None:
                assert self.videos is not None
                hidden = videos[start : start + chunk, None] == self.videos[None, :]  # (C, M)
            if by_context:
                near = torch.cdist(q[:, context], self.bank[:, context])  # (C, M)
                if hidden is not None:
                    near = near.masked_fill(hidden, float("inf"))
                idx = torch.topk(near, peers, dim=1, largest=False).indices  # (C, P)
                diff = q[:, None, :] - self.bank[idx]  # (C, P, F)
                speed_sq = diff[..., speeds].square().sum(dim=2)  # (C, P)
                direction_sq = diff[..., directions].square().sum(dim=2)
            else:
                speed_sq = torch.cdist(q[:, speeds], self.bank[:, speeds]).square()  # (C, M)
                direction_sq = torch.cdist(q[:, directions], self.bank[:, directions]).square()
                if hidden is not None:
                    speed_sq = speed_sq.masked_fill(hidden, float("inf"))
            d = (speed_sq + w.square() * direction_sq).sqrt()
            nearest = torch.topk(d, k, dim=1, largest=False).values  # (C, k) ascending
            if exclude_self and k > 1:
                nearest = nearest[:, 1:]  # the query itself sits at distance 0
            out.append(nearest.mean(dim=1))
        return torch.cat(out).numpy().astype(np.float32)

    def save(self, path: Path) -> None:
        """Write config, standardisation and the feature bank as tensors (loadable with weights_only)."""
        if self.bank is None or self.mean is None or self.std is None or self.median is None:
            raise RuntimeError("the velocity teacher must be fitted before saving")
        payload = {
            "format": FORMAT,
            "version": VERSION,
            "config": json.dumps(asdict(self.config)),
            "mean": torch.from_numpy(self.mean),
            "std": torch.from_numpy(self.std),
            "median": torch.from_numpy(self.median),
            "bank": self.bank,
            "videos": self.videos if self.videos is not None else torch.full((len(self.bank),), -1),
        }
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)

    @classmethod
    def load(cls, path: Path) -> VelocityTeacher:
        """Read a teacher written by :meth:`save`; refuses files that would need to unpickle objects."""
        payload = read_teacher_file(Path(path), FORMAT, VERSION)
        config = json.loads(payload["config"])
        config.setdefault("real_pairs_only", False)  # files from before the switch measured every pair
        teacher = cls(VelocityConfig(**config))
        teacher.mean = payload["mean"].numpy()
        teacher.std = payload["std"].numpy()
        teacher.median = payload["median"].numpy()
        teacher.bank = payload["bank"].float()
        # Files written before objects carried their video have none: training video is then scored
        # against a bank that holds it.
        videos = payload.get("videos")
        teacher.videos = videos.long() if isinstance(videos, torch.Tensor) else None
        return teacher


def read_teacher_file(path: Path, expected_format: str, version: int | tuple[int, ...]) -> dict[str, Any]:
    """Read a teacher file with ``torch.load(weights_only=True)``; every failure becomes a WeightsError.

    Only tensors, numbers, strings and containers of them load; a file that needs to unpickle any other
    object is refused rather than executed.
    """
    if not path.is_file():
        raise WeightsError(f"teacher file {path} does not exist; fit the teacher first or fix the path.")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
        raise WeightsError(
            f"teacher file {path} cannot be read safely (it is corrupt or holds pickled objects); "
            "refit the teacher to write a clean file."
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != expected_format:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise WeightsError(
            f"teacher file {path} holds {found!r}, not {expected_format!r}; pass the right file."
        )
    versions = (version,) if isinstance(version, int) else version
    if payload.get("version") not in versions:
        readable = " or ".join(str(v) for v in versions)
        raise WeightsError(
            f"teacher file {path} has version {payload.get('version')}, this aed reads {readable}; refit it."
        )
    return payload
