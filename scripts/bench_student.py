"""Reproducible speed table of the student: eager PyTorch vs optimised PyTorch vs ONNX Runtime.

For every variant at 240x360 gray (UCSD Ped2's size and colour) and for ``fastaed`` at 360x640 colour (the
paper's configuration, 7.05 GMAC per frame), at batch 1 and 32, in one process:

- ``eager``: the eval-mode :class:`aedcli.student.Student` as trained (BatchNorm not folded);
- ``optimised``: :func:`aedcli.runtime.optimise_for_inference` (what ``detect`` / ``eval`` / ``bench`` run);
- ``onnx``: the graph of :mod:`aedcli.export` in onnxruntime (``--runtime onnx``).

The three runtimes share the weights (random, seeded: speed does not depend on the values) and the input,
are warmed up, then timed in alternation, ``--repeats`` rounds, so that a slow spell of a shared machine
hits all of them; the table gives the median. Model-only figures: forward pass on a ready input batch.
Besides wall-clock frames per second, the table gives frames per CPU-second of the process: on a machine
shared with other programs the wall figure drops with every time slice lost to them, the CPU figure much
less, so the pair shows how busy the machine was. The ``uptime`` load is printed before and after.

    python scripts/bench_student.py --threads 2 --json bench_student.json
    python scripts/bench_student.py --quick          # batch 1 and 8, 3 rounds: a smoke run
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from aedcli.export import random_stack_input, student_to_onnx
from aedcli.files import write_json_atomic
from aedcli.inputs import InputSpec
from aedcli.runtime import OnnxStudent, onnx_session, optimise_for_inference, set_threads
from aedcli.student import VARIANTS, Student, gmac_per_frame, student_config

CONFIGS = [(name, 240, 360, 1) for name in VARIANTS] + [("fastaed", 360, 640, 3)]
RUNTIMES = ("eager", "optimised", "onnx")


def load_average() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def time_round(fn: Callable[[], Any]) -> tuple[float, float]:
    """Wall and process-CPU seconds of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def bench_config(
    variant: str, height: int, width: int, channels: int, batches: list[int], repeats: int, threads: int
) -> list[dict[str, Any]]:
    spec = InputSpec(height, width, channels)
    torch.manual_seed(0)
    eager = Student(student_config(variant, spec.in_channels)).eval()
    prepared = optimise_for_inference(eager)
    onnx = OnnxStudent(onnx_session(student_to_onnx(eager, spec), threads=threads))
    gmac = gmac_per_frame(eager.config, height, width)
    rows = []
    for batch in batches:
        x = random_stack_input(spec, batch)
        inputs = {
            "eager": (eager, x),
            "optimised": (prepared.model, x.contiguous(memory_format=prepared.memory_format)),
            "onnx": (onnx, x),
        }
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in RUNTIMES}
        with torch.inference_mode():
            for model, xx in inputs.values():  # warm-up: allocators, oneDNN primitive caches, ORT arenas
                model(xx)
            for _ in range(repeats):
                for name, (model, xx) in inputs.items():
                    times[name].append(time_round(lambda model=model, xx=xx: model(xx)))
        for name in RUNTIMES:
            wall = statistics.median(t[0] for t in times[name])
            cpu = statistics.median(t[1] for t in times[name])
            rows.append(
                {
                    "variant": variant,
                    "size": f"{height}x{width}",
                    "channels": channels,
                    "gmac_per_frame": round(gmac, 3),
                    "batch": batch,
                    "runtime": name,
                    "fps_wall": batch / wall,
                    "fps_cpu": batch / cpu if cpu > 0 else float("nan"),
                    "latency_ms_p50": wall * 1e3,
                    "repeats": repeats,
                }
            )
        print(f"  done {variant} {height}x{width}x{channels} batch {batch}", file=sys.stderr, flush=True)
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| variant | input (HxWxC) | GMAC/frame | batch | eager fps | optimised fps | onnx fps | "
        "optimised / eager | onnx / eager |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    keyed = {(r["variant"], r["size"], r["channels"], r["batch"], r["runtime"]): r for r in rows}
    seen = []
    for r in rows:
        key = (r["variant"], r["size"], r["channels"], r["batch"])
        if key in seen:
            continue
        seen.append(key)
        e, o, n = (keyed[(*key, name)] for name in RUNTIMES)

        def cell(row: dict[str, Any]) -> str:
            return f"{row['fps_wall']:.1f} ({row['fps_cpu']:.1f})"

        lines.append(
            f"| {key[0]} | {key[1]}x{key[2]} | {e['gmac_per_frame']:.2f} | {key[3]} | {cell(e)} | "
            f"{cell(o)} | {cell(n)} | {o['fps_wall'] / e['fps_wall']:.2f}x | "
            f"{n['fps_wall'] / e['fps_wall']:.2f}x |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: PyTorch's)")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per cell")
    parser.add_argument("--batches", default="1,32", help="comma-separated batch sizes")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated variants")
    parser.add_argument("--quick", action="store_true", help="batch 1 and 8, 3 rounds")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    batches = [1, 8] if args.quick else [int(b) for b in args.batches.split(",")]
    repeats = 3 if args.quick else args.repeats
    wanted = set(args.variants.split(","))
    threads = set_threads(args.threads)

    before = load_average()
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    for variant, h, w, c in CONFIGS:
        if variant in wanted:
            rows += bench_config(variant, h, w, c, batches, repeats, threads)
    after = load_average()
    header = (
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"{threads} threads, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}; "
        f"load average before: {before}, after: {after}; {time.perf_counter() - started:.0f} s\n"
        "cells: model-only frames per second, wall clock (frames per CPU-second of the process); "
        f"median of {repeats} alternating rounds"
    )
    print(header)
    print(markdown(rows))
    if args.json is not None:
        meta = {"header": header, "load_before": before, "load_after": after, "threads": threads}
        write_json_atomic(args.json, {"meta": meta, "rows": rows})


if __name__ == "__main__":
    main()
