"""From object scores to the student's targets: painted low-resolution maps, pooled to 1x1, 4x4 and 16x16.

Method.md section 3: every box is painted with its object's score on a low-resolution grid (a cell takes the
max over the boxes that overlap it, 0 elsewhere); the map volume of a clip is optionally smoothed with a
small 3D mean filter over (time, height, width); adaptive max-pooling reduces each map to the three targets.
Scores are scaled to [0, 1] before painting with statistics of the whole training set (:class:`ScoreScaler`,
``train``): ``(score - lo) / (hi - lo)`` clipped, with ``lo`` and ``hi`` percentiles of the raw scores of all
normal training objects. The teacher stage uses the median and the max (``TeachConfig.lo_percentile = 50``,
``hi_percentile = 100``): a typical normal object paints 0, like empty background, and the most unusual normal
object 1, whatever the teacher's raw units, so the targets of different teachers mean the same thing and a
student distilled from several of them learns their common scale rather than their offsets. ``train-rarity``
keeps those two anchors and measures the way between them in rarity among the normal training objects (``-ln``
of the share scoring as high or higher), so that the normal objects of every teacher spread alike between 0
and 1 whatever the shape of its score distribution. ``train-size`` takes the same two percentiles separately
among normal training objects of similar height (:data:`SIZE_BINS` bins at the quantiles of their box
heights): on a camera with depth, far and small objects, a few pixels tall, score higher on average (their
crops are blown up from a few pixels), and a normal far walker would otherwise outrank an abnormal near one.
``train`` is the default (``DEFAULT_NORMALISATION``), as chosen on the synthetic development set
(``scripts/teacher_dev.py``): ``train-rarity`` won there while teacher b added standardised errors (0.934
frame micro AUC for the teachers' mean against 0.917), and lost once teacher b took the largest rarity of its
tasks (0.934 against 0.939). ``per-video-minmax`` (each clip's own min and max object score, as the paper's
lab code does) is available as a labelled option only: it uses statistics of the very video being judged.

Target file format (one per teacher and clip, ``<targets>/<teacher>/<split>/<clip>.npz``, version 1):

==========  ===================  ========  ==================================================================
array       shape                dtype     meaning
==========  ===================  ========  ==================================================================
``s1``      (N,)                 float32   1x1 target: max of the painted map of each frame
``m4``      (N, 4, 4)            float32   4x4 target: adaptive max-pool of the painted map
``l16``     (N, 16, 16)          float32   16x16 target: adaptive max-pool of the painted map
``lowres``  (N, h, w)            float16   painted (and smoothed) map, h = ceil(H / cell), w = ceil(W / cell)
``boxes``   (K, 6)               float32   rows [frame, x0, y0, x1, y1, score] in source pixels, scaled score
``raw``     (K,)                 float32   the teacher's raw score of each box (before scaling)
``meta``    ()                   str       JSON: format, version, teacher, normalisation, stats, source,
                                           frame_size [H, W], grid [h, w], cell, smoothing
==========  ===================  ========  ==================================================================

N is the clip's frame count; frames without objects have all-zero maps. ``s1``, ``m4`` and ``l16`` all
come from the same ``lowres`` map, so the max of each equals the max of ``lowres`` for every frame.

>>> scaler = ScoreScaler.from_training(train_raw_scores)
>>> targets = build_targets(rows, scaler.apply(raw), frame_count=180, frame_size=(240, 360))
>>> save_targets(path, targets); load_targets(path).s1.shape   # (180,)
"""

from __future__ import annotations

import json
import math
import zipfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import uniform_filter

from aedcli.errors import UsageError
from aedcli.files import save_npz_atomic
from aedcli.teachers.calibration import TailModel

TARGETS_FORMAT = "aed-teacher-targets"
TARGETS_VERSION = 1
NORMALISATIONS = ("train", "train-rarity", "train-size", "per-video-minmax")
DEFAULT_NORMALISATION = "train"
"""What ``aed teach`` scales object scores with unless told otherwise."""
SIZE_BINS = 5
"""``train-size`` scaling: bins of normal training objects by box height (fewer when there are fewer than
``SIZE_BIN_OBJECTS`` objects per bin)."""
SIZE_BIN_OBJECTS = 100
DEFAULT_CELL = 8
"""Grid cell size in source pixels: 240x360 frames -> 30x45 maps."""


# --------------------------------------------------------------------------------------------------- scaling


@dataclass(frozen=True)
class ScoreScaler:
    """Maps raw object scores to [0, 1]: ``clip((s - lo) / (hi - lo), 0, 1)``.

    ``kind="train"``: lo/hi are the ``lo_percentile`` / ``hi_percentile`` of all normal training objects'
    raw scores. ``kind="train-rarity"``: the same anchors, and between them rarity instead of the raw
    score, ``clip((r(s) - r(lo)) / (r(hi) - r(lo)), 0, 1)`` with ``r(s) = -ln q(s)``, ``q`` the share of
    normal training objects scoring ``s`` or more (:class:`aedcli.teachers.calibration.TailModel`, kept in
    ``tail``): every teacher's normal objects then get the same distribution of scaled scores.
    ``kind="train-size"``: lo/hi measured separately in bins of box height (``size_edges``: the inner bin
    edges, fractions of the frame height; ``size_lo`` / ``size_hi``: each bin's percentiles), an object
    scaled with its own height's bin; ``lo`` / ``hi`` stay the percentiles of all objects.
    ``kind="per-video-minmax"``: lo/hi are recomputed per clip by :meth:`for_clip`.
    """

    kind: str = "train"
    lo: float = 0.0
    hi: float = 1.0
    lo_percentile: float = 0.0
    hi_percentile: float = 100.0
    train_objects: int = 0
    tail: dict[str, Any] | None = None
    size_edges: list[float] | None = None
    size_lo: list[float] | None = None
    size_hi: list[float] | None = None

    def __post_init__(self) -> None:
        if self.kind not in NORMALISATIONS:
            raise UsageError(
                f"--normalisation '{self.kind}' is unknown; use one of {', '.join(NORMALISATIONS)}."
            )

    @classmethod
    def from_training(
        cls,
        raw: np.ndarray,
        *,
        kind: str = "train",
        lo_percentile: float = 0.0,
        hi_percentile: float = 100.0,
        heights: np.ndarray | None = None,
    ) -> ScoreScaler:
        """The scaler of normal training objects' ``raw`` scores; ``train-size`` also needs their box
        ``heights`` (fractions of the frame height), one per score."""
        raw = np.asarray(raw, np.float64).reshape(-1)
        if kind == "train-size":
            if heights is None or len(heights) != len(raw):
                raise ValueError("train-size scaling needs one box height per training score")
            heights = np.asarray(heights, np.float64).reshape(-1)[np.isfinite(raw)]
        raw = raw[np.isfinite(raw)]
        if raw.size == 0:
            return cls(kind, 0.0, 1.0, lo_percentile, hi_percentile, 0)
        lo, hi = _anchors(raw, lo_percentile, hi_percentile)
        tail = TailModel.from_training(raw).to_dict() if kind == "train-rarity" else None
        scaler = cls(kind, lo, hi, lo_percentile, hi_percentile, int(raw.size), tail)
        if kind != "train-size":
            return scaler
        bins = max(1, min(SIZE_BINS, raw.size // SIZE_BIN_OBJECTS))
        edges = np.unique(np.quantile(heights, np.arange(1, bins) / bins)).tolist() if bins > 1 else []
        which = np.digitize(heights, edges)
        anchors = [_anchors(raw[which == i], lo_percentile, hi_percentile) for i in range(len(edges) + 1)]
        return replace(
            scaler,
            size_edges=[float(e) for e in edges],
            size_lo=[a[0] for a in anchors],
            size_hi=[a[1] for a in anchors],
        )

    def for_clip(self, raw: np.ndarray) -> ScoreScaler:
        """The scaler to use for one clip's raw scores (itself, or the clip's own min-max)."""
        if self.kind != "per-video-minmax" or len(raw) == 0:
            return self
        lo, hi = _anchors(np.asarray(raw, np.float64), 0.0, 100.0)
        return ScoreScaler(self.kind, lo, hi, 0.0, 100.0, self.train_objects)

    def apply(self, raw: np.ndarray, heights: np.ndarray | None = None) -> np.ndarray:
        """Scaled scores in [0, 1]; ``train-size`` needs the objects' box ``heights`` (fractions of the
        frame height)."""
        x = np.asarray(raw, np.float64)
        if self.kind == "train-rarity" and self.tail is not None:
            model = TailModel.from_dict(self.tail)
            lo, hi = (float(v) for v in model.rarity(np.array([self.lo, self.hi])))
            s = (model.rarity(x).astype(np.float64) - lo) / max(hi - lo, 1e-6)
        elif self.kind == "train-size" and self.size_lo is not None and self.size_hi is not None:
            if heights is None or np.shape(heights) != x.shape:
                raise ValueError("train-size scaling needs one box height per score")
            which = np.digitize(np.asarray(heights, np.float64), self.size_edges or [])
            lo, hi = np.asarray(self.size_lo)[which], np.asarray(self.size_hi)[which]
            s = (x - lo) / (hi - lo)
        else:
            s = (x - self.lo) / (self.hi - self.lo)
        return np.clip(np.nan_to_num(s, nan=0.0), 0.0, 1.0).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        """Everything, as JSON-able values; a scaler without a tail model leaves ``tail`` out."""
        d = asdict(self)
        for key in ("tail", "size_edges", "size_lo", "size_hi"):
            if d[key] is None:
                del d[key]  # as written before rarity and size scaling existed
        return d

    def summary(self) -> dict[str, Any]:
        """:meth:`to_dict` without the tail model's quantiles: what each target file's meta records."""
        return {k: v for k, v in self.to_dict().items() if k != "tail"}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ScoreScaler:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def _anchors(raw: np.ndarray, lo_percentile: float, hi_percentile: float) -> tuple[float, float]:
    """The ``lo`` and ``hi`` percentiles of ``raw`` (0 and 1 for no scores), at least 1e-6 apart."""
    if raw.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(raw, [lo_percentile, hi_percentile])
    return float(lo), float(hi if hi - lo >= 1e-6 else lo + 1.0)


def box_heights(boxes: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
    """Heights of boxes as fractions of the frame height: ``boxes`` (K, 4) [x0, y0, x1, y1], or rows whose
    last four columns are those (the targets' (K, 5) [frame, x0, y0, x1, y1])."""
    b = np.asarray(boxes, np.float64)
    b = b if b.ndim == 2 else b.reshape(-1, 5)
    return (b[:, -1] - b[:, -3]) / float(frame_size[0])


# -------------------------------------------------------------------------------------------------- painting


def grid_shape(frame_size: tuple[int, int], cell: int = DEFAULT_CELL) -> tuple[int, int]:
    """(h, w) of the painted map for frames of (H, W) pixels."""
    return max(1, math.ceil(frame_size[0] / cell)), max(1, math.ceil(frame_size[1] / cell))


def paint_boxes(
    rows: np.ndarray, frame_count: int, frame_size: tuple[int, int], cell: int = DEFAULT_CELL
) -> np.ndarray:
    """Paint rows [frame, x0, y0, x1, y1, score] into (frame_count, h, w) float32 maps.

    A cell takes the max score over the boxes that overlap it (any overlap); cells no box touches are 0.
    """
    h, w = grid_shape(frame_size, cell)
    maps = np.zeros((frame_count, h, w), np.float32)
    for f, x0, y0, x1, y1, s in np.asarray(rows, np.float64).reshape(-1, 6):
        t = int(f)
        if not 0 <= t < frame_count:
            continue
        c0, c1 = max(0, int(x0 // cell)), min(w, max(math.ceil(x1 / cell), int(x0 // cell) + 1))
        r0, r1 = max(0, int(y0 // cell)), min(h, max(math.ceil(y1 / cell), int(y0 // cell) + 1))
        if c1 > c0 and r1 > r0:
            np.maximum(maps[t, r0:r1, c0:c1], s, out=maps[t, r0:r1, c0:c1])
    return maps


def smooth_maps(maps: np.ndarray, size: int = 3) -> np.ndarray:
    """3D mean filter of a clip's (N, h, w) map volume over (time, h, w); ``size <= 1`` returns it as is.

    Edges repeat the nearest value (a frame at the start of a clip is not darkened by missing neighbours).
    """
    if size <= 1 or maps.size == 0:
        return maps.astype(np.float32)
    return uniform_filter(maps.astype(np.float32), size=size, mode="nearest").astype(np.float32)


def pool_targets(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, h, w) maps -> s1 (N,), m4 (N, 4, 4), l16 (N, 16, 16) float32 by adaptive max-pooling."""
    x = torch.from_numpy(np.ascontiguousarray(maps, np.float32))[:, None]  # (N, 1, h, w)
    if len(x) == 0:
        return np.zeros(0, np.float32), np.zeros((0, 4, 4), np.float32), np.zeros((0, 16, 16), np.float32)
    s1 = F.adaptive_max_pool2d(x, 1).reshape(-1)
    m4 = F.adaptive_max_pool2d(x, 4)[:, 0]
    l16 = F.adaptive_max_pool2d(x, 16)[:, 0]
    return s1.numpy(), m4.numpy(), l16.numpy()


# ---------------------------------------------------------------------------------------------------- targets


@dataclass
class Targets:
    """One teacher's targets for one clip (see the module docstring for shapes)."""

    s1: np.ndarray
    m4: np.ndarray
    l16: np.ndarray
    lowres: np.ndarray
    boxes: np.ndarray
    raw: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.s1)

    @property
    def frame_scores(self) -> np.ndarray:
        """The teacher's frame score: max of the painted map (equals s1)."""
        return self.s1.astype(np.float32)


def build_targets(
    rows: np.ndarray,
    raw: np.ndarray,
    *,
    frame_count: int,
    frame_size: tuple[int, int],
    scaler: ScoreScaler,
    calibrated: np.ndarray | None = None,
    cell: int = DEFAULT_CELL,
    smoothing: int = 3,
    meta: dict[str, Any] | None = None,
) -> Targets:
    """Scale a clip's raw object scores, paint, smooth and pool them.

    rows: (K, 5) [frame, x0, y0, x1, y1] boxes; raw: (K,) raw teacher scores of those boxes, stored as they
    are; ``calibrated`` (K,), when given, is what gets scaled instead (the count-corrected scores).
    """
    rows = np.asarray(rows, np.float32).reshape(-1, 5)
    raw = np.asarray(raw, np.float32).reshape(-1)
    values = raw if calibrated is None else np.asarray(calibrated, np.float32).reshape(-1)
    if len(values) != len(raw):
        raise ValueError(f"{len(values)} calibrated scores for {len(raw)} objects")
    clip_scaler = scaler.for_clip(values)
    scaled = clip_scaler.apply(values, box_heights(rows, frame_size))
    boxes = np.hstack([rows, scaled[:, None]]).astype(np.float32)
    lowres = smooth_maps(paint_boxes(boxes, frame_count, frame_size, cell), smoothing)
    s1, m4, l16 = pool_targets(lowres)
    info = {
        "format": TARGETS_FORMAT,
        "version": TARGETS_VERSION,
        "normalisation": scaler.kind,
        "stats": clip_scaler.summary(),
        "frame_size": [int(frame_size[0]), int(frame_size[1])],
        "grid": list(lowres.shape[1:]) if lowres.ndim == 3 else list(grid_shape(frame_size, cell)),
        "cell": cell,
        "smoothing": smoothing,
        **(meta or {}),
    }
    return Targets(s1, m4, l16, lowres.astype(np.float16), boxes, raw, info)


def save_targets(path: Path, targets: Targets) -> None:
    """Write one target file atomically."""
    save_npz_atomic(
        path,
        s1=targets.s1.astype(np.float32),
        m4=targets.m4.astype(np.float32),
        l16=targets.l16.astype(np.float32),
        lowres=targets.lowres.astype(np.float16),
        boxes=targets.boxes.astype(np.float32).reshape(-1, 6),
        raw=targets.raw.astype(np.float32).reshape(-1),
        meta=np.asarray(json.dumps(targets.meta, sort_keys=True)),
    )


class TargetsError(ValueError):
    """A target file that is missing arrays, inconsistent or unreadable."""


def load_targets(path: Path) -> Targets:
    """Read a target file written by :func:`save_targets`; raises :class:`TargetsError` when it is broken."""
    try:
        with np.load(path, allow_pickle=False) as z:
            t = Targets(
                s1=np.asarray(z["s1"], np.float32),
                m4=np.asarray(z["m4"], np.float32),
                l16=np.asarray(z["l16"], np.float32),
                lowres=np.asarray(z["lowres"]),
                boxes=np.asarray(z["boxes"], np.float32).reshape(-1, 6),
                raw=np.asarray(z["raw"], np.float32) if "raw" in z.files else np.zeros(0, np.float32),
                meta=json.loads(str(z["meta"])),
            )
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise TargetsError(f"{path}: {type(exc).__name__}: {exc}") from exc
    n = len(t.s1)
    if t.m4.shape != (n, 4, 4) or t.l16.shape != (n, 16, 16) or len(t.lowres) != n:
        raise TargetsError(f"{path}: target arrays disagree on the frame count")
    if t.meta.get("format") != TARGETS_FORMAT:
        raise TargetsError(f"{path}: not a teacher target file")
    return t
