"""Honest speed figures for the student and its teachers: what is timed is said next to every number.

Measured, in one process (Croitoru et al., arXiv 2211.15597, report 1480 FPS for the student and a 28-62x
speed-up over their object-centric teachers; this module measures ``aed``'s own):

- **model only**, for each batch size: the forward pass on an input batch already in place, repeated
  ``iters`` times after ``warmup`` untimed passes; latency median and 99th percentile per batch, throughput =
  batch / median latency. On CUDA each pass is timed with CUDA events after a synchronisation and the peak GPU
  memory is read; on CPU the thread count and the peak resident memory of the process are reported.
- **end to end** on a clip (``--clip`` or a generated one, written as mp4 so decoding is real), through the
  very pipeline of ``aed detect`` (:func:`aedcli.detect.pipeline.detect_stream`): decode, prepare, stack,
  forward, scores, smoothing and the CSV, at the largest batch size; and again writing the overlay video too.
  ``ratio_end_to_end`` = end to end / model only at that batch; ``ratio_overlay`` = with / without overlay.
- **teachers** on the same clip (``--teachers``): optical flow, the motion maps, the objects and their scores,
  painting included (:func:`aedcli.teachers.teach.analyse_clip` and :func:`~aedcli.teachers.teach.paint`).
  Fitted teachers come from the weights' run folder or the shipped ones; without them they are fitted on the
  clip itself, which changes their scores but not their cost. ``ratio_student_teachers`` = student end to end
  / teachers.
- parameters and GMAC per frame, and the largest difference of the benchmarked runtime's maps from the eager
  fp32 student on one batch.

Nothing is extrapolated: a figure that could not be measured is ``None`` with the reason in ``notes``.

>>> result = run_bench(BenchOptions(variant="fastaed-xs", size=(120, 160), batches=(1, 8), iters=5))
>>> result.to_json()["fps_model"]["8"]
"""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from aedcli import __version__
from aedcli.data.clips import Clip
from aedcli.detect.pipeline import ThresholdChoice, detect_stream
from aedcli.detect.sources import OutputPaths
from aedcli.errors import AedError, UsageError
from aedcli.model.inputs import InputSpec
from aedcli.model.student import Student, count_params, gmac_per_frame, student_config
from aedcli.model.weights import LoadedWeights, load_weights
from aedcli.resources import shipped
from aedcli.runtime import RunnerInfo, StudentRunner, make_runner
from aedcli.runtime.onnx import random_stack_input
from aedcli.runtime.optimise import check_device
from aedcli.scoring import DEFAULT_SIGMA
from aedcli.teachers import TeachConfig, find_teachers, load_teachers
from aedcli.teachers.files import Teacher
from aedcli.teachers.teach import analyse_clip, fit_teachers, paint
from aedcli.video import VideoWriter, iter_frames, open_video

PAPER_SIZE = (360, 640)
"""The paper's input size (H, W) = 640 x 360 pixels (W x H), used when no weights define one."""

DEFAULT_VARIANT = "fastaed"
GENERATED_FRAMES = 120

INCLUDES = {
    "fps_model": (
        "forward pass only, on an input batch already on the device (no decoding, no pre-processing, "
        "no copy of the maps back to the host); batch / median latency over the timed iterations after "
        "the warm-up ones; CUDA timed with events after synchronisation"
    ),
    "latency_ms": "wall time of one forward pass of a whole batch (median and 99th percentile)",
    "fps_end_to_end": (
        "aed detect's pipeline over the whole clip: decode + resize/colour conversion + (t, t-3, t+3) "
        "stacking + scaling + forward + maps to the host + frame scores + centred smoothing + CSV and "
        "summary; median of the runs"
    ),
    "fps_end_to_end_overlay": "the same, also drawing and encoding the overlay video",
    "ratio_end_to_end": "fps_end_to_end / fps_model at the same batch size",
    "ratio_overlay": "fps_end_to_end_overlay / fps_end_to_end",
    "teachers_fps": (
        "decoding + optical flow + the motion teacher's maps + finding and scoring objects + painting every "
        "teacher's maps, over the whole clip"
    ),
    "ratio_student_teachers": "fps_end_to_end / teachers_fps, on the same clip",
    "peak_rss_mb": "peak resident memory of the whole process (interpreter, libraries, clip, models)",
    "peak_gpu_mb": "torch.cuda.max_memory_allocated during the timed forward passes of that batch size",
}


# ---------------------------------------------------------------------------------------------------------
# Options and results


@dataclass
class BenchOptions:
    """What to benchmark and how; ``size`` is (height, width)."""

    weights: Path | None = None
    variant: str | None = None
    device: str = "cpu"
    batches: tuple[int, ...] = (1, 32)
    size: tuple[int, int] | None = None
    channels: int | None = None
    precision: str = "fp32"
    runtime: str = "auto"
    threads: int | None = None
    clip: Path | None = None
    frames: int = GENERATED_FRAMES
    teachers: bool = False
    teachers_from: Path | None = None
    overlay: bool = True
    warmup: int = 3
    iters: int = 20
    e2e_runs: int = 5
    seed: int = 0


@dataclass
class BatchTiming:
    """Model-only timing of one batch size."""

    batch: int
    fps_model: float
    latency_ms_p50: float
    latency_ms_p99: float
    latency_ms_mean: float
    iters: int
    warmup: int
    peak_gpu_mb: float | None = None


@dataclass
class TeacherTiming:
    """The teachers' cost on the bench clip."""

    names: list[str]
    source: str
    frames: int
    objects: int
    analysis_s: float
    painting_s: dict[str, float]
    fps: float


@dataclass
class BenchResult:
    """Everything :func:`run_bench` measured; :meth:`to_json` gives the documented JSON."""

    model: dict[str, Any]
    runner: RunnerInfo
    size: tuple[int, int]
    timings: list[BatchTiming]
    clip: dict[str, Any]
    fps_end_to_end: float | None
    e2e_runs: list[float]
    fps_end_to_end_overlay: float | None
    overlay_runs: list[float]
    batch_end_to_end: int
    teachers: TeacherTiming | None
    max_abs_diff_vs_eager: float | None
    system: dict[str, Any]
    peak_rss_mb: float | None
    notes: list[str] = field(default_factory=list)

    @property
    def ratio_student_teachers(self) -> float | None:
        if self.teachers is None or self.fps_end_to_end is None or self.teachers.fps <= 0:
            return None
        return self.fps_end_to_end / self.teachers.fps

    @property
    def ratio_end_to_end(self) -> float | None:
        model = next((t.fps_model for t in self.timings if t.batch == self.batch_end_to_end), None)
        if model is None or self.fps_end_to_end is None:
            return None
        return self.fps_end_to_end / model

    @property
    def ratio_overlay(self) -> float | None:
        if self.fps_end_to_end_overlay is None or not self.fps_end_to_end:
            return None
        return self.fps_end_to_end_overlay / self.fps_end_to_end

    def to_json(self) -> dict[str, Any]:
        """The JSON report. Per-batch figures are objects keyed by the batch size as a string."""
        by_batch = {str(t.batch): t for t in self.timings}
        return {
            "fps_model": {k: _r(t.fps_model) for k, t in by_batch.items()},
            "fps_end_to_end": _r(self.fps_end_to_end),
            "fps_end_to_end_overlay": _r(self.fps_end_to_end_overlay),
            "ratio_end_to_end": _r(self.ratio_end_to_end, 3),
            "ratio_overlay": _r(self.ratio_overlay, 3),
            "latency_ms_p50": {k: _r(t.latency_ms_p50, 3) for k, t in by_batch.items()},
            "latency_ms_p99": {k: _r(t.latency_ms_p99, 3) for k, t in by_batch.items()},
            "gmac_per_frame": _r(self.model["gmac_per_frame"], 4),
            "params": self.model["params"],
            "teachers_fps": _r(self.teachers.fps) if self.teachers is not None else None,
            "ratio_student_teachers": _r(self.ratio_student_teachers),
            "device": self.runner.device,
            "batch": [t.batch for t in self.timings],
            "batch_end_to_end": self.batch_end_to_end,
            "size": {"height": self.size[0], "width": self.size[1]},
            "precision": self.runner.precision,
            "runtime": self.runner.runtime,
            "threads": self.runner.threads,
            "optimisations": self.runner.optimisations,
            "max_abs_diff_vs_eager": self.max_abs_diff_vs_eager,
            "peak_rss_mb": _r(self.peak_rss_mb),
            "peak_gpu_mb": {k: _r(t.peak_gpu_mb) for k, t in by_batch.items()}
            if self.runner.device == "cuda"
            else None,
            "model": self.model,
            "timings": [asdict(t) for t in self.timings],
            "end_to_end": {
                "clip": self.clip,
                "runs_fps": [_r(v) for v in self.e2e_runs],
                "overlay_runs_fps": [_r(v) for v in self.overlay_runs],
            },
            "teachers": asdict(self.teachers) if self.teachers is not None else None,
            "system": self.system,
            "includes": INCLUDES,
            "notes": list(self.runner.notes) + self.notes,
        }


def _r(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(float(value), digits)


# ---------------------------------------------------------------------------------------------------------
# The model


def resolve_model(options: BenchOptions) -> tuple[LoadedWeights, dict[str, Any], list[str]]:
    """The student to time: ``--weights``, else the shipped default weights, else a random ``--variant``."""
    notes: list[str] = []
    if options.weights is not None and options.variant is not None:
        raise UsageError("--weights and --variant exclude each other; pass one of them.")
    weights_path = options.weights
    if weights_path is None and options.variant is None:
        weights_path = shipped("ped2.pt")
    if weights_path is not None:
        loaded = load_weights(weights_path)
        spec = loaded.spec
        if options.channels is not None and options.channels != spec.channels:
            raise UsageError(
                f"--channels {options.channels} does not match the weights ({spec.channels} per frame); "
                "drop --channels."
            )
        if options.size is not None and options.size != (spec.height, spec.width):
            notes.append(
                f"timed at {options.size[0]}x{options.size[1]}, not the {spec.height}x{spec.width} the "
                "weights were trained at"
            )
            spec = InputSpec(options.size[0], options.size[1], spec.channels, spec.offset)
            loaded = replace(loaded, spec=spec)
        source = f"weights {weights_path}"
        weights_path = Path(weights_path)
    else:
        variant = options.variant or DEFAULT_VARIANT
        channels = options.channels if options.channels is not None else 3
        if channels not in (1, 3):
            raise UsageError(f"--channels must be 1 (gray) or 3 (colour), not {channels}.")
        height, width = options.size or PAPER_SIZE
        try:
            config = student_config(variant, in_channels=3 * channels)
        except KeyError as exc:
            raise UsageError(f"--variant: {exc.args[0]}.") from None
        torch.manual_seed(options.seed)
        model = Student(config).eval()
        spec = InputSpec(height, width, channels)
        loaded = LoadedWeights(
            model=model, config=config, spec=spec, sigma=DEFAULT_SIGMA, threshold=None, variant=variant
        )
        source = f"variant {variant}, random initialisation (no weights: speed only, scores are meaningless)"
        if options.weights is None and options.variant is None:
            notes.append(
                "no default weights (ped2.pt) were found, so a randomly initialised "
                f"'{variant}' student was timed"
            )
    info = {
        "source": source,
        "variant": loaded.variant,
        "in_channels": loaded.config.in_channels,
        "params": count_params(loaded.model),
        "gmac_per_frame": gmac_per_frame(loaded.config, loaded.spec.height, loaded.spec.width),
        "input": loaded.spec.to_dict(),
    }
    return loaded, info, notes


# ---------------------------------------------------------------------------------------------------------
# Timing helpers


def _synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_forward(
    forward: Callable[[torch.Tensor], Any],
    x: torch.Tensor,
    *,
    warmup: int,
    iters: int,
    device: torch.device,
) -> list[float]:
    """Seconds of each of ``iters`` calls of ``forward(x)`` after ``warmup`` untimed ones.

    On CUDA every call is bracketed by CUDA events and the host waits for the device before reading them,
    so the time is that of the GPU work, not of the kernel launches.
    """
    with torch.inference_mode():
        for _ in range(warmup):
            forward(x)
        _synchronise(device)
        times: list[float] = []
        if device.type == "cuda":
            for _ in range(iters):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                forward(x)
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end) / 1000.0)
        else:
            for _ in range(iters):
                t0 = time.perf_counter()
                forward(x)
                times.append(time.perf_counter() - t0)
    return times


def summarise(
    batch: int, times: Sequence[float], warmup: int, peak_gpu_mb: float | None = None
) -> BatchTiming:
    """Median / p99 / mean latency (ms) and throughput of one batch size from per-call seconds."""
    arr = np.asarray(times, dtype=np.float64)
    median = float(np.median(arr))
    return BatchTiming(
        batch=batch,
        fps_model=batch / median if median > 0 else float("inf"),
        latency_ms_p50=median * 1e3,
        latency_ms_p99=float(np.percentile(arr, 99)) * 1e3,
        latency_ms_mean=float(arr.mean()) * 1e3,
        iters=len(arr),
        warmup=warmup,
        peak_gpu_mb=peak_gpu_mb,
    )


def peak_rss_mb() -> float | None:
    """Peak resident set size of this process in MiB (None where the platform does not say)."""
    try:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    except (AttributeError, OSError):
        return None
    # Linux reports KiB, macOS bytes.
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def system_info(device: torch.device) -> dict[str, Any]:
    """Versions, processor names and the machine's load (a shared machine makes every figure lower)."""
    info: dict[str, Any] = {
        "aed": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "load_average_1m": None,
        "gpu": None,
    }
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        info["onnxruntime"] = None
    with contextlib.suppress(AttributeError, OSError):  # not every platform has a load average
        info["load_average_1m"] = round(os.getloadavg()[0], 2)
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# ---------------------------------------------------------------------------------------------------------
# The clip


def write_generated_clip(
    path: Path, height: int, width: int, frames: int, *, colour: bool, seed: int = 0
) -> Path:
    """A fixed-camera clip of a textured background with a few moving objects, written as mp4.

    Objects move at different speeds and directions so that the teachers' proposals find boxes, and the
    file is compressed video so that the end-to-end figure includes real decoding.
    """
    rng = np.random.default_rng(seed)
    coarse = rng.normal(0.0, 1.0, (max(2, height // 12), max(2, width // 12))).astype(np.float32)
    background = 120.0 + 20.0 * cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    n_objects = 4
    size = rng.uniform(0.08, 0.18, (n_objects, 2)) * np.array([height, width * 0.5])  # (h, w)
    pos = rng.uniform(0.1, 0.8, (n_objects, 2)) * np.array([height, width])
    vel = rng.uniform(-1.0, 1.0, (n_objects, 2)) * np.array([0.01 * height, 0.02 * width])
    level = rng.choice([40.0, 220.0], n_objects)
    with VideoWriter(path, fps=25.0, size=(width, height)) as out:
        for t in range(frames):
            frame = background.copy()
            for i in range(n_objects):
                y, x = (pos[i] + vel[i] * t) % np.array([height, width])
                h, w = size[i]
                y0, x0 = int(y), int(x)
                frame[y0 : y0 + max(2, int(h)), x0 : x0 + max(2, int(w))] = level[i]
            frame += rng.normal(0.0, 2.0, frame.shape)
            gray = np.clip(frame, 0, 255).astype(np.uint8)
            out.write(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR) if colour else gray)
    return path


def _count_frames(path: Path | str) -> int:
    return sum(1 for _ in iter_frames(path))


# ---------------------------------------------------------------------------------------------------------
# Teachers


def _teachers_for(options: BenchOptions, clip: Path) -> tuple[dict[str, Teacher], str]:
    """Fitted teachers: ``--teachers-from``, the weights' run folder, the shipped ones for the shipped
    weights, or (when none exist) teachers fitted on the clip itself."""
    candidates = [options.teachers_from] if options.teachers_from is not None else []
    if options.weights is not None:
        candidates.append(Path(options.weights).parent)
    elif options.variant is None:
        candidates.append(shipped("ped2-teachers"))
    for folder in candidates:
        if folder is None:
            continue
        try:
            names = find_teachers(Path(folder))
        except AedError:
            if folder == options.teachers_from:
                raise UsageError(
                    f"--teachers-from {folder} holds no teacher files; train them with 'aed teach'."
                ) from None
            continue
        return load_teachers(Path(folder), names), f"fitted teachers from {folder}"
    from aedcli.data.clips import Dataset

    with tempfile.TemporaryDirectory(prefix="aed-bench-teachers-") as tmp:
        clip_obj = Clip(clip.stem, "train", clip, sum(1 for _ in iter_frames(clip)))
        dataset = Dataset("bench", clip.parent, [clip_obj], [], gray=True, fps=25.0)
        teachers, _ = fit_teachers(dataset, Path(tmp), TeachConfig())
    return (
        teachers,
        "teachers fitted on the clip itself (no fitted teachers given): their cost is that of any",
    )


def time_teachers(clip: Path, teachers: dict[str, Teacher], source: str) -> TeacherTiming:
    """The teachers' whole work on the clip: analysis (flow, motion maps, objects) and each one's painting."""
    clip_obj = Clip(clip.stem, "test", clip, sum(1 for _ in iter_frames(clip)))
    motion = teachers.get("motion")
    objects = teachers.get("objects")
    t0 = time.perf_counter()
    analysis = analyse_clip(
        clip_obj,
        motion if motion is not None and hasattr(motion, "raw_maps") else None,  # type: ignore[arg-type]
        objects.config if objects is not None and hasattr(objects, "bank") else TeachConfig().objects,  # type: ignore[union-attr]
    )
    analysis_s = time.perf_counter() - t0
    painting: dict[str, float] = {}
    for name, teacher in teachers.items():
        start = time.perf_counter()
        paint(teacher, analysis)
        painting[name] = time.perf_counter() - start
    total = analysis_s + sum(painting.values())
    frames = analysis.frame_count
    return TeacherTiming(
        names=list(teachers),
        source=source,
        frames=frames,
        objects=len(analysis.rows),
        analysis_s=analysis_s,
        painting_s=painting,
        fps=frames / total if total > 0 else float("inf"),
    )


# ---------------------------------------------------------------------------------------------------------
# The benchmark


def run_bench(options: BenchOptions, progress: Callable[[str], None] | None = None) -> BenchResult:
    """Run every measurement of the module docstring and return the figures (nothing is kept on disk)."""
    say = progress or (lambda _msg: None)
    _check(options)
    device = check_device(options.device)
    loaded, model_info, notes = resolve_model(options)
    spec = loaded.spec
    largest = max(options.batches)

    say("preparing the runtime")
    runner, runner_info = make_runner(
        loaded,
        runtime=options.runtime,
        device=options.device,
        batch_size=largest,
        precision=options.precision,
        threads=options.threads,
    )
    max_diff = _accuracy_probe(loaded, runner, spec)

    # Inputs go where the runner builds its batches: the GPU for PyTorch on CUDA, the host for onnxruntime
    # (which copies to a GPU itself, so its CUDA figures include those copies).
    input_device = runner.device
    torch_on_gpu = input_device.type == "cuda"
    if device.type == "cuda" and not torch_on_gpu:
        notes.append(
            "onnxruntime on CUDA: model-only times include its host-to-GPU copies; peak GPU memory is not "
            "visible to PyTorch and is not reported"
        )
    timings: list[BatchTiming] = []
    for batch in options.batches:
        say(f"model only, batch {batch}")
        x = random_stack_input(spec, batch, seed=options.seed).to(input_device)
        x = x.contiguous(memory_format=runner.memory_format)
        peak: float | None = None
        if torch_on_gpu:
            torch.cuda.reset_peak_memory_stats(input_device)
        times = time_forward(
            runner.forward, x, warmup=options.warmup, iters=options.iters, device=input_device
        )
        if torch_on_gpu:
            peak = torch.cuda.max_memory_allocated(input_device) / 2**20
        timings.append(summarise(batch, times, options.warmup, peak))

    with tempfile.TemporaryDirectory(prefix="aed-bench-") as tmp:
        clip_path, clip_info = _bench_clip(options, spec, Path(tmp))
        e2e_batch = largest
        runner.batch_size = e2e_batch
        clip_info["sigma"] = float(loaded.sigma)
        runs: list[float] = []
        overlay_runs: list[float] = []
        modes = (False, True) if options.overlay else (False,)
        for i in range(options.e2e_runs):
            # Alternating which goes first keeps a machine that speeds up or slows down over the runs from
            # favouring either figure; the medians are compared.
            for overlay in modes if i % 2 == 0 else modes[::-1]:
                kind = "end to end with the overlay" if overlay else "end to end"
                say(f"{kind}, run {i + 1} of {options.e2e_runs}")
                fps = _end_to_end(
                    loaded, runner, runner_info, clip_path, Path(tmp), clip_info["frames"], overlay
                )
                (overlay_runs if overlay else runs).append(fps)
        fps_e2e = float(np.median(runs)) if runs else None
        fps_overlay = float(np.median(overlay_runs)) if overlay_runs else None

        teachers: TeacherTiming | None = None
        if options.teachers:
            say("teachers on the clip")
            try:
                found, source = _teachers_for(options, clip_path)
                teachers = time_teachers(clip_path, found, source)
            except UsageError:
                raise  # an option to fix, such as --teachers-from without teachers
            except AedError as exc:  # the clip gives them nothing to work on: no figure, and why
                notes.append(f"teachers unavailable: {str(exc).rstrip('.')}")
    if not options.teachers:
        notes.append("teachers not timed (pass --teachers)")
    if clip_info["frames"] < 4 * e2e_batch:
        notes.append(
            f"the clip has {clip_info['frames']} frames, under four batches of {e2e_batch}: filling and "
            "draining the pipeline weighs on the end-to-end figure; a longer --clip or --frames measures "
            "it better"
        )

    system = system_info(device)
    load, cpus = system["load_average_1m"], system["cpu_count"] or 1
    if load is not None and load > cpus:
        notes.append(
            f"the machine was busy (load average {load} on {cpus} CPUs): other programs took CPU time, so "
            "these figures are lower and noisier than on an idle machine; multi-threaded runs suffer most"
        )
    return BenchResult(
        model=model_info,
        runner=runner_info,
        size=(spec.height, spec.width),
        timings=timings,
        clip=clip_info,
        fps_end_to_end=fps_e2e,
        e2e_runs=runs,
        fps_end_to_end_overlay=fps_overlay,
        overlay_runs=overlay_runs,
        batch_end_to_end=e2e_batch,
        teachers=teachers,
        max_abs_diff_vs_eager=max_diff,
        system=system,
        peak_rss_mb=peak_rss_mb() if device.type == "cpu" else None,
        notes=notes,
    )


def _check(options: BenchOptions) -> None:
    if not options.batches or any(b < 1 for b in options.batches):
        raise UsageError(f"--batch needs sizes of 1 or more, not {','.join(map(str, options.batches))}.")
    if options.iters < 1:
        raise UsageError(f"--iters must be 1 or more, not {options.iters}.")
    if options.warmup < 0:
        raise UsageError(f"--warmup must be 0 or more, not {options.warmup}.")
    if options.frames < 1:
        raise UsageError(f"--frames must be 1 or more, not {options.frames}.")
    if options.e2e_runs < 1:
        raise UsageError(f"the number of end-to-end runs must be 1 or more, not {options.e2e_runs}.")
    if options.size is not None and min(options.size) < 32:
        raise UsageError(f"--size {options.size[0]}x{options.size[1]} is too small; use at least 32x32.")
    if options.clip is not None and not Path(options.clip).exists():
        raise UsageError(f"--clip {options.clip} does not exist; pass a video file or a folder of frames.")


def _accuracy_probe(loaded: LoadedWeights, runner: StudentRunner, spec: InputSpec) -> float:
    """Largest difference of the benchmarked runtime's maps from the eager fp32 student on one batch of 2."""
    x = random_stack_input(spec, 2, seed=1)
    with torch.inference_mode():
        expected = [t.float().cpu() for t in loaded.model(x)]
        got = runner.forward(x.to(runner.device).contiguous(memory_format=runner.memory_format))
        got = [t.float().cpu() for t in got]
    return max(float((a - b).abs().max()) for a, b in zip(got, expected, strict=True))


def _bench_clip(options: BenchOptions, spec: InputSpec, tmp: Path) -> tuple[Path, dict[str, Any]]:
    if options.clip is not None:
        path = Path(options.clip)
        with open_video(path) as video:
            info = video.info
        frames = _count_frames(path)
        if frames == 0:
            raise AedError(f"--clip {path} holds no frames; pass a video with frames.")
        return path, {
            "source": str(path),
            "generated": False,
            "frames": frames,
            "width": info.width,
            "height": info.height,
        }
    path = write_generated_clip(
        tmp / "bench.mp4",
        spec.height,
        spec.width,
        options.frames,
        colour=spec.channels == 3,
        seed=options.seed,
    )
    return path, {
        "source": "generated: textured background, 4 moving objects, sensor noise; mp4",
        "generated": True,
        "frames": _count_frames(path),
        "width": spec.width,
        "height": spec.height,
    }


def _end_to_end(
    loaded: LoadedWeights,
    runner: StudentRunner,
    info: RunnerInfo,
    clip: Path,
    tmp: Path,
    frames: int,
    overlay: bool,
) -> float:
    """Frames per second of ``aed detect``'s own pipeline over the clip (outputs in a scratch folder)."""
    outputs = OutputPaths.plan(tmp, "bench", overlay=overlay, plot=False)
    threshold = ThresholdChoice(loaded.threshold.value if loaded.threshold else 0.5, "bench")
    start = time.perf_counter()
    result = detect_stream(open_video(clip), loaded, runner, info, outputs, threshold)
    elapsed = time.perf_counter() - start
    if result.frames != frames:
        raise AedError(f"the clip {clip} gave {result.frames} scores for {frames} frames; it may be damaged.")
    return frames / elapsed if elapsed > 0 else float("inf")


def parse_size(text: str) -> tuple[int, int]:
    """``"240x360"`` -> (240, 360) = (height, width); :class:`UsageError` otherwise."""
    parts = text.lower().replace("*", "x").split("x")
    try:
        h, w = (int(p) for p in parts)
    except ValueError:
        raise UsageError(
            f"--size must be HEIGHTxWIDTH in pixels, for example 240x360, not '{text}'."
        ) from None
    return h, w


def parse_batches(text: str) -> tuple[int, ...]:
    """``"1,32"`` -> (1, 32); :class:`UsageError` otherwise."""
    try:
        sizes = tuple(int(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise UsageError(f"--batch must be comma-separated sizes such as 1,32, not '{text}'.") from None
    if not sizes or any(s < 1 for s in sizes):
        raise UsageError(f"--batch must be comma-separated sizes of 1 or more, such as 1,32, not '{text}'.")
    return tuple(dict.fromkeys(sizes))


def iter_table_rows(result: BenchResult) -> Iterator[tuple[str, str, str]]:
    """(figure, value, what it includes) rows for the printed table."""
    for t in result.timings:
        gpu = f", peak GPU {t.peak_gpu_mb:.0f} MiB" if t.peak_gpu_mb is not None else ""
        yield (
            f"model only, batch {t.batch}",
            f"{t.fps_model:,.1f} fps",
            f"latency p50 {t.latency_ms_p50:.2f} ms, p99 {t.latency_ms_p99:.2f} ms per batch "
            f"({t.iters} timed, {t.warmup} warm-up){gpu}",
        )
    e2e = result.fps_end_to_end
    ratio = result.ratio_end_to_end
    yield (
        f"end to end, batch {result.batch_end_to_end}",
        f"{e2e:,.1f} fps" if e2e is not None else "n/a",
        f"aed detect's pipeline: decode -> stacks -> model -> scores -> smoothing -> CSV; "
        f"{result.clip['frames']} frames, median of {len(result.e2e_runs)} runs"
        + (f"; {ratio:.2f} of model only" if ratio is not None else ""),
    )
    if result.fps_end_to_end_overlay is not None:
        yield (
            "end to end with overlay",
            f"{result.fps_end_to_end_overlay:,.1f} fps",
            f"also drawing and encoding the overlay video; {result.ratio_overlay:.2f} of end to end",
        )
    if result.teachers is not None:
        t = result.teachers
        yield (
            "teachers (all)",
            f"{t.fps:,.1f} fps",
            f"flow, motion maps and objects {t.analysis_s:.2f} s + painting "
            + " + ".join(f"{n} {s:.2f} s" for n, s in t.painting_s.items())
            + f"; {t.objects} objects; {t.source}",
        )
        speed = result.ratio_student_teachers
        yield (
            "student / teachers",
            f"{speed:,.1f}x" if speed is not None else "n/a",
            "end to end / teachers",
        )
    yield ("parameters", f"{result.model['params']:,}", result.model["source"])
    yield ("GMAC per frame", f"{result.model['gmac_per_frame']:.3f}", f"at {result.size[0]}x{result.size[1]}")
    if result.peak_rss_mb is not None:
        yield ("peak RSS", f"{result.peak_rss_mb:,.0f} MiB", "whole process")
    if result.max_abs_diff_vs_eager is not None:
        yield ("max |diff| vs eager fp32", f"{result.max_abs_diff_vs_eager:.2e}", "maps S, M, L on one batch")
