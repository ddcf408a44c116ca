"""Benchmark ``aed detect``: end-to-end speed against the network alone, and memory over a 30-minute stream.

Part 1, speed, on a 240x360 gray clip (frames of UCSD Ped2 test videos when found, else generated):

- model only: the student of the weights file (BatchNorm folded, as :class:`StudentRunner` runs it) on a
  ready-made input batch built from the clip, batch after batch: the ceiling for any pipeline;
- ``detect`` without overlay: decode (background thread) -> stacks -> student -> scores -> smoothing -> CSV;
- ``detect`` with ``--overlay``: the same plus drawing and encoding the overlay video.

End-to-end frames/s come from the run itself (the first frame requested to the last output written; loading
the weights is not included). Each is measured twice: by the wall clock, and by the CPU time of the whole
process (all threads; for ``detect`` including the weights load), which a busy shared machine disturbs less.
The three measurements alternate ``--repeat`` times (order reversed every other round) and medians are
reported.

Part 2, memory: a 30-minute synthetic video (320x240 at 25 fps = 45,000 frames, generated on the fly and
never stored) streams through :func:`aedcli.detect.detect_stream` with the overlay on; resident memory is
sampled after 1 minute and after 30 minutes of video.

    python scripts/bench_detect.py                       # random-init paper student (fastaed), CPU
    python scripts/bench_detect.py --weights weights/ped2.pt --device cuda --frames 2000
    python scripts/bench_detect.py --skip-long --json bench.json
    python scripts/bench_detect.py --threads 1          # CPU shared with other jobs: avoid OpenMP contention
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from aedcli.detect import DetectOptions, OutputPaths, ThresholdChoice, detect, detect_stream
from aedcli.inference import StudentRunner
from aedcli.inputs import InputSpec
from aedcli.scoring import Threshold
from aedcli.student import Student, count_params, student_config
from aedcli.video import VideoInfo, VideoSource, frame_stacks, iter_frames
from aedcli.weights import load_weights, save_weights

PED2 = Path(os.environ.get("AED_PED2_ROOT", "~/.cache/aed/ped2")).expanduser() / "UCSDped2" / "Test"


def random_weights(path: Path, variant: str, height: int, width: int) -> Path:
    """A random-init ``variant`` student for gray ``height x width`` input (speed needs no training)."""
    torch.manual_seed(0)
    model = Student(student_config(variant, in_channels=3))
    threshold = Threshold(value=0.5, sigma=3.0, percentile=99.0, source="benchmark placeholder")
    spec = InputSpec(height=height, width=width, channels=1)
    return save_weights(path, model, spec, sigma=3.0, threshold=threshold, variant=variant)


def write_clip(path: Path, frames: int) -> str:
    """A 240x360 mp4 of ``frames`` frames: Ped2 test frames in order when present, else moving squares."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (360, 240))
    written, origin = 0, "generated moving squares"
    folders = sorted(p for p in PED2.glob("Test[0-9][0-9][0-9]") if p.is_dir()) if PED2.is_dir() else []
    if folders:
        origin = f"UCSD Ped2 test frames ({PED2})"
        while written < frames:
            for folder in folders:
                for frame in iter_frames(folder, gray=False):
                    writer.write(frame)
                    written += 1
                    if written == frames:
                        break
                if written == frames:
                    break
    rng = np.random.default_rng(0)
    while written < frames:
        frame = rng.integers(90, 110, (240, 360, 3), dtype=np.uint8)
        x = (3 * written) % 330
        frame[100:140, x : x + 30] = 230
        writer.write(frame)
        written += 1
    writer.release()
    return origin


def model_only(runner: StudentRunner, clip: Path, frames: int) -> tuple[float, float]:
    """(wall, CPU) frames/s of the network alone, batch after batch of ready-made input from ``clip``."""
    spec, b = runner.spec, runner.batch_size
    first = [spec.prepare(f) for _, f in zip(range(b), iter_frames(clip), strict=False)]
    stacks = np.stack(list(frame_stacks(first, offset=spec.offset)))  # (b, 3, H, W)
    fmt = getattr(runner, "memory_format", torch.contiguous_format)  # the layout the runner feeds its model
    x = spec.to_tensor(stacks).to(runner.device).contiguous(memory_format=fmt)
    batches = max(1, frames // b)
    sync = torch.cuda.synchronize if runner.device.type == "cuda" else (lambda: None)
    with torch.inference_mode():
        for _ in range(2):  # warm-up: first calls pick kernels and allocate
            runner.model(x)
        sync()
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(batches):
            runner.model(x)
        sync()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return batches * b / wall, batches * b / cpu


def end_to_end(clip: Path, options: DetectOptions, frames: int) -> tuple[float, float]:
    """(wall, CPU) frames/s of ``detect``; wall from the run itself, CPU over all threads of the call."""
    cpu = time.process_time()
    (result,) = detect(clip, options)
    cpu = time.process_time() - cpu
    assert result.frames == frames, f"{result.frames} frames scored, {frames} expected"
    return result.fps_end_to_end, frames / cpu


def bench_speed(args: argparse.Namespace, work: Path) -> dict[str, object]:
    weights = args.weights or random_weights(work / "fastaed.pt", "fastaed", 240, 360)
    loaded = load_weights(weights)
    clip = work / "clip.mp4"
    origin = write_clip(clip, args.frames)
    runner = StudentRunner(loaded, device=args.device, batch_size=args.batch)
    keys = ("model_only", "detect", "detect_overlay")
    wall: dict[str, list[float]] = {k: [] for k in keys}
    cpu: dict[str, list[float]] = {k: [] for k in keys}
    for r in range(args.repeat):
        # Alternate the order so that a change in machine load does not always favour the same run.
        for key in keys if r % 2 == 0 else keys[::-1]:
            if key == "model_only":
                w, c = model_only(runner, clip, args.frames)
            else:
                options = DetectOptions(
                    weights=weights,
                    out_dir=work / f"{key}{r}",
                    overlay=key == "detect_overlay",
                    batch_size=args.batch,
                    device=args.device,
                    threshold=0.5,
                )
                w, c = end_to_end(clip, options, args.frames)
            wall[key].append(w)
            cpu[key].append(c)
        print(
            f"  round {r + 1} (load {os.getloadavg()[0]:.1f}): "
            + ", ".join(f"{k} {wall[k][-1]:.1f} wall / {cpu[k][-1]:.1f} CPU" for k in keys)
            + " frames/s",
            flush=True,
        )
    med_wall = {k: statistics.median(v) for k, v in wall.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    return {
        "weights": str(args.weights) if args.weights else "random-init fastaed (paper size), gray 240x360",
        "parameters": count_params(loaded.model),
        "clip": f"{args.frames} frames 360x240 mp4, {origin}",
        "device": args.device,
        "batch": args.batch,
        "torch_threads": torch.get_num_threads(),
        "fps_wall_median": {k: round(v, 2) for k, v in med_wall.items()},
        "fps_cpu_median": {k: round(v, 2) for k, v in med_cpu.items()},
        "fps_wall_runs": {k: [round(x, 2) for x in v] for k, v in wall.items()},
        "detect_vs_model_wall": round(med_wall["detect"] / med_wall["model_only"], 3),
        "detect_overlay_vs_model_wall": round(med_wall["detect_overlay"] / med_wall["model_only"], 3),
        "detect_vs_model_cpu": round(med_cpu["detect"] / med_cpu["model_only"], 3),
        "detect_overlay_vs_model_cpu": round(med_cpu["detect_overlay"] / med_cpu["model_only"], 3),
    }


class SyntheticVideo(VideoSource):
    """A 320x240 BGR video generated frame by frame (a few moving objects over noise); nothing is stored."""

    def __init__(self, frames: int, fps: float = 25.0, size: tuple[int, int] = (240, 320)) -> None:
        self._n, self._size = frames, size
        self._noise = np.random.default_rng(0).integers(70, 100, (*size, 3), dtype=np.uint8)
        info = VideoInfo("synthetic 30-minute video", size[1], size[0], fps, frames, 3, False, True)
        super().__init__(info, self._make(0), "raise")
        self._next = 1

    def _make(self, i: int) -> np.ndarray:
        w = self._size[1]
        frame = np.roll(self._noise, i % w, axis=1)
        for k in range(3):
            x = (i * (2 + 3 * k)) % (w - 24)
            y = 40 + 60 * k
            frame[y : y + 24, x : x + 24] = 200 + 15 * k
        return frame

    def _read_next(self) -> np.ndarray | None:
        if self._next >= self._n:
            return None
        self._next += 1
        return self._make(self._next - 1)


def rss_mib() -> tuple[float, float]:
    """(current, peak) resident memory of this process in MiB, from /proc/self/status."""
    text = Path("/proc/self/status").read_text()
    current = int(re.search(r"VmRSS:\s+(\d+)", text).group(1))  # type: ignore[union-attr]
    peak = int(re.search(r"VmHWM:\s+(\d+)", text).group(1))  # type: ignore[union-attr]
    return current / 1024, peak / 1024


def bench_memory(args: argparse.Namespace, work: Path) -> dict[str, object]:
    fps = 25.0
    frames = round(args.long_minutes * 60 * fps)
    weights = random_weights(work / "small.pt", args.long_variant, 64, 96)
    loaded = load_weights(weights)
    video = SyntheticVideo(frames, fps)
    outputs = OutputPaths.plan(work / "long", "synthetic", overlay=True, plot=False)
    outputs.folder.mkdir()
    marks = {int(60 * fps): "1 min", frames - frames % args.batch or frames: f"{args.long_minutes:g} min"}
    samples: dict[str, dict[str, float]] = {}
    started = time.perf_counter()

    def sample(done: int, total: int | None) -> None:
        for mark, label in marks.items():
            if done >= mark and label not in samples:
                current, peak = rss_mib()
                samples[label] = {"frame": done, "rss_mib": round(current, 1), "peak_rss_mib": round(peak, 1)}
                line = f"  {label} of video (frame {done:,}): RSS {current:.1f} MiB, peak {peak:.1f} MiB"
                print(line, flush=True)

    result = detect_stream(
        video, loaded, outputs, ThresholdChoice(0.5, "benchmark"), batch_size=args.batch, progress=sample
    )
    first, last = samples["1 min"], samples[f"{args.long_minutes:g} min"]
    return {
        "video": f"{frames:,} frames 320x240 at {fps:g} fps, generated on the fly, overlay written",
        "student": f"random-init {args.long_variant}, gray 64x96 input",
        "frames": result.frames,
        "seconds": round(time.perf_counter() - started, 1),
        "fps_end_to_end": round(result.fps_end_to_end, 1),
        "overlay_mib": round(outputs.overlay.stat().st_size / 2**20, 1) if outputs.overlay else None,
        "samples": samples,
        "peak_growth": round(last["peak_rss_mib"] / first["peak_rss_mib"] - 1, 4),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=Path, help="weights file (default: a random-init fastaed student)")
    parser.add_argument("--frames", type=int, default=600, help="frames in the speed clip (default 600)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--threads",
        type=int,
        help="torch CPU threads (default: torch's choice; 1 is faster on a busy machine)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="alternating rounds of the speed runs")
    parser.add_argument("--long-minutes", type=float, default=30.0, help="length of the memory run's video")
    parser.add_argument("--long-variant", default="fastaed-xs", help="student variant of the memory run")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-long", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    report: dict[str, object] = {"torch": torch.__version__, "cpu_count": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="aed-bench-") as tmp:
        work = Path(tmp)
        if not args.skip_speed:
            print("speed (frames/s, higher is better):", flush=True)
            report["speed"] = speed = bench_speed(args, work)
            print(json.dumps(speed, indent=2), flush=True)
        if not args.skip_long:
            print(f"memory over a {args.long_minutes:g}-minute video:", flush=True)
            report["memory"] = memory = bench_memory(args, work)
            print(json.dumps(memory, indent=2), flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
