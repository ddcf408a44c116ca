"""PNG plots of evaluation results: the ROC curve and per-video score curves.

Drawing uses matplotlib's Agg backend (no display needed) on figure objects created here, never the global
``pyplot`` state, and every file is written through :func:`aedcli.files.atomic_path`.

>>> plot_roc(roc_curve(labels, scores), Path("roc.png"), title="ped2 test, micro AUC 0.974")
>>> plot_video_scores(Path("Test001.png"), raw, smoothed=smooth, labels=labels, threshold=0.42)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: plots are files, never windows

import numpy as np
from matplotlib.figure import Figure

from aedcli.evaluation.metrics import RocCurve
from aedcli.files import atomic_path


def _save(fig: Figure, path: Path, dpi: int) -> None:
    with atomic_path(path) as tmp:
        # The temporary name ends in ".tmp.png", so the format comes from `format`, not the suffix.
        fig.savefig(tmp, format="png", dpi=dpi)


def plot_roc(curve: RocCurve, path: str | Path, *, title: str = "", dpi: int = 100) -> None:
    """Write the ROC curve (false-positive rate against true-positive rate) with its AUC as a PNG."""
    fig = Figure(figsize=(4.5, 4.5))
    ax = fig.add_subplot()
    ax.plot(curve.fpr, curve.tpr, color="tab:blue", label=f"AUC {curve.auc:.3f}")
    ax.plot([0, 1], [0, 1], color="0.7", linestyle="--", linewidth=0.8, label="chance")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false-positive rate (normal frames flagged)")
    ax.set_ylabel("true-positive rate (abnormal frames flagged)")
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend(loc="lower right")
    fig.tight_layout()
    _save(fig, Path(path), dpi)


def plot_video_scores(
    path: str | Path,
    raw: Any,
    *,
    smoothed: Any | None = None,
    labels: Any | None = None,
    threshold: float | None = None,
    title: str = "",
    fps: float | None = None,
    dpi: int = 100,
) -> None:
    """Write one video's scores as a PNG: raw, smoothed, threshold line, abnormal frames shaded.

    ``labels`` (0/1 per frame) shade the ground-truth abnormal frames; ``fps`` adds a seconds axis on top.
    """
    raw_arr = np.asarray(raw, dtype=np.float64)
    frames = np.arange(raw_arr.size)
    fig = Figure(figsize=(8, 3))
    ax = fig.add_subplot()
    if labels is not None:
        abnormal = np.asarray(labels).astype(bool)
        for start, stop in _runs(abnormal):
            # Shade whole frames: frame i covers [i - 0.5, i + 0.5].
            ax.axvspan(start - 0.5, stop - 0.5, color="tab:red", alpha=0.15, linewidth=0)
        ax.plot([], [], color="tab:red", alpha=0.3, linewidth=6, label="ground truth abnormal")
    ax.plot(frames, raw_arr, color="0.55", linewidth=0.8, label="raw score")
    if smoothed is not None:
        ax.plot(
            frames, np.asarray(smoothed, dtype=np.float64), color="tab:blue", linewidth=1.6, label="smoothed"
        )
    if threshold is not None:
        ax.axhline(
            threshold, color="tab:orange", linestyle="--", linewidth=1.0, label=f"threshold {threshold:.3g}"
        )
    ax.set_xlim(-0.5, max(raw_arr.size - 0.5, 0.5))
    ax.set_xlabel("frame")
    ax.set_ylabel("anomaly score")
    if fps:
        top = ax.secondary_xaxis("top", functions=(lambda f: f / fps, lambda s: s * fps))
        top.set_xlabel("seconds")
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend(loc="upper left", fontsize=7, frameon=False)
    fig.tight_layout()
    _save(fig, Path(path), dpi)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[start, stop)`` index ranges where ``mask`` is True."""
    padded = np.r_[False, mask, False].astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))
