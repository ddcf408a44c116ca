"""`aed eval`: frame-level AUC (micro and macro) and optionally RBDC/TBDC of anomaly scores on a dataset.

Score sources are collected first, each one a function returning :class:`aedcli.evaluate.ScoreSource` (raw
scores per test video, optional detected regions); every source is then evaluated by the same
:func:`aedcli.evaluate.evaluate_scores`, so rows of the table are comparable. Sources today: score files
(``--scores DIR``, one ``<video>.csv`` per test video with columns ``frame`` (0-based) and ``score``) and the
no-learning optical-flow floor (``--baseline flow``).

    aed eval --dataset ped2 --root ~/data/ped2 --scores runs/ped2-scores --baseline flow --json eval.json
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from aedcli.errors import UsageError

DEFAULT_SIGMA = 3.0
"""Frames of temporal Gaussian smoothing when ``--sigma`` is not given (always printed with the results)."""

BASELINES = ("flow",)


def eval_command(
    dataset: str = typer.Option(
        ...,
        "--dataset",
        metavar="NAME",
        help="Dataset name: ped2, ped1, avenue, shanghaitech, folder or synthetic.",
    ),
    root: Path | None = typer.Option(
        None, "--root", metavar="DIR", help="Dataset folder (default: $AED_DATA/<name>).", show_default=False
    ),
    scores: Path | None = typer.Option(
        None,
        "--scores",
        metavar="DIR",
        help="Folder with one <video>.csv per test video, with columns 'frame' (0-based) and 'score'.",
        show_default=False,
    ),
    regions: Path | None = typer.Option(
        None,
        "--regions",
        metavar="DIR",
        help="Folder with one <video>.csv of detected regions per test video (frame, x_min, y_min, x_max, "
        "y_max, score) for RBDC/TBDC; needs --scores and a dataset with pixel masks.",
        show_default=False,
    ),
    baseline: list[str] | None = typer.Option(
        None,
        "--baseline",
        metavar="flow",
        help="Add a no-learning baseline row: 'flow' (99th percentile of optical-flow magnitude per frame).",
        show_default=False,
    ),
    sigma: float = typer.Option(
        DEFAULT_SIGMA,
        "--sigma",
        metavar="FRAMES",
        help="Temporal Gaussian smoothing per video, in frames (0 = none).",
    ),
    normalisation: str = typer.Option(
        "none",
        "--normalisation",
        metavar="none|per-video-minmax",
        help="'none', or 'per-video-minmax' (uses each test video's own range: only to compare with papers).",
    ),
    json_out: Path | None = typer.Option(
        None, "--json", metavar="FILE", help="Write the results as JSON to this file.", show_default=False
    ),
    plots: Path | None = typer.Option(
        None,
        "--plots",
        metavar="DIR",
        help="Write ROC and per-video score plots (PNG) to <DIR>/<row>/.",
        show_default=False,
    ),
) -> None:
    """Evaluate anomaly scores on a dataset's test videos: micro/macro frame AUC, RBDC/TBDC with --regions."""
    from aedcli.evaluate import (
        NORMALISATIONS,
        ScoreSource,
        evaluate_scores,
        flow_floor_source,
        protocol_lines,
        render_reports,
        score_dir_source,
        write_plots,
    )
    from aedcli.files import write_json_atomic

    baselines = list(baseline or [])
    _check_options(scores, regions, baselines, sigma, normalisation, NORMALISATIONS)

    from aedcli.data import load_dataset

    data = load_dataset(dataset, root)
    console = Console()
    status = Console(stderr=True)

    sources: list[ScoreSource] = []
    if scores is not None:
        sources.append(score_dir_source(data, scores, regions))
    if "flow" in baselines:
        status.print(f"computing the optical-flow floor on {len(data.test)} test videos ...", highlight=False)
        sources.append(flow_floor_source(data))

    reports = {
        source.name: evaluate_scores(
            data, source.raw, sigma=sigma, normalisation=normalisation, regions=source.regions
        )
        for source in sources
    }

    console.print(render_reports(reports))
    for line in protocol_lines(reports):
        console.print(line, highlight=False, soft_wrap=True)

    if plots is not None:
        for name, report in reports.items():
            write_plots(report, plots / name.replace(" ", "-"))
        console.print(f"plots written to {plots}", highlight=False)
    if json_out is not None:
        first_name, first = next(iter(reports.items()))
        payload = {"source": first_name, **first.to_json()}
        if len(reports) > 1:
            payload["rows"] = {name: {"source": name, **r.to_json()} for name, r in reports.items()}
        write_json_atomic(json_out, payload)
        console.print(f"results written to {json_out}", highlight=False)


def _check_options(
    scores: Path | None,
    regions: Path | None,
    baselines: list[str],
    sigma: float,
    normalisation: str,
    normalisations: tuple[str, ...],
) -> None:
    """Usage errors found before any data is read."""
    unknown = [b for b in baselines if b not in BASELINES]
    if unknown:
        raise UsageError(f"--baseline '{unknown[0]}' is not known; use --baseline {' or '.join(BASELINES)}.")
    if scores is None and not baselines:
        raise UsageError(
            "nothing to evaluate; give --scores DIR (one <video>.csv per test video) or --baseline flow."
        )
    if scores is not None and not scores.is_dir():
        raise UsageError(
            f"--scores {scores} is not a folder; give the folder holding one <video>.csv per test video."
        )
    if regions is not None and scores is None:
        raise UsageError(
            "--regions needs --scores: regions are evaluated together with the frame scores they belong to."
        )
    if sigma < 0:
        raise UsageError(f"--sigma must be 0 (no smoothing) or more frames, not {sigma:g}.")
    if normalisation not in normalisations:
        raise UsageError(
            f"--normalisation must be one of {', '.join(normalisations)}, not '{normalisation}'."
        )
