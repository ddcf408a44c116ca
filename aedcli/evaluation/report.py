"""Showing and saving evaluation reports: a table of rows side by side, the protocol, and plots.

>>> console.print(render_reports({"student": report, "flow floor": floor}))
>>> for line in protocol_lines(reports): print(line)
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from rich.table import Table

from aedcli.evaluation.evaluate import EvalReport
from aedcli.evaluation.metrics import roc_curve
from aedcli.evaluation.plots import plot_roc, plot_video_scores


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def render_reports(reports: Mapping[str, EvalReport]) -> Table:
    """A rich table with one row per named report (for example "scores", "student", "flow floor")."""
    with_regions = any(r.rbdc is not None for r in reports.values())
    table = Table(title="frame-level AUC (fractions)", title_justify="left")
    table.add_column("source")
    table.add_column("micro AUC", justify="right")
    table.add_column("macro AUC\n(1-class = 1.0)", justify="right")
    table.add_column("macro AUC\n(padded 0/1)", justify="right")
    if with_regions:
        table.add_column("RBDC", justify="right")
        table.add_column("TBDC", justify="right")
    table.add_column("frames", justify="right")
    for name, report in reports.items():
        row = [name, _fmt(report.micro_auc), _fmt(report.macro_auc), _fmt(report.macro_auc_padded)]
        if with_regions:
            row += [_fmt(report.rbdc), _fmt(report.tbdc)]
        table.add_row(*row, f"{report.frames:,}")
    return table


def protocol_lines(reports: Mapping[str, EvalReport]) -> list[str]:
    """The distinct protocol lines of ``reports``, each prefixed with the rows it applies to."""
    by_protocol: dict[str, list[str]] = {}
    for name, report in reports.items():
        by_protocol.setdefault(report.protocol, []).append(name)
    if len(by_protocol) == 1:
        return [f"protocol: {next(iter(by_protocol))}"]
    return [f"protocol ({', '.join(names)}): {line}" for line, names in by_protocol.items()]


def write_plots(report: EvalReport, out_dir: str | Path, *, threshold: float | None = None) -> list[Path]:
    """Write ``roc.png`` (micro ROC over all frames) and one ``<video>.png`` score plot per test video.

    The video plots show raw and smoothed (evaluated) scores with the ground truth shaded, and ``threshold``
    as a line when given. Returns the paths written.
    """
    if not report.scores:
        raise ValueError("this report carries no score sequences to plot")
    out = Path(out_dir)
    labels = np.concatenate([s.labels for s in report.scores.values()])
    evaluated = np.concatenate([s.evaluated for s in report.scores.values()])
    written = [out / "roc.png"]
    settings = f"sigma={report.sigma:g} frames, normalisation {report.normalisation}"
    roc_title = f"{report.dataset} test, micro ROC\n{settings}"
    plot_roc(roc_curve(labels, evaluated), written[0], title=roc_title)
    for name, scores in report.scores.items():
        path = out / f"{_safe_name(name)}.png"
        result = report.per_video[name]
        auc = "single class" if result.auc is None else f"AUC {result.auc:.3f}"
        plot_video_scores(
            path,
            scores.raw,
            smoothed=scores.evaluated if (report.sigma > 0 or report.normalisation != "none") else None,
            labels=scores.labels,
            threshold=threshold,
            title=f"{report.dataset} {name}: {auc}, {report.smoothing}, normalisation {report.normalisation}",
        )
        written.append(path)
    return written


def _safe_name(name: str) -> str:
    """A file name for a video name (video names may hold path separators)."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
