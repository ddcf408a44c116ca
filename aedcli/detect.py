"""Anomaly detection on a video, a folder of videos, a frame folder, a camera or a stream: ``aed detect``.

One pass streams the source through the same path ``aed eval`` uses (:class:`aedcli.inference.StudentRunner`
-> :func:`aedcli.scoring.frame_scores`), smooths the raw scores over time and writes, in one output folder:

- ``<stem>_scores.csv``: per frame ``frame, time_s, score, score_smoothed, abnormal, s_head, m_head_max,
  l_head_max`` (``score`` is the raw frame score, ``abnormal`` compares the smoothed one with the threshold);
- ``<stem>_summary.json``: source, weights, threshold and where it came from, smoothing and its delay,
  frame rates, and the abnormal events (runs of abnormal frames with their peak);
- ``<stem>_overlay.mp4`` (``overlay=True``): the input with the finest anomaly map, the score, an alarm
  border and a score timeline drawn on it (:mod:`aedcli.overlay`);
- ``<stem>_timeline.png`` (``plot=True``): the whole score curve with events shaded and the threshold.

Memory stays flat however long the source runs: frames are decoded in a background thread into a bounded
queue, scored in batches, and only the frames still waiting for their smoothed score are kept (at most the
smoothing lag, ``ceil(3 * sigma)`` frames). Files are smoothed with the centred Gaussian of
:func:`aedcli.scoring.smooth_scores`, applied to a sliding window so the values are bit-identical to smoothing
the whole clip at once (what ``aed eval`` does); live sources use :class:`aedcli.scoring.StreamingSmoother`
with a fixed lag. Every file appears complete or not at all; Ctrl-C stops reading and completes the files
for the frames already processed (the summary then says ``"interrupted": true``).

The threshold comes from the weights file (set on normal training video) or from the caller; it is never
derived from the video being judged (method.md section 5).

>>> results = detect("clip.mp4", DetectOptions(weights=Path("weights/ped2.pt"), overlay=True))
>>> results[0].outputs.csv, results[0].events[:1]
(PosixPath('clip_aed/clip_scores.csv'), [Event(start_frame=120, end_frame=174, ...)])
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import queue
import re
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import numpy as np

import aedcli
from aedcli.errors import AedError, UsageError, VideoError, WeightsError
from aedcli.files import atomic_path
from aedcli.scoring import StreamingSmoother, frame_scores, kernel_radius, smooth_scores
from aedcli.video import DEFAULT_TIMEOUT_S, FRAME_SUFFIXES, VideoInfo, VideoSource, VideoWriter, open_video

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".mpg", ".mpeg", ".webm", ".wmv", ".flv", ".ts")
"""Files taken as videos when the source is a folder of videos."""

DEFAULT_WEIGHTS_NAME = "ped2.pt"
READ_AHEAD_BYTES = 256 * 2**20
"""With ``--overlay``, the read-ahead queue also holds each decoded frame at full size; it is kept under this
many bytes (at least 2 frames), so a 4K source queues about 10 frames instead of two batches."""

CSV_COLUMNS = (
    "frame",
    "time_s",
    "score",
    "score_smoothed",
    "abnormal",
    "s_head",
    "m_head_max",
    "l_head_max",
)

ProgressFn = Callable[[int, "int | None"], None]
"""Called in the calling thread after each batch with (frames scored so far, frames expected or None)."""


# ---------------------------------------------------------------------------------------------------------
# Options and results


@dataclass(frozen=True)
class DetectOptions:
    """What ``aed detect`` was asked to do; ``None`` means "take it from the weights file" or the default."""

    weights: Path | None = None
    out_dir: Path | None = None
    overlay: bool = False
    plot: bool = False
    threshold: float | None = None
    sigma: float | None = None
    batch_size: int = 16
    device: str = "cpu"
    runtime: str = "torch"
    workers: int = 1
    force: bool = False
    live_lag: int | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S


@dataclass(frozen=True)
class Event:
    """A run of consecutive abnormal frames (``end_frame`` inclusive) and its highest smoothed score."""

    start_frame: int
    end_frame: int
    start_s: float
    end_s: float
    peak_score: float
    peak_frame: int

    @property
    def frames(self) -> int:
        return self.end_frame - self.start_frame + 1

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "frames": self.frames}


@dataclass(frozen=True)
class OutputPaths:
    """Where one source's results go; ``overlay`` / ``timeline`` are ``None`` when not asked for."""

    folder: Path
    csv: Path
    summary: Path
    overlay: Path | None = None
    timeline: Path | None = None

    @classmethod
    def plan(cls, folder: Path, stem: str, *, overlay: bool, plot: bool) -> OutputPaths:
        return cls(
            folder=folder,
            csv=folder / f"{stem}_scores.csv",
            summary=folder / f"{stem}_summary.json",
            overlay=folder / f"{stem}_overlay.mp4" if overlay else None,
            timeline=folder / f"{stem}_timeline.png" if plot else None,
        )

    def files(self) -> list[Path]:
        """Every file this run writes."""
        return [p for p in (self.csv, self.summary, self.overlay, self.timeline) if p is not None]


@dataclass(frozen=True)
class ThresholdChoice:
    """The decision threshold on smoothed scores and, in words, where it came from."""

    value: float
    source: str
    sigma: float | None = None  # the smoothing it was set with, when known


@dataclass
class DetectResult:
    """What one source produced; ``summary`` is the content of the summary JSON."""

    source: str
    outputs: OutputPaths
    frames: int
    events: list[Event]
    interrupted: bool
    fps_end_to_end: float
    summary: dict[str, Any] = field(repr=False)


SourceSpec = str | Path | int | VideoSource


# ---------------------------------------------------------------------------------------------------------
# Weights and threshold


def default_weights_path() -> Path | None:
    """The weights shipped with ``aed`` (``weights/ped2.pt`` of the repository, or of the package), if any."""
    package = Path(aedcli.__file__).resolve().parent
    for candidate in (
        package.parent / "weights" / DEFAULT_WEIGHTS_NAME,
        package / "weights" / DEFAULT_WEIGHTS_NAME,
    ):
        if candidate.is_file():
            return candidate
    return None


def resolve_weights(path: Path | None) -> Path:
    """``path``, else the shipped default weights; :class:`WeightsError` (pass ``--weights``) if none."""
    if path is not None:
        return Path(path).expanduser()
    found = default_weights_path()
    if found is None:
        raise WeightsError(
            f"no default weights (weights/{DEFAULT_WEIGHTS_NAME}) are installed with aed; pass --weights "
            "with a weights.pt written by 'aed distill'."
        )
    return found


def choose_threshold(loaded: Any, override: float | None) -> ThresholdChoice:
    """``override`` (from ``--threshold``) or the threshold stored in the weights file."""
    if override is not None:
        if not math.isfinite(override):
            raise UsageError(f"--threshold must be a finite number, not {override}.")
        return ThresholdChoice(float(override), "--threshold on the command line", None)
    stored = loaded.threshold
    if stored is None:
        raise UsageError(
            f"weights file {loaded.path} carries no threshold; pass --threshold with the smoothed score "
            "above which a frame is abnormal."
        )
    return ThresholdChoice(float(stored.value), f"weights file: {stored.source}", float(stored.sigma))


# ---------------------------------------------------------------------------------------------------------
# Sources and output names


def list_sources(source: str | Path | int) -> list[str | Path | int]:
    """The videos to process: the source itself, or every video of a folder of videos."""
    if isinstance(source, int) or _is_camera(source) or _is_url(source):
        return [source]
    path = Path(source).expanduser()
    if not path.is_dir():
        return [path]  # a file (or a missing path: open_video explains)
    entries = [p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")]
    if any(p.suffix.lower() in FRAME_SUFFIXES for p in entries):
        return [path]
    videos = sorted((p for p in entries if p.suffix.lower() in VIDEO_SUFFIXES), key=lambda p: p.name.lower())
    if not videos:
        raise VideoError(
            f"folder {path} holds neither frames ({' '.join(FRAME_SUFFIXES)}) nor videos "
            f"({' '.join(VIDEO_SUFFIXES)}); pass a video file, a folder of frames or a folder of videos."
        )
    return list(videos)


def source_stem(source: str | Path | int) -> str:
    """A file-name stem: the video's stem, the frame folder's name, ``camera0`` or ``<host>_<path>``."""
    if isinstance(source, int) or _is_camera(source):
        return f"camera{int(source)}"
    if _is_url(source):
        parts = urlsplit(str(source))
        path = PurePosixPath(parts.path)
        if path.suffix:  # a file served over http: drop its extension like a local file's
            path = path.with_suffix("")
        name = "_".join([parts.hostname or "stream", *path.parts[1:]])
        return _safe_name(name).strip("_") or "stream"
    path = Path(source).expanduser()
    return _safe_name(path.name if path.is_dir() else path.stem)


def default_out_dir(source: str | Path | int) -> Path:
    """``<stem>_aed/`` next to a file or folder; in the working folder for cameras and URLs."""
    if isinstance(source, int) or _is_camera(source) or _is_url(source):
        return Path.cwd() / f"{source_stem(source)}_aed"
    path = Path(source).expanduser()
    return path.parent / f"{_safe_name(path.name if path.is_dir() else path.stem)}_aed"


def _is_camera(source: object) -> bool:
    return isinstance(source, str) and source.strip().isdigit()


def _is_url(source: object) -> bool:
    return isinstance(source, str) and "://" in source


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def _unique_stems(sources: list[str | Path | int]) -> list[str]:
    stems = [source_stem(s) for s in sources]
    # Two videos with one stem (a.mp4, a.avi) keep their extension in the name instead of overwriting.
    named = [
        f"{stem}_{Path(str(s)).suffix.lstrip('.')}" if stems.count(stem) > 1 and Path(str(s)).suffix else stem
        for stem, s in zip(stems, sources, strict=True)
    ]
    # Names that still collide ("a b.mp4" and "a_b.mp4" are both a_b_mp4) get a number, never a shared file.
    unique: list[str] = []
    for name in named:
        candidate, k = name, 1
        while candidate in unique:
            k += 1
            candidate = f"{name}_{k}"
        unique.append(candidate)
    return unique


def check_outputs_free(paths: Iterable[OutputPaths], force: bool) -> None:
    """Refuse (:class:`UsageError`, naming the file) to overwrite an existing output unless ``force``."""
    for planned in paths:
        for path in planned.files():
            if path.is_dir():
                raise UsageError(f"output {path} is a folder; remove it or choose another --out.")
            if path.exists() and not force:
                raise UsageError(
                    f"output {path} already exists; pass --force to overwrite it or choose another --out."
                )


def _make_out_dir(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; return those created, outermost first (AedError if not)."""
    if folder.is_dir():
        if not os.access(folder, os.W_OK | os.X_OK):
            raise AedError(
                f"output folder {folder} is not writable; pass --out with a folder you can write to."
            )
        return []
    if folder.exists():
        raise AedError(f"output folder {folder} is a file, not a folder; pass --out with a folder path.")
    missing: list[Path] = []  # innermost first
    for path in (folder, *folder.parents):
        if path.exists():
            break
        missing.append(path)
    try:
        folder.mkdir(parents=True)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise AedError(
            f"output folder {folder} cannot be created ({reason}); pass --out with a folder you can write to."
        ) from None
    return missing[::-1]


def _remove_if_empty(folders: list[Path]) -> None:
    """Remove the folders (innermost first) that are still empty."""
    for folder in reversed(folders):
        with contextlib.suppress(OSError):
            folder.rmdir()  # fails (and is left alone) when anything is inside


# ---------------------------------------------------------------------------------------------------------
# Streaming pieces


class CentredSmoother:
    """:func:`aedcli.scoring.smooth_scores` on a stream: values identical to smoothing the whole clip.

    The centred Gaussian of frame ``t`` needs the scores up to ``t + radius``; this keeps a window of raw
    scores, runs ``smooth_scores`` on it once per batch and emits the frames whose future half has arrived.
    A window starting ``radius`` frames before the first frame it emits (or at frame 0) and ending
    ``radius`` after the last (or at the true end, in :meth:`flush`) sees exactly the inputs and edges the
    whole-clip filter sees, so the outputs are bit-identical. Memory: about ``3 * radius`` scores.

    >>> smoother = CentredSmoother(sigma=3.0)
    >>> ready = smoother.push_many(batch_scores)    # [(frame, smoothed), ...], `radius` frames behind
    >>> ready += smoother.flush()                    # at the end of the clip
    """

    def __init__(self, sigma: float) -> None:
        self.sigma = float(sigma)
        self.radius = kernel_radius(sigma)
        self._buffer = np.zeros(0, dtype=np.float64)  # raw scores of frames _start .. _received-1
        self._start = 0
        self._received = 0
        self._emitted = 0

    @property
    def latency_frames(self) -> int:
        """Frames a smoothed score trails its raw score (the kernel radius)."""
        return self.radius

    def push_many(self, scores: np.ndarray) -> list[tuple[int, float]]:
        """Add consecutive raw scores; return the ``(frame, smoothed)`` pairs now final."""
        self._buffer = np.concatenate([self._buffer, np.asarray(scores, dtype=np.float64).ravel()])
        self._received += int(np.size(scores))
        return self._emit(self._received - self.radius, final=False)

    def flush(self) -> list[tuple[int, float]]:
        """End of the clip: emit the frames still waiting (edges repeat the last score), then reset."""
        out = self._emit(self._received, final=True)
        self._buffer = np.zeros(0, dtype=np.float64)
        self._start = self._received = self._emitted = 0
        return out

    def _emit(self, stop: int, final: bool) -> list[tuple[int, float]]:
        if stop <= self._emitted:
            return []
        lo = max(0, self._emitted - self.radius)
        hi = self._received if final else stop + self.radius
        window = self._buffer[lo - self._start : hi - self._start]
        smoothed = smooth_scores(window, self.sigma)[self._emitted - lo : stop - lo]
        out = list(zip(range(self._emitted, stop), smoothed.tolist(), strict=True))
        self._emitted = stop
        keep_from = max(0, stop - self.radius)  # the next window starts here
        self._buffer = self._buffer[keep_from - self._start :]
        self._start = keep_from
        return out


class _LiveSmoother:
    """:class:`StreamingSmoother` with the batch interface of :class:`CentredSmoother`."""

    def __init__(self, sigma: float, lag: int | None) -> None:
        self._smoother = StreamingSmoother(sigma, lag)
        self.radius = self._smoother.radius

    @property
    def latency_frames(self) -> int:
        return self._smoother.latency_frames

    def push_many(self, scores: np.ndarray) -> list[tuple[int, float]]:
        out: list[tuple[int, float]] = []
        for value in np.asarray(scores, dtype=np.float64).ravel().tolist():
            out.extend(self._smoother.push(value))
        return out

    def flush(self) -> list[tuple[int, float]]:
        return self._smoother.flush()


_END = object()


class FramePrefetcher:
    """Decode frames in a background thread into a bounded queue, so decoding overlaps the network.

    ``frames`` is any iterator (of frames, or of tuples holding them). Iterating yields its items in order
    and re-raises any error of the reader; it ends early once ``stop`` is set (items still queued are
    dropped). :meth:`close` stops the reader (it notices within 0.1 s of finishing its current read) and
    waits for it.

    >>> with FramePrefetcher(video.frames(), maxsize=32) as frames:
    ...     for frame in frames: ...
    """

    def __init__(self, frames: Iterator[Any], maxsize: int = 32, stop: threading.Event | None = None) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, maxsize))
        self._closing = threading.Event()
        self._stop = stop if stop is not None else threading.Event()
        self._frames = frames
        self._thread = threading.Thread(target=self._read, name="aed-frame-reader", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._closing.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _read(self) -> None:
        try:
            for frame in self._frames:
                if not self._put(frame):
                    return
            self._put(_END)
        except BaseException as exc:  # handed to the consuming thread, which raises it
            self._put(_Failure(exc))

    def __iter__(self) -> Iterator[Any]:
        while not self._stop.is_set():
            try:
                # A timeout, so a stop request is seen even while a live source sends nothing.
                item = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.exc
            yield item

    def close(self, timeout: float = DEFAULT_TIMEOUT_S + 1.0) -> None:
        """Stop the reader thread and wait for it (at most ``timeout`` seconds, for a blocked live read)."""
        self._closing.set()
        deadline = time.monotonic() + timeout
        while self._thread.is_alive() and time.monotonic() < deadline:
            try:  # unblock a reader waiting on a full queue
                while True:
                    self._queue.get_nowait()
            except queue.Empty:
                pass
            self._thread.join(timeout=0.05)

    def __enter__(self) -> FramePrefetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StopRequest:
    """Ctrl-C as a request to stop: the first SIGINT sets :attr:`requested`, a second one aborts at once.

    Outside the main thread (where signal handlers cannot be installed) or when SIGINT is ignored it does
    nothing, and Ctrl-C arrives as :class:`KeyboardInterrupt` as usual.

    >>> with StopRequest() as stop:
    ...     while not stop.requested.is_set(): ...
    """

    def __init__(self) -> None:
        self.requested = threading.Event()
        self._previous: Any = None
        self._installed = False

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested.is_set():
            raise KeyboardInterrupt
        self.requested.set()

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            previous = signal.getsignal(signal.SIGINT)
            if previous is not signal.SIG_IGN:
                self._previous = signal.signal(signal.SIGINT, self._handle)
                self._installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False


@dataclass
class _Failure:
    exc: BaseException


class EventTracker:
    """Turns ``(frame, smoothed, abnormal)`` updates into :class:`Event` runs; only the open run is kept."""

    def __init__(self, fps: float) -> None:
        self.fps = fps
        self.events: list[Event] = []
        self.abnormal_frames = 0
        self._open: list[Any] | None = None  # [start, last, peak_score, peak_frame]

    def update(self, frame: int, smoothed: float, abnormal: bool) -> None:
        if abnormal:
            self.abnormal_frames += 1
            if self._open is None:
                self._open = [frame, frame, smoothed, frame]
            else:
                self._open[1] = frame
                if smoothed > self._open[2]:
                    self._open[2], self._open[3] = smoothed, frame
        elif self._open is not None:
            self._close()

    def finish(self) -> list[Event]:
        if self._open is not None:
            self._close()
        return self.events

    def _close(self) -> None:
        assert self._open is not None
        start, last, peak, peak_frame = self._open
        self.events.append(
            Event(
                start_frame=start,
                end_frame=last,
                start_s=round(start / self.fps, 4),
                end_s=round(last / self.fps, 4),
                peak_score=peak,
                peak_frame=peak_frame,
            )
        )
        self._open = None


# ---------------------------------------------------------------------------------------------------------
# The core: one source


def detect_stream(
    source: SourceSpec,
    loaded: Any,
    outputs: OutputPaths,
    threshold: ThresholdChoice,
    *,
    sigma: float | None = None,
    batch_size: int = 16,
    device: str = "cpu",
    live_lag: int | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    progress: ProgressFn | None = None,
    runner: Any | None = None,
) -> DetectResult:
    """Score one source and write its outputs (module docstring); memory does not grow with its length.

    ``loaded`` is :class:`aedcli.weights.LoadedWeights`; ``runner`` an existing
    :class:`aedcli.inference.StudentRunner` for it (built here when ``None``). The output folder must exist
    and the outputs must be free (:func:`detect` checks both). Ctrl-C ends the stream early: the files are
    completed for the frames scored so far and the result says ``interrupted``.
    """
    from aedcli.inference import StudentRunner

    sigma = float(loaded.sigma if sigma is None else sigma)
    if sigma < 0:
        raise UsageError(f"--sigma must be 0 (no smoothing) or more frames, not {sigma:g}.")
    if runner is None:
        runner = StudentRunner(loaded, device=device, batch_size=batch_size)
    video = source if isinstance(source, VideoSource) else _open(source, timeout_s)
    with video:
        info = video.info
        if outputs.overlay is not None and min(info.width, info.height) < 2:
            raise UsageError(
                f"{info.source} is {info.width}x{info.height} pixels, too small for an overlay video (OpenCV "
                "writes 2x2 and larger); drop --overlay."
            )
        if info.is_live:
            radius = kernel_radius(sigma)
            if live_lag is not None and not 0 <= live_lag <= radius:
                raise UsageError(
                    f"--live-lag must be between 0 and {radius} frames (the smoothing radius for sigma="
                    f"{sigma:g}), not {live_lag}."
                )
            smoother: CentredSmoother | _LiveSmoother = _LiveSmoother(sigma, live_lag)
            mode = "fixed-lag"
        else:
            smoother = CentredSmoother(sigma)
            mode = "centred"
        return _run(video, info, loaded, runner, smoother, mode, outputs, threshold, sigma, progress)


def read_ahead_depth(batch_size: int, original_bytes: int = 0) -> int:
    """Frames the reader may decode ahead of the network: two batches, fewer when each queued item also
    carries an original frame of ``original_bytes`` for the overlay (see :data:`READ_AHEAD_BYTES`)."""
    depth = 2 * batch_size
    if original_bytes > 0:
        depth = min(depth, max(2, READ_AHEAD_BYTES // original_bytes))
    return depth


def _open(source: str | Path | int, timeout_s: float) -> VideoSource:
    live = isinstance(source, int) or _is_camera(source) or _is_url(source)
    # A live source that drops ends the recording cleanly; a file that breaks midway is an error.
    return open_video(source, gray=None, on_error="stop" if live else "raise", timeout_s=timeout_s)


@dataclass
class _Pending:
    """A scored frame waiting for its smoothed score (and its picture, when drawing the overlay)."""

    raw: float
    s: float
    m_max: float
    l_max: float
    l_map: np.ndarray | None
    frame: np.ndarray | None


def _run(
    video: VideoSource,
    info: VideoInfo,
    loaded: Any,
    runner: Any,
    smoother: CentredSmoother | _LiveSmoother,
    mode: str,
    outputs: OutputPaths,
    threshold: ThresholdChoice,
    sigma: float,
    progress: ProgressFn | None,
) -> DetectResult:
    from aedcli.overlay import OverlayStyle, annotate_frame

    fps = info.fps
    thr = threshold.value
    draw = outputs.overlay is not None
    style = OverlayStyle.for_threshold(thr) if draw else None
    history: deque[float] = deque(maxlen=style.timeline_frames if style else 1)
    peak = style.score_max if style else 0.0
    events = EventTracker(fps)
    waiting: deque[_Pending] = deque()  # scored frames not yet smoothed, oldest first
    pictures: deque[np.ndarray] = deque()  # decoded frames not yet scored (overlay only)
    scored = 0
    written = 0
    interrupted = False
    started = time.perf_counter()

    with ExitStack() as files:
        csv_tmp = files.enter_context(atomic_path(outputs.csv))
        csv_file = files.enter_context(open(csv_tmp, "w", encoding="utf-8", newline=""))
        csv_file.write(",".join(CSV_COLUMNS) + "\n")
        writer = (
            files.enter_context(VideoWriter(outputs.overlay, fps=fps, size=(info.width, info.height)))
            if outputs.overlay is not None
            else None
        )

        def emit(ready: list[tuple[int, float]]) -> None:
            nonlocal written, peak
            lines = []
            for frame_index, smoothed in ready:
                item = waiting.popleft()
                abnormal = smoothed > thr
                events.update(frame_index, smoothed, abnormal)
                # Raw and smoothed scores are float64: repr() round-trips them exactly, so the CSV holds the
                # very numbers `aed eval` computes; the heads are float32 and 9 digits round-trip those.
                lines.append(
                    f"{frame_index},{frame_index / fps:.4f},{item.raw!r},{smoothed!r},{int(abnormal)},"
                    f"{item.s:.9g},{item.m_max:.9g},{item.l_max:.9g}\n"
                )
                if writer is not None and style is not None and item.frame is not None:
                    history.append(smoothed)
                    # The timeline's axis only grows (to the highest score so far), so it never jumps back.
                    peak = max(peak, 1.1 * smoothed)
                    picture = annotate_frame(item.frame, item.l_map, smoothed, thr, history, style, peak)
                    writer.write(picture)
            csv_file.writelines(lines)
            written += len(ready)

        spec = runner.spec

        def decode() -> Iterator[tuple[np.ndarray | None, np.ndarray]]:
            # Runs in the reader thread: colour conversion and resizing overlap the network too (the
            # runner's own `prepare` then finds the frames ready). The original is kept only for drawing.
            for frame in video.frames():
                yield (frame if draw else None), spec.prepare(frame)

        stop = files.enter_context(StopRequest())
        depth = read_ahead_depth(runner.batch_size, info.width * info.height * info.channels if draw else 0)
        prefetch = FramePrefetcher(decode(), maxsize=depth, stop=stop.requested)

        def frames_for_model() -> Iterator[np.ndarray]:
            for original, prepared in prefetch:
                if original is not None:
                    pictures.append(original)
                yield prepared

        try:
            # Ctrl-C ends `prefetch`, so the frames already read are still scored and written.
            for maps in runner.run(frames_for_model()):
                raw = frame_scores(maps.s, maps.m, maps.l)  # (b,) float64, the eval path's scores
                b = raw.shape[0]
                m_max = maps.m.reshape(b, -1).max(axis=1)
                l_max = maps.l.reshape(b, -1).max(axis=1)
                for i in range(b):
                    waiting.append(
                        _Pending(
                            raw=float(raw[i]),
                            s=float(maps.s[i]),
                            m_max=float(m_max[i]),
                            l_max=float(l_max[i]),
                            l_map=maps.l[i].copy() if draw else None,  # copy: don't pin the whole batch
                            frame=pictures.popleft() if draw else None,
                        )
                    )
                scored += b
                emit(smoother.push_many(raw))
                if progress is not None:
                    progress(scored, info.frame_count)
        except KeyboardInterrupt:
            # Raised between batches (for example by a progress callback, or outside the main thread).
            interrupted = True
        finally:
            prefetch.close()
        interrupted = interrupted or stop.requested.is_set()
        emit(smoother.flush())
        pictures.clear()
        csv_file.close()
        event_list = events.finish()
        elapsed = max(time.perf_counter() - started, 1e-9)

        if outputs.timeline is not None:
            timeline_tmp = files.enter_context(atomic_path(outputs.timeline))
            title = f"{info.source} ({mode} smoothing, sigma={sigma:g} frames)"
            _plot_timeline(csv_tmp, timeline_tmp, thr, fps, event_list, title=title)

        summary = _summary(
            info=info,
            loaded=loaded,
            runner=runner,
            outputs=outputs,
            threshold=threshold,
            sigma=sigma,
            mode=mode,
            lag=smoother.latency_frames,
            frames=written,
            elapsed=elapsed,
            events=event_list,
            abnormal_frames=events.abnormal_frames,
            interrupted=interrupted,
            video=video,
        )
        summary_tmp = files.enter_context(atomic_path(outputs.summary))
        summary_tmp.write_text(_json_dumps(summary), encoding="utf-8")

    return DetectResult(
        source=info.source,
        outputs=outputs,
        frames=written,
        events=event_list,
        interrupted=interrupted,
        fps_end_to_end=written / elapsed,
        summary=summary,
    )


def _json_dumps(obj: Any) -> str:
    import json

    return json.dumps(obj, indent=2) + "\n"


def _summary(
    *,
    info: VideoInfo,
    loaded: Any,
    runner: Any,
    outputs: OutputPaths,
    threshold: ThresholdChoice,
    sigma: float,
    mode: str,
    lag: int,
    frames: int,
    elapsed: float,
    events: list[Event],
    abnormal_frames: int,
    interrupted: bool,
    video: VideoSource,
) -> dict[str, Any]:
    fps = info.fps
    if mode == "centred":
        smoothing = (
            f"centred Gaussian, sigma={sigma:g} frames (the same smoothing as 'aed eval'); the overlay is "
            f"drawn {lag} frames behind decoding so it shows the centred score"
        )
    else:
        smoothing = (
            f"fixed-lag Gaussian, sigma={sigma:g} frames, each smoothed score is known {lag} frames "
            f"({lag / fps:.2f} s) after its frame"
        )
    notes = []
    if threshold.sigma is not None and threshold.sigma != sigma:
        notes.append(
            f"the threshold was set on scores smoothed with sigma={threshold.sigma:g} but these scores use "
            f"sigma={sigma:g}; abnormal flags may be too many or too few"
        )
    if not info.fps_reported:
        notes.append(f"the source reports no frame rate; times assume {fps:g} fps")
    if video.truncated and video.stop_reason:
        notes.append(f"the stream stopped early: {video.stop_reason}")
    if video.missing_frames:
        gap = video.missing_frames
        shown = ", ".join(str(n) for n in gap[:5]) + (", ..." if len(gap) > 5 else "")
        notes.append(
            f"the frame folder skips {len(gap)} frame number(s) ({shown}); rows and times count only the "
            "frames present"
        )
    provenance = {k: v for k, v in (loaded.provenance or {}).items() if _is_brief(v)}
    return {
        "source": info.source,
        "live": info.is_live,
        "interrupted": interrupted,
        "frames": frames,
        "video": {
            "width": info.width,
            "height": info.height,
            "fps": fps,
            "fps_reported": info.fps_reported,
            "frame_count_reported": info.frame_count,
        },
        "fps_end_to_end": round(frames / elapsed, 2),
        "seconds": round(elapsed, 3),
        "device": str(runner.device),
        "batch_size": runner.batch_size,
        "weights": {
            "path": str(loaded.path) if loaded.path is not None else None,
            "variant": loaded.variant,
            "input": loaded.spec.to_dict(),
            "provenance": provenance,
        },
        "threshold": {"value": threshold.value, "source": threshold.source},
        "sigma": sigma,
        "smoothing": {
            "mode": mode,
            "sigma": sigma,
            "lag_frames": lag,
            "lag_s": round(lag / fps, 4),
            "description": smoothing,
        },
        "abnormal_frames": abnormal_frames,
        "events": [e.to_json() for e in events],
        "outputs": {
            "scores_csv": outputs.csv.name,
            "overlay": outputs.overlay.name if outputs.overlay else None,
            "timeline": outputs.timeline.name if outputs.timeline else None,
        },
        "csv_columns": {
            "score": "raw frame score: mean of S, max of M, max of L (method.md section 5)",
            "score_smoothed": "score after temporal Gaussian smoothing (see smoothing)",
            "abnormal": "1 when score_smoothed > threshold",
        },
        "notes": notes,
    }


def _is_brief(value: Any, limit: int = 8) -> bool:
    """Whether a provenance value is short enough for the summary: a scalar, or a few scalars."""
    scalar = (str, int, float, bool, type(None))
    if isinstance(value, scalar):
        return True
    if isinstance(value, list):
        return len(value) <= limit and all(isinstance(v, scalar) for v in value)
    if isinstance(value, dict):
        return len(value) <= limit and all(isinstance(v, scalar) for v in value.values())
    return False


def _plot_timeline(
    csv_path: Path, png_path: Path, threshold: float, fps: float, events: list[Event], title: str
) -> None:
    """The whole score curve with events shaded and the threshold line, as a PNG (read back from the CSV)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    data = np.loadtxt(csv_path, delimiter=",", skiprows=1, usecols=(0, 2, 3), ndmin=2)
    frames, raw, smoothed = data[:, 0], data[:, 1], data[:, 2]
    fig = Figure(figsize=(10, 3.2))
    ax = fig.add_subplot()
    for event in events:
        ax.axvspan(event.start_frame - 0.5, event.end_frame + 0.5, color="tab:red", alpha=0.18, linewidth=0)
    if events:
        ax.plot([], [], color="tab:red", alpha=0.35, linewidth=6, label=f"abnormal events ({len(events)})")
    ax.plot(frames, raw, color="0.6", linewidth=0.7, label="raw score")
    ax.plot(frames, smoothed, color="tab:blue", linewidth=1.5, label="smoothed score")
    ax.axhline(
        threshold, color="tab:orange", linestyle="--", linewidth=1.0, label=f"threshold {threshold:.3g}"
    )
    ax.set_xlim(-0.5, max(len(frames) - 0.5, 0.5))
    ax.set_xlabel("frame")
    ax.set_ylabel("anomaly score")
    top = ax.secondary_xaxis("top", functions=(lambda f: f / fps, lambda s: s * fps))
    top.set_xlabel("seconds")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="best", fontsize=7, framealpha=0.8)
    fig.tight_layout()
    fig.savefig(png_path, format="png", dpi=100)


# ---------------------------------------------------------------------------------------------------------
# The command: one or many sources


def detect(
    source: str | Path | int,
    options: DetectOptions,
    *,
    progress: ProgressFn | None = None,
    on_result: Callable[[DetectResult], None] | None = None,
) -> list[DetectResult]:
    """Run ``aed detect`` on ``source`` (module docstring); one :class:`DetectResult` per video.

    Everything that can be checked is checked before any file is written: the weights, the options, the
    source (opened once), and that no output would overwrite an existing file (unless ``force``). An
    output folder created here is removed again if the run fails before writing anything into it.
    """
    _check_options(options)
    from aedcli.weights import load_weights

    weights_path = resolve_weights(options.weights)
    loaded = load_weights(weights_path)
    threshold = choose_threshold(loaded, options.threshold)

    sources = list_sources(source)
    # A folder of videos lists the videos inside it; any other source lists itself.
    many = isinstance(sources[0], Path) and sources[0] != Path(str(source)).expanduser()
    folder = Path(options.out_dir if options.out_dir is not None else default_out_dir(source)).expanduser()
    stems = _unique_stems(sources)
    planned = [OutputPaths.plan(folder, stem, overlay=options.overlay, plot=options.plot) for stem in stems]
    check_outputs_free(planned, options.force)

    # Open a single source before creating anything: a missing file or dead stream then leaves no trace.
    first: VideoSource | None = None if many else _open(sources[0], options.timeout_s)
    results: list[DetectResult] = []
    try:
        created = _make_out_dir(folder)
    except BaseException:
        if first is not None:
            first.close()
        raise
    try:
        if not many:
            assert first is not None
            results.append(_detect_one(first, loaded, planned[0], threshold, options, progress))
            if on_result is not None:
                on_result(results[-1])
        else:
            results = _detect_many(
                sources, weights_path, loaded, planned, threshold, options, progress, on_result
            )
    except BaseException:
        _remove_if_empty(created)
        raise
    return results


def _check_options(options: DetectOptions) -> None:
    if options.batch_size < 1:
        raise UsageError(f"--batch must be 1 or more, not {options.batch_size}.")
    if options.workers < 1:
        raise UsageError(f"--workers must be 1 or more, not {options.workers}.")
    if options.sigma is not None and not (math.isfinite(options.sigma) and options.sigma >= 0):
        raise UsageError(f"--sigma must be 0 (no smoothing) or more frames, not {options.sigma:g}.")
    if not (math.isfinite(options.timeout_s) and options.timeout_s > 0):
        raise UsageError(f"--timeout must be a positive number of seconds, not {options.timeout_s:g}.")
    if options.live_lag is not None and options.live_lag < 0:
        raise UsageError(f"--live-lag must be 0 or more frames, not {options.live_lag}.")
    if options.device not in ("cpu", "cuda") and not options.device.startswith("cuda:"):
        raise UsageError(f"--device must be 'cpu' or 'cuda', not '{options.device}'.")
    if options.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UsageError("--device cuda was asked for but PyTorch sees no CUDA GPU; use --device cpu.")


def _detect_one(
    source: SourceSpec,
    loaded: Any,
    outputs: OutputPaths,
    threshold: ThresholdChoice,
    options: DetectOptions,
    progress: ProgressFn | None,
    runner: Any | None = None,
) -> DetectResult:
    return detect_stream(
        source,
        loaded,
        outputs,
        threshold,
        sigma=options.sigma,
        batch_size=options.batch_size,
        device=options.device,
        live_lag=options.live_lag,
        timeout_s=options.timeout_s,
        progress=progress,
        runner=runner if runner is not None else build_runner(loaded, options),
    )


def _detect_many(
    sources: list[str | Path | int],
    weights_path: Path,
    loaded: Any,
    planned: list[OutputPaths],
    threshold: ThresholdChoice,
    options: DetectOptions,
    progress: ProgressFn | None,
    on_result: Callable[[DetectResult], None] | None,
) -> list[DetectResult]:
    """Every video of a folder, in this process or spread over ``options.workers`` processes."""
    results: list[DetectResult] = []
    failures: list[str] = []
    if options.workers == 1:
        runner = build_runner(loaded, options)
        for src, outputs in zip(sources, planned, strict=True):
            try:
                result = _detect_one(src, loaded, outputs, threshold, options, progress, runner)
            except AedError as exc:
                failures.append(str(exc))
                continue
            results.append(result)
            if on_result is not None:
                on_result(result)
            if result.interrupted:
                break
    else:
        workers = min(options.workers, len(sources))
        # Spawned workers start clean (no forked torch threads); each loads the weights once and shares the
        # CPU cores with the others instead of every worker claiming all of them.
        threads = max(1, (os.cpu_count() or 1) // workers)
        context = multiprocessing.get_context("spawn")
        with (
            StopRequest() as stop,
            ProcessPoolExecutor(
                max_workers=workers,
                mp_context=context,
                initializer=_init_worker,
                initargs=(str(weights_path), threads),
            ) as pool,
        ):
            futures: list[Future[DetectResult]] = [
                pool.submit(_worker_detect, str(src), outputs, threshold, options)
                for src, outputs in zip(sources, planned, strict=True)
            ]
            for future in futures:
                result = _wait_for(future, stop, futures, failures)
                if result is not None:
                    results.append(result)
                    if on_result is not None:
                        on_result(result)
    if failures:
        more = f" ({len(failures) - 1} more of {len(sources)} videos failed too)" if len(failures) > 1 else ""
        raise AedError(failures[0] + more)
    return results


def _wait_for(
    future: Future[DetectResult], stop: StopRequest, futures: list[Future[DetectResult]], failures: list[str]
) -> DetectResult | None:
    """The result of one worker's video; after Ctrl-C, videos not started yet are dropped."""
    while True:
        if stop.requested.is_set():
            for pending in futures:
                pending.cancel()  # only cancels videos no worker has started
        try:
            return future.result(timeout=0.2)
        except FutureTimeout:
            continue
        except CancelledError:
            return None
        except AedError as exc:
            failures.append(str(exc))
            return None
        except BrokenProcessPool:
            if stop.requested.is_set():
                return None  # a worker hit by Ctrl-C while idle
            raise


_WORKER: dict[str, Any] = {}


def build_runner(loaded: Any, options: DetectOptions) -> Any:
    """The student runner ``options`` ask for: PyTorch (:class:`StudentRunner`) or ONNX Runtime."""
    if options.runtime == "onnx":
        from aedcli.runtime import make_runner

        return make_runner(loaded, runtime="onnx", device=options.device, batch_size=options.batch_size)[0]
    if options.runtime != "torch":
        raise UsageError(f"--runtime must be torch or onnx, not '{options.runtime}'.")
    from aedcli.inference import StudentRunner

    return StudentRunner(loaded, device=options.device, batch_size=options.batch_size)


def _init_worker(weights_path: str, threads: int) -> None:
    import torch

    from aedcli.weights import load_weights

    torch.set_num_threads(threads)
    _WORKER["loaded"] = load_weights(weights_path)


def _worker_detect(
    source: str, outputs: OutputPaths, threshold: ThresholdChoice, options: DetectOptions
) -> DetectResult:
    return _detect_one(Path(source), _WORKER["loaded"], outputs, threshold, options, None)
