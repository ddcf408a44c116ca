"""The teacher stage: proposals -> fitted teachers -> scored objects -> target files, resumable.

:func:`ensure_targets` makes every teacher target file of a dataset exist, doing only the missing work:

1. **proposals** for every train and test clip, cached at ``<targets>/boxes/<split>/<clip>.npz``;
2. **fit** each teacher on objects of the normal training clips (frames subsampled evenly when there are
   more than ``max_train_objects`` objects), saved to ``<targets>/<teacher>/teacher.pt``; a readable file
   there is reused;
3. **score** every object of every clip, cached with the teacher's fingerprint at
   ``<targets>/<teacher>/raw/<split>/<clip>.npz``;
4. **scale** raw scores to [0, 1] with statistics of the whole training set (``scaler.json``: the median
   of the normal training objects maps to 0, their max to 1), or per video
   when asked (``per-video-minmax``, a labelled option). With ``frame_correction="count"`` (an option,
   off by default) each score is first count-corrected (:mod:`aedcli.teachers.calibration`: a score among
   many objects in a frame counts for less than the same score alone), with the training objects' score
   distribution stored in ``scaler.json`` too;
5. **paint** and write ``<targets>/<teacher>/<split>/<clip>.npz`` (format in :mod:`aedcli.teachers.maps`).

Every file is written atomically and checked when read, so a run that was killed resumes where it stopped,
and a file written with another teacher, other proposals or another normalisation is redone.
``workers > 1`` spreads proposal and scoring work over that many processes (one clip per job).

For evaluation, :func:`teacher_scores` gives the test clips' frame scores (max of the painted map) and
:func:`teacher_regions` their scored boxes; the name ``teachers`` combines all teachers found on disk by the
**mean** of their scaled maps (and of their box scores: every teacher scores the same cached boxes). The mean
is used rather than the max so that one noisy teacher cannot dominate; it is also what a student trained
with equal weights on every teacher (method.md section 4) approximates.

>>> ensure_targets(load_dataset("ped2"), Path("runs/ped2/targets"), ["a"])
>>> scores = teacher_scores(dataset, Path("runs/ped2/targets"), "a")   # {clip: (N,) float32}
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import math
import multiprocessing as mp
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from aedcli.errors import AedError, UsageError, WeightsError
from aedcli.files import atomic_path, save_npz_atomic, write_json_atomic
from aedcli.teachers import COMBINED, TEACHER_CLASSES, parse_teachers, teacher_class
from aedcli.teachers.base import ObjectBatch
from aedcli.teachers.calibration import FRAME_CORRECTIONS, CountCorrection
from aedcli.teachers.maps import (
    DEFAULT_NORMALISATION,
    NORMALISATIONS,
    ScoreScaler,
    Targets,
    TargetsError,
    box_heights,
    build_targets,
    load_targets,
    save_targets,
)
from aedcli.teachers.objects import iter_object_batches
from aedcli.teachers.proposals import CACHE_VERSION as BOXES_VERSION
from aedcli.teachers.proposals import ClipBoxes, ProposalConfig, boxes_to_rows, load_boxes, load_or_propose

if TYPE_CHECKING:
    from aedcli.data import Clip, Dataset
    from aedcli.teachers.choices import TeacherChoices

log = logging.getLogger("aedcli")

RAW_VERSION = 1


class _LazyRegistry(Mapping[str, Any]):
    """``TEACHERS[name]`` imports the teacher class on first use (see :func:`teacher_class`)."""

    def __getitem__(self, key: str) -> Any:
        return teacher_class(key)

    def __iter__(self) -> Iterator[str]:
        return iter(TEACHER_CLASSES)

    def __len__(self) -> int:
        return len(TEACHER_CLASSES)


TEACHERS: Mapping[str, Any] = _LazyRegistry()
"""Name -> teacher class: ``a`` AppearanceMotionTeacher, ``b`` MultiTaskTeacher, ``flow`` VelocityTeacher."""


@dataclass
class TeachConfig:
    """Settings of the teacher stage other than the teachers' own."""

    proposals: ProposalConfig = field(default_factory=ProposalConfig)
    max_train_objects: int = 8000
    batch_size: int = 256
    margin: float = 0.1
    cell: int = 8
    smoothing: int = 3
    lo_percentile: float = 50.0
    hi_percentile: float = 100.0
    frame_correction: str = "none"
    seed: int = 0
    b_seeds: int | None = None  # None: teacher B's own default (one network), or what a reused file holds
    a_combine: str | None = None  # None: teacher A's own default, or what a reused file holds
    b_combine: str | None = None  # the same for teacher B
    b_views: str | None = None  # the views teacher B asks its tasks in (None: as for b_combine)
    a_weights: dict[str, float] | None = None  # teacher A's component weights (None: as for a_combine)
    velocity: dict[str, Any] | None = None  # fields of the velocity teacher's config (None: its defaults)
    corrections: dict[str, str] = field(default_factory=dict)  # teacher -> frame correction, over the above

    def __post_init__(self) -> None:
        from aedcli.teachers.appearance_motion import COMBINES as A_COMBINES
        from aedcli.teachers.multitask import COMBINES as B_COMBINES
        from aedcli.teachers.multitask import VIEWS as B_VIEWS

        for option, value, known in (("a", self.a_combine, A_COMBINES), ("b", self.b_combine, B_COMBINES)):
            if value is not None and value not in known:
                raise UsageError(f"--{option}-combine '{value}' is unknown; use one of {', '.join(known)}.")
        if self.b_views is not None and self.b_views not in B_VIEWS:
            raise UsageError(f"--b-views '{self.b_views}' is unknown; use one of {', '.join(B_VIEWS)}.")
        if self.b_seeds is not None and self.b_seeds < 1:
            raise UsageError(f"--b-seeds must be 1 or more, not {self.b_seeds}.")
        for value in (self.frame_correction, *self.corrections.values()):
            if value not in FRAME_CORRECTIONS:
                raise UsageError(
                    f"--frame-correction '{value}' is unknown; use one of {', '.join(FRAME_CORRECTIONS)}."
                )

    def correction_for(self, teacher: str) -> str:
        """The frame correction of ``teacher``'s scores: its own if set, else ``frame_correction``."""
        return self.corrections.get(teacher, self.frame_correction)

    @classmethod
    def with_choices(cls, choices: TeacherChoices, **fields: Any) -> TeachConfig:
        """A config with ``fields`` and the teacher options of ``choices`` (``aed teach --choices``)."""
        return cls(
            **fields,
            a_combine=choices.a_combine,
            b_combine=choices.b_combine,
            b_seeds=choices.b_seeds,
            b_views=choices.b_views,
            a_weights=choices.a_weights,
            velocity=choices.velocity,
            corrections=dict(choices.corrections),
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["proposals"] = self.proposals.to_dict()
        return d


@dataclass
class TeacherReport:
    """What happened to one teacher in one run."""

    name: str
    fitted: bool = False
    fit_stats: dict[str, Any] = field(default_factory=dict)
    fit_seconds: float = 0.0
    clips_scored: int = 0
    clips_cached: int = 0
    targets_written: int = 0
    targets_cached: int = 0
    frames_scored: int = 0
    objects_scored: int = 0
    scoring_seconds: float = 0.0
    scaler: dict[str, Any] = field(default_factory=dict)


@dataclass
class TeachReport:
    """Summary of :func:`ensure_targets`: counts of work done and reused, and timings."""

    dataset: str
    targets_dir: str
    normalisation: str
    clips: int = 0
    frames: int = 0
    proposals_computed: int = 0
    proposals_cached: int = 0
    proposal_frames: int = 0
    proposal_seconds: float = 0.0
    train_objects: int = 0
    teachers: dict[str, TeacherReport] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------------------------------- paths


@dataclass(frozen=True)
class TargetPaths:
    """Where the teacher stage keeps its files under one targets folder."""

    root: Path

    def boxes(self, split: str, clip: str) -> Path:
        return self.root / "boxes" / split / f"{clip}.npz"

    def teacher_file(self, teacher: str) -> Path:
        return self.root / teacher / "teacher.pt"

    def teacher_stamp(self, teacher: str) -> Path:
        """The stamp of the training videos a teacher trained here learnt from (``{"training": ...}``)."""
        return self.root / teacher / "teacher.json"

    def raw(self, teacher: str, split: str, clip: str) -> Path:
        return self.root / teacher / "raw" / split / f"{clip}.npz"

    def scaler(self, teacher: str) -> Path:
        return self.root / teacher / "scaler.json"

    def targets(self, teacher: str, split: str, clip: str) -> Path:
        return self.root / teacher / split / f"{clip}.npz"


def _digest(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()[:16]


def _file_digest(path: Path) -> str:
    return _digest(path.read_bytes())


# ------------------------------------------------------------------------------------------------- progress


class _NoProgress:
    def add_task(self, *_: Any, **__: Any) -> int:
        return 0

    def update(self, *_: Any, **__: Any) -> None:
        return None

    def advance(self, *_: Any, **__: Any) -> None:
        return None


@contextmanager
def _progress(enabled: bool) -> Iterator[Any]:
    if not enabled:
        yield _NoProgress()
        return
    bar = Progress(
        TextColumn("{task.description:<22}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        transient=False,
    )
    with bar:
        yield bar


# ------------------------------------------------------------------------------------------------ workers


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)  # parallelism comes from the processes


def _pool(workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(
        max_workers=workers, mp_context=mp.get_context("spawn"), initializer=_init_worker
    )


def _propose_job(clip: Clip, path: Path, cfg: ProposalConfig, stamp: str) -> tuple[str, bool, int, float]:
    start = time.perf_counter()
    boxes, cached = load_or_propose(path, lambda: clip.frames(gray=True), cfg, stamp=stamp)
    return clip.name, cached, boxes.frame_count, time.perf_counter() - start


def _score_clip(
    teacher: Any,
    clip: Clip,
    boxes: ClipBoxes,
    cfg: TeachConfig,
    on_frame: Callable[[], None] | None = None,
    video: int = -1,
) -> tuple[np.ndarray, np.ndarray]:
    """Raw scores of every box of a clip -> rows (K, 5) [frame, x0, y0, x1, y1] and raw (K,).

    ``video`` is the clip's training-video index (-1 for others; see :class:`ObjectBatch`).
    """
    rows, raw = [], []
    batches = iter_object_batches(
        clip.frames(gray=True),
        boxes.boxes,
        batch_size=cfg.batch_size,
        margin=cfg.margin,
        on_frame=on_frame,
        video=video,
    )
    for batch in batches:
        scores = np.asarray(teacher.score(batch), np.float32).reshape(-1)
        if len(scores) != len(batch):
            raise RuntimeError(f"teacher returned {len(scores)} scores for {len(batch)} objects")
        rows.append(np.hstack([batch.frames[:, None].astype(np.float32), batch.boxes]))
        raw.append(scores)
    if not rows:
        return np.zeros((0, 5), np.float32), np.zeros(0, np.float32)
    return np.concatenate(rows).astype(np.float32), np.concatenate(raw).astype(np.float32)


def _save_raw(path: Path, rows: np.ndarray, raw: np.ndarray, key: str, frames: int, seconds: float) -> None:
    save_npz_atomic(
        path,
        rows=rows,
        raw=raw,
        key=np.asarray(key),
        frame_count=np.int64(frames),
        seconds=np.float64(seconds),
        version=np.int64(RAW_VERSION),
    )


def _load_raw(path: Path, key: str) -> tuple[np.ndarray, np.ndarray, float] | None:
    """Cached raw scores when present, readable and made by the same teacher on the same boxes."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if int(z["version"]) != RAW_VERSION or str(z["key"]) != key:
                return None
            rows, raw, sec = (
                np.asarray(z["rows"], np.float32),
                np.asarray(z["raw"], np.float32),
                float(z["seconds"]),
            )
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        log.warning("score cache %s is corrupt (%s); scoring the clip again.", path, type(exc).__name__)
        return None
    if rows.shape != (len(raw), 5):
        log.warning("score cache %s is inconsistent; scoring the clip again.", path)
        return None
    return rows, raw, sec


def _score_job(
    teacher_name: str,
    teacher_path: Path,
    clip: Clip,
    paths: TargetPaths,
    key: str,
    cfg: TeachConfig,
    video: int,
) -> tuple[str, int, int, float]:
    teacher = teacher_class(teacher_name).load(teacher_path)
    boxes = load_boxes(paths.boxes(clip.split, clip.name), cfg.proposals)
    if boxes is None:
        raise RuntimeError(f"boxes of {clip.name} vanished while scoring")
    start = time.perf_counter()
    rows, raw = _score_clip(teacher, clip, boxes, cfg, video=video)
    seconds = time.perf_counter() - start
    _save_raw(paths.raw(teacher_name, clip.split, clip.name), rows, raw, key, boxes.frame_count, seconds)
    return clip.name, boxes.frame_count, len(raw), seconds


# -------------------------------------------------------------------------------------------------- stages


def _all_clips(dataset: Dataset) -> list[Clip]:
    return list(dataset.train) + list(dataset.test)


def _run_proposals(
    clips: list[Clip],
    stamps: dict[tuple[str, str], str],
    paths: TargetPaths,
    cfg: TeachConfig,
    workers: int,
    bar: Any,
    report: TeachReport,
) -> dict[tuple[str, str], ClipBoxes]:
    """Boxes of every clip, cached ones reused unless made from another version (``stamps``) of the clip."""
    task = bar.add_task("proposals", total=sum(c.frame_count for c in clips))
    todo: list[Clip] = []
    out: dict[tuple[str, str], ClipBoxes] = {}
    for clip in clips:
        key = (clip.split, clip.name)
        cached = load_boxes(paths.boxes(*key), cfg.proposals, stamps[key])
        if cached is not None:
            out[key] = cached
            report.proposals_cached += 1
            bar.advance(task, clip.frame_count)
        else:
            todo.append(clip)
            # Scores and targets are made from the boxes: new boxes leave the old ones stale.
            for name in TEACHER_CLASSES:
                for stale in (paths.raw(name, *key), paths.targets(name, *key)):
                    stale.unlink(missing_ok=True)
    if workers > 1 and len(todo) > 1:
        with _pool(min(workers, len(todo))) as pool:
            futures = {
                pool.submit(
                    _propose_job, c, paths.boxes(c.split, c.name), cfg.proposals, stamps[(c.split, c.name)]
                ): c
                for c in todo
            }
            for fut in as_completed(futures):
                _, _, frames, seconds = fut.result()
                report.proposal_frames += frames
                report.proposal_seconds += seconds
                bar.advance(task, futures[fut].frame_count)
    else:
        for clip in todo:
            start = time.perf_counter()
            boxes, _ = load_or_propose(
                paths.boxes(clip.split, clip.name),
                lambda clip=clip: clip.frames(gray=True),
                cfg.proposals,
                stamp=stamps[(clip.split, clip.name)],
                on_frame=lambda: bar.advance(task, 1),
            )
            report.proposal_seconds += time.perf_counter() - start
            report.proposal_frames += boxes.frame_count
    for clip in todo:
        loaded = load_boxes(paths.boxes(clip.split, clip.name), cfg.proposals)
        if loaded is None:
            raise AedError(
                f"box cache {paths.boxes(clip.split, clip.name)} could not be written; check the folder."
            )
        out[(clip.split, clip.name)] = loaded
        report.proposals_computed += 1
    return out


def collect_training_objects(
    train: list[Clip],
    boxes: dict[tuple[str, str], ClipBoxes],
    cfg: TeachConfig,
    bar: Any = None,
) -> list[ObjectBatch]:
    """Object tubes of the normal training clips, frames subsampled evenly to about ``max_train_objects``."""
    total = sum(sum(len(b) for b in boxes[(c.split, c.name)].boxes) for c in train)
    stride = max(1, math.ceil(total / max(1, cfg.max_train_objects)))
    task = bar.add_task("training objects", total=sum(c.frame_count for c in train)) if bar else None
    batches: list[ObjectBatch] = []
    for i, clip in enumerate(train):
        # offset by clip so that short clips with stride > length still contribute frames
        offset = i % stride
        batches.extend(
            iter_object_batches(
                clip.frames(gray=True),
                boxes[(clip.split, clip.name)].boxes,
                batch_size=cfg.batch_size,
                margin=cfg.margin,
                keep_frame=lambda t, offset=offset: t % stride == offset,
                on_frame=(lambda: bar.advance(task, 1)) if bar else None,
                video=i,
            )
        )
    return batches


def _load_or_fit(
    name: str,
    paths: TargetPaths,
    objects: Callable[[], list[ObjectBatch]],
    epochs: int | None,
    cfg: TeachConfig,
    bar: Any,
    tr: TeacherReport,
    training: str = "",
) -> Any:
    """The teacher file under ``paths`` when it can be reused, else one trained on ``objects()`` and saved.

    ``training`` stamps the training videos (:meth:`aedcli.data.clips.Clip.stamp` of each); it is written
    beside a teacher trained here (``teacher.json``), and a file stamped with other training videos is
    trained again. Files without a stamp (installed with ``--teachers-from``, or older) are reused.
    """
    cls = teacher_class(name)
    path, stamp = paths.teacher_file(name), paths.teacher_stamp(name)
    reused = _reusable(cls, name, path, stamp, objects, cfg, tr, training) if path.exists() else None
    if reused is not None:
        seeds = _teacher_options(name, cfg).get("seeds")
        if seeds is not None and seeds != reused.config.seeds:  # networks to add (a bar of their own) or drop
            task = bar.add_task(f"grow {name}", total=None)
            start = time.perf_counter()
            added = reused.resize(
                objects(),
                seeds,
                epochs=epochs,
                progress=lambda step, total: bar.update(task, completed=step, total=total),
            )
            tr.fit_seconds = time.perf_counter() - start
            tr.fitted = bool(added["members"])
            tr.fit_stats.update(added)
            reused.save(path)
        return reused
    batches = objects()
    if sum(len(b) for b in batches) == 0:
        raise AedError(
            f"no moving objects were found in the training clips, so teacher '{name}' cannot be trained; "
            "check the training videos or lower the proposal thresholds."
        )
    teacher = cls()
    options = _teacher_options(name, cfg)
    if options:
        teacher = cls(replace(teacher.config, **options))
    kwargs: dict[str, Any] = {"epochs": epochs, "seed": cfg.seed}
    if "progress" in inspect.signature(teacher.fit).parameters:
        task = bar.add_task(f"fit {name}", total=None)
        kwargs["progress"] = lambda step, total: bar.update(task, completed=step, total=total)
    start = time.perf_counter()
    tr.fit_stats = teacher.fit(batches, **kwargs) or {}
    tr.fit_seconds = time.perf_counter() - start
    tr.fitted = True
    path.parent.mkdir(parents=True, exist_ok=True)
    teacher.save(path)
    write_json_atomic(stamp, {"training": training})
    return teacher


def _reusable(
    cls: Any,
    name: str,
    path: Path,
    stamp_path: Path,
    objects: Callable[[], list[ObjectBatch]],
    cfg: TeachConfig,
    tr: TeacherReport,
    training: str,
) -> Any:
    """The teacher file at ``path`` (recombined when only its combination changed), or ``None`` to retrain."""
    try:
        teacher = cls.load(path)
        trained_on = json.loads(stamp_path.read_text())["training"] if stamp_path.is_file() else ""
    except (WeightsError, OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        log.warning("teacher file %s cannot be used (%s); training it again.", path, exc)
        return None
    if training and trained_on and trained_on != training:
        log.warning("teacher file %s was trained on other training video; training it again.", path)
        return None
    options = _teacher_options(name, cfg)
    changed = {k: v for k, v in options.items() if getattr(teacher.config, k) != v}
    if changed.keys() - RESCORED_ONLY - RESIZED:
        other = ", ".join(sorted(changed))
        log.warning("teacher file %s was trained with other %s; training it again.", path, other)
        return None
    tr.fit_stats = {"reused": str(path)}
    rescored = {k: v for k, v in changed.items() if k in RESCORED_ONLY}  # the caller resizes
    if rescored:
        _recombine(teacher, rescored, objects, path, tr)
    return teacher


def _teacher_options(name: str, cfg: TeachConfig) -> dict[str, Any]:
    """The fields of teacher ``name``'s own config that the teach stage's options set (none by default)."""
    options: dict[str, Any] = {}
    if name == "a" and cfg.a_combine is not None:
        options["combine"] = cfg.a_combine
    if name == "b" and cfg.b_combine is not None:
        options["combine"] = cfg.b_combine
    if name == "b" and cfg.b_seeds is not None:
        options["seeds"] = cfg.b_seeds
    if name == "b" and cfg.b_views is not None:
        options["views"] = cfg.b_views
    if name == "a" and cfg.a_weights is not None:
        options["weights"] = dict(cfg.a_weights)
    if name == "flow" and cfg.velocity is not None:
        options.update(cfg.velocity)
    return options


# Options of a teacher's own config that only change how its networks' outputs make a score: a reused file
# takes them without training again. Any other option that differs from the file's trains it again.
RESCORED_ONLY = frozenset({"combine", "weights", "views"})
# Teacher b's network count: a reused file keeps its networks, and only the missing ones are trained (each
# member's seed and held-out split depend on its index alone), or the extra ones are dropped.
RESIZED = frozenset({"seeds"})


def _recombine(
    teacher: Any,
    changed: dict[str, Any],
    objects: Callable[[], list[ObjectBatch]],
    path: Path,
    tr: TeacherReport,
) -> None:
    """A teacher's networks kept, its components weighted or combined another way, and saved, so its scores
    are computed again. A new combination or new views are measured again on the training objects (the
    statistics a tail combination needs, of the errors the views give); new weights alone reuse the
    per-component statistics the file holds."""
    teacher.config = replace(teacher.config, **changed)
    if "combine" in changed or "views" in changed:
        teacher.calibrate(objects())
    teacher.save(path)
    tr.fit_stats = {"reused": str(path), **changed}


def _run_scoring(
    name: str,
    teacher: Any,
    clips: list[Clip],
    boxes: dict[tuple[str, str], ClipBoxes],
    paths: TargetPaths,
    key_of: Callable[[Clip], str],
    video_of: Callable[[Clip], int],
    cfg: TeachConfig,
    workers: int,
    bar: Any,
    tr: TeacherReport,
) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    task = bar.add_task(f"score {name}", total=sum(c.frame_count for c in clips))
    out: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
    todo: list[Clip] = []
    for clip in clips:
        cached = _load_raw(paths.raw(name, clip.split, clip.name), key_of(clip))
        if cached is not None:
            out[(clip.split, clip.name)] = cached[:2]
            tr.clips_cached += 1
            bar.advance(task, clip.frame_count)
        else:
            todo.append(clip)
    if workers > 1 and len(todo) > 1:
        with _pool(min(workers, len(todo))) as pool:
            futures = {
                pool.submit(
                    _score_job, name, paths.teacher_file(name), c, paths, key_of(c), cfg, video_of(c)
                ): c
                for c in todo
            }
            for fut in as_completed(futures):
                _, frames, objects, seconds = fut.result()
                tr.frames_scored += frames
                tr.objects_scored += objects
                tr.scoring_seconds += seconds
                bar.advance(task, futures[fut].frame_count)
    else:
        for clip in todo:
            cb = boxes[(clip.split, clip.name)]
            start = time.perf_counter()
            rows, raw = _score_clip(
                teacher, clip, cb, cfg, on_frame=lambda: bar.advance(task, 1), video=video_of(clip)
            )
            seconds = time.perf_counter() - start
            _save_raw(
                paths.raw(name, clip.split, clip.name), rows, raw, key_of(clip), cb.frame_count, seconds
            )
            tr.frames_scored += cb.frame_count
            tr.objects_scored += len(raw)
            tr.scoring_seconds += seconds
    for clip in todo:
        loaded = _load_raw(paths.raw(name, clip.split, clip.name), key_of(clip))
        if loaded is None:
            raise AedError(
                f"score cache {paths.raw(name, clip.split, clip.name)} could not be written; "
                "check that the folder is writable."
            )
        out[(clip.split, clip.name)] = loaded[:2]
        tr.clips_scored += 1
    return out


def _calibrated(correction: CountCorrection | None, rows: np.ndarray, raw: np.ndarray) -> np.ndarray:
    """The scores a clip's targets are painted with: ``raw``, or count-corrected by frame (``rows[:, 0]``)."""
    return raw if correction is None else correction.apply(raw, rows[:, 0])


def _targets_current(path: Path, meta: dict[str, Any], frame_count: int) -> bool:
    if not path.exists():
        return False
    try:
        t = load_targets(path)
    except TargetsError as exc:
        log.warning("target file %s is corrupt (%s); writing it again.", path, exc)
        return False
    return len(t) == frame_count and all(t.meta.get(k) == v for k, v in meta.items())


def stored_scaling(targets: Path, teacher: str) -> tuple[str, TeachConfig]:
    """The normalisation, scale percentiles and frame correction of a teacher's targets on disk.

    The defaults when there are none; a ``scaler.json`` without a ``frame_correction`` entry was written
    before the count correction existed, so its targets are uncorrected and stay so. Whatever adds to a
    targets folder later (``aed eval``, ``aed distill --speedups``) paints the way the folder was painted.
    """
    path = TargetPaths(targets).scaler(teacher)
    try:
        stored = json.loads(path.read_text())
        scaler = ScoreScaler.from_dict(stored)
        correction = TeachConfig(frame_correction=stored.get("frame_correction", "none")).frame_correction
    except (OSError, ValueError, TypeError, AttributeError, UsageError):
        return DEFAULT_NORMALISATION, TeachConfig()
    if scaler.kind == "per-video-minmax":
        return scaler.kind, TeachConfig(frame_correction=correction)
    return scaler.kind, TeachConfig(
        lo_percentile=scaler.lo_percentile, hi_percentile=scaler.hi_percentile, frame_correction=correction
    )


def ensure_targets(
    dataset: Dataset,
    targets_dir: str | Path,
    teachers: list[str] | str,
    *,
    workers: int = 1,
    normalisation: str = DEFAULT_NORMALISATION,
    progress: bool = True,
    epochs: int | None = None,
    config: TeachConfig | None = None,
    extra: Sequence[Clip] = (),
) -> TeachReport:
    """Make every target file of ``teachers`` for all train and test clips of ``dataset`` exist.

    ``extra`` clips (sped-up training video, :func:`aedcli.data.clips.sped_up`) get boxes, scores and
    targets too, but neither train the teachers nor enter the score scaling, which stays that of the normal
    training video. Work already on disk and still valid (same teacher file, same proposals, same
    normalisation) is reused; the returned :class:`TeachReport` counts what was computed and what was
    reused.
    """
    names = parse_teachers(teachers)
    if normalisation not in NORMALISATIONS:
        raise UsageError(
            f"--normalisation '{normalisation}' is unknown; use one of {', '.join(NORMALISATIONS)}."
        )
    if workers < 1:
        raise UsageError(f"--workers {workers} is not allowed; use 1 or more.")
    for n in names:
        teacher_class(n)  # fail before any work when a teacher is not installed
    cfg = config or TeachConfig()
    paths = TargetPaths(Path(targets_dir))
    clips = _all_clips(dataset) + [c for c in extra if c not in dataset.train and c not in dataset.test]
    train_index = {c.name: i for i, c in enumerate(dataset.train)}

    def video_of(clip: Clip) -> int:
        return train_index.get(clip.source or clip.name, -1) if clip.split == "train" else -1

    if not dataset.train:
        raise AedError(
            f"dataset '{dataset.name}' has no training clips; teachers learn from normal training video."
        )
    report = TeachReport(dataset.name, str(paths.root), normalisation, clips=len(clips))
    report.frames = sum(c.frame_count for c in clips)
    boxes_key = _digest(json.dumps([cfg.proposals.to_dict(), BOXES_VERSION, cfg.margin], sort_keys=True))
    stamps = {(c.split, c.name): c.stamp() for c in clips}
    training = _digest(" ".join(f"{c.name}:{stamps[(c.split, c.name)]}" for c in dataset.train))

    with _progress(progress) as bar:
        boxes = _run_proposals(clips, stamps, paths, cfg, workers, bar, report)
        training_objects: list[ObjectBatch] | None = None

        def objects() -> list[ObjectBatch]:
            nonlocal training_objects
            if training_objects is None:
                training_objects = collect_training_objects(list(dataset.train), boxes, cfg, bar)
                report.train_objects = sum(len(b) for b in training_objects)
            return training_objects

        for name in names:
            tr = TeacherReport(name)
            report.teachers[name] = tr
            tpath = paths.teacher_file(name)
            teacher = _load_or_fit(name, paths, objects, epochs, cfg, bar, tr, training)
            key = f"{_file_digest(tpath)}|{boxes_key}"
            raw = _run_scoring(
                name, teacher, clips, boxes, paths, lambda c, key=key: key, video_of, cfg, workers, bar, tr
            )

            train_raw = np.concatenate([raw[(c.split, c.name)][1] for c in dataset.train])
            counted = cfg.correction_for(name) == "count"
            correction = CountCorrection.from_training(train_raw) if counted else None
            calibrated = {k: _calibrated(correction, rows, scores) for k, (rows, scores) in raw.items()}
            scaler = ScoreScaler.from_training(
                np.concatenate([calibrated[(c.split, c.name)] for c in dataset.train]),
                kind=normalisation,
                lo_percentile=cfg.lo_percentile,
                hi_percentile=cfg.hi_percentile,
                heights=np.concatenate(
                    [
                        box_heights(raw[(c.split, c.name)][0], boxes[(c.split, c.name)].frame_size)
                        for c in dataset.train
                    ]
                ),
            )
            # Uncorrected targets keep the layout they had before the correction existed, so older target
            # folders stay valid; a scaler.json without "frame_correction" means "none".
            stored: dict[str, Any] = scaler.to_dict()
            fixed: dict[str, Any] = {"teacher": name, "teacher_key": key, "normalisation": normalisation}
            if correction is not None:
                stored.update(frame_correction="count", count_correction=correction.to_dict())
                fixed["frame_correction"] = "count"
            fixed["scaler_key"] = _digest(json.dumps([stored, cfg.cell, cfg.smoothing], sort_keys=True))
            write_json_atomic(paths.scaler(name), stored)
            tr.scaler = scaler.to_dict()
            task = bar.add_task(f"targets {name}", total=len(clips))
            for clip in clips:
                tpath_clip = paths.targets(name, clip.split, clip.name)
                cb = boxes[(clip.split, clip.name)]
                if _targets_current(tpath_clip, fixed, cb.frame_count):
                    tr.targets_cached += 1
                else:
                    rows, clip_raw = raw[(clip.split, clip.name)]
                    meta = {
                        **fixed,
                        "source": {"dataset": dataset.name, "split": clip.split, "clip": clip.name},
                        "proposals": cfg.proposals.method,
                    }
                    targets = build_targets(
                        rows,
                        clip_raw,
                        calibrated=calibrated[(clip.split, clip.name)],
                        frame_count=cb.frame_count,
                        frame_size=cb.frame_size,
                        scaler=scaler,
                        cell=cfg.cell,
                        smoothing=cfg.smoothing,
                        meta=meta,
                    )
                    save_targets(tpath_clip, targets)
                    tr.targets_written += 1
                bar.advance(task, 1)
    return report


# ----------------------------------------------------------------------------------------------- reading


def install_teacher_files(source: str | Path, targets_dir: str | Path, teachers: list[str]) -> list[str]:
    """Copy trained teacher files ``source/<name>.pt`` into ``targets_dir/<name>/teacher.pt``.

    Lets a targets folder start from shipped or shared teachers instead of training them: the pipeline then
    only runs proposals, scoring and painting. A teacher file already in the targets folder is kept (and
    reported in the returned list only when copied). Files are checked by loading them safely first.
    """
    source, paths = Path(source), TargetPaths(Path(targets_dir))
    if not source.is_dir():
        raise UsageError(
            f"--teachers-from {source} is not a folder; give the folder holding <teacher>.pt files."
        )
    copied = []
    for name in parse_teachers(teachers):
        src, dst = source / f"{name}.pt", paths.teacher_file(name)
        if dst.exists():
            continue
        if not src.is_file():
            raise UsageError(
                f"{src} does not exist; --teachers-from needs one <teacher>.pt per teacher asked for."
            )
        try:
            teacher_class(name).load(src)
        except (WeightsError, OSError, ValueError, KeyError, RuntimeError) as exc:
            raise WeightsError(f"teacher file {src} cannot be used: {exc}") from None
        dst.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(dst) as tmp:
            tmp.write_bytes(src.read_bytes())
        paths.teacher_stamp(name).unlink(missing_ok=True)  # the stamp of the file it replaces
        copied.append(name)
    return copied


def teachers_on_disk(targets_dir: str | Path) -> list[str]:
    """Registered teacher names that have a folder of targets under ``targets_dir``."""
    root = Path(targets_dir)
    return [n for n in TEACHER_CLASSES if (root / n / "test").is_dir() or (root / n / "train").is_dir()]


def _load_clip_targets(paths: TargetPaths, teacher: str, clip: Clip) -> Targets:
    path = paths.targets(teacher, clip.split, clip.name)
    if not path.exists():
        raise AedError(
            f"teacher target file {path} does not exist; run 'aed teach' with --teachers {teacher} first."
        )
    try:
        t = load_targets(path)
    except TargetsError as exc:
        raise AedError(
            f"teacher target file {path} is corrupt; run 'aed teach' again to rebuild it."
        ) from exc
    if len(t) != clip.frame_count:
        raise AedError(
            f"teacher target file {path} has {len(t)} frames but clip {clip.name} has {clip.frame_count}; "
            "run 'aed teach' again."
        )
    return t


def _teacher_names(targets_dir: Path, teacher: str) -> list[str]:
    if teacher != COMBINED:
        if teacher not in TEACHER_CLASSES:
            raise UsageError(
                f"teacher '{teacher}' is unknown; choose from {', '.join([*TEACHER_CLASSES, COMBINED])}."
            )
        return [teacher]
    names = teachers_on_disk(targets_dir)
    if not names:
        raise AedError(f"no teacher targets under {targets_dir}; run 'aed teach' first.")
    return names


def teacher_maps(
    dataset: Dataset, targets_dir: str | Path, teacher: str, split: str = "test"
) -> dict[str, np.ndarray]:
    """Painted maps (N, h, w) float32 per clip; for ``teachers``, the mean over all teachers on disk."""
    paths = TargetPaths(Path(targets_dir))
    names = _teacher_names(paths.root, teacher)
    clips = dataset.test if split == "test" else dataset.train
    out: dict[str, np.ndarray] = {}
    for clip in clips:
        maps = [_load_clip_targets(paths, n, clip).lowres.astype(np.float32) for n in names]
        out[clip.name] = np.mean(maps, axis=0) if len(maps) > 1 else maps[0]
    return out


def teacher_scores(dataset: Dataset, targets_dir: str | Path, teacher: str) -> dict[str, np.ndarray]:
    """Raw frame scores of every test clip: max of the teacher's painted map (``teachers``: mean map)."""
    maps = teacher_maps(dataset, targets_dir, teacher, "test")
    return {
        name: (m.reshape(len(m), -1).max(axis=1) if m.size else np.zeros(len(m))).astype(np.float32)
        for name, m in maps.items()
    }


def teacher_regions(dataset: Dataset, targets_dir: str | Path, teacher: str) -> dict[str, np.ndarray]:
    """Scored boxes (K, 6) [frame, x0, y0, x1, y1, score] of every test clip, for RBDC/TBDC.

    For ``teachers`` the score of a box is the mean of the teachers' scaled scores (they share the boxes).
    """
    paths = TargetPaths(Path(targets_dir))
    names = _teacher_names(paths.root, teacher)
    out: dict[str, np.ndarray] = {}
    for clip in dataset.test:
        all_boxes = [_load_clip_targets(paths, n, clip).boxes for n in names]
        if (
            len(all_boxes) > 1
            and all(b.shape == all_boxes[0].shape for b in all_boxes)
            and all(np.array_equal(b[:, :5], all_boxes[0][:, :5]) for b in all_boxes)
        ):
            rows = all_boxes[0].copy()
            rows[:, 5] = np.mean([b[:, 5] for b in all_boxes], axis=0)
        else:
            rows = np.concatenate(all_boxes) if all_boxes else np.zeros((0, 6), np.float32)
        out[clip.name] = rows.astype(np.float32)
    return out


__all__ = [
    "TEACHERS",
    "TargetPaths",
    "TeachConfig",
    "TeachReport",
    "TeacherReport",
    "boxes_to_rows",
    "collect_training_objects",
    "ensure_targets",
    "teacher_maps",
    "teacher_regions",
    "teacher_scores",
    "teachers_on_disk",
]
