"""`aed detect`: anomaly scores, events and an optional overlay video for a video, folder, camera or stream.

A thin layer over :func:`aedcli.detect.detect`: it parses options, shows progress and prints where the
results went.

    aed detect clip.mp4 --overlay --plot                 # -> clip_aed/clip_{scores.csv,summary.json,...}
    aed detect videos/ --workers 2 --out results/        # every video of a folder, two processes
    aed detect 0 --overlay --live-lag 12                 # webcam 0 until Ctrl-C
    aed detect rtsp://camera.local/stream --threshold 0.4
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import TaskID


def detect(
    source: str = typer.Argument(
        ...,
        help="A video file, a folder of videos, a folder of frames, a camera index (0) or an rtsp:// / "
        "http(s):// URL.",
        show_default=False,
    ),
    weights: Path | None = typer.Option(
        None,
        "--weights",
        "-w",
        help="Student weights written by 'aed distill' (default: the shipped weights/ped2.pt).",
        show_default=False,
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        help="Output folder (default: <input stem>_aed/ next to the input; ./<name>_aed/ for cameras, URLs).",
        show_default=False,
    ),
    overlay: bool = typer.Option(
        False,
        "--overlay",
        help="Also write <stem>_overlay.mp4: the input with anomaly map, score and alarms.",
    ),
    plot: bool = typer.Option(
        False, "--plot", help="Also write <stem>_timeline.png: scores, events, threshold."
    ),
    threshold: float | None = typer.Option(
        None,
        "--threshold",
        help="Smoothed score above which a frame is abnormal (default: the one stored in the weights, set on "
        "normal training video).",
        show_default=False,
    ),
    sigma: float | None = typer.Option(
        None,
        "--sigma",
        help="Temporal Gaussian smoothing in frames, 0 = none (default: the weights' value).",
        show_default=False,
    ),
    batch: int = typer.Option(16, "--batch", help="Frames per network batch."),
    device: str = typer.Option("cpu", "--device", help="'cpu' or 'cuda'."),
    runtime: str = typer.Option(
        "torch", "--runtime", help="'torch', or 'onnx' (ONNX Runtime; needs the onnx extra)."
    ),
    workers: int = typer.Option(
        1, "--workers", help="Processes for a folder of videos (each takes one video at a time)."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite existing output files."),
    live_lag: int | None = typer.Option(
        None,
        "--live-lag",
        help="Cameras and streams: frames of delay for smoothing; fewer frames = earlier alarms, rougher "
        "smoothing (default: the full kernel radius, ceil(3 * sigma)).",
        show_default=False,
    ),
    timeout: float = typer.Option(
        10.0, "--timeout", help="Cameras and streams: seconds to wait for the connection and for each frame."
    ),
) -> None:
    """Detect anomalies in a video, folder, camera or stream: frame scores (CSV), events (JSON), overlay."""
    from aedcli.detect import DetectOptions, DetectResult
    from aedcli.detect import detect as run_detect

    console = Console(stderr=True)
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
        console.print(
            f"[bold]{escape(result.source)}[/]{state}: {result.frames:,} frames, {len(result.events)} "
            f"abnormal event(s), {s['fps_end_to_end']:.1f} frames/s end to end",
            highlight=False,
            soft_wrap=True,
        )
        console.print(
            f"  threshold {s['threshold']['value']:.4g} ({escape(s['threshold']['source'])}); "
            f"{smoothing['mode']} smoothing sigma={smoothing['sigma']:g}, delay {smoothing['lag_frames']} "
            f"frames ({smoothing['lag_s']:.2f} s)",
            highlight=False,
            soft_wrap=True,
        )
        for note in s["notes"]:
            console.print(f"  [yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)
        files = ", ".join(p.name for p in result.outputs.files())
        wrote = f"  wrote {result.outputs.folder}/: {files}"
        console.print(wrote, highlight=False, soft_wrap=True, markup=False)  # paths are text, not markup

    with _Progress(console) as progress:
        results = run_detect(source, options, progress=progress.update, on_result=report)
    if weights is None and results:
        default = f"weights: {results[0].summary['weights']['path']} (default)"
        console.print(default, highlight=False, markup=False)
    if any(r.interrupted and not r.summary["live"] for r in results):
        # A file stopped early: its results cover only part of it (SystemExit: the code reaches the shell).
        raise SystemExit(130)


class _Progress:
    """A transient progress line on stderr: frames scored (of the total when the source knows it)."""

    def __init__(self, console: Console) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

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
