"""What a run shows and keeps of its epochs: a live progress bar with the losses, ``history.json`` and a plot.

>>> with EpochProgress(quiet=False) as progress:
...     progress.start("distill", done_epochs=0, epochs=12, frames_per_epoch=4000)
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from aedcli.files import atomic_path


def plot_history(history: dict[str, list[dict[str, float]]], path: Path) -> None:
    """Loss curves per epoch (one panel per phase) to a PNG, atomically."""
    from matplotlib.figure import Figure  # a bare Figure renders with Agg; no pyplot, no global state
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(10, 4))
    panels = [(p, history.get(p) or []) for p in ("pretrain", "distill")]
    panels = [(p, rows) for p, rows in panels if rows] or [("no epochs yet", [])]
    for i, (phase, rows) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        keys = [k for k in ("loss", "val_loss", "kd", "val_kd", "adv", "d_loss") if rows and k in rows[0]]
        epochs = [r["epoch"] for r in rows]
        for key in keys:
            ax.plot(epochs, [r.get(key, math.nan) for r in rows], marker="o", markersize=3, label=key)
        ax.set_title(phase)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if keys:
            ax.set_yscale("log" if all(r.get(k, 1) > 0 for r in rows for k in keys) else "linear")
            ax.legend()
        ax.grid(alpha=0.3)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.13, top=0.9, wspace=0.25)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)


class EpochProgress:
    """A rich progress bar per phase with live losses; silent when ``quiet``."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self._progress: Any = None
        self._task: Any = None
        self._phase = ""

    def __enter__(self) -> EpochProgress:
        if not self.quiet:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[losses]}"),
                console=Console(stderr=True),
            )
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def start(self, phase: str, done_epochs: int, epochs: int, frames_per_epoch: int) -> None:
        self._phase, self._epochs = phase, epochs
        if self._progress is not None:
            self._task = self._progress.add_task(
                phase, total=max(epochs - done_epochs, 0) * frames_per_epoch, losses=""
            )
            if done_epochs:
                self._progress.console.print(f"{phase}: resuming after epoch {done_epochs}")

    def epoch(self, epoch: int, lr: float) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=f"{self._phase} {epoch}/{self._epochs} lr {lr:.1e}")

    def step(self, frames: int, losses: dict[str, float]) -> None:
        if self._progress is not None:
            text = " ".join(f"{k} {v:.4g}" for k, v in losses.items())
            self._progress.update(self._task, advance=frames, losses=text)

    def summary(self, phase: str, row: dict[str, float]) -> None:
        if self._progress is not None:
            skip = ("epoch", "lr", "frames", "seconds", "frames_per_s")
            parts = [f"{k} {v:.4g}" for k, v in row.items() if k not in skip]
            self._progress.console.print(
                f"{phase} epoch {int(row['epoch'])}: {' '.join(parts)} "
                f"({row['seconds']:.0f} s, {row['frames_per_s']:.1f} frames/s)"
            )
