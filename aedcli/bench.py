"""Honest speed figures for the student and its teachers: what is timed is said next to every number.

Measured, in one process (method: Croitoru et al., arXiv 2211.15597, report 1480 FPS for the student and a
28-62x speed-up over their object-centric teachers; this module measures ``aed``'s own):

- **model only**, for each batch size: the forward pass on an input batch already on the device, repeated
  ``iters`` times after ``warmup`` untimed passes; latency median and 99th percentile per batch, throughput
  = batch / median latency. On CUDA each pass is timed with CUDA events after a synchronisation, and the
  peak GPU memory is read from ``torch.cuda.max_memory_allocated``; on CPU the thread count and the peak
  resident memory of the process are reported.
- **end to end** on a clip (``--clip`` or a generated one, written as mp4 so decoding is real): decode,
  resize / colour conversion, (t, t-3, t+3) stacking, scaling, forward, frame scores and centred Gaussian
  smoothing, through :class:`aedcli.inference.StudentRunner`'s path (the one ``eval`` and ``detect`` use);
  median throughput over ``e2e_runs`` passes over the whole clip.
- **teachers** on the same clip: object proposals (background model, two passes over the video including
  decoding), object tubes (one pass, decoding and crops) and each teacher's scoring of every tube. Trained
  teachers are read from ``<targets>/<name>/teacher.pt``; without them, each is trained briefly (one epoch)
  on the clip's first frames, which changes its scores but not its cost per object, and the report says so.
  ``speedup_vs_teachers`` = student end-to-end fps / teachers fps (all teachers together, as they are used
  to make the student's targets).
- parameters and GMAC per frame (:func:`aedcli.student.gmac_per_frame`), and the largest difference of the
  benchmarked runtime's maps from the eager fp32 student on one batch.

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
from aedcli.errors import AedError, UsageError
from aedcli.export import random_stack_input
from aedcli.inputs import InputSpec
from aedcli.runtime import RunnerInfo, check_device, make_runner
from aedcli.scoring import smooth_scores
from aedcli.student import Student, count_params, gmac_per_frame, student_config
from aedcli.video import VideoWriter, iter_frames, open_video
from aedcli.weights import LoadedWeights, load_weights

PAPER_SIZE = (360, 640)
"""The paper's input size (H, W) = 640 x 360 pixels (W x H), used when no weights define one."""

DEFAULT_VARIANT = "fastaed"
DEFAULT_SIGMA = 3.0
GENERATED_FRAMES = 120
TEACHER_TRAIN_FRAMES = 64
TEACHER_TRAIN_EPOCHS = 1

INCLUDES = {
    "fps_model": (
        "forward pass only, on an input batch already on the device (no decoding, no pre-processing, "
        "no copy of the maps back to the host); batch / median latency over the timed iterations after "
        "the warm-up ones; CUDA timed with events after synchronisation"
    ),
    "latency_ms": "wall time of one forward pass of a whole batch (median and 99th percentile)",
    "fps_end_to_end": (
        "decode + resize/colour conversion + (t, t-3, t+3) stacking + scaling + forward + copy of the maps "
        "to the host + frame scores + centred Gaussian smoothing, over the whole clip; median of the runs"
    ),
    "teachers_fps": (
        "object proposals (background model: two passes over the clip, decoding included) + object tubes "
        "(one pass: decoding and crops) + every teacher's scoring of every tube; painting maps excluded"
    ),
    "speedup_vs_teachers": "fps_end_to_end / teachers_fps, on the same clip",
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
    runtime: str = "torch"
    threads: int | None = None
    clip: Path | None = None
    frames: int = GENERATED_FRAMES
    teachers: bool = False
    targets: Path | None = None
    warmup: int = 3
    iters: int = 20
    e2e_runs: int = 3
    optimise: bool = True
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
    proposals_s: float
    tubes_s: float
    scoring_s: dict[str, float]
    fps: float
    fps_each: dict[str, float]


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
    batch_end_to_end: int
    teachers: TeacherTiming | None
    max_abs_diff_vs_eager: float | None
    system: dict[str, Any]
    peak_rss_mb: float | None
    notes: list[str] = field(default_factory=list)

    @property
    def speedup_vs_teachers(self) -> float | None:
        if self.teachers is None or self.fps_end_to_end is None or self.teachers.fps <= 0:
            return None
        return self.fps_end_to_end / self.teachers.fps

    def to_json(self) -> dict[str, Any]:
        """The JSON report. Per-batch figures are objects keyed by the batch size as a string."""
        by_batch = {str(t.batch): t for t in self.timings}
        return {
            "fps_model": {k: _r(t.fps_model) for k, t in by_batch.items()},
            "fps_end_to_end": _r(self.fps_end_to_end),
            "latency_ms_p50": {k: _r(t.latency_ms_p50, 3) for k, t in by_batch.items()},
            "latency_ms_p99": {k: _r(t.latency_ms_p99, 3) for k, t in by_batch.items()},
            "gmac_per_frame": _r(self.model["gmac_per_frame"], 4),
            "params": self.model["params"],
            "teachers_fps": _r(self.teachers.fps) if self.teachers is not None else None,
            "speedup_vs_teachers": _r(self.speedup_vs_teachers),
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
            "end_to_end": {"clip": self.clip, "runs_fps": [_r(v) for v in self.e2e_runs]},
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
        from aedcli.detect import default_weights_path

        weights_path = default_weights_path()
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
            spec = InputSpec(options.size[0], options.size[1], spec.channels, spec.offset, spec.edges)
            loaded = replace(loaded, spec=spec)
        source = f"weights {weights_path}"
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
                "no default weights (weights/ped2.pt) were found, so a randomly initialised "
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


def _find_teachers(options: BenchOptions) -> tuple[dict[str, Any], str | None]:
    """Trained teachers under ``--targets`` (or ``<weights folder>/targets``): name -> loaded teacher."""
    from aedcli.teachers import TEACHER_CLASSES, teacher_class

    roots = [options.targets] if options.targets is not None else []
    if options.targets is None and options.weights is not None:
        roots.append(Path(options.weights).parent / "targets")
    for root in roots:
        found = {}
        for name in TEACHER_CLASSES:
            path = Path(root) / name / "teacher.pt"
            if path.is_file():
                try:
                    found[name] = teacher_class(name).load(path)
                except AedError:
                    continue
        if found:
            return found, f"trained teachers from {root}"
    if options.targets is not None:
        raise UsageError(
            f"--targets {options.targets} holds no trained teacher (<name>/teacher.pt); point it at the "
            "targets folder of 'aed teach' or 'aed distill', or drop it to train quick ones."
        )
    return {}, None


def _train_quick_teachers(clip: Path, frames: int, seed: int) -> tuple[dict[str, Any], str]:
    """Each registered teacher fitted for one epoch on objects of the clip's first frames (speed only)."""
    from aedcli.teachers import TEACHER_CLASSES, teacher_class
    from aedcli.teachers.objects import iter_object_batches
    from aedcli.teachers.proposals import ProposalConfig, propose_clip

    head = [f for _, f in zip(range(frames), iter_frames(clip, gray=True), strict=False)]
    boxes = propose_clip(lambda: iter(head), ProposalConfig())
    batches = list(iter_object_batches(iter(head), boxes, batch_size=256))
    if sum(len(b) for b in batches) == 0:
        raise AedError(f"no moving objects were found in the first {len(head)} frames of {clip}")
    teachers = {}
    for name in TEACHER_CLASSES:
        teacher = teacher_class(name)()
        teacher.fit(batches, epochs=TEACHER_TRAIN_EPOCHS, seed=seed)
        teachers[name] = teacher
    objects = sum(len(b) for b in batches)
    source = (
        f"teachers trained here for {TEACHER_TRAIN_EPOCHS} epoch on {objects} objects of the clip's first "
        f"{len(head)} frames (no trained teachers given): their cost per object is that of trained ones, "
        "their scores are not"
    )
    return teachers, source


def time_teachers(clip: Path, teachers: dict[str, Any], source: str) -> TeacherTiming:
    """Proposals, tubes and every teacher's scoring on the whole clip, each timed on its own."""
    from aedcli.teachers.objects import iter_object_batches
    from aedcli.teachers.proposals import ProposalConfig, propose_clip

    t0 = time.perf_counter()
    boxes = propose_clip(lambda: iter_frames(clip, gray=True), ProposalConfig())
    t1 = time.perf_counter()
    batches = list(iter_object_batches(iter_frames(clip, gray=True), boxes, batch_size=256))
    t2 = time.perf_counter()
    scoring: dict[str, float] = {}
    for name, teacher in teachers.items():
        start = time.perf_counter()
        with torch.inference_mode():
            for batch in batches:
                teacher.score(batch)
        scoring[name] = time.perf_counter() - start
    frames = len(boxes)
    shared = (t1 - t0) + (t2 - t1)
    total = shared + sum(scoring.values())
    return TeacherTiming(
        names=list(teachers),
        source=source,
        frames=frames,
        objects=sum(len(b) for b in batches),
        proposals_s=t1 - t0,
        tubes_s=t2 - t1,
        scoring_s=scoring,
        fps=frames / total if total > 0 else float("inf"),
        fps_each={n: frames / (shared + s) for n, s in scoring.items()},
    )


# ---------------------------------------------------------------------------------------------------------
# The benchmark


def run_bench(options: BenchOptions, progress: Callable[[str], None] | None = None) -> BenchResult:
    """Run every measurement of the module docstring and return the figures (nothing is written)."""
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
        optimise=options.optimise,
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
        times = time_forward(runner.model, x, warmup=options.warmup, iters=options.iters, device=input_device)
        if torch_on_gpu:
            peak = torch.cuda.max_memory_allocated(input_device) / 2**20
        timings.append(summarise(batch, times, options.warmup, peak))

    with tempfile.TemporaryDirectory(prefix="aed-bench-") as tmp:
        clip_path, clip_info = _bench_clip(options, spec, Path(tmp))
        e2e_batch = min(largest, max(1, clip_info["frames"]))
        runner.batch_size = e2e_batch
        sigma = float(loaded.sigma)
        runs: list[float] = []
        for i in range(options.e2e_runs):
            say(f"end to end, run {i + 1} of {options.e2e_runs}")
            runs.append(_end_to_end(runner, clip_path, sigma, clip_info["frames"]))
        fps_e2e = float(np.median(runs)) if runs else None
        clip_info["sigma"] = sigma

        teachers: TeacherTiming | None = None
        if options.teachers:
            try:
                found, source = _find_teachers(options)
                if not found:
                    say("training quick teachers on the clip")
                    found, source = _train_quick_teachers(clip_path, TEACHER_TRAIN_FRAMES, options.seed)
                say("teachers on the clip")
                teachers = time_teachers(clip_path, found, source or "")
            except UsageError:
                raise
            except AedError as exc:
                notes.append(f"teachers unavailable: {exc}")
    if not options.teachers:
        notes.append("teachers not timed (pass --teachers)")

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


def _accuracy_probe(loaded: LoadedWeights, runner: Any, spec: InputSpec) -> float:
    """Largest difference of the benchmarked runtime's maps from the eager fp32 student on one batch of 2."""
    x = random_stack_input(spec, 2, seed=1)
    with torch.inference_mode():
        expected = [t.float().cpu() for t in loaded.model(x)]
        got = runner.model(x.to(runner.device).contiguous(memory_format=runner.memory_format))
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
        "source": "generated: textured background, 4 moving objects, sensor noise; mp4v",
        "generated": True,
        "frames": _count_frames(path),
        "width": spec.width,
        "height": spec.height,
    }


def _end_to_end(runner: Any, clip: Path, sigma: float, frames: int) -> float:
    start = time.perf_counter()
    raw, _ = runner.score_clip(iter_frames(clip))
    smooth_scores(raw, sigma)
    elapsed = time.perf_counter() - start
    if len(raw) != frames:
        raise AedError(f"the clip {clip} gave {len(raw)} scores for {frames} frames; it may be damaged.")
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
    yield (
        f"end to end, batch {result.batch_end_to_end}",
        f"{e2e:,.1f} fps" if e2e is not None else "n/a",
        f"decode -> stacks -> model -> scores -> smoothing; {result.clip['frames']} frames, "
        f"median of {len(result.e2e_runs)} runs",
    )
    if result.teachers is not None:
        t = result.teachers
        each = ", ".join(f"{n} {v:,.1f}" for n, v in t.fps_each.items())
        yield (
            "teachers (all)",
            f"{t.fps:,.1f} fps",
            f"proposals {t.proposals_s:.2f} s + tubes {t.tubes_s:.2f} s + scoring "
            + " + ".join(f"{n} {s:.2f} s" for n, s in t.scoring_s.items())
            + f"; each alone: {each} fps; {t.objects} objects",
        )
        speed = result.speedup_vs_teachers
        yield (
            "speed-up vs teachers",
            f"{speed:,.1f}x" if speed is not None else "n/a",
            "end to end / teachers",
        )
    yield ("parameters", f"{result.model['params']:,}", result.model["source"])
    yield ("GMAC per frame", f"{result.model['gmac_per_frame']:.3f}", f"at {result.size[0]}x{result.size[1]}")
    if result.peak_rss_mb is not None:
        yield ("peak RSS", f"{result.peak_rss_mb:,.0f} MiB", "whole process")
    if result.max_abs_diff_vs_eager is not None:
        yield ("max |diff| vs eager fp32", f"{result.max_abs_diff_vs_eager:.2e}", "maps S, M, L on one batch")
