"""One source through the detector: decode, score, smooth, write, side by side and in bounded memory.

Three threads work at once. The reader decodes frames and prepares them for the student
(:class:`~aedcli.detect.threads.FramePrefetcher`); the caller's thread runs the student in batches
(:class:`aedcli.runtime.StudentRunner`, the path ``aed eval`` takes), smooths the raw scores and writes the
CSV; with an overlay, a writer thread draws and encodes each frame once its smoothed score is known
(:class:`~aedcli.detect.threads.BackgroundSink`). Queues between them are bounded, and only the frames still
waiting for their smoothed score are kept (at most the smoothing lag, ``ceil(3 * sigma)`` frames), so an hour
of video needs no more memory than a minute.

Files are smoothed with the centred Gaussian of ``aed eval`` (:class:`aedcli.scoring.CentredSmoother`,
bit-identical to smoothing the whole clip); live sources use a fixed lag
(:class:`aedcli.scoring.LiveSmoother`).
Ctrl-C stops reading and completes the files for the frames already scored.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aedcli.detect.domain import ScoreLevelCheck, footage_notes, short_clip_note
from aedcli.detect.outputs import SCORE_MEANING, ScoreCsv, ScoredFrame, is_brief, plot_timeline, write_json
from aedcli.detect.overlay import OverlayStyle, annotate_frame, overlay_size
from aedcli.detect.sources import OutputPaths
from aedcli.detect.threads import BackgroundSink, FramePrefetcher, StopRequest, opencv_single_threaded
from aedcli.errors import UsageError
from aedcli.model.weights import LoadedWeights
from aedcli.runtime import RunnerInfo, StudentRunner
from aedcli.scoring import (
    BatchSmoother,
    CentredSmoother,
    Event,
    EventTracker,
    LiveSmoother,
    kernel_radius,
    teacher_scores,
)
from aedcli.video import SINGLE_THREAD_PIXELS, VideoSource, VideoWriter

READ_AHEAD_BYTES = 256 * 2**20
"""With an overlay, each queued batch also carries its decoded frames at full size; when two batches of them
would pass this many bytes (a 4K source at batch 16), the reader queues one batch instead of two."""

ProgressFn = Callable[[int, "int | None"], None]
"""Called in the calling thread after each batch with (frames scored so far, frames expected or None)."""


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
    notes: list[str]
    summary: dict[str, Any] = field(repr=False)


@dataclass
class _Pending:
    """A scored frame waiting for its smoothed score (and its picture, when drawing the overlay)."""

    raw: float
    heads: tuple[float, float, float]
    teachers: tuple[float, ...]
    l_map: np.ndarray | None
    frame: np.ndarray | None


def read_ahead_depth(batch_size: int, original_bytes: int = 0) -> int:
    """Batches the reader may prepare ahead of the network: two, one when a batch's original frames of
    ``original_bytes`` each, kept for the overlay, would pass :data:`READ_AHEAD_BYTES`."""
    if original_bytes > 0 and 2 * batch_size * original_bytes > READ_AHEAD_BYTES:
        return 1
    return 2


def detect_stream(
    video: VideoSource,
    loaded: LoadedWeights,
    runner: StudentRunner,
    runner_info: RunnerInfo | None,
    outputs: OutputPaths,
    threshold: ThresholdChoice,
    *,
    sigma: float | None = None,
    live_lag: int | None = None,
    progress: ProgressFn | None = None,
) -> DetectResult:
    """Score one open source and write its outputs (see the module docstring). The output folder must exist
    and the outputs must be free (:func:`aedcli.detect.detect` checks both)."""
    sigma = float(loaded.sigma if sigma is None else sigma)
    info = video.info
    if outputs.overlay is not None and min(info.width, info.height) < 2:
        raise UsageError(
            f"{info.source} is {info.width}x{info.height} pixels, too small for an overlay video; drop "
            "--overlay."
        )
    smoother: BatchSmoother
    if info.is_live:
        radius = kernel_radius(sigma)
        if live_lag is not None and not 0 <= live_lag <= radius:
            raise UsageError(
                f"--live-lag must be between 0 and {radius} frames (the smoothing radius for "
                f"sigma={sigma:g}), "
                f"not {live_lag}."
            )
        smoother, mode = LiveSmoother(sigma, live_lag), "fixed-lag"
    else:
        smoother, mode = CentredSmoother(sigma), "centred"
    with video:
        return _run(video, loaded, runner, runner_info, smoother, mode, outputs, threshold, sigma, progress)


def _run(
    video: VideoSource,
    loaded: LoadedWeights,
    runner: StudentRunner,
    runner_info: RunnerInfo | None,
    smoother: BatchSmoother,
    mode: str,
    outputs: OutputPaths,
    threshold: ThresholdChoice,
    sigma: float,
    progress: ProgressFn | None,
) -> DetectResult:
    info = video.info
    fps, thr = info.fps, threshold.value
    draw = outputs.overlay is not None
    style = OverlayStyle.for_threshold(thr)
    history: deque[float] = deque(maxlen=style.timeline_frames)
    peak = style.score_max
    events = EventTracker(fps)
    weights_name = str(loaded.path) if loaded.path is not None else "WEIGHTS"
    level = ScoreLevelCheck(loaded.normal, fps, weights_name)
    notes: list[str] = []
    waiting: deque[_Pending] = deque()  # scored frames not yet smoothed, oldest first
    first_frame: list[np.ndarray] = []
    scored = written = 0
    interrupted = False
    started = time.perf_counter()

    with ExitStack() as files:
        if info.width * info.height <= SINGLE_THREAD_PIXELS:
            # Small pictures: OpenCV's own worker pool costs more in hand-offs than it saves (see threads.py).
            files.enter_context(opencv_single_threaded())
        csv = files.enter_context(ScoreCsv(outputs.csv, fps, loaded.config.teachers))
        sink: BackgroundSink | None = None
        codec = None
        if outputs.overlay is not None:
            writer = files.enter_context(
                VideoWriter(outputs.overlay, fps=fps, size=overlay_size(info.width, info.height))
            )
            codec = writer.codec
            sink = files.enter_context(
                BackgroundSink(lambda args: writer.write(annotate_frame(*args)), maxsize=16)
            )

        def emit(ready: list[tuple[int, float]]) -> None:
            nonlocal written, peak
            rows = []
            for frame_index, smoothed in ready:
                item = waiting.popleft()
                abnormal = smoothed > thr
                events.update(frame_index, smoothed, abnormal)
                rows.append(ScoredFrame(frame_index, item.raw, smoothed, abnormal, item.heads, item.teachers))
                if sink is not None and item.frame is not None:
                    history.append(smoothed)
                    # The timeline's axis only grows (to the highest score so far), so it never jumps back.
                    peak = max(peak, 1.1 * smoothed)
                    sink.put((item.frame, item.l_map, smoothed, thr, np.asarray(history), style, peak))
            csv.write(rows)
            written += len(ready)

        def batches() -> Iterator[tuple[list[np.ndarray], np.ndarray]]:
            # Runs in the reader thread: decoding, colour conversion, resizing, stacking and scaling all
            # overlap the network, which the caller's thread runs on the finished batches.
            originals: deque[np.ndarray] = deque()  # for the overlay: at most a batch and the stack offset

            def decoded() -> Iterator[np.ndarray]:
                for frame in video.frames():
                    if not first_frame:
                        first_frame.append(frame)
                    if draw:
                        originals.append(frame)
                    yield frame

            for x in runner.batches(decoded()):
                yield [originals.popleft() for _ in range(len(x))] if draw else [], x

        stop = files.enter_context(StopRequest())
        depth = read_ahead_depth(runner.batch_size, info.width * info.height * info.channels if draw else 0)
        prefetch = FramePrefetcher(batches(), maxsize=depth, stop=stop.requested)

        try:
            for originals, x in prefetch:
                maps = runner.run_array(x)
                per_teacher = teacher_scores(maps.s, maps.m, maps.l)  # (b, K) float64
                best = per_teacher.argmax(axis=1)
                raw = per_teacher[np.arange(len(best)), best]  # (b,), the eval path's frame scores
                b = raw.shape[0]
                m_max = maps.m.reshape(b, maps.m.shape[1], -1).max(axis=2)
                l_max = maps.l.reshape(b, maps.l.shape[1], -1).max(axis=2)
                finest = maps.finest if draw else None
                for i in range(b):
                    k = int(best[i])
                    waiting.append(
                        _Pending(
                            raw=float(raw[i]),
                            heads=(float(maps.s[i, k]), float(m_max[i, k]), float(l_max[i, k])),
                            teachers=tuple(float(v) for v in per_teacher[i]),
                            l_map=finest[i].copy()
                            if finest is not None
                            else None,  # copy: don't pin the batch
                            frame=originals[i] if draw else None,
                        )
                    )
                scored += b
                level.add(raw)
                emit(smoother.push_many(raw))
                if progress is not None:
                    progress(scored, info.frame_count)
        except KeyboardInterrupt:
            interrupted = True  # raised between batches (for example by a progress callback)
        finally:
            prefetch.close()
        interrupted = interrupted or stop.requested.is_set()
        emit(smoother.flush())
        if sink is not None:
            sink.close()
        csv.finish()
        event_list = events.finish()
        elapsed = max(time.perf_counter() - started, 1e-9)

        if first_frame:
            notes += footage_notes(info, first_frame[0], loaded.domain, weights_name)
        for note in (level.note(), short_clip_note(written)):
            if note:
                notes.append(note)
        if outputs.timeline is not None:
            title = f"{info.source} ({mode} smoothing, sigma={sigma:g} frames)"
            plot_timeline(csv.temporary, outputs.timeline, thr, fps, event_list, title=title)  # type: ignore[arg-type]
        summary = _summary(
            video,
            loaded,
            runner,
            runner_info,
            outputs,
            threshold,
            sigma,
            mode,
            smoother.latency_frames,
            written,
            elapsed,
            event_list,
            events.abnormal_frames,
            interrupted,
            notes,
            codec,
        )
        write_json(outputs.summary, summary)

    return DetectResult(
        info.source, outputs, written, event_list, interrupted, written / elapsed, summary["notes"], summary
    )


def _summary(
    video: VideoSource,
    loaded: LoadedWeights,
    runner: StudentRunner,
    runner_info: RunnerInfo | None,
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
    notes: list[str],
    codec: str | None,
) -> dict[str, Any]:
    info = video.info
    fps = info.fps
    if mode == "centred":
        smoothing = (
            f"centred Gaussian, sigma={sigma:g} frames (the same smoothing as 'aed eval'); each smoothed "
            "score "
            f"is known {lag} frames after its frame"
        )
    else:
        smoothing = (
            f"fixed-lag Gaussian, sigma={sigma:g} frames, each smoothed score is known {lag} frames "
            f"({lag / fps:.2f} s) after its frame"
        )
    all_notes = list(notes)
    if threshold.sigma is not None and threshold.sigma != sigma:
        all_notes.append(
            f"the threshold was set on scores smoothed with sigma={threshold.sigma:g} but these scores use "
            f"sigma={sigma:g}; abnormal flags may be too many or too few"
        )
    if not info.fps_reported:
        all_notes.append(f"the source reports no frame rate; times assume {fps:g} fps")
    if video.truncated and video.stop_reason:
        all_notes.append(f"the stream stopped early: {video.stop_reason}")
    if video.missing_frames:
        gap = video.missing_frames
        shown = ", ".join(str(n) for n in gap[:5]) + (", ..." if len(gap) > 5 else "")
        all_notes.append(
            f"the frame folder skips {len(gap)} frame number(s) ({shown}); rows and times count only the "
            "frames "
            "present"
        )
    if codec == "mp4v":
        all_notes.append(
            "the overlay is MPEG-4 Part 2 (mp4v), which web browsers do not play; install PyAV ('pip install "
            "av') "
            "for H.264"
        )
    provenance = {k: v for k, v in (loaded.provenance or {}).items() if is_brief(v)}
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
        "runtime": runner_info.runtime if runner_info is not None else None,
        "batch_size": runner.batch_size,
        "weights": {
            "path": str(loaded.path) if loaded.path is not None else None,
            "variant": loaded.variant,
            "teachers": list(loaded.config.teachers),
            "input": loaded.spec.to_dict(),
            "normal_range": loaded.normal.to_dict() if loaded.normal is not None else None,
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
            "overlay_codec": codec,
            "timeline": outputs.timeline.name if outputs.timeline else None,
        },
        "csv_columns": {
            "score": "raw frame score (see score_meaning)",
            "score_smoothed": "score after temporal Gaussian smoothing (see smoothing)",
            "abnormal": "1 when score_smoothed > threshold",
            "s_head, m_head_max, l_head_max": "S, max M and max L of the teacher whose score is the frame's",
        },
        "score_meaning": SCORE_MEANING,
        "notes": all_notes,
    }
