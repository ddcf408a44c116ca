"""``aed detect``: anomaly scores, events and an optional overlay video for a video, folder, camera or stream.

aed detect clip.mp4 --overlay --plot                 # -> clip_aed/clip_{scores.csv,summary.json,...}
aed detect videos/ --workers 2 --out results/        # every video of a folder, two processes
aed detect 0 --overlay --live-lag 12                 # webcam 0 until Ctrl-C
aed detect rtsp://camera.local/stream --threshold 0.4
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from aedcli.cli.options import (
    BatchOpt,
    DeviceOpt,
    ForceOpt,
    JsonOpt,
    RuntimeOpt,
    SigmaOpt,
    WeightsOpt,
    WorkersOpt,
)
from aedcli.cli.output import consoles, write_results
from aedcli.detect import DetectOptions, DetectResult
from aedcli.detect import detect as run_detect


def detect(
    source: Annotated[
        str,
        typer.Argument(
            metavar="SOURCE",
            help="A video file, a folder of videos, a folder of frames, a camera index (0) or an rtsp:// / "
            "http(s):// URL.",
            show_default=False,
        ),
    ],
    weights: WeightsOpt = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            metavar="DIR",
            help="Output folder (default: <name>_aed/ next to the input; ./<name>_aed/ for cameras and "
            "URLs).",
            show_default=False,
        ),
    ] = None,
    overlay: Annotated[
        bool,
        typer.Option(
            "--overlay",
            help="Also write <name>_overlay.mp4 (H.264): the video with the anomaly map, score and alarms.",
        ),
    ] = False,
    plot: Annotated[
        bool, typer.Option("--plot", help="Also write <name>_timeline.png: scores, events, threshold.")
    ] = False,
    threshold: Annotated[
        float | None,
        typer.Option(
            "--threshold",
            metavar="SCORE",
            help="Smoothed score above which a frame is abnormal (default: the weights' own, measured on "
            "normal footage; 'aed calibrate' measures one for your camera).",
            show_default=False,
        ),
    ] = None,
    sigma: SigmaOpt = None,
    batch: BatchOpt = 16,
    device: DeviceOpt = "cpu",
    runtime: RuntimeOpt = "auto",
    workers: WorkersOpt = 1,
    force: ForceOpt = False,
    live_lag: Annotated[
        int | None,
        typer.Option(
            "--live-lag",
            metavar="FRAMES",
            help="Cameras and streams: frames of delay for smoothing; fewer = earlier alarms, rougher "
            "smoothing (default: the whole kernel, ceil(3 * sigma)).",
            show_default=False,
        ),
    ] = None,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout", metavar="SECONDS", help="Cameras and streams: how long to wait for a frame."
        ),
    ] = 10.0,
    json_out: JsonOpt = None,
) -> None:
    """Detect anomalies in a video, folder, camera or stream: frame scores (CSV), events (JSON), overlay."""
    results_console, logs = consoles(json_out)
    options = DetectOptions(
        weights=weights,
        out_dir=out,
        overlay=overlay,
        plot=plot,
        threshold=threshold,
        sigma=sigma,
        batch_size=batch,
        device=device,
        runtime=runtime,
        workers=workers,
        force=force,
        live_lag=live_lag,
        timeout_s=timeout,
    )

    def report(result: DetectResult) -> None:
        s = result.summary
        smoothing = s["smoothing"]
        state = " [yellow](stopped by Ctrl-C)[/]" if result.interrupted else ""
        lines = [
            f"[bold]{escape(result.source)}[/]{state}: {result.frames:,} frames, {len(result.events)} "
            f"abnormal event(s), {s['fps_end_to_end']:.1f} frames/s end to end",
            f"  threshold {s['threshold']['value']:.4g} ({escape(s['threshold']['source'])}); "
            f"{smoothing['mode']} smoothing sigma={smoothing['sigma']:g}, delay {smoothing['lag_frames']} "
            f"frames ({smoothing['lag_s']:.2f} s)",
        ]
        for line in lines:
            results_console.print(line, highlight=False, soft_wrap=True)
        for note in s["notes"]:
            logs.print(f"  [yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)
        files = ", ".join(p.name for p in result.outputs.files())
        results_console.print(
            f"  wrote {result.outputs.folder}/: {files}", highlight=False, soft_wrap=True, markup=False
        )

    with _Progress(logs) as progress:
        results = run_detect(source, options, progress=progress.update, on_result=report)
    if weights is None and results:
        logs.print(
            f"weights: {results[0].summary['weights']['path']} (default)", highlight=False, markup=False
        )
    write_results(json_out, {"results": [r.summary for r in results]}, logs)
    if any(r.interrupted and not r.summary["live"] for r in results):
        # A file stopped early: its results cover only part of it (SystemExit: the code reaches the shell).
        raise SystemExit(130)


class _Progress:
    """A transient progress line on stderr: frames scored (of the total when the source knows it)."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            TextColumn("scoring"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            disable=not console.is_terminal,
        )
        self._task: TaskID | None = None
        self._done = 0

    def update(self, done: int, total: int | None) -> None:
        if self._task is None or done < self._done:  # the next video of a folder starts from 0
            if self._task is not None:
                self._progress.remove_task(self._task)
            self._task = self._progress.add_task("scoring", total=total)
        self._done = done
        self._progress.update(self._task, completed=done, total=total)

    def __enter__(self) -> _Progress:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.__exit__(None, None, None)
