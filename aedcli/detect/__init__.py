"""Anomaly detection on a video, a folder of videos, a frame folder, a camera or a stream: ``aed detect``.

One pass streams each source through the student (:mod:`aedcli.detect.pipeline`) and writes, in one output
folder (:mod:`aedcli.detect.sources`): ``<stem>_scores.csv``, ``<stem>_summary.json``, and, when asked for,
``<stem>_overlay.mp4`` (H.264; :mod:`aedcli.detect.overlay`) and ``<stem>_timeline.png``. Footage unlike the
weights' training footage gets one honest note (:mod:`aedcli.detect.domain`).

The threshold comes from the weights file (set on normal training video) or from the caller; it is never
derived from the video being judged (method.md section 5).

>>> results = detect("clip.mp4", DetectOptions(overlay=True))
>>> results[0].outputs.csv, results[0].events[:1]
(PosixPath('clip_aed/clip_scores.csv'), [Event(start_frame=120, end_frame=174, ...)])
"""

from __future__ import annotations

import math
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aedcli.detect.pipeline import DetectResult, ProgressFn, ThresholdChoice, detect_stream
from aedcli.detect.sources import (
    OutputPaths,
    Source,
    check_outputs_free,
    default_out_dir,
    is_live,
    list_sources,
    make_out_dir,
    remove_if_empty,
    unique_stems,
)
from aedcli.detect.threads import StopRequest
from aedcli.errors import AedError, UsageError
from aedcli.model.weights import LoadedWeights, load_weights
from aedcli.resources import resolve_weights
from aedcli.runtime import RUNTIMES, RunnerInfo, StudentRunner, make_runner
from aedcli.video import DEFAULT_TIMEOUT_S, VideoSource, open_video

__all__ = ["DetectOptions", "DetectResult", "choose_threshold", "detect"]


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
    runtime: str = "auto"
    workers: int = 1
    force: bool = False
    live_lag: int | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S


def choose_threshold(loaded: LoadedWeights, override: float | None) -> ThresholdChoice:
    """``override`` (from ``--threshold``) or the threshold stored in the weights file."""
    if override is not None:
        if not math.isfinite(override):
            raise UsageError(f"--threshold must be a finite number, not {override}.")
        return ThresholdChoice(float(override), "--threshold on the command line", None)
    stored = loaded.threshold
    if stored is None:
        raise UsageError(
            f"weights file {loaded.path} carries no threshold; pass --threshold with the smoothed score "
            "above "
            "which a frame is abnormal."
        )
    return ThresholdChoice(float(stored.value), f"weights file: {stored.source}", float(stored.sigma))


def detect(
    source: Source,
    options: DetectOptions,
    *,
    progress: ProgressFn | None = None,
    on_result: Callable[[DetectResult], None] | None = None,
) -> list[DetectResult]:
    """Run ``aed detect`` on ``source`` (module docstring); one :class:`DetectResult` per video.

    Everything that can be checked is checked before any file is written: the weights, the options, the
    source (opened once), and that no output would overwrite an existing file (unless ``force``). An output
    folder created here is removed again if the run fails before writing anything into it.
    """
    _check_options(options)
    weights_path = resolve_weights(options.weights)
    loaded = load_weights(weights_path)
    threshold = choose_threshold(loaded, options.threshold)

    sources = list_sources(source)
    # A folder of videos lists the videos inside it; any other source lists itself.
    many = not is_live(source) and len(sources) >= 1 and sources[0] != Path(str(source)).expanduser()
    folder = Path(options.out_dir if options.out_dir is not None else default_out_dir(source)).expanduser()
    planned = [
        OutputPaths.plan(folder, stem, overlay=options.overlay, plot=options.plot)
        for stem in unique_stems(sources)
    ]
    check_outputs_free(planned, options.force)

    # Open a single source before creating anything: a missing file or dead stream then leaves no trace.
    first = None if many else _open(sources[0], options.timeout_s)
    try:
        created = make_out_dir(folder)
    except BaseException:
        if first is not None:
            first.close()
        raise
    try:
        if first is not None:
            runner, info = _runner(loaded, options)
            result = detect_stream(
                first,
                loaded,
                runner,
                info,
                planned[0],
                threshold,
                sigma=options.sigma,
                live_lag=options.live_lag,
                progress=progress,
            )
            if on_result is not None:
                on_result(result)
            return [result]
        return _detect_many(sources, weights_path, loaded, planned, threshold, options, progress, on_result)
    except BaseException:
        remove_if_empty(created)
        raise


def _check_options(options: DetectOptions) -> None:
    if options.batch_size < 1:
        raise UsageError(f"--batch must be 1 or more, not {options.batch_size}.")
    if options.runtime not in RUNTIMES:
        raise UsageError(f"--runtime must be one of {', '.join(RUNTIMES)}, not '{options.runtime}'.")
    if options.workers < 1:
        raise UsageError(f"--workers must be 1 or more, not {options.workers}.")
    if options.sigma is not None and not (math.isfinite(options.sigma) and options.sigma >= 0):
        raise UsageError(f"--sigma must be 0 (no smoothing) or more frames, not {options.sigma:g}.")
    if not (math.isfinite(options.timeout_s) and options.timeout_s > 0):
        raise UsageError(f"--timeout must be a positive number of seconds, not {options.timeout_s:g}.")
    if options.live_lag is not None and options.live_lag < 0:
        raise UsageError(f"--live-lag must be 0 or more frames, not {options.live_lag}.")


def _open(source: Source, timeout_s: float) -> VideoSource:
    # A live source that drops ends the recording cleanly; a file that breaks midway is an error.
    return open_video(source, gray=None, on_error="stop" if is_live(source) else "raise", timeout_s=timeout_s)


def _runner(
    loaded: LoadedWeights, options: DetectOptions, threads: int | None = None
) -> tuple[StudentRunner, RunnerInfo]:
    return make_runner(
        loaded, runtime=options.runtime, device=options.device, batch_size=options.batch_size, threads=threads
    )


def _detect_many(
    sources: list[Source],
    weights_path: Path,
    loaded: LoadedWeights,
    planned: list[OutputPaths],
    threshold: ThresholdChoice,
    options: DetectOptions,
    progress: ProgressFn | None,
    on_result: Callable[[DetectResult], None] | None,
) -> list[DetectResult]:
    """Every video of a folder, in this process or spread over ``options.workers`` processes; every video
    that fails is named at the end, after the others have been scored."""
    results: list[DetectResult] = []
    failures: list[tuple[str, str]] = []
    if options.workers == 1:
        runner, info = _runner(loaded, options)
        for src, outputs in zip(sources, planned, strict=True):
            try:
                result = detect_stream(
                    _open(src, options.timeout_s),
                    loaded,
                    runner,
                    info,
                    outputs,
                    threshold,
                    sigma=options.sigma,
                    live_lag=options.live_lag,
                    progress=progress,
                )
            except AedError as exc:
                failures.append((Path(str(src)).name, str(exc)))
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
                initargs=(str(weights_path), options, threads),
            ) as pool,
        ):
            futures: list[Future[DetectResult]] = [
                pool.submit(_worker_detect, str(src), outputs, threshold, options)
                for src, outputs in zip(sources, planned, strict=True)
            ]
            for src, future in zip(sources, futures, strict=True):
                result = _wait_for(future, stop, futures, failures, Path(str(src)).name)
                if result is not None:
                    results.append(result)
                    if on_result is not None:
                        on_result(result)
    if failures:
        listed = "; ".join(f"{name}: {message.rstrip('.')}" for name, message in failures)
        raise AedError(f"{len(failures)} of {len(sources)} videos failed ({listed}).")
    return results


def _wait_for(
    future: Future[DetectResult],
    stop: StopRequest,
    futures: list[Future[DetectResult]],
    failures: list[tuple[str, str]],
    name: str,
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
            failures.append((name, str(exc)))
            return None
        except BrokenProcessPool:
            if stop.requested.is_set():
                return None  # a worker hit by Ctrl-C while idle
            raise


_WORKER: dict[str, Any] = {}


def _init_worker(weights_path: str, options: DetectOptions, threads: int) -> None:
    loaded = load_weights(weights_path)
    _WORKER["loaded"] = loaded
    _WORKER["runner"] = _runner(loaded, options, threads)


def _worker_detect(
    source: str, outputs: OutputPaths, threshold: ThresholdChoice, options: DetectOptions
) -> DetectResult:
    runner, info = _WORKER["runner"]
    return detect_stream(
        _open(Path(source), options.timeout_s),
        _WORKER["loaded"],
        runner,
        info,
        outputs,
        threshold,
        sigma=options.sigma,
        live_lag=options.live_lag,
    )
