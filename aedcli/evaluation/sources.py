"""Where the scores ``aed eval`` evaluates come from: the student, the teachers, files, or the flow floor.

Each source is a function returning a :class:`~aedcli.evaluation.evaluate.ScoreSource` (raw scores of every
test video, and detected regions for RBDC/TBDC where they exist), so ``aed eval`` treats them alike.

- :func:`student_source`: the path ``aed detect`` takes (:func:`aedcli.runtime.make_runner`), so the scores
  of a clip agree between the two commands; regions from the finest map.
- :func:`teacher_sources`: each teacher of a run folder (or of a folder of teacher files), and their
  combination, from the targets they paint on the test videos.
- :func:`score_dir_source`: score (and region) files (:mod:`aedcli.evaluation.files`).
- :func:`flow_floor_source`: a no-learning floor, the 99th percentile of optical-flow magnitude per frame.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import cv2
import numpy as np

from aedcli.data.clips import Clip, Dataset
from aedcli.evaluation.evaluate import ScoreSource
from aedcli.evaluation.files import read_region_dir, read_score_dir
from aedcli.evaluation.metrics import Region, regions_from_map
from aedcli.model.weights import load_weights
from aedcli.runtime import make_runner
from aedcli.teachers import find_teachers, read_targets, teach
from aedcli.teachers.maps import TargetPaths
from aedcli.teachers.teach import Progress
from aedcli.video import open_video

COMBINED = "teachers"
"""The name of the teachers' combination: per frame, the largest of their scores (as the student's)."""


def flow_floor_scores(clip: Clip) -> np.ndarray:
    """A no-learning baseline: per frame, the 99th percentile of optical-flow magnitude since the last frame.

    OpenCV DIS optical flow (medium preset) between consecutive grayscale frames at native resolution; frame
    0, which has no predecessor, takes frame 1's value. It rewards fast motion, which is what most Ped2
    anomalies (bikes, carts, skaters) have (method.md section 6).
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


def map_regions(maps16: np.ndarray, frame_shape: tuple[int, int], *, level: float = 0.5) -> list[Region]:
    """Scored boxes from one video's 16x16 maps, for RBDC/TBDC.

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


def _frame_shape(clip: Clip) -> tuple[int, int]:
    with open_video(clip.path) as video:
        return video.info.height, video.info.width


def student_source(
    dataset: Dataset,
    weights: str | Path,
    *,
    device: str = "cpu",
    batch_size: int = 8,
    runtime: str = "auto",
    with_regions: bool = True,
) -> ScoreSource:
    """Raw scores (and map regions) of every test video from a student weights file."""
    loaded = load_weights(weights)
    runner, _ = make_runner(loaded, runtime=runtime, device=device, batch_size=batch_size)
    raw: dict[str, np.ndarray] = {}
    regions: dict[str, list[Region]] = {}
    for clip in dataset.test:
        scores, maps16 = runner.score_clip(clip.frames())
        raw[clip.name] = scores
        if with_regions and clip.masks_path is not None:
            regions[clip.name] = map_regions(maps16, _frame_shape(clip))
    return ScoreSource(name="student", raw=raw, regions=regions if with_regions and regions else None)


def teacher_run_dir(folder: Path) -> Path:
    """A run folder to paint test targets in for the teachers in ``folder``.

    A run folder (``teachers/`` inside) is used as it is. A bare folder of teacher files (such as the shipped
    ``ped2-teachers``, which may not be writable) is copied once into the cache (``$AED_CACHE``, default
    ``~/.cache/aed``), keyed by the files' contents.
    """
    if (folder / "teachers").is_dir():
        return folder
    files = sorted(folder.glob("*.pt"))
    digest = hashlib.blake2b(digest_size=8)
    for f in files:
        digest.update(f.name.encode() + f.read_bytes())
    run = Path(os.environ.get("AED_CACHE", "~/.cache/aed")).expanduser() / "teachers" / digest.hexdigest()
    paths = TargetPaths(run)
    for f in files:
        if not paths.teacher(f.stem).is_file():
            paths.teacher(f.stem).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, paths.teacher(f.stem))
    return run


def teacher_sources(
    dataset: Dataset, folder: str | Path, *, workers: int = 1, progress: Progress | None = None
) -> list[ScoreSource]:
    """One source per teacher found in ``folder``, then their combination (:data:`COMBINED`)."""
    run = teacher_run_dir(Path(folder).expanduser())
    names = find_teachers(run)
    teach(dataset, run, test=True, train=False, workers=workers, progress=progress)
    per: dict[str, dict[str, np.ndarray]] = {n: {} for n in names}
    fine: dict[str, dict[str, np.ndarray]] = {n: {} for n in names}
    for clip in dataset.test:
        for name, targets in zip(names, read_targets(run, names, clip), strict=True):
            per[name][clip.name] = targets.frame_scores.astype(np.float64)
            fine[name][clip.name] = targets.l16
    masks = dataset.has_masks
    shapes = {c.name: _frame_shape(c) for c in dataset.test} if masks else {}

    def source(label: str, raw: dict[str, np.ndarray], maps: dict[str, np.ndarray]) -> ScoreSource:
        regions = {n: map_regions(maps[n], shapes[n]) for n in raw} if masks else None
        return ScoreSource(name=label, raw=raw, regions=regions)

    out = [source(f"teacher {n}", per[n], fine[n]) for n in names]
    if len(names) > 1:
        combined = {c: np.max([per[n][c] for n in names], axis=0) for c in per[names[0]]}
        maps = {c: np.max([fine[n][c] for n in names], axis=0) for c in per[names[0]]}
        out.append(source(COMBINED, combined, maps))
    return out
