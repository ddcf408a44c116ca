"""`aed teach`: run the teacher stage alone - proposals, teacher training, scoring and target files.

Everything lands under ``--out`` (see :mod:`aedcli.teachers.pipeline` for the layout); a second run reuses
what is there, so an interrupted run is resumed by running the same command again.

    aed teach --dataset ped2 --root ~/data/ped2 --out runs/ped2/targets --teachers a --workers 2
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from aedcli.errors import UsageError


def teach(
    dataset: str = typer.Option(
        ...,
        "--dataset",
        metavar="NAME",
        help="Dataset name: ped2, ped1, avenue, shanghaitech, folder or synthetic.",
    ),
    root: Path | None = typer.Option(
        None, "--root", metavar="DIR", help="Dataset folder (default: $AED_DATA/<name>).", show_default=False
    ),
    out: Path = typer.Option(
        ..., "--out", metavar="DIR", help="Folder for boxes, teachers and target files."
    ),
    teachers: str = typer.Option(
        "a", "--teachers", metavar="a,b,flow", help="Comma-separated teachers to train and run."
    ),
    workers: int = typer.Option(
        1, "--workers", min=1, metavar="N", help="Processes for proposals and scoring."
    ),
    epochs: int | None = typer.Option(
        None,
        "--epochs",
        min=1,
        metavar="N",
        help="Training epochs of each teacher (default: its own).",
        show_default=False,
    ),
    normalisation: str | None = typer.Option(
        None,
        "--normalisation",
        metavar="train|train-rarity|train-size|per-video-minmax",
        help="Scale object scores with statistics of all training objects ('train': 0 and 1 at the "
        "--scale-percentiles, linear in between; 'train-rarity': rarity among normal training objects in "
        "between, so every teacher's normal objects spread alike; 'train-size': 'train' among training "
        "objects of similar box height, for cameras whose far objects are a few pixels tall), or per video "
        "('per-video-minmax': uses each video's own range, only to compare with published code). Default: "
        "train, or what --choices or the --teachers-from folder's choices.json says.",
        show_default=False,
    ),
    frame_correction: str | None = typer.Option(
        None,
        "--frame-correction",
        metavar="count|none",
        help="'count': a score among many objects in a frame counts for less than the same score alone "
        "(the chance that the largest of K normal objects reaches it); 'none': raw scores. 'count' lost "
        "on the synthetic development set (scripts/teacher_dev.py), so it is off by default (none, or what "
        "the choices say).",
        show_default=False,
    ),
    seed: int = typer.Option(
        0,
        "--seed",
        metavar="N",
        help="Seed of the teachers' training (initial weights, sampling); a teacher file already in --out "
        "is reused as it is.",
    ),
    b_seeds: int | None = typer.Option(
        None,
        "--b-seeds",
        metavar="N",
        help="Train teacher b as N networks (seeds s, s+1, ...) and score with their mean: steadier, N times "
        "the cost (default: 1, or what a teacher b file in --out holds; a file with fewer networks keeps "
        "them and trains only the missing ones, one with more drops the extra ones).",
        show_default=False,
    ),
    a_combine: str | None = typer.Option(
        None,
        "--a-combine",
        metavar="linear|tail-sum|tail-max",
        help="How teacher a makes one score of its components: 'tail-max' (its default) takes the largest, "
        "'tail-sum' the sum, of their rarity among normal training objects; 'linear' adds them calibrated 0 "
        "at the normal median and 1 at the 99th percentile (files from before 'tail-max'). A reused teacher "
        "a file keeps its networks and is measured again on the training objects.",
        show_default=False,
    ),
    b_combine: str | None = typer.Option(
        None,
        "--b-combine",
        metavar="z-sum|tail-sum|tail-max",
        help="How teacher b makes one score of its three task errors: 'tail-max' (its default) takes the "
        "largest, 'tail-sum' the sum, of their rarity among held-out normal training objects; 'z-sum' adds "
        "them standardised on those objects (files from before 'tail-max'). A reused teacher b file keeps "
        "its networks and is measured again on its held-out training objects.",
        show_default=False,
    ),
    b_views: str | None = typer.Option(
        None,
        "--b-views",
        metavar="centre|reversed|reversed-mirrored",
        help="How many ways teacher b asks each task per object: 'centre' (its default) the clip centred on "
        "t; 'reversed' also played backward (1.5 times the network passes); 'reversed-mirrored' also "
        "mirrored left to right (3 times); a task's error is its mean over them. A reused teacher b file "
        "keeps its networks and is measured again on its held-out training objects.",
        show_default=False,
    ),
    max_objects: int = typer.Option(
        8000,
        "--max-objects",
        min=1,
        metavar="N",
        help="At most about this many training objects per teacher.",
    ),
    proposals: str = typer.Option(
        "median",
        "--proposals",
        metavar="median|mog2|knn|detector",
        help="How objects are found: background model (fixed cameras) or a local detector file.",
    ),
    detector: Path | None = typer.Option(
        None,
        "--detector",
        metavar="FILE",
        help="Local TorchScript (.pt) or ONNX (.onnx) detector for --proposals detector; never downloaded.",
        show_default=False,
    ),
    scale: str = typer.Option(
        "50,100",
        "--scale-percentiles",
        metavar="LO,HI",
        help="Percentiles of the normal training objects' scores that map to 0 and 1 (0,100: min-max).",
    ),
    teachers_from: Path | None = typer.Option(
        None,
        "--teachers-from",
        metavar="DIR",
        help="Use trained teacher files DIR/<teacher>.pt (e.g. weights/ped2-teachers) instead of training; "
        "DIR/choices.json, when there, sets their options as --choices does (an explicit --choices or "
        "option wins).",
        show_default=False,
    ),
    speedups: str | None = typer.Option(
        None,
        "--speedups",
        metavar="K,K",
        help="Also score the training videos played K times faster (the pseudo-anomalies of "
        "'aed distill --speedups').",
        show_default=False,
    ),
    choices: Path | None = typer.Option(
        None,
        "--choices",
        metavar="REPORT",
        help="Train with the options a development run chose (the JSON of scripts/teacher_dev.py --json, "
        "e.g. on a set made by 'aed devset' from this camera's normal video): teacher a's weights and "
        "combination, b's combination, seeds and views, the flow teacher's switches, frame corrections and "
        "scaling. Replaces --a-combine, --b-combine, --b-seeds, --b-views, --frame-correction and "
        "--normalisation.",
        show_default=False,
    ),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """Train the object-centric teachers on normal training video and write their target maps."""
    from aedcli.commands.distill import parse_factors
    from aedcli.data import load_dataset
    from aedcli.data.clips import sped_up_clips
    from aedcli.teachers import parse_teachers
    from aedcli.teachers.choices import folder_choices, load_choices
    from aedcli.teachers.maps import DEFAULT_NORMALISATION, NORMALISATIONS
    from aedcli.teachers.pipeline import TeachConfig, ensure_targets, install_teacher_files
    from aedcli.teachers.proposals import ProposalConfig

    if normalisation is not None and normalisation not in NORMALISATIONS:
        raise UsageError(
            f"--normalisation '{normalisation}' is unknown; use one of {', '.join(NORMALISATIONS)}."
        )
    if detector is not None and proposals != "detector":
        raise UsageError(
            "--detector is only used with --proposals detector; add that option or drop --detector."
        )
    names = parse_teachers(teachers)
    lo, hi = _percentiles(scale)
    factors = parse_factors(speedups) if speedups else ()
    fields = dict(
        proposals=ProposalConfig(method=proposals, detector=str(detector) if detector else None),
        max_train_objects=max_objects,
        lo_percentile=lo,
        hi_percentile=hi,
        frame_correction=frame_correction or "none",
        seed=seed,
    )
    chosen = None
    given = [
        flag
        for flag, value, default in (
            ("--a-combine", a_combine, None),
            ("--b-combine", b_combine, None),
            ("--b-seeds", b_seeds, None),
            ("--b-views", b_views, None),
            ("--frame-correction", frame_correction, None),
            ("--normalisation", normalisation, None),
        )
        if value != default
    ]
    if choices is None and teachers_from is not None and not given:
        choices = folder_choices(teachers_from)
    if choices is not None:
        if given:
            raise UsageError(f"--choices sets {', '.join(given)} itself; drop {' and '.join(given)}.")
        chosen = load_choices(choices)
        normalisation = chosen.normalisation or DEFAULT_NORMALISATION
        cfg = TeachConfig.with_choices(chosen, **fields)
    else:
        cfg = TeachConfig(
            **fields, b_seeds=b_seeds, a_combine=a_combine, b_combine=b_combine, b_views=b_views
        )
        normalisation = normalisation or DEFAULT_NORMALISATION
    ds = load_dataset(dataset, root)
    if teachers_from is not None:
        install_teacher_files(teachers_from, out, names)
    report = ensure_targets(
        ds,
        out,
        names,
        workers=workers,
        normalisation=normalisation,
        progress=not quiet,
        epochs=epochs,
        config=cfg,
        extra=sped_up_clips(ds.train, tuple(dict.fromkeys(factors))),
    )

    console = Console()
    if chosen is not None:
        console.print(f"options from {choices}: {chosen.describe()}", markup=False, highlight=False)
    trained = f"{report.train_objects} training objects" if report.train_objects else "no teacher trained"
    console.print(
        f"[bold]{ds.name}[/]: {report.clips} clips, {report.frames} frames; proposals "
        f"{report.proposals_computed} computed, {report.proposals_cached} reused; {trained}; "
        f"normalisation: {report.normalisation}"
    )
    table = Table(
        "teacher", "fit", "clips scored", "clips reused", "targets written", "targets reused", "fps"
    )
    for name, tr in report.teachers.items():
        seconds = tr.scoring_seconds + (report.proposal_seconds if report.proposal_frames else 0.0)
        fps = f"{tr.frames_scored / seconds:.0f}" if tr.frames_scored and seconds > 0 else "-"
        fit = f"trained {tr.fit_seconds:.0f} s" if tr.fitted else "reused"
        table.add_row(
            name,
            fit,
            str(tr.clips_scored),
            str(tr.clips_cached),
            str(tr.targets_written),
            str(tr.targets_cached),
            fps,
        )
    console.print(table)
    console.print(f"targets: {Path(out) / '<teacher>' / '<split>' / '<clip>.npz'}", markup=False)


def _percentiles(text: str) -> tuple[float, float]:
    """'50,100' -> (50.0, 100.0); a usage error unless 0 <= LO < HI <= 100."""
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"--scale-percentiles takes LO,HI such as 50,100, got {text!r}.") from None
    if not 0 <= lo < hi <= 100:
        raise UsageError(f"--scale-percentiles needs 0 <= LO < HI <= 100, got {text!r}.")
    return lo, hi
