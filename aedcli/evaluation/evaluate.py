"""Evaluate raw frame scores against a dataset's ground truth, following method.md section 6.

:func:`evaluate_scores` is the one function ``aed eval`` uses, whatever produced the scores (score files,
the student, a teacher, the flow floor):

1. every test video must have exactly one finite raw score per frame;
2. each video is smoothed on its own (:func:`aedcli.scoring.smooth_scores`, centred Gaussian, ``sigma``
   frames, edges repeating the first / last score);
3. optionally each smoothed video is min-max scaled to [0, 1] with its own statistics
   (``normalisation="per-video-minmax"``, comparison with published numbers only; after smoothing, as the
   published scripts do);
4. micro AUC over all test frames, macro AUC under both conventions, and per-video AUCs; RBDC/TBDC when
   detected regions are given (ground-truth tracks come from the dataset's pixel masks).

The :class:`EvalReport` states its protocol in one line; :mod:`aedcli.evaluation.report` shows several
reports (the student, teachers, the flow floor) side by side, and :mod:`aedcli.evaluation.sources` produces
the scores.

>>> report = evaluate_scores(dataset, {"Test001": scores_001, ...}, sigma=3.0)
>>> report.micro_auc, report.protocol
(0.974, 'ped2 test, all 2,010 frames of 12 videos, Gaussian sigma=3 frames (centred), ...')
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aedcli.data.clips import Clip, Dataset
from aedcli.errors import AedError, DatasetError, UsageError
from aedcli.evaluation.metrics import (
    MacroConvention,
    Region,
    RegionTrackResult,
    gt_tracks_from_masks,
    micro_auc,
    rbdc_tbdc_by_video,
    video_auc,
)
from aedcli.scoring import per_video_minmax, smooth_scores

NORMALISATIONS = ("none", "per-video-minmax")
"""``none`` (default): scores as produced. ``per-video-minmax``: comparison with published numbers only."""


@dataclass(frozen=True)
class VideoResult:
    """One test video's numbers; ``auc`` is ``None`` when the video has frames of one class only."""

    frames: int
    abnormal_frames: int
    auc: float | None
    auc_padded: float

    def to_json(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "abnormal_frames": self.abnormal_frames,
            "auc": self.auc,
            "auc_padded": self.auc_padded,
        }


@dataclass(frozen=True)
class VideoScores:
    """The sequences behind a video's numbers: raw scores, evaluated (smoothed, normalised) scores, labels."""

    raw: np.ndarray
    evaluated: np.ndarray
    labels: np.ndarray


@dataclass
class EvalReport:
    """Frame-level (and optionally region/track-level) results of one score source on one dataset.

    AUCs are fractions in [0, 1]. ``macro_auc`` counts single-class videos as 1.0, ``macro_auc_padded``
    pads every video with a normal 0 and an abnormal 1 (see
    :class:`aedcli.evaluation.metrics.MacroConvention`).
    """

    dataset: str
    micro_auc: float
    macro_auc: float
    macro_auc_padded: float
    frames: int
    videos: int
    sigma: float
    normalisation: str
    per_video: dict[str, VideoResult]
    rbdc: float | None = None
    tbdc: float | None = None
    regions: RegionTrackResult | None = field(default=None, repr=False)
    scores: dict[str, VideoScores] = field(default_factory=dict, repr=False)

    @property
    def smoothing(self) -> str:
        """The temporal smoothing in words."""
        if self.sigma == 0:
            return "no temporal smoothing (sigma=0)"
        return f"Gaussian sigma={self.sigma:g} frames (centred, ends repeat the first/last score)"

    @property
    def protocol(self) -> str:
        """Everything a number depends on, in one line (method.md section 6: every result states it)."""
        line = (
            f"{self.dataset} test, all {self.frames:,} frames of {self.videos} videos, {self.smoothing}, "
            f"normalisation: {self.normalisation}, macro: single-class videos count 1.0 / padded 0-1"
        )
        if self.regions is not None:
            line += (
                f", RBDC/TBDC: IoU >= {self.regions.beta:g}, tracks detected at >= {self.regions.alpha:.0%} "
                f"of {self.regions.gt_tracks} ground-truth tracks, false positives per frame 0-1"
            )
        return line

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: the numbers, the protocol in words and per-video results."""
        out: dict[str, Any] = {
            "dataset": self.dataset,
            "micro_auc": self.micro_auc,
            "macro_auc": self.macro_auc,
            "macro_auc_padded": self.macro_auc_padded,
            "frames": self.frames,
            "videos": self.videos,
            "sigma": self.sigma,
            "normalisation": self.normalisation,
            "macro_convention": {
                "macro_auc": MacroConvention.ONE.description,
                "macro_auc_padded": MacroConvention.PAD.description,
            },
            "protocol": self.protocol,
        }
        if self.rbdc is not None and self.regions is not None:
            out["rbdc"] = self.rbdc
            out["tbdc"] = self.tbdc
            out["region_criteria"] = {
                "alpha": self.regions.alpha,
                "beta": self.regions.beta,
                "gt_regions": self.regions.gt_regions,
                "gt_tracks": self.regions.gt_tracks,
                "detections": self.regions.detections,
                "description": self.regions.description,
            }
        out["per_video"] = {name: result.to_json() for name, result in self.per_video.items()}
        return out


@dataclass
class ScoreSource:
    """Raw frame scores of every test video from one source, and optional detected regions per video.

    Each way of producing scores (score files, the flow floor, ...) is one function returning this, so
    ``aed eval`` treats them alike.
    """

    name: str
    raw: dict[str, np.ndarray]
    regions: dict[str, list[Region]] | None = None


def evaluate_scores(
    dataset: Dataset,
    raw_scores: Mapping[str, Any],
    *,
    sigma: float,
    normalisation: str = "none",
    regions: Mapping[str, Sequence[Region]] | None = None,
) -> EvalReport:
    """Evaluate raw per-frame scores of every test video of ``dataset`` (see the module docstring).

    ``raw_scores`` maps each test video's name to ``(frame_count,)`` scores; extra names are ignored.
    ``regions`` maps video names to detected regions (a video left out has none) and adds RBDC/TBDC.
    """
    if not (math.isfinite(sigma) and sigma >= 0):
        raise UsageError(f"--sigma must be 0 (no smoothing) or more frames, not {sigma:g}.")
    if normalisation not in NORMALISATIONS:
        raise UsageError(
            f"--normalisation must be one of {', '.join(NORMALISATIONS)}, not '{normalisation}'."
        )
    clips = list(dataset.test)
    if not clips:
        raise DatasetError(f"dataset '{dataset.name}' at {dataset.root} has no test videos to evaluate on.")
    unlabelled = [c.name for c in clips if c.labels is None]
    if unlabelled:
        raise DatasetError(
            f"test video '{unlabelled[0]}' of dataset '{dataset.name}' has no frame labels; add its ground "
            "truth to evaluate."
        )

    labels_by_video: dict[str, np.ndarray] = {}
    scores_by_video: dict[str, VideoScores] = {}
    for clip in clips:
        raw = _checked_scores(dataset.name, clip, raw_scores)
        smoothed = smooth_scores(raw, sigma)
        evaluated = per_video_minmax(smoothed) if normalisation == "per-video-minmax" else smoothed
        labels = np.asarray(clip.labels).astype(np.uint8)
        labels_by_video[clip.name] = labels
        scores_by_video[clip.name] = VideoScores(raw=raw, evaluated=evaluated, labels=labels)

    evaluated = {name: s.evaluated for name, s in scores_by_video.items()}
    try:
        micro = micro_auc(labels_by_video, evaluated)
    except ValueError as exc:
        raise DatasetError(
            f"the test videos of dataset '{dataset.name}' at {dataset.root} cannot be scored by AUC ({exc}); "
            "check its frame labels."
        ) from None

    per_video = {}
    for name, labels in labels_by_video.items():
        single_class = bool(np.all(labels == labels[0])) if labels.size else True
        per_video[name] = VideoResult(
            frames=int(labels.size),
            abnormal_frames=int(labels.sum()),
            auc=None if single_class else video_auc(labels, evaluated[name], MacroConvention.ONE),
            auc_padded=video_auc(labels, evaluated[name], MacroConvention.PAD),
        )
    macro_one = float(np.mean([1.0 if r.auc is None else r.auc for r in per_video.values()]))
    macro_pad = float(np.mean([r.auc_padded for r in per_video.values()]))

    region_result = None
    if regions is not None:
        region_result = _region_scores(dataset, clips, regions)

    return EvalReport(
        dataset=dataset.name,
        micro_auc=micro,
        macro_auc=macro_one,
        macro_auc_padded=macro_pad,
        frames=sum(r.frames for r in per_video.values()),
        videos=len(per_video),
        sigma=float(sigma),
        normalisation=normalisation,
        per_video=per_video,
        rbdc=None if region_result is None else region_result.rbdc,
        tbdc=None if region_result is None else region_result.tbdc,
        regions=region_result,
        scores=scores_by_video,
    )


def _checked_scores(dataset_name: str, clip: Clip, raw_scores: Mapping[str, Any]) -> np.ndarray:
    if clip.name not in raw_scores:
        raise AedError(
            f"no scores for test video '{clip.name}' of dataset '{dataset_name}'; give one score per frame "
            "for every test video."
        )
    raw = np.asarray(raw_scores[clip.name], dtype=np.float64).ravel()
    if raw.size != clip.frame_count:
        raise AedError(
            f"test video '{clip.name}' has {clip.frame_count} frames but {raw.size} scores; give exactly one "
            "score per frame."
        )
    if not np.all(np.isfinite(raw)):
        bad = int(np.flatnonzero(~np.isfinite(raw))[0])
        raise AedError(
            f"the score of frame {bad} of test video '{clip.name}' is not a finite number; fix it."
        )
    return raw


def _region_scores(
    dataset: Dataset, clips: list[Clip], regions: Mapping[str, Sequence[Region]]
) -> RegionTrackResult:
    for clip in clips:
        for region in regions.get(clip.name, ()):
            if not 0 <= region.frame < clip.frame_count:
                raise AedError(
                    f"a detected region of test video '{clip.name}' is in frame {region.frame}, outside its "
                    f"{clip.frame_count} frames (0-based); fix the region file."
                )
    tracks_by_video = {}
    for clip in clips:
        masks = clip.masks()
        if masks is None:
            raise DatasetError(
                f"test video '{clip.name}' of dataset '{dataset.name}' has no pixel masks, which RBDC/TBDC "
                "need; drop --regions for this dataset."
            )
        # Ground-truth tracks are rebuilt from the masks on every call (about 0.1 s per Ped2 video).
        tracks_by_video[clip.name] = gt_tracks_from_masks(masks)
    frames = {clip.name: clip.frame_count for clip in clips}
    detections = {clip.name: list(regions.get(clip.name, ())) for clip in clips}
    try:
        return rbdc_tbdc_by_video(detections, tracks_by_video, frames)
    except ValueError as exc:
        raise DatasetError(
            f"RBDC/TBDC cannot be computed on dataset '{dataset.name}' ({exc}); check its pixel masks."
        ) from None
