"""`aed eval`: frame-level AUC (micro and macro) and optionally RBDC/TBDC of anomaly scores on a dataset.

Score sources are collected first, each one a function returning :class:`aedcli.evaluate.ScoreSource` (raw
scores per test video, optional detected regions); every source is then evaluated by the same
:func:`aedcli.evaluate.evaluate_scores`, so rows of the table are comparable. Sources today: score files
(``--scores DIR``, one ``<video>.csv`` per test video with columns ``frame`` (0-based) and ``score``), a
student weights file (``--weights``), the teachers' cached targets (``--model teacher-a|...|teachers`` with
``--targets DIR``) and the no-learning optical-flow floor (``--baseline flow``).

    aed eval --dataset ped2 --root ~/data/ped2 --weights weights/ped2.pt --json eval.json
    aed eval --dataset ped2 --root ~/data/ped2 --weights runs/ped2/weights.pt --targets runs/ped2/targets
    aed eval --dataset ped2 --root ~/data/ped2 --scores runs/ped2-scores --baseline flow
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from aedcli.errors import UsageError

DEFAULT_SIGMA = 3.0
"""Frames of temporal Gaussian smoothing when neither ``--sigma`` nor the weights file gives one."""

MODELS = ("student", "teacher-a", "teacher-b", "teacher-flow", "teachers")

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
    weights: Path | None = typer.Option(
        None,
        "--weights",
        metavar="FILE",
        help="Student weights file to evaluate (default with --model student: the shipped weights/ped2.pt).",
        show_default=False,
    ),
    model: list[str] | None = typer.Option(
        None,
        "--model",
        metavar="NAME",
        help="What to evaluate: student, teacher-a, teacher-b, teacher-flow or teachers (repeatable). "
        "Teachers need --targets; without --model, --weights gives the student row and --targets adds a row "
        "per teacher found there.",
        show_default=False,
    ),
    targets: Path | None = typer.Option(
        None,
        "--targets",
        metavar="DIR",
        help="Teacher targets folder (as written by 'aed teach' or 'aed distill'); teacher files found there "
        "are used to score clips whose targets are missing.",
        show_default=False,
    ),
    teachers_from: Path | None = typer.Option(
        None,
        "--teachers-from",
        metavar="DIR",
        help="Trained teacher files DIR/<teacher>.pt (e.g. weights/ped2-teachers) to score the test set with "
        "when --targets lacks them, with the options of DIR/choices.json when there; their targets are "
        "written to --targets.",
        show_default=False,
    ),
    device: str = typer.Option("cpu", "--device", metavar="cpu|cuda", help="Device for the student."),
    batch: int = typer.Option(8, "--batch", min=1, metavar="N", help="Frames per student batch."),
    runtime: str = typer.Option("torch", "--runtime", metavar="torch|onnx", help="Student runtime."),
    baseline: list[str] | None = typer.Option(
        None,
        "--baseline",
        metavar="flow",
        help="Add a no-learning baseline row: 'flow' (99th percentile of optical-flow magnitude per frame).",
        show_default=False,
    ),
    sigma: float | None = typer.Option(
        None,
        "--sigma",
        metavar="FRAMES",
        help="Temporal Gaussian smoothing per video, in frames (0 = none; default: the weights file's, "
        f"else {DEFAULT_SIGMA:g}).",
        show_default=False,
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
        student_source,
        write_plots,
    )
    from aedcli.files import write_json_atomic

    baselines = list(baseline or [])
    shipped_choices = None
    if teachers_from is not None:
        shipped_choices = _install_teachers(teachers_from, targets, list(model or []))
    models = _resolve_models(list(model or []), weights, targets, scores, baselines)
    if "student" in models:
        from aedcli.detect import resolve_weights

        weights = resolve_weights(weights)
    _check_options(scores, regions, baselines, sigma, normalisation, NORMALISATIONS)
    if sigma is None:
        sigma = _weights_sigma(weights) if "student" in models and weights is not None else DEFAULT_SIGMA

    from aedcli.data import load_dataset

    data = load_dataset(dataset, root)
    console = Console()
    status = Console(stderr=True)

    sources: list[ScoreSource] = []
    if scores is not None:
        sources.append(score_dir_source(data, scores, regions))
    if "student" in models:
        assert weights is not None
        scoring = f"scoring {len(data.test)} test videos with the student {weights} ..."
        status.print(scoring, highlight=False, markup=False)  # paths are text, not console markup
        sources.append(student_source(data, weights, device=device, batch_size=batch, runtime=runtime))
    teacher_models = [m for m in models if m != "student"]
    if teacher_models:
        assert targets is not None
        sources.extend(_teacher_sources(data, targets, teacher_models, status, shipped_choices))
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
        console.print(line, highlight=False, soft_wrap=True, markup=False)

    if plots is not None:
        for name, report in reports.items():
            write_plots(report, plots / name.replace(" ", "-"))
        console.print(f"plots written to {plots}", highlight=False, markup=False)
    if json_out is not None:
        first_name, first = next(iter(reports.items()))
        payload = {"source": first_name, **first.to_json()}
        if len(reports) > 1:
            payload["rows"] = {name: {"source": name, **r.to_json()} for name, r in reports.items()}
        write_json_atomic(json_out, payload)
        console.print(f"results written to {json_out}", highlight=False, markup=False)


def _weights_sigma(weights: Path) -> float:
    from aedcli.weights import load_weights

    return float(load_weights(weights).sigma)


def _resolve_models(
    models: list[str], weights: Path | None, targets: Path | None, scores: Path | None, baselines: list[str]
) -> list[str]:
    """The rows to compute: explicit --model names, else what --weights / --targets imply."""
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise UsageError(f"--model '{unknown[0]}' is not known; use one of {', '.join(MODELS)}.")
    if any(m != "student" for m in models) and targets is None:
        raise UsageError(
            "teacher rows need --targets DIR: the folder 'aed teach' or 'aed distill' wrote the targets to."
        )
    if targets is not None and not targets.is_dir():
        raise UsageError(f"--targets {targets} is not a folder; give the folder 'aed teach' wrote.")
    if models:
        return list(dict.fromkeys(models))
    implied = []
    if weights is not None or (scores is None and not baselines and targets is None):
        implied.append("student")
    if targets is not None:
        from aedcli.teachers.pipeline import teachers_on_disk

        found = teachers_on_disk(targets)
        implied.extend(f"teacher-{n}" for n in found)
        if len(found) > 1:
            implied.append("teachers")
    return implied


def _install_teachers(source: Path, targets: Path | None, models: list[str]) -> Path | None:
    """Copy the teacher files that the asked-for teacher rows need from ``source`` into ``targets``.

    Returns ``source/choices.json`` when the folder has one: the options those teachers score with.
    """
    from aedcli.teachers.choices import folder_choices
    from aedcli.teachers.pipeline import install_teacher_files

    if targets is None:
        raise UsageError("--teachers-from needs --targets DIR: the folder to write the teachers' targets to.")
    if not source.is_dir():
        raise UsageError(
            f"--teachers-from {source} is not a folder; give the folder holding <teacher>.pt files."
        )
    names = [m.removeprefix("teacher-") for m in models if m.startswith("teacher-")]
    if "teachers" in models or not models:
        names.extend(p.stem for p in sorted(source.glob("*.pt")) if p.stem not in names)
    targets.mkdir(parents=True, exist_ok=True)
    install_teacher_files(source, targets, names)
    return folder_choices(source)


def _teacher_sources(
    data: Any, targets: Path, models: list[str], status: Console, choices: Path | None = None
) -> list[Any]:
    """Rows of the teachers: targets on disk, completed first from teacher files where clips lack them.

    A teacher not yet painted in ``targets`` is scored with the options of ``choices`` when given (the
    ``choices.json`` of a ``--teachers-from`` folder), else with the defaults.
    """
    from aedcli.evaluate import teacher_source
    from aedcli.teachers.choices import load_choices
    from aedcli.teachers.pipeline import (
        TargetPaths,
        TeachConfig,
        ensure_targets,
        stored_scaling,
        teachers_on_disk,
    )

    names = [m.removeprefix("teacher-") for m in models if m != "teachers"]
    if "teachers" in models:
        names.extend(n for n in teachers_on_disk(targets) if n not in names)
    needed = [n for n in names if not (targets / n / "teacher.pt").is_file() and not (targets / n).is_dir()]
    if needed:
        raise UsageError(
            f"--targets {targets} has no teacher '{needed[0]}'; run 'aed teach --teachers {needed[0]}' first."
        )
    if names:
        checking = f"checking the targets of teachers {', '.join(names)} in {targets} ..."
        status.print(checking, highlight=False, markup=False)
        chosen = load_choices(choices) if choices is not None else None
        if chosen is not None:
            status.print(f"options from {choices}: {chosen.describe()}", highlight=False, markup=False)
        for name in names:  # each with the scaling its targets were painted with, so none is repainted
            normalisation, config = stored_scaling(targets, name)
            if chosen is not None and not TargetPaths(targets).scaler(name).is_file():
                normalisation = chosen.normalisation or normalisation
                config = TeachConfig.with_choices(chosen)
            ensure_targets(data, targets, [name], progress=True, normalisation=normalisation, config=config)
    return [teacher_source(data, targets, m.removeprefix("teacher-")) for m in models if m != "student"]


def _check_options(
    scores: Path | None,
    regions: Path | None,
    baselines: list[str],
    sigma: float | None,
    normalisation: str,
    normalisations: tuple[str, ...],
) -> None:
    """Usage errors found before any data is read."""
    unknown = [b for b in baselines if b not in BASELINES]
    if unknown:
        raise UsageError(f"--baseline '{unknown[0]}' is not known; use --baseline {' or '.join(BASELINES)}.")
    if scores is not None and not scores.is_dir():
        raise UsageError(
            f"--scores {scores} is not a folder; give the folder holding one <video>.csv per test video."
        )
    if regions is not None and scores is None:
        raise UsageError(
            "--regions needs --scores: regions are evaluated together with the frame scores they belong to."
        )
    if sigma is not None and not (math.isfinite(sigma) and sigma >= 0):
        raise UsageError(f"--sigma must be 0 (no smoothing) or more frames, not {sigma:g}.")
    if normalisation not in normalisations:
        raise UsageError(
            f"--normalisation must be one of {', '.join(normalisations)}, not '{normalisation}'."
        )
