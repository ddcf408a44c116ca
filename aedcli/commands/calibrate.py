"""`aed calibrate`: set the threshold on normal clips of your own footage, in a copy of the weights.

aed calibrate normal_monday.mp4 normal_tuesday.mp4 --out weights/my_camera.pt
aed detect new_clip.mp4 --weights weights/my_camera.pt
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


def calibrate(
    clips: list[Path] = typer.Argument(
        ...,
        help="Clips of normal footage from the camera and encoder to judge: video files, frame folders or "
        "folders of videos.",
        show_default=False,
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", metavar="FILE", help="Where to write the calibrated weights."
    ),
    weights: Path | None = typer.Option(
        None,
        "--weights",
        "-w",
        help="Student weights to calibrate (default: the shipped weights/ped2.pt).",
        show_default=False,
    ),
    percentile: float | None = typer.Option(
        None,
        "--percentile",
        metavar="P",
        help="Percentile of the smoothed normal scores (default: that of the stored threshold, else 99).",
        show_default=False,
    ),
    device: str = typer.Option("cpu", "--device", help="'cpu' or 'cuda'."),
    batch: int = typer.Option(16, "--batch", min=1, help="Frames per network batch."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --out file."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Measure the decision threshold on normal clips of your own footage and write it into a copy of the
    weights (the network is unchanged). Use it when the footage differs from the training video: another
    camera, another encoder, a busier scene."""
    from aedcli.calibrate import calibrate as run_calibration
    from aedcli.calibrate import write_calibrated
    from aedcli.detect import list_sources, resolve_weights
    from aedcli.errors import UsageError
    from aedcli.weights import load_weights

    if percentile is not None and not 0.0 < percentile <= 100.0:
        raise UsageError(f"--percentile must be in (0, 100], got {percentile:g}.")
    if out.exists() and not force:
        raise UsageError(f"--out {out} already exists; pass --force to overwrite it or choose another path.")
    for clip in clips:
        if not clip.exists():
            raise UsageError(
                f"calibration clip {clip} does not exist; pass a video file or a folder of frames."
            )
    sources = [str(s) for clip in clips for s in list_sources(clip)]
    path = resolve_weights(weights)
    loaded = load_weights(path)
    console = Console(stderr=True)
    columns = (TextColumn("scoring normal clips"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, disable=quiet) as progress:
        task = progress.add_task("frames", total=None)
        result = run_calibration(
            loaded,
            sources,
            percentile=percentile,
            device=device,
            batch_size=batch,
            on_batch=lambda n: progress.advance(task, n),
        )
    written = write_calibrated(loaded, result, out)
    before = "none" if result.previous is None else f"{result.previous.value:.4f}"
    console.print(
        f"{written}: threshold {before} -> {result.threshold.value:.4f} ({result.threshold.source})",
        highlight=False,
        soft_wrap=True,
        markup=False,
    )
