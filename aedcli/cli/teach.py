"""``aed teach``: fit the teachers on a dataset's normal training video and write their targets.

    aed teach --dataset folder --root my_cameras --out runs/cam      # then: aed distill ... --out runs/cam

``aed distill`` runs this stage itself when the run folder has no teachers yet; ``aed teach`` alone is for
looking at the teachers first (``aed eval --teachers runs/cam``). A stage interrupted midway resumes: videos
already painted are skipped.
"""

from __future__ import annotations

from typing import Annotated

import typer

from aedcli.cli.options import ConfigOpt, DatasetOpt, QuietOpt, RootOpt, RunOpt, WorkersOpt
from aedcli.cli.output import consoles, stage_progress
from aedcli.data import load_dataset
from aedcli.errors import UsageError
from aedcli.teachers import TEACHERS
from aedcli.teachers import teach as run_teach
from aedcli.training.config import TrainConfig, load_settings
from aedcli.training.data import pseudo_anomaly_views, split_validation


def teach(
    dataset: DatasetOpt,
    out: RunOpt,
    root: RootOpt = None,
    teachers: Annotated[
        str | None,
        typer.Option(
            "--teachers",
            metavar="NAMES",
            help=f"Comma-separated teachers to fit (default: all of {','.join(TEACHERS)}).",
            show_default=False,
        ),
    ] = None,
    config: ConfigOpt = None,
    workers: WorkersOpt = 2,
    quiet: QuietOpt = False,
) -> None:
    """Fit the teachers on normal training video and paint the targets the student learns from."""
    _, logs = consoles(None)
    teach_cfg, train_cfg = load_settings(config)
    if teachers is not None:
        names = tuple(n.strip() for n in teachers.split(",") if n.strip())
        unknown = [n for n in names if n not in TEACHERS]
        if unknown or not names:
            raise UsageError(f"--teachers takes names from {', '.join(TEACHERS)}, not '{teachers}'.")
        teach_cfg = type(teach_cfg).from_dict({**teach_cfg.to_dict(), "teachers": list(names)})
    if workers < 1:
        raise UsageError(f"--workers must be 1 or more, not {workers}.")
    data = load_dataset(dataset, root)
    views = _views(data.train, train_cfg)
    with stage_progress(logs, quiet) as progress:
        result = run_teach(data, out, teach_cfg, extra=views, workers=workers, progress=progress)
    logs.print(
        f"teachers {', '.join(result.teachers)} in {out}/teachers; {result.clips_painted} video(s) painted "
        f"in {result.seconds:.0f} s",
        highlight=False,
        markup=False,
    )


def _views(train: list, cfg: TrainConfig) -> list:
    """The pseudo-anomalous views 'aed distill' will train on, painted now so it need not wait."""
    train_parts, val_parts = split_validation(train, cfg.validation, cfg.validation_share)
    return [
        *pseudo_anomaly_views(train_parts, cfg.speedups, cfg.zooms, cfg.seed),
        *pseudo_anomaly_views(val_parts, cfg.speedups, cfg.zooms, cfg.seed + 1),
    ]
