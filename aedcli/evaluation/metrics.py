"""Frame-level ROC AUC (micro and macro) and the region/track detection criteria RBDC and TBDC.

Frame level (method.md section 6):

- :func:`roc_auc` is the Mann-Whitney statistic: the probability that a random abnormal frame scores above
  a random normal one, ties counting one half. It is computed from average ranks, so it is exact and equals
  the trapezoidal area under :func:`roc_curve`.
- :func:`micro_auc` concatenates every test frame of a dataset into one ROC.
- :func:`macro_auc` averages per-video AUCs. A video with frames of one class only has no AUC; the two
  conventions in use are :attr:`MacroConvention.ONE` (count it as 1.0) and :attr:`MacroConvention.PAD`
  (give *every* video an extra normal frame scored 0 at the start and an abnormal frame scored 1 at the
  end, as the published evaluation scripts do). Results always carry the convention's description.

Region and track level (Ramachandra & Jones, "Street Scene", WACV 2020), see :func:`rbdc_tbdc`:

- a ground-truth region is *detected* at a score threshold when a detected region scored at or above it
  overlaps it with IoU >= ``beta`` (0.1);
- a ground-truth track is detected when at least a fraction ``alpha`` (0.1) of its regions are;
- a detected region that overlaps no ground-truth region of its frame with IoU >= ``beta`` is a false
  positive; the x axis is false-positive regions per frame (over all frames evaluated);
- RBDC / TBDC are the areas under the detection-rate-versus-false-positives curves for x in [0, 1], so a
  perfect detector scores 1.0.

Boxes are ``x0, y0, x1, y1`` in pixels of the source frame, read as continuous coordinates (area
``(x1 - x0) * (y1 - y0)``); boxes built from pixel masks here use ``x1 = last column + 1``.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from scipy.stats import rankdata

from aedcli.errors import DatasetError
from aedcli.files import atomic_path

# ---------------------------------------------------------------------------------------------------------
# Frame-level ROC


def _labels_scores(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels).astype(np.float64).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.size} labels, {s.size} scores")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("labels must be 0 (normal) or 1 (abnormal)")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN or infinite values")
    return y.astype(bool), s


def roc_auc(labels: Any, scores: Any) -> float:
    """Area under the ROC curve of ``scores`` for binary ``labels`` (1 = abnormal), ties averaged.

    Raises ``ValueError`` when the labels hold one class only, since the AUC is then undefined.
    """
    y, s = _labels_scores(labels, scores)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        kind = "abnormal" if n_neg == 0 else "normal"
        raise ValueError(f"ROC AUC needs both normal and abnormal frames; all {y.size} frames are {kind}")
    ranks = rankdata(s, method="average")
    # Mann-Whitney U of the abnormal frames, divided by the number of (abnormal, normal) pairs.
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


@dataclass(frozen=True)
class RocCurve:
    """Operating points from the strictest threshold down: ``fpr[i]``, ``tpr[i]`` at ``thresholds[i]``.

    A frame counts as flagged at threshold ``t`` when its score is ``>= t``.

    The first point is ``(0, 0)`` at threshold ``+inf``; the last is ``(1, 1)``.
    """

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray

    @property
    def auc(self) -> float:
        """Trapezoidal area under the curve (equal to :func:`roc_auc`)."""
        return float(np.sum(np.diff(self.fpr) * (self.tpr[1:] + self.tpr[:-1]) / 2.0))


def roc_curve(labels: Any, scores: Any) -> RocCurve:
    """The ROC curve, one point per distinct score (frames with equal scores enter together)."""
    y, s = _labels_scores(labels, scores)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("a ROC curve needs both normal and abnormal frames")
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    tp = np.cumsum(y_sorted)
    fp = np.cumsum(~y_sorted)
    # Keep the last index of each run of equal scores: a threshold admits all of them at once.
    last_of_run = np.r_[np.nonzero(np.diff(s_sorted))[0], s_sorted.size - 1]
    fpr = np.r_[0.0, fp[last_of_run] / n_neg]
    tpr = np.r_[0.0, tp[last_of_run] / n_pos]
    thresholds = np.r_[np.inf, s_sorted[last_of_run]]
    return RocCurve(fpr=fpr, tpr=tpr, thresholds=thresholds)


def _concat(
    labels_by_video: Mapping[str, Any], scores_by_video: Mapping[str, Any]
) -> tuple[np.ndarray, np.ndarray]:
    missing = [v for v in labels_by_video if v not in scores_by_video]
    if missing:
        raise ValueError(f"no scores for video(s) {', '.join(missing)}")
    labels = [np.asarray(labels_by_video[v]).ravel() for v in labels_by_video]
    scores = [np.asarray(scores_by_video[v], dtype=np.float64).ravel() for v in labels_by_video]
    for video, lab, sc in zip(labels_by_video, labels, scores, strict=True):
        if lab.size != sc.size:
            raise ValueError(f"video {video}: {lab.size} labels but {sc.size} scores")
    return np.concatenate(labels), np.concatenate(scores)


def micro_auc(labels_by_video: Mapping[str, Any], scores_by_video: Mapping[str, Any]) -> float:
    """One ROC AUC over the frames of all videos concatenated (videos taken in ``labels_by_video`` order)."""
    labels, scores = _concat(labels_by_video, scores_by_video)
    return roc_auc(labels, scores)


class MacroConvention(str, Enum):
    """How a macro AUC treats videos whose frames are all normal or all abnormal."""

    ONE = "one"
    PAD = "pad"

    @property
    def description(self) -> str:
        """The words every reported macro number carries."""
        return MACRO_DESCRIPTIONS[self]


MACRO_DESCRIPTIONS: dict[MacroConvention, str] = {
    MacroConvention.ONE: "mean of per-video AUCs; a video with one class only counts as 1.0",
    MacroConvention.PAD: (
        "mean of per-video AUCs, every video padded with a normal frame scored 0 before its first frame and "
        "an abnormal frame scored 1 after its last (as published scripts do; meant for scores in [0, 1])"
    ),
}


def video_auc(labels: Any, scores: Any, convention: MacroConvention | str = MacroConvention.ONE) -> float:
    """One video's AUC under a macro ``convention`` (see :class:`MacroConvention`)."""
    convention = MacroConvention(convention)
    y = np.asarray(labels).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if convention is MacroConvention.PAD:
        return roc_auc(np.r_[0, y, 1], np.r_[0.0, s, 1.0])
    if y.size and (np.all(y == y.flat[0])):
        _labels_scores(y, s)  # still reject malformed input
        return 1.0
    return roc_auc(y, s)


def macro_auc(
    labels_by_video: Mapping[str, Any],
    scores_by_video: Mapping[str, Any],
    convention: MacroConvention | str = MacroConvention.ONE,
) -> float:
    """Mean of per-video AUCs; ``convention`` ("one" or "pad") settles single-class videos."""
    if not labels_by_video:
        raise ValueError("macro AUC needs at least one video")
    _concat(labels_by_video, scores_by_video)  # same checks as micro: every video scored, lengths agree
    aucs = [video_auc(labels_by_video[v], scores_by_video[v], convention) for v in labels_by_video]
    return float(np.mean(aucs))


# ---------------------------------------------------------------------------------------------------------
# Regions and tracks (RBDC / TBDC)

RBDC_ALPHA = 0.1
"""Fraction of a ground-truth track's regions that must be detected for the track to count."""

RBDC_BETA = 0.1
"""IoU at or above which a detected region detects a ground-truth region."""


@dataclass(frozen=True)
class Region:
    """A box in one frame: ``frame`` (0-based), corners in pixels, score (higher = more abnormal)."""

    frame: int
    x0: float
    y0: float
    x1: float
    y1: float
    score: float = 1.0


@dataclass(frozen=True)
class Track:
    """One ground-truth anomalous object: its regions over consecutive frames (their scores are unused)."""

    id: int
    regions: tuple[Region, ...]


@dataclass(frozen=True)
class DetectionCurve:
    """Operating points from the strictest threshold down, starting at ``(0, 0)`` for threshold ``+inf``."""

    thresholds: np.ndarray
    fp_per_frame: np.ndarray
    region_rate: np.ndarray
    track_rate: np.ndarray


@dataclass(frozen=True)
class RegionTrackResult:
    """RBDC and TBDC (areas for false positives per frame in [0, 1]) with what they were computed on."""

    rbdc: float
    tbdc: float
    gt_regions: int
    gt_tracks: int
    detections: int
    frames: int
    alpha: float = RBDC_ALPHA
    beta: float = RBDC_BETA
    curve: DetectionCurve | None = field(default=None, repr=False, compare=False)

    @property
    def description(self) -> str:
        """The criterion in words, for reports."""
        return (
            f"RBDC/TBDC (Ramachandra & Jones 2020): IoU >= {self.beta:g}, track detected at >= "
            f"{self.alpha:.0%} of its regions, area for 0-1 false-positive regions per frame"
        )


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix ``(len(a), len(b))`` of boxes given as rows ``x0, y0, x1, y1``."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ix0 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy0 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix1 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def _box(region: Region) -> list[float]:
    return [region.x0, region.y0, region.x1, region.y1]


def _video_matches(
    detections: Sequence[Region], tracks: Sequence[Track], beta: float, alpha: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Threshold-free facts of one video, from which every operating point follows.

    Returns ``(det_scores, det_is_fp, gt_scores, track_scores)``: each detection's score and whether it is a
    false positive (IoU < beta with every GT region of its frame, whatever the threshold); for each GT
    region the highest score of a detection matching it (-inf if none), so it is detected at threshold t
    exactly when that score >= t; for each track the score at which ``alpha`` of its regions are detected.
    """
    det_scores = np.array([d.score for d in detections], dtype=np.float64)
    det_is_fp = np.ones(len(detections), dtype=bool)
    gt_regions = [(ti, r) for ti, track in enumerate(tracks) for r in track.regions]
    gt_scores = np.full(len(gt_regions), -np.inf)

    dets_by_frame: dict[int, list[int]] = {}
    for i, d in enumerate(detections):
        dets_by_frame.setdefault(int(d.frame), []).append(i)
    gts_by_frame: dict[int, list[int]] = {}
    for j, (_, r) in enumerate(gt_regions):
        gts_by_frame.setdefault(int(r.frame), []).append(j)

    for frame, det_idx in dets_by_frame.items():
        gt_idx = gts_by_frame.get(frame)
        if not gt_idx:
            continue
        iou = box_iou([_box(detections[i]) for i in det_idx], [_box(gt_regions[j][1]) for j in gt_idx])
        match = iou >= beta  # (dets, gts)
        det_is_fp[det_idx] = ~match.any(axis=1)
        frame_det_scores = det_scores[det_idx][:, None]
        best = np.where(match, frame_det_scores, -np.inf).max(axis=0)
        gt_scores[gt_idx] = np.maximum(gt_scores[gt_idx], best)

    track_scores = np.full(len(tracks), -np.inf)
    start = 0
    for ti, track in enumerate(tracks):
        n = len(track.regions)
        scores = np.sort(gt_scores[start : start + n])[::-1]
        start += n
        if n == 0:
            continue
        # Smallest k with k / n >= alpha; rounding guards against 0.1 * 30 = 3.0000000000000004.
        k = max(1, math.ceil(round(alpha * n, 9)))
        track_scores[ti] = scores[k - 1]
    return det_scores, det_is_fp, gt_scores, track_scores


def _area_to_one(x: np.ndarray, y: np.ndarray) -> float:
    """Trapezoidal area under ``y(x)`` for x in [0, 1]: cut at x = 1, or extend the last y flat to x = 1."""
    inside = x <= 1.0
    xs, ys = list(x[inside]), list(y[inside])
    if not inside.all():
        first_out = int(np.argmin(inside))
        x_a, y_a, x_b, y_b = x[first_out - 1], y[first_out - 1], x[first_out], y[first_out]
        xs.append(1.0)
        ys.append(y_a + (y_b - y_a) * (1.0 - x_a) / (x_b - x_a))
    elif xs[-1] < 1.0:
        xs.append(1.0)
        ys.append(ys[-1])
    xs_arr, ys_arr = np.asarray(xs), np.asarray(ys)
    return float(np.sum(np.diff(xs_arr) * (ys_arr[1:] + ys_arr[:-1]) / 2.0))


def rbdc_tbdc_by_video(
    detections_by_video: Mapping[str, Sequence[Region]],
    tracks_by_video: Mapping[str, Sequence[Track]],
    frames_by_video: Mapping[str, int],
    *,
    alpha: float = RBDC_ALPHA,
    beta: float = RBDC_BETA,
) -> RegionTrackResult:
    """RBDC and TBDC over several videos: regions and tracks are matched per video, rates counted over all.

    Every video in ``frames_by_video`` counts towards the frames (the false-positive denominator); a video
    missing from ``detections_by_video`` has no detections, one missing from ``tracks_by_video`` no
    anomalies. Score thresholds sweep every distinct detection score; a threshold admits detections with
    ``score >= threshold``, and detections with equal scores enter together (a sloped curve segment).
    """
    unknown = (set(detections_by_video) | set(tracks_by_video)) - set(frames_by_video)
    if unknown:
        raise ValueError(f"no frame count for video(s) {', '.join(sorted(unknown))}")
    total_frames = int(sum(frames_by_video.values()))
    if total_frames <= 0:
        raise ValueError("RBDC/TBDC needs at least one frame")
    parts = [
        _video_matches(detections_by_video.get(v, ()), tracks_by_video.get(v, ()), beta, alpha)
        for v in frames_by_video
    ]
    det_scores = np.concatenate([p[0] for p in parts])
    det_is_fp = np.concatenate([p[1] for p in parts])
    gt_scores = np.concatenate([p[2] for p in parts])
    track_scores = np.concatenate([p[3] for p in parts])
    if gt_scores.size == 0:
        raise ValueError("RBDC/TBDC needs at least one ground-truth region")

    thresholds = np.unique(det_scores)[::-1]  # strictest first
    fp_sorted = np.sort(det_scores[det_is_fp])
    gt_sorted = np.sort(gt_scores)
    tr_sorted = np.sort(track_scores)

    def at_or_above(sorted_scores: np.ndarray) -> np.ndarray:
        return sorted_scores.size - np.searchsorted(sorted_scores, thresholds, side="left")

    fp_per_frame = np.r_[0.0, at_or_above(fp_sorted) / total_frames]
    region_rate = np.r_[0.0, at_or_above(gt_sorted) / gt_scores.size]
    track_rate = np.r_[0.0, at_or_above(tr_sorted) / max(track_scores.size, 1)]
    curve = DetectionCurve(
        thresholds=np.r_[np.inf, thresholds],
        fp_per_frame=fp_per_frame,
        region_rate=region_rate,
        track_rate=track_rate,
    )
    return RegionTrackResult(
        rbdc=_area_to_one(fp_per_frame, region_rate),
        tbdc=_area_to_one(fp_per_frame, track_rate),
        gt_regions=int(gt_scores.size),
        gt_tracks=int(track_scores.size),
        detections=int(det_scores.size),
        frames=total_frames,
        alpha=alpha,
        beta=beta,
        curve=curve,
    )


def rbdc_tbdc(
    detections: Sequence[Region],
    tracks: Sequence[Track],
    num_frames: int,
    *,
    alpha: float = RBDC_ALPHA,
    beta: float = RBDC_BETA,
) -> RegionTrackResult:
    """RBDC and TBDC of one video with ``num_frames`` frames (see :func:`rbdc_tbdc_by_video`)."""
    return rbdc_tbdc_by_video({"": detections}, {"": tracks}, {"": num_frames}, alpha=alpha, beta=beta)


def gt_tracks_from_masks(masks: Iterable[np.ndarray], *, min_area: int = 1) -> list[Track]:
    """Ground-truth tracks from per-frame pixel masks (``(H, W)`` bool, frames in order from 0).

    Each frame's mask is split into 8-connected components (components under ``min_area`` pixels are
    dropped); each component's bounding box is a region. A component continues the track of a component
    of the *previous* frame that it shares at least one pixel with (pixel IoU > 0). Matching is one-to-one,
    best pixel IoU first, so a track has one region per frame: when a blob splits, the larger overlap keeps
    the track and the other part starts a new one; when blobs merge, the merged blob continues the track it
    overlaps most. A component that overlaps nothing (or an object after a gap of a frame) starts a new track.
    """
    track_regions: list[list[Region]] = []
    prev_labels: np.ndarray | None = None
    prev_tracks: dict[int, int] = {}  # component label in the previous frame -> track index
    for frame, mask in enumerate(masks):
        binary = np.ascontiguousarray(np.asarray(mask) > 0, dtype=np.uint8)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
        keep = [c for c in range(1, count) if stats[c, cv2.CC_STAT_AREA] >= min_area]
        current: dict[int, int] = {}
        if prev_labels is not None and prev_tracks and keep:
            pairs = _overlaps(prev_labels, labels, list(prev_tracks), keep, stats)
            used_prev: set[int] = set()
            for _, p, c in sorted(pairs, reverse=True):
                if p in used_prev or c in current:
                    continue
                used_prev.add(p)
                current[c] = prev_tracks[p]
        for c in keep:
            if c not in current:
                current[c] = len(track_regions)
                track_regions.append([])
            x, y, w, h = (int(v) for v in stats[c, :4])
            track_regions[current[c]].append(Region(frame, x, y, x + w, y + h, 1.0))
        prev_labels, prev_tracks = labels, current
    return [Track(id=i, regions=tuple(regions)) for i, regions in enumerate(track_regions)]


def _overlaps(
    prev_labels: np.ndarray, labels: np.ndarray, prev_ids: list[int], cur_ids: list[int], stats: np.ndarray
) -> list[tuple[float, int, int]]:
    """``(pixel IoU, previous label, current label)`` for every pair of components sharing a pixel."""
    both = (prev_labels > 0) & (labels > 0)
    pairs, inter = np.unique(np.stack([prev_labels[both], labels[both]]), axis=1, return_counts=True)
    prev_area = np.bincount(prev_labels.ravel())
    wanted_prev, wanted_cur = set(prev_ids), set(cur_ids)
    out = []
    for (p, c), n in zip(pairs.T.tolist(), inter.tolist(), strict=True):
        if p in wanted_prev and c in wanted_cur:
            union = prev_area[p] + stats[c, cv2.CC_STAT_AREA] - n
            out.append((n / union, p, c))
    return out


def regions_from_map(
    score_map: Any, frame_shape: tuple[int, int], *, threshold: float = 0.5, frame: int = 0
) -> list[Region]:
    """Scored boxes from a low-resolution anomaly map (for example the student's 16x16 map).

    Cells with value ``>= threshold`` are grouped into 8-connected components; each component becomes one
    region whose box covers its cells scaled to ``frame_shape = (height, width)`` pixels and whose score is
    the component's maximum. ``threshold`` only shapes the regions; RBDC/TBDC then sweep the scores.
    """
    values = np.asarray(score_map, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"regions_from_map takes one 2-D map, got shape {values.shape}")
    rows, cols = values.shape
    height, width = frame_shape
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        (values >= threshold).astype(np.uint8), connectivity=8
    )
    cell_h, cell_w = height / rows, width / cols
    regions = []
    for c in range(1, count):
        x, y, w, h = (int(v) for v in stats[c, :4])
        score = float(values[labels == c].max())
        regions.append(Region(frame, x * cell_w, y * cell_h, (x + w) * cell_w, (y + h) * cell_h, score))
    return regions


def regions_from_rows(rows: Any) -> list[Region]:
    """Regions from an array of rows ``[frame, x0, y0, x1, y1, score]`` (the teacher targets' ``boxes``)."""
    array = np.asarray(rows, dtype=np.float64).reshape(-1, 6)
    return [Region(int(r[0]), float(r[1]), float(r[2]), float(r[3]), float(r[4]), float(r[5])) for r in array]


def _read_numeric_rows(path: Path, columns: int, what: str) -> list[list[float]]:
    """Rows of ``columns`` numbers separated by commas or whitespace; a non-numeric first line is a header."""
    if not path.is_file():
        raise DatasetError(f"{what} file {path} does not exist; write one per test video.")
    rows: list[list[float]] = []
    seen_header = False
    with path.open(newline="", encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            fields = [f for f in (text.split(",") if "," in text else text.split()) if f.strip() != ""]
            try:
                values = [float(f) for f in fields]
            except ValueError:
                if not rows and not seen_header:
                    seen_header = True  # the first non-comment line may name the columns
                    continue
                raise DatasetError(
                    f"{path} line {line_no} is not {columns} numbers; fix the row or remove it."
                ) from None
            if len(values) < columns:
                raise DatasetError(
                    f"{path} line {line_no} has {len(values)} values, expected {columns}; fix the row."
                )
            rows.append(values[:columns])
    return rows


def read_tracks(path: str | Path) -> list[Track]:
    """Ground-truth tracks from a text file with rows ``track_id, frame_id, x_min, y_min, x_max, y_max``.

    Values are separated by commas or whitespace; an optional header line and ``#`` comments are skipped;
    ``frame_id`` is 0-based in the video. Tracks come back sorted by id, their regions by frame.
    """
    by_id: dict[int, list[Region]] = {}
    for tid, frame, x0, y0, x1, y1 in _read_numeric_rows(Path(path), 6, "track"):
        by_id.setdefault(int(tid), []).append(Region(int(frame), x0, y0, x1, y1, 1.0))
    return [Track(id=t, regions=tuple(sorted(r, key=lambda g: g.frame))) for t, r in sorted(by_id.items())]


def read_regions(path: str | Path) -> list[Region]:
    """Detected regions from a text file with rows ``frame_id, x_min, y_min, x_max, y_max, score``.

    Same syntax as :func:`read_tracks`; an empty file means no detections in that video.
    """
    return [
        Region(int(f), x0, y0, x1, y1, s)
        for f, x0, y0, x1, y1, s in _read_numeric_rows(Path(path), 6, "region")
    ]


def write_regions_csv(path: str | Path, regions: Iterable[Region]) -> None:
    """Write regions atomically as CSV rows ``frame,x_min,y_min,x_max,y_max,score`` (:func:`read_regions`)."""
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["frame", "x_min", "y_min", "x_max", "y_max", "score"])
        for r in regions:
            writer.writerow([r.frame, f"{r.x0:g}", f"{r.y0:g}", f"{r.x1:g}", f"{r.y1:g}", f"{r.score:.6g}"])
