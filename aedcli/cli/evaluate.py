"""``aed eval``: frame-level AUC (micro and macro) and RBDC/TBDC of scores on a dataset's test videos.

    aed eval --dataset ped2 --root DIR                                # the shipped student
    aed eval --dataset ped2 --root DIR --teachers runs/ped2 --baseline flow
    aed eval --dataset folder --root my_cameras --scores results/     # files written by 'aed detect'

Every row is evaluated by the same :func:`aedcli.evaluation.evaluate.evaluate_scores`, and the protocol
(frames, smoothing, normalisation, macro convention) is printed with the table and written to the JSON.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from aedcli.cli.options import (
    BatchOpt,
    DatasetOpt,
    DeviceOpt,
    JsonOpt,
    RootOpt,
    RuntimeOpt,
    SigmaOpt,
    WeightsOpt,
)
from aedcli.cli.output import consoles, stage_progress, write_results
from aedcli.data import load_dataset
from aedcli.errors import UsageError
from aedcli.evaluation.evaluate import NORMALISATIONS, EvalReport, ScoreSource, evaluate_scores
from aedcli.evaluation.report import protocol_lines, render_reports, write_plots
from aedcli.evaluation.sources import flow_floor_source, score_dir_source, student_source, teacher_sources
from aedcli.model.weights import load_weights
from aedcli.resources import resolve_weights
from aedcli.scoring import DEFAULT_SIGMA


def eval_command(
    dataset: DatasetOpt,
    root: RootOpt = None,
    weights: WeightsOpt = None,
    teachers: Annotated[
        Path | None,
        typer.Option(
            "--teachers",
            metavar="DIR",
            help="Also score with the teachers of a run folder (then its weights.pt is the student unless "
            "--weights says otherwise) or of a folder of teacher files, such as the shipped ped2-teachers: "
            "one row each and one for their combination.",
            show_default=False,
        ),
    ] = None,
    scores: Annotated[
        Path | None,
        typer.Option(
            "--scores",
            metavar="DIR",
            help="Evaluate score files instead of the student: <video>_scores.csv as 'aed detect' writes "
            "them (or <video>.csv), columns frame (0-based) and score.",
            show_default=False,
        ),
    ] = None,
    regions: Annotated[
        Path | None,
        typer.Option(
            "--regions",
            metavar="DIR",
            help="With --scores: detected regions per video "
            "(<video>.csv: frame,x_min,y_min,x_max,y_max,score) for RBDC/TBDC.",
            show_default=False,
        ),
    ] = None,
    baseline: Annotated[
        str | None,
        typer.Option(
            "--baseline",
            metavar="flow",
            help="Add a no-learning floor: 'flow', the 99th percentile of optical-flow magnitude per frame.",
            show_default=False,
        ),
    ] = None,
    sigma: SigmaOpt = None,
    normalisation: Annotated[
        str,
        typer.Option(
            "--normalisation",
            metavar="none|per-video-minmax",
            help="'per-video-minmax' rescales each test video by its own range: only to compare with "
            "papers that do.",
        ),
    ] = "none",
    plots: Annotated[
        Path | None,
        typer.Option(
            "--plots",
            metavar="DIR",
            help="Write ROC and per-video score plots to DIR/<row>/.",
            show_default=False,
        ),
    ] = None,
    device: DeviceOpt = "cpu",
    batch: BatchOpt = 8,
    runtime: RuntimeOpt = "auto",
    json_out: JsonOpt = None,
) -> None:
    """Evaluate the student, the teachers, score files or the flow floor on a dataset's test videos."""
    results, logs = consoles(json_out)
    if normalisation not in NORMALISATIONS:
        raise UsageError(
            f"--normalisation must be one of {', '.join(NORMALISATIONS)}, not '{normalisation}'."
        )
    if baseline not in (None, "flow"):
        raise UsageError(f"--baseline takes 'flow', not '{baseline}'.")
    if sigma is not None and not (math.isfinite(sigma) and sigma >= 0):
        raise UsageError(f"--sigma must be 0 (no smoothing) or more frames, not {sigma:g}.")
    if regions is not None and scores is None:
        raise UsageError("--regions goes with --scores (the regions of those score files).")
    data = load_dataset(dataset, root)
    data.require_labels()
    if weights is None and teachers is not None and (teachers / "weights.pt").is_file():
        weights = teachers / "weights.pt"  # a run folder: its own student beside its teachers
    with_student = weights is not None or scores is None
    student_path = resolve_weights(weights) if with_student else None
    stored_sigma = load_weights(student_path).sigma if student_path is not None else None
    sigma = float(sigma if sigma is not None else stored_sigma if stored_sigma is not None else DEFAULT_SIGMA)

    sources: list[ScoreSource] = []
    if scores is not None:
        sources.append(score_dir_source(data, scores, regions))
    if student_path is not None:
        logs.print(
            f"scoring {len(data.test)} test videos with the student {student_path} ...",
            highlight=False,
            markup=False,
        )
        sources.append(
            student_source(
                data,
                student_path,
                device=device,
                batch_size=batch,
                runtime=runtime,
                with_regions=data.has_masks,
            )
        )
    if teachers is not None:
        with stage_progress(logs) as progress:
            sources.extend(teacher_sources(data, teachers, workers=2, progress=progress))
    if baseline == "flow":
        sources.append(flow_floor_source(data))

    reports: dict[str, EvalReport] = {
        s.name: evaluate_scores(data, s.raw, sigma=sigma, normalisation=normalisation, regions=s.regions)
        for s in sources
    }
    results.print(render_reports(reports))
    for line in protocol_lines(reports):
        results.print(line, highlight=False, markup=False, soft_wrap=True)
    if plots is not None:
        for name, report in reports.items():
            write_plots(report, plots / name.replace(" ", "-"))
        logs.print(f"plots written to {plots}", highlight=False, markup=False)
    # The first row's figures at the top (the documented keys: micro_auc, macro_auc, ...), every row in
    # "rows".
    rows = {name: {"source": name, **r.to_json()} for name, r in reports.items()}
    write_results(json_out, {**next(iter(rows.values())), "rows": rows}, logs)
