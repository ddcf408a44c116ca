"""Frames per second of ``aedcli.video``: frame folders, mp4 files, gray and colour, and frame stacks.

Reads UCSD Ped2 test folders as they are (gray .tif), then an mp4 (mp4v) written from the same frames into
a temporary folder, each in gray and colour mode, and times ``frame_stacks`` on frames already in memory
(its own overhead) and on top of reading. Each case is timed ``--repeat`` times and the fastest run is
reported, which filters out noise from other programs sharing the CPU.

    python scripts/bench_io.py                                  # Test001..Test004 of ~/.cache/aed/ped2
    python scripts/bench_io.py path/to/Test001 path/to/Test002 --repeat 5 --json bench_io.json
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from rich.console import Console
from rich.table import Table

from aedcli.files import write_json_atomic
from aedcli.video import VideoWriter, frame_stacks, iter_frames, open_video

PED2_TEST = Path("~/.cache/aed/ped2/UCSDped2/Test").expanduser()
DEFAULT_FOLDERS = [PED2_TEST / f"Test{i:03d}" for i in range(1, 5)]


@dataclass
class BenchResult:
    """Fastest of ``repeat`` runs of one case."""

    case: str
    frames: int
    seconds: float

    @property
    def fps(self) -> float:
        return self.frames / self.seconds

    def to_dict(self) -> dict[str, float | int | str]:
        return {**asdict(self), "fps": round(self.fps, 1), "us_per_frame": round(1e6 / self.fps, 1)}


def consume(items: Iterable[object]) -> int:
    """Exhaust an iterator (keeping nothing) and count its items."""
    return sum(1 for _ in items)


def time_case(case: str, run: Callable[[], int], repeat: int) -> BenchResult:
    best, frames = float("inf"), 0
    for _ in range(repeat):
        start = time.perf_counter()
        frames = run()
        best = min(best, time.perf_counter() - start)
    return BenchResult(case, frames, best)


def write_mp4s(folders: list[Path], out_dir: Path) -> list[Path]:
    """One mp4v file per folder, written through ``VideoWriter`` (gray frames become BGR)."""
    paths = []
    for folder in folders:
        with open_video(folder) as video:
            size = (video.info.width, video.info.height)
            path = out_dir / f"{folder.name}.mp4"
            with VideoWriter(path, fps=video.info.fps, size=size, codec="mp4v") as writer:
                for frame in video.frames():
                    writer.write(frame)
        paths.append(path)
    return paths


def run_benchmarks(folders: list[Path], repeat: int, offset: int) -> list[BenchResult]:
    def read(sources: list[Path], gray: bool | None) -> Callable[[], int]:
        return lambda: sum(consume(iter_frames(s, gray=gray)) for s in sources)

    def read_stacks(sources: list[Path]) -> Callable[[], int]:
        return lambda: sum(consume(frame_stacks(iter_frames(s), offset=offset)) for s in sources)

    results = [
        time_case("folder .tif, gray (native)", read(folders, None), repeat),
        time_case("folder .tif, colour (BGR)", read(folders, False), repeat),
    ]
    with tempfile.TemporaryDirectory(prefix="aed-bench-io-") as tmp:
        mp4s = write_mp4s(folders, Path(tmp))
        results += [
            time_case("mp4 (mp4v), gray", read(mp4s, True), repeat),
            time_case("mp4 (mp4v), colour (BGR, native)", read(mp4s, None), repeat),
        ]
    # frame_stacks alone: frames of one folder held in memory, so only stacking is timed.
    in_memory = list(iter_frames(folders[0]))
    results += [
        time_case("frame_stacks alone (in memory)", lambda: consume(frame_stacks(in_memory, offset)), repeat),
        time_case("folder .tif -> frame_stacks", read_stacks(folders), repeat),
    ]
    return results


def environment() -> dict[str, str | int]:
    return {
        "python": platform.python_version(),
        "opencv": cv2.__version__,
        "numpy": np.__version__,
        "opencv_threads": cv2.getNumThreads(),
        "cpu_count": os.cpu_count() or 0,
        "machine": platform.machine(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="*", type=Path, default=DEFAULT_FOLDERS, help="frame folders")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case; the fastest counts")
    parser.add_argument("--offset", type=int, default=3, help="frame_stacks offset")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT", help="also write results as JSON")
    args = parser.parse_args(argv)

    console = Console()
    with console.status("reading frames..."):
        results = run_benchmarks(args.folders, args.repeat, args.offset)

    table = Table(title=f"aedcli.video read speed ({len(args.folders)} folders, best of {args.repeat})")
    for column in ("case", "frames", "seconds", "frames/s", "us/frame"):
        table.add_column(column, justify="left" if column == "case" else "right")
    for r in results:
        table.add_row(r.case, str(r.frames), f"{r.seconds:.3f}", f"{r.fps:,.0f}", f"{1e6 / r.fps:,.0f}")
    console.print(table)
    env = environment()
    console.print(", ".join(f"{k} {v}" for k, v in env.items()), style="dim")

    if args.json is not None:
        report = {
            "folders": [str(f) for f in args.folders],
            "repeat": args.repeat,
            "offset": args.offset,
            "environment": env,
            "results": [r.to_dict() for r in results],
        }
        write_json_atomic(args.json, report)
        console.print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
