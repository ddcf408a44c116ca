"""Score and region files that ``aed eval --scores`` / ``--regions`` read.

Score files: one CSV per test video, named as ``aed detect`` names its output (``<video>_scores.csv``) or
plainly ``<video>.csv``, with a header naming at least the columns ``frame`` and ``score``. ``frame`` is
0-based (the first frame of the video is 0) and every frame appears exactly once, in any order; other columns
are ignored. So ``aed detect videos/ --out results/`` followed by ``aed eval --scores results/`` just works.

Region files (RBDC/TBDC): ``<video>.csv`` or ``.txt`` with rows ``frame, x_min, y_min, x_max, y_max, score``.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from aedcli.data.clips import Dataset
from aedcli.detect.sources import safe_name
from aedcli.errors import AedError, UsageError
from aedcli.evaluation.metrics import Region, read_regions

SCORE_SUFFIXES = ("_scores.csv", ".csv")
"""How a test video's score file may be named (the first is what ``aed detect`` writes)."""
REGION_SUFFIXES = (".csv", ".txt")


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
    """Raw scores of every test video of ``dataset`` from ``<directory>/<video>_scores.csv`` (or
    ``<video>.csv``) files."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UsageError(
            f"--scores {directory} is not a folder; give the folder holding one <video>.csv per test video."
        )
    scores = {}
    for clip in dataset.test:
        # 'aed detect' names its files after the video with spaces and other signs replaced (safe_name).
        names = dict.fromkeys([clip.name, safe_name(clip.name)])
        candidates = [directory / f"{name}{suffix}" for suffix in SCORE_SUFFIXES for name in names]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            raise AedError(
                f"score file {candidates[0]} for test video '{clip.name}' is missing; run 'aed detect' on "
                f"the test videos with --out {directory}, or write one CSV (frame,score) per test video."
            )
        scores[clip.name] = read_score_csv(path, clip.frame_count)
    return scores


def read_region_dir(dataset: Dataset, directory: str | Path) -> dict[str, list[Region]]:
    """Detected regions of every test video from ``<directory>/<video>.csv`` (or ``.txt``) files.

    Rows are ``frame, x_min, y_min, x_max, y_max, score`` (frame 0-based, pixels of the source frame); an
    empty file means no detections in that video (:func:`aedcli.evaluation.metrics.read_regions`).
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
