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

The :class:`EvalReport` states its protocol in one line, and :func:`render_reports` shows several reports
(the student, teachers, the flow floor) side by side.

>>> report = evaluate_scores(dataset, {"Test001": scores_001, ...}, sigma=3.0)
>>> report.micro_auc, report.protocol
(0.974, 'ped2 test, all 2,010 frames of 12 videos, Gaussian sigma=3 frames (centred), ...')

Score files (:func:`read_score_dir`): one CSV per test video, ``<video>.csv``, with a header naming at least
the columns ``frame`` and ``score``. ``frame`` is 0-based (the first frame of the video is 0) and every
frame appears exactly once, in any order; other columns are ignored, so ``aed detect``'s CSV can be read back.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from rich.table import Table

from aedcli.data.clips import Clip, Dataset
from aedcli.errors import AedError, DatasetError, UsageError
from aedcli.metrics import (
    MacroConvention,
    Region,
    RegionTrackResult,
    gt_tracks_from_masks,
    micro_auc,
    rbdc_tbdc_by_video,
    read_regions,
    regions_from_map,
    regions_from_rows,
    roc_curve,
    video_auc,
)
from aedcli.scoring import per_video_minmax, smooth_scores
from aedcli.video import open_video

NORMALISATIONS = ("none", "per-video-minmax")
"""``none`` (default): scores as produced. ``per-video-minmax``: comparison with published numbers only."""

REGION_SUFFIXES = (".csv", ".txt")


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
    pads every video with a normal 0 and an abnormal 1 (see :class:`aedcli.metrics.MacroConvention`).
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
    if sigma < 0:
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


# ---------------------------------------------------------------------------------------------------------
# Showing and saving reports


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def render_reports(reports: Mapping[str, EvalReport]) -> Table:
    """A rich table with one row per named report (for example "scores", "student", "flow floor")."""
    with_regions = any(r.rbdc is not None for r in reports.values())
    table = Table(title="frame-level AUC (fractions)", title_justify="left")
    table.add_column("source")
    table.add_column("micro AUC", justify="right")
    table.add_column("macro AUC\n(1-class = 1.0)", justify="right")
    table.add_column("macro AUC\n(padded 0/1)", justify="right")
    if with_regions:
        table.add_column("RBDC", justify="right")
        table.add_column("TBDC", justify="right")
    table.add_column("frames", justify="right")
    for name, report in reports.items():
        row = [name, _fmt(report.micro_auc), _fmt(report.macro_auc), _fmt(report.macro_auc_padded)]
        if with_regions:
            row += [_fmt(report.rbdc), _fmt(report.tbdc)]
        table.add_row(*row, f"{report.frames:,}")
    return table


def protocol_lines(reports: Mapping[str, EvalReport]) -> list[str]:
    """The distinct protocol lines of ``reports``, each prefixed with the rows it applies to."""
    by_protocol: dict[str, list[str]] = {}
    for name, report in reports.items():
        by_protocol.setdefault(report.protocol, []).append(name)
    if len(by_protocol) == 1:
        return [f"protocol: {next(iter(by_protocol))}"]
    return [f"protocol ({', '.join(names)}): {line}" for line, names in by_protocol.items()]


def write_plots(report: EvalReport, out_dir: str | Path, *, threshold: float | None = None) -> list[Path]:
    """Write ``roc.png`` (micro ROC over all frames) and one ``<video>.png`` score plot per test video.

    The video plots show raw and smoothed (evaluated) scores with the ground truth shaded, and ``threshold``
    as a line when given. Returns the paths written.
    """
    from aedcli.plots import plot_roc, plot_video_scores  # matplotlib loads only when plots are asked for

    if not report.scores:
        raise ValueError("this report carries no score sequences to plot")
    out = Path(out_dir)
    labels = np.concatenate([s.labels for s in report.scores.values()])
    evaluated = np.concatenate([s.evaluated for s in report.scores.values()])
    written = [out / "roc.png"]
    settings = f"sigma={report.sigma:g} frames, normalisation {report.normalisation}"
    roc_title = f"{report.dataset} test, micro ROC\n{settings}"
    plot_roc(roc_curve(labels, evaluated), written[0], title=roc_title)
    for name, scores in report.scores.items():
        path = out / f"{_safe_name(name)}.png"
        result = report.per_video[name]
        auc = "single class" if result.auc is None else f"AUC {result.auc:.3f}"
        plot_video_scores(
            path,
            scores.raw,
            smoothed=scores.evaluated if (report.sigma > 0 or report.normalisation != "none") else None,
            labels=scores.labels,
            threshold=threshold,
            title=f"{report.dataset} {name}: {auc}, {report.smoothing}, normalisation {report.normalisation}",
        )
        written.append(path)
    return written


def _safe_name(name: str) -> str:
    """A file name for a video name (video names may hold path separators)."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


# ---------------------------------------------------------------------------------------------------------
# Score sources


def read_score_csv(path: str | Path, frame_count: int | None = None) -> np.ndarray:
    """Scores from a CSV with a header naming ``frame`` (0-based) and ``score`` columns, in frame order.

    Every frame ``0 .. N-1`` must appear once; with ``frame_count`` given, ``N`` must equal it.
    """
    path = Path(path)
    fix = "write a header 'frame,score' and one row per frame, frames numbered from 0"
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            columns = {(c or "").strip().lower(): c for c in (reader.fieldnames or [])}
            if "frame" not in columns or "score" not in columns:
                raise AedError(f"score file {path} has no 'frame' and 'score' columns; {fix}.")
            frames: list[int] = []
            scores: list[float] = []
            for row in reader:
                line = reader.line_num
                try:
                    frame_value = float(row[columns["frame"]])
                    score_value = float(row[columns["score"]])
                except (TypeError, ValueError):
                    raise AedError(
                        f"line {line} of score file {path} lacks a numeric frame or score; {fix}."
                    ) from None
                if frame_value != int(frame_value) or not math.isfinite(score_value):
                    raise AedError(
                        f"line {line} of score file {path} has frame {frame_value:g}, score {score_value}; "
                        "frames must be whole numbers and scores finite."
                    )
                frames.append(int(frame_value))
                scores.append(score_value)
    except UnicodeDecodeError:
        raise AedError(f"score file {path} is not a text CSV file; {fix}.") from None
    except OSError as exc:
        raise AedError(f"score file {path} cannot be read ({exc.strerror}); check the file.") from None

    n = len(frames)
    expected = n if frame_count is None else frame_count
    frame_arr = np.asarray(frames, dtype=np.int64)
    if n != expected:
        raise AedError(
            f"score file {path} has {n} rows but its video has {expected} frames; write one row per frame "
            f"(frame 0 to {expected - 1})."
        )
    if n and (frame_arr.min() != 0 or frame_arr.max() != n - 1 or np.unique(frame_arr).size != n):
        raise AedError(
            f"score file {path} numbers frames from {frame_arr.min()} to {frame_arr.max()} with {n} rows; "
            f"number frames 0 to {n - 1}, each once (0 = first frame)."
        )
    out = np.empty(n, dtype=np.float64)
    out[frame_arr] = scores
    return out


def read_score_dir(dataset: Dataset, directory: str | Path) -> dict[str, np.ndarray]:
    """Raw scores of every test video of ``dataset`` from ``<directory>/<video>.csv`` files."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UsageError(
            f"--scores {directory} is not a folder; give the folder holding one <video>.csv per test video."
        )
    scores = {}
    for clip in dataset.test:
        path = directory / f"{clip.name}.csv"
        if not path.is_file():
            raise AedError(
                f"score file {path} for test video '{clip.name}' is missing; write one CSV (frame,score) per "
                "test video."
            )
        scores[clip.name] = read_score_csv(path, clip.frame_count)
    return scores


def read_region_dir(dataset: Dataset, directory: str | Path) -> dict[str, list[Region]]:
    """Detected regions of every test video from ``<directory>/<video>.csv`` (or ``.txt``) files.

    Rows are ``frame, x_min, y_min, x_max, y_max, score`` (frame 0-based, pixels of the source frame); an
    empty file means no detections in that video (:func:`aedcli.metrics.read_regions`).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise UsageError(
            f"--regions {directory} is not a folder; give the folder holding one <video>.csv of detected "
            "regions per test video."
        )
    regions = {}
    for clip in dataset.test:
        candidates = [directory / f"{clip.name}{suffix}" for suffix in REGION_SUFFIXES]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            raise AedError(
                f"region file {candidates[0]} for test video '{clip.name}' is missing; write one per test "
                "video (rows frame,x_min,y_min,x_max,y_max,score; empty when nothing was detected)."
            )
        regions[clip.name] = read_regions(path)
    return regions


def flow_floor_scores(clip: Clip) -> np.ndarray:
    """A no-learning baseline: per frame, the 99th percentile of optical-flow magnitude since the last frame.

    OpenCV DIS optical flow (medium preset) between consecutive grayscale frames at native resolution; frame
    0, which has no predecessor, takes frame 1's value. It rewards fast motion, which is what most Ped2
    anomalies (bikes, carts, skaters) have (method.md section 6 quotes micro AUC 0.969 unsmoothed on Ped2).
    """
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    previous: np.ndarray | None = None
    scores: list[float] = []
    for frame in clip.frames(gray=True):
        if previous is not None:
            flow = dis.calc(previous, frame, None)  # (H, W, 2) pixels moved from previous to frame
            magnitude = cv2.magnitude(flow[..., 0], flow[..., 1])
            scores.append(float(np.percentile(magnitude, 99)))
        previous = frame
    if previous is None:
        return np.zeros(0)
    if not scores:
        return np.zeros(1)
    return np.asarray([scores[0], *scores], dtype=np.float64)


def flow_floor_source(dataset: Dataset) -> ScoreSource:
    """The flow floor (:func:`flow_floor_scores`) of every test video, as the score source "flow floor"."""
    return ScoreSource(name="flow floor", raw={clip.name: flow_floor_scores(clip) for clip in dataset.test})


def score_dir_source(
    dataset: Dataset, scores_dir: str | Path, regions_dir: str | Path | None = None
) -> ScoreSource:
    """Scores (and optional regions) read from folders of per-video files, as a source named "scores"."""
    raw = read_score_dir(dataset, scores_dir)
    regions = None if regions_dir is None else read_region_dir(dataset, regions_dir)
    return ScoreSource(name="scores", raw=raw, regions=regions)


def student_regions(maps16: np.ndarray, frame_shape: tuple[int, int], *, level: float = 0.5) -> list[Region]:
    """Scored boxes from the student's 16x16 maps of one video, for RBDC/TBDC.

    In each frame, cells at or above ``level`` times the frame's map maximum form the regions (a frame whose
    map is all zero has none); RBDC/TBDC then sweep the regions' scores, so ``level`` only shapes the boxes.
    """
    regions: list[Region] = []
    for frame, cells in enumerate(maps16):
        peak = float(cells.max()) if cells.size else 0.0
        if peak <= 0.0:
            continue
        regions.extend(regions_from_map(cells, frame_shape, threshold=level * peak, frame=frame))
    return regions


def student_source(
    dataset: Dataset,
    weights: str | Path,
    *,
    device: str = "cpu",
    batch_size: int = 8,
    runtime: str = "torch",
    with_regions: bool = True,
) -> ScoreSource:
    """Raw scores (and map regions) of every test video from a student weights file.

    This is the same path ``aed detect`` takes (:class:`aedcli.inference.StudentRunner` or the ONNX runner
    with :func:`aedcli.scoring.frame_scores`), so the scores of a clip agree between the two commands.
    """
    from aedcli.runtime import make_runner
    from aedcli.weights import load_weights

    loaded = load_weights(weights)
    runner, _ = make_runner(loaded, runtime=runtime, device=device, batch_size=batch_size)
    raw: dict[str, np.ndarray] = {}
    regions: dict[str, list[Region]] = {}
    for clip in dataset.test:
        scores, maps16 = runner.score_clip(clip.frames())
        raw[clip.name] = scores
        if with_regions and clip.masks_path is not None:
            with open_video(clip.path) as video:
                shape = (video.info.height, video.info.width)
            regions[clip.name] = student_regions(maps16, shape)
    return ScoreSource(name="student", raw=raw, regions=regions if with_regions and regions else None)


def teacher_source(dataset: Dataset, targets_dir: str | Path, teacher: str) -> ScoreSource:
    """Raw scores (max of the painted map) and scored boxes of a teacher's cached test-set targets.

    ``teacher`` is a registered teacher name (``a``, ``b``, ``flow``) or ``teachers`` for their combination.
    """
    from aedcli.teachers.pipeline import teacher_regions, teacher_scores

    raw = teacher_scores(dataset, targets_dir, teacher)
    rows = teacher_regions(dataset, targets_dir, teacher)
    regions = {name: regions_from_rows(r) for name, r in rows.items()} if dataset.has_masks else None
    label = "teachers" if teacher == "teachers" else f"teacher-{teacher}"
    return ScoreSource(name=label, raw=raw, regions=regions)
