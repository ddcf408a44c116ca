"""``aed calibrate``: measure the threshold and normal range on normal clips of your own camera.

    aed calibrate monday.mp4 tuesday.mp4 evening/ --out my_camera.pt
    aed detect new_clip.mp4 --weights my_camera.pt

Give a few minutes of footage the camera records when nothing unusual happens, from different times of day:
the threshold is a high percentile of it, so it is only as good as the footage is varied. It reports how far
the threshold moved and how much it depends on any one clip.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from aedcli.calibrate import (
    DEFAULT_PERCENTILE,
    check_enough_frames,
    check_writable,
    count_frames,
    write_calibrated,
)
from aedcli.calibrate import calibrate as run_calibration
from aedcli.cli.options import BatchOpt, DeviceOpt, ForceOpt, JsonOpt, QuietOpt, RuntimeOpt, WeightsOpt
from aedcli.cli.output import consoles, write_results
from aedcli.detect.sources import list_sources
from aedcli.errors import UsageError
from aedcli.model.weights import load_weights
from aedcli.resources import resolve_weights
from aedcli.runtime import make_runner


def calibrate(
    clips: Annotated[
        list[Path],
        typer.Argument(
            metavar="CLIPS",
            help="Normal footage of the camera to watch: video files, frame folders or folders of videos.",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", metavar="FILE", help="Where to write the calibrated weights.")
    ],
    weights: WeightsOpt = None,
    percentile: Annotated[
        float | None,
        typer.Option(
            "--percentile",
            metavar="P",
            help="Percentile of the smoothed normal scores taken as threshold (default: the weights', "
            "else 99).",
            show_default=False,
        ),
    ] = None,
    device: DeviceOpt = "cpu",
    batch: BatchOpt = 16,
    runtime: RuntimeOpt = "auto",
    force: ForceOpt = False,
    json_out: JsonOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Measure the threshold on normal footage of your camera and write it into a copy of the weights (the
    network is unchanged). Use it for any camera the weights were not trained on."""
    results, logs = consoles(json_out)
    if percentile is not None and not 0.0 < percentile <= 100.0:
        raise UsageError(f"--percentile must be in (0, 100], got {percentile:g}.")
    check_writable(out, force)
    for clip in clips:
        if not clip.exists():
            raise UsageError(
                f"calibration clip {clip} does not exist; pass a video file or a folder of frames."
            )
    sources = [str(s) for clip in clips for s in list_sources(clip)]
    path = resolve_weights(weights)
    loaded = load_weights(path)
    counts = [count_frames(s) for s in sources]
    total = sum(c for c in counts if c) if all(counts) else None
    if total is not None:  # known before scoring: refuse too little footage at once
        stored = loaded.threshold.percentile if loaded.threshold is not None else DEFAULT_PERCENTILE
        check_enough_frames(total, percentile if percentile is not None else stored)
    runner, _ = make_runner(loaded, runtime=runtime, device=device, batch_size=batch)
    columns = (TextColumn("scoring normal clips"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=logs, disable=quiet) as progress:
        task = progress.add_task("frames", total=total)
        result = run_calibration(
            loaded, runner, sources, percentile=percentile, on_batch=lambda n: progress.advance(task, n)
        )
    written = write_calibrated(loaded, result, out)
    new, (low, high) = result.threshold.value, result.spread
    if result.previous is None:
        moved = f"{new:.4g} (the weights carried none)"
    else:
        before = result.previous.value
        moved = f"{before:.4g} -> {new:.4g} ({100 * (new - before) / max(abs(before), 1e-9):+.0f}%)"
    results.print(f"wrote {written}: threshold {moved}", highlight=False, markup=False)
    results.print(
        f"  measured on {sum(result.frames.values()):,} frames of {len(result.frames)} clip(s); leaving out "
        f"one part at a time it ranges {low:.4g} - {high:.4g}",
        highlight=False,
        markup=False,
    )
    for note in result.notes:
        logs.print(f"  [yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)
    write_results(
        json_out,
        {
            "weights": str(written),
            "threshold": result.threshold.to_dict(),
            "previous_threshold": result.previous.to_dict() if result.previous else None,
            "leave_one_out": result.leave_one_out,
            "normal_range": result.normal.to_dict(),
            "frames": result.frames,
            "notes": result.notes,
        },
        logs,
    )
