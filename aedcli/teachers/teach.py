"""The teacher stage: fit the teachers on normal training video, then paint every clip's targets.

1. *Object height.* Objects are found in a sample of the training video's frames
   (:func:`aedcli.teachers.objects.find_objects`); the median height of their boxes is the typical object
   height the motion teacher measures solid bodies against.
2. *Analysis.* Every clip is streamed once through optical flow (:mod:`aedcli.teachers.flow`): the motion
   teacher's raw component maps and the moving objects (boxes, features) are kept per clip in
   ``<run>/teachers/cache/`` (about 10 kB a frame).
3. *Fit.* The object teacher keeps the training objects; each training object's distance is measured
   against the other training videos' objects only. Both teachers take their scale from the peaks of the
   normal training frames (:class:`aedcli.teachers.maps.Normaliser`). The fitted teachers are written to
   ``<run>/teachers/<teacher>.pt``, with the options they score with.
4. *Targets.* Every clip's fine grids are pooled to the student's targets, one file per teacher and clip
   (:class:`aedcli.teachers.maps.TargetPaths`).

Training clips' views (sped-up or magnified copies: the pseudo-anomalies) and test clips are analysed and
painted the same way, by teachers fitted on normal training video only; a view of training video ``i`` is
scored against the other training videos' objects, like video ``i`` itself. The stage resumes: a clip whose
targets exist is skipped, and teacher files are reused when present.

>>> result = teach(load_dataset("ped2"), Path("runs/ped2"), TeachConfig(), extra=pseudo_clips)
>>> result.teachers                     # {"motion": MotionTeacher, "objects": ObjectTeacher}
"""

from __future__ import annotations

import json
import time
import zipfile
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aedcli.data.clips import Clip, Dataset
from aedcli.errors import AedError, DatasetError, UsageError
from aedcli.files import save_npz_atomic, write_json_atomic
from aedcli.teachers.files import Teacher, load_teacher, save_teacher
from aedcli.teachers.flow import clip_flows
from aedcli.teachers.maps import TargetPaths, Targets, TargetsError, grid_shape, load_targets, save_targets
from aedcli.teachers.motion import MotionConfig, MotionTeacher
from aedcli.teachers.objects import ObjectConfig, ObjectTeacher, find_objects

TEACHERS: tuple[str, ...] = (MotionTeacher.name, ObjectTeacher.name)
"""Every teacher, in the order of the student's head sets."""

CACHE_VERSION = 1

Progress = Callable[[str, int, int | None], None]
"""Called with (task, steps done, steps in all) as a stage advances."""


@dataclass(frozen=True)
class TeachConfig:
    """The teacher stage's options; every default is the shipped recipe.

    teachers:      which teachers to fit and paint (their order is that of the student's head sets).
    motion, objects: each teacher's own options.
    height_sample: frame pairs of training video sampled to measure the typical object height.
    seed:          seed of the sample and of the object bank's subset.
    """

    teachers: tuple[str, ...] = TEACHERS
    motion: MotionConfig = field(default_factory=MotionConfig)
    objects: ObjectConfig = field(default_factory=ObjectConfig)
    height_sample: int = 400
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = [t for t in self.teachers if t not in TEACHERS]
        if unknown or not self.teachers or len(set(self.teachers)) != len(self.teachers):
            raise UsageError(
                f"teachers must be distinct names from {', '.join(TEACHERS)}, got {', '.join(self.teachers)}."
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "teachers": list(self.teachers),
            "motion": self.motion.to_dict(),
            "objects": self.objects.to_dict(),
            "height_sample": self.height_sample,
            "seed": self.seed,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TeachConfig:
        base = cls()
        return cls(
            teachers=tuple(d.get("teachers", base.teachers)),
            motion=MotionConfig.from_dict({**base.motion.to_dict(), **d.get("motion", {})}),
            objects=ObjectConfig.from_dict({**base.objects.to_dict(), **d.get("objects", {})}),
            height_sample=int(d.get("height_sample", base.height_sample)),
            seed=int(d.get("seed", base.seed)),
        )


@dataclass
class TeachResult:
    """What :func:`teach` produced."""

    run_dir: Path
    teachers: dict[str, Teacher]
    clips_painted: int
    seconds: float


# ---------------------------------------------------------------------------------------------------------
# Per-clip analysis: flow -> motion component maps and moving objects


@dataclass
class ClipAnalysis:
    """One clip seen through optical flow: the motion teacher's raw maps and the moving objects."""

    motion: np.ndarray  # (N, C, gh, gw) float16
    rows: np.ndarray  # (K, 5) float32 [frame, x0, y0, x1, y1] working pixels
    features: np.ndarray  # (K, F) float32
    grid: tuple[int, int]

    @property
    def frame_count(self) -> int:
        return len(self.motion)


def analyse_clip(clip: Clip, motion: MotionTeacher | None, objects: ObjectConfig) -> ClipAnalysis:
    """Stream ``clip`` through optical flow once (see the module docstring); without a motion teacher only
    the objects are kept."""
    raw: list[np.ndarray] = []
    rows: list[np.ndarray] = []
    feats: list[np.ndarray] = []
    grid = (1, 1)
    for t, (frame, flow) in enumerate(clip_flows(clip.frames(gray=True))):
        grid = grid_shape(frame.shape)
        if motion is not None:
            raw.append(motion.raw_maps(flow).astype(np.float16))
        else:
            raw.append(np.zeros((0, *grid), np.float16))
        boxes, features = find_objects(flow, objects)
        rows.append(np.hstack([np.full((len(boxes), 1), t, np.float32), boxes]))
        feats.append(features)
    if len(raw) != clip.frame_count:
        raise DatasetError(
            f"video '{clip.name}' ({clip.path}) gave {len(raw)} frames where {clip.frame_count} were listed; "
            "check that it is complete and not being written to."
        )
    return ClipAnalysis(
        np.stack(raw) if raw else np.zeros((0, 0, 1, 1), np.float16),
        np.concatenate(rows) if rows else np.zeros((0, 5), np.float32),
        np.concatenate(feats) if feats else np.zeros((0, 5), np.float32),
        grid,
    )


def _analysis_path(run_dir: Path, clip: Clip) -> Path:
    return run_dir / "teachers" / "cache" / clip.split / f"{clip.name}.npz"


def _load_analysis(path: Path, key: str) -> ClipAnalysis | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) != key:
                return None
            return ClipAnalysis(z["motion"], z["rows"], z["features"], tuple(int(v) for v in z["grid"]))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None  # damaged: analysed again


def _analysis_key(clip: Clip, motion: MotionTeacher | None, objects: ObjectConfig) -> str:
    settings: dict[str, Any] = {"v": CACHE_VERSION}
    if motion is not None:
        settings |= {"height": motion.object_height, "motion": motion.config.to_dict()}
    return json.dumps({**settings, "objects": objects.to_dict(), "clip": clip.stamp()}, sort_keys=True)


def _analyse_and_cache(args: tuple[Clip, dict[str, Any] | None, dict[str, Any], Path]) -> ClipAnalysis:
    clip, motion_state, objects_cfg, path = args
    motion = MotionTeacher.from_state(motion_state) if motion_state is not None else None
    objects = ObjectConfig.from_dict(objects_cfg)
    key = _analysis_key(clip, motion, objects)
    found = _load_analysis(path, key)
    if found is not None:
        return found
    analysis = analyse_clip(clip, motion, objects)
    save_npz_atomic(
        path,
        key=np.asarray(key),
        motion=analysis.motion,
        rows=analysis.rows,
        features=analysis.features,
        grid=np.asarray(analysis.grid),
    )
    return analysis


def analyse_clips(
    clips: Sequence[Clip],
    run_dir: Path,
    motion: MotionTeacher | None,
    objects: ObjectConfig,
    *,
    workers: int = 1,
    progress: Progress | None = None,
    task: str = "analyse",
) -> list[ClipAnalysis]:
    """Analyse (or read from the cache) every clip, in order, with ``workers`` processes."""
    state = motion.state() if motion is not None else None
    jobs = [(c, state, objects.to_dict(), _analysis_path(run_dir, c)) for c in clips]
    out: list[ClipAnalysis] = []
    if progress:
        progress(task, 0, len(jobs))
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for analysis in pool.map(_analyse_and_cache, jobs):
                out.append(analysis)
                if progress:
                    progress(task, len(out), len(jobs))
        return out
    for job in jobs:
        out.append(_analyse_and_cache(job))
        if progress:
            progress(task, len(out), len(jobs))
    return out


# ---------------------------------------------------------------------------------------------------------
# Fitting


def object_height(clips: Sequence[Clip], objects: ObjectConfig, sample: int, seed: int) -> float:
    """The median box height of the moving objects in about ``sample`` frames spread over ``clips``."""
    total = sum(c.frame_count for c in clips)
    every = max(1, total // max(1, sample))
    heights: list[np.ndarray] = []
    for clip in clips:
        for t, (_, flow) in enumerate(clip_flows(clip.frames(gray=True))):
            if (t + seed) % every == 0:
                boxes, _ = find_objects(flow, objects)
                heights.append(boxes[:, 3] - boxes[:, 1])
    found = np.concatenate(heights) if heights else np.zeros(0)
    if found.size == 0:
        raise DatasetError(
            "nothing moves in the normal training video, so the teachers have nothing to learn from; "
            "train on footage in which people or vehicles move."
        )
    return float(np.median(found))


def frame_peaks(rows: np.ndarray, values: np.ndarray, frame_count: int) -> np.ndarray:
    """The largest value of each frame's objects ``(frame_count,)`` (0 for a frame without objects)."""
    peaks = np.zeros(frame_count, np.float32)
    if len(rows):
        np.maximum.at(peaks, rows[:, 0].astype(np.int64), values.astype(np.float32))
    return peaks


def fit_teachers(
    dataset: Dataset,
    run_dir: Path,
    config: TeachConfig,
    *,
    workers: int = 1,
    progress: Progress | None = None,
) -> tuple[dict[str, Teacher], list[ClipAnalysis]]:
    """Fit every teacher of ``config`` on the dataset's normal training video; returns the teachers and the
    training clips' analyses."""
    train = list(dataset.train)
    if not train:
        raise DatasetError(
            f"dataset '{dataset.name}' at {dataset.root} has no training videos to learn from."
        )
    if progress:
        progress("object height", 0, None)
    motion: MotionTeacher | None = None
    if MotionTeacher.name in config.teachers:
        height = object_height(train, config.objects, config.height_sample, config.seed)
        motion = MotionTeacher(height, config.motion)
    if progress:
        progress("object height", 1, 1)  # done: the bar stops its clock
    analyses = analyse_clips(train, run_dir, motion, config.objects, workers=workers, progress=progress)
    teachers: dict[str, Teacher] = {}
    if motion is not None:
        motion.fit(np.concatenate([a.motion.astype(np.float32).max(axis=(2, 3)) for a in analyses]))
        teachers[MotionTeacher.name] = motion
    if ObjectTeacher.name in config.teachers:
        videos = np.concatenate([np.full(len(a.features), i) for i, a in enumerate(analyses)])
        feats = np.concatenate([a.features for a in analyses])
        objects = ObjectTeacher.fit(feats, videos, config.objects, seed=config.seed)
        peaks = [
            frame_peaks(a.rows, objects.distances(a.features, video=i), a.frame_count)
            for i, a in enumerate(analyses)
        ]
        objects.fit_scale(np.concatenate(peaks))
        teachers[ObjectTeacher.name] = objects
    paths = TargetPaths(run_dir)
    for name in config.teachers:
        save_teacher(paths.teacher(name), teachers[name])
    return {name: teachers[name] for name in config.teachers}, analyses


def load_teachers(run_dir: Path, names: Sequence[str]) -> dict[str, Teacher]:
    """The fitted teachers ``names`` from ``<run_dir>/teachers/`` (or a folder of teacher files)."""
    folder = Path(run_dir)
    out: dict[str, Teacher] = {}
    for name in names:
        path = TargetPaths(folder).teacher(name)
        out[name] = load_teacher(path if path.is_file() else folder / f"{name}.pt")
    return out


def find_teachers(folder: Path) -> list[str]:
    """The teachers whose files are in ``folder`` (a run folder or a folder of teacher files), in order."""
    found = [
        n for n in TEACHERS if TargetPaths(folder).teacher(n).is_file() or (folder / f"{n}.pt").is_file()
    ]
    if not found:
        raise AedError(
            f"{folder} holds no teacher files ({', '.join(f'{n}.pt' for n in TEACHERS)}); train them with "
            "'aed teach'."
        )
    return found


# ---------------------------------------------------------------------------------------------------------
# Targets


def paint(teacher: Teacher, analysis: ClipAnalysis, video: int = -1) -> np.ndarray:
    """A clip's fine grids ``(N, gh, gw)`` from one teacher; ``video`` is the training video to leave out."""
    if isinstance(teacher, MotionTeacher):
        return teacher.maps(analysis.motion.astype(np.float32))
    distances = teacher.distances(analysis.features, video=video)
    grids = np.zeros((analysis.frame_count, *analysis.grid), np.float32)
    frames = analysis.rows[:, 0].astype(np.int64)
    for t in np.unique(frames):
        sel = frames == t
        grids[t] = teacher.paint(analysis.rows[sel, 1:], distances[sel], analysis.grid)
    return grids


def teach(
    dataset: Dataset,
    run_dir: str | Path,
    config: TeachConfig | None = None,
    *,
    extra: Sequence[Clip] = (),
    test: bool = False,
    train: bool = True,
    workers: int = 1,
    progress: Progress | None = None,
) -> TeachResult:
    """Fit (or reuse) the teachers and write the targets of the training clips (unless ``train`` is False and
    the teachers exist), of ``extra`` clips (views of training video) and, with ``test``, of the test clips.
    Clips whose targets exist are skipped."""
    start = time.perf_counter()
    run_dir = Path(run_dir)
    config = config or TeachConfig()
    paths = TargetPaths(run_dir)
    present = [n for n in TEACHERS if paths.teacher(n).is_file()]
    if present and not train:
        teachers = load_teachers(run_dir, present)
        analyses: list[ClipAnalysis] | None = None
    elif all(paths.teacher(n).is_file() for n in config.teachers):
        teachers = load_teachers(run_dir, config.teachers)
        analyses: list[ClipAnalysis] | None = None
    else:
        teachers, analyses = fit_teachers(dataset, run_dir, config, workers=workers, progress=progress)
    index = {c.name: i for i, c in enumerate(dataset.train)}
    clips = [
        *(dataset.train if train or analyses is not None else []),
        *extra,
        *(dataset.test if test else []),
    ]
    todo = [c for c in clips if any(not paths.targets(n, c).is_file() for n in teachers)]
    motion = teachers.get(MotionTeacher.name)
    motion = motion if isinstance(motion, MotionTeacher) else None
    known = {} if analyses is None else dict(zip((c.name for c in dataset.train), analyses, strict=True))
    pending = [c for c in todo if c.name not in known]
    fresh = analyse_clips(
        pending, run_dir, motion, _objects_config(teachers), workers=workers, progress=progress
    )
    known.update(zip((c.name for c in pending), fresh, strict=True))
    for done, clip in enumerate(todo, 1):
        video = index.get(clip.recording, -1) if clip.split == "train" else -1
        for name, teacher in teachers.items():
            target = paths.targets(name, clip)
            if target.is_file():
                continue
            meta = {"teacher": name, "clip": clip.name, "frame_size": list(known[clip.name].grid)}
            save_targets(target, Targets.from_fine(paint(teacher, known[clip.name], video), meta))
        if progress:
            progress("targets", done, len(todo))
    summary = {
        "config": config.to_dict(),
        "teachers": {n: _describe(t) for n, t in teachers.items()},
        "dataset": dataset.name,
        "training_videos": [c.name for c in dataset.train],
    }
    write_json_atomic(paths.summary(), summary)
    return TeachResult(run_dir, teachers, len(todo), time.perf_counter() - start)


def _objects_config(teachers: dict[str, Teacher]) -> ObjectConfig:
    objects = teachers.get(ObjectTeacher.name)
    return objects.config if isinstance(objects, ObjectTeacher) else ObjectConfig()


def _describe(teacher: Teacher) -> dict[str, Any]:
    if isinstance(teacher, MotionTeacher):
        return {
            "object_height": teacher.object_height,
            "components": teacher.components,
            "normalisers": [n.to_dict() for n in teacher.normalisers or []],
        }
    return {
        "objects_kept": len(teacher.bank),
        "normaliser": teacher.normaliser.to_dict() if teacher.normaliser else None,
    }


def read_targets(run_dir: Path, teachers: Sequence[str], clip: Clip) -> list[Targets]:
    """One :class:`Targets` per teacher for ``clip``; :class:`AedError` naming a missing or broken file."""
    paths = TargetPaths(run_dir)
    out = []
    for name in teachers:
        path = paths.targets(name, clip)
        if not path.is_file():
            raise AedError(f"teacher target {path} is missing; run 'aed teach' for this run folder first.")
        try:
            t = load_targets(path)
        except TargetsError:
            raise AedError(
                f"teacher target {path} is unreadable; delete it and run 'aed teach' again."
            ) from None
        if len(t) != clip.frame_count:
            raise AedError(
                f"teacher target {path} covers {len(t)} frames but video '{clip.name}' has "
                f"{clip.frame_count}; delete it and run 'aed teach' again."
            )
        out.append(t)
    return out


__all__ = [
    "TEACHERS",
    "ClipAnalysis",
    "TeachConfig",
    "TeachResult",
    "analyse_clip",
    "find_teachers",
    "fit_teachers",
    "load_teachers",
    "paint",
    "read_targets",
    "teach",
]
