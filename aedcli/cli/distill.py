"""``aed distill``: train the student on a dataset's normal training video, with the shipped recipe.

    aed distill --dataset folder --root my_cameras --out runs/cam     # -> runs/cam/weights.pt
    aed distill ... --out runs/cam --resume                           # continue after an interruption
    torchrun --nproc_per_node 4 -m aedcli distill ...                  # several GPUs or hosts

It fits the teachers first when ``runs/cam`` has none (see ``aed teach``). Every epoch ends with a
checkpoint; the weights written are the last epoch's, with a threshold and a normal score range measured on
normal footage held out from training.
"""

from __future__ import annotations

from typing import Annotated

import typer

from aedcli.cli.options import (
    ConfigOpt,
    DatasetOpt,
    DeviceOpt,
    JsonOpt,
    QuietOpt,
    RootOpt,
    RunOpt,
    WorkersOpt,
)
from aedcli.cli.output import consoles, stage_progress, write_results
from aedcli.data import load_dataset
from aedcli.errors import UsageError
from aedcli.model.student import VARIANTS
from aedcli.training.config import load_settings
from aedcli.training.run import distill as run_distill


def _size(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UsageError(f"--size takes HEIGHTxWIDTH such as 240x360, not '{text}'.") from None
    return h, w


def distill(
    dataset: DatasetOpt,
    out: RunOpt,
    root: RootOpt = None,
    variant: Annotated[
        str | None,
        typer.Option(
            "--variant",
            metavar="NAME",
            help=f"Student size: {', '.join(VARIANTS)} ('fastaed' is the paper's; default: the recipe's).",
            show_default=False,
        ),
    ] = None,
    size: Annotated[
        str | None,
        typer.Option(
            "--size",
            metavar="HxW",
            help="Input size of the student (default: the footage's, scaled to at most 240 rows).",
            show_default=False,
        ),
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option(
            "--epochs", metavar="N", help="Distillation epochs (default: the recipe's).", show_default=False
        ),
    ] = None,
    batch: Annotated[
        int | None,
        typer.Option(
            "--batch",
            metavar="N",
            help="Frames per training batch (default: the recipe's).",
            show_default=False,
        ),
    ] = None,
    device: DeviceOpt = "cpu",
    config: ConfigOpt = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in --out after its last finished epoch.")
    ] = False,
    seed: Annotated[
        int | None, typer.Option("--seed", metavar="N", help="Random seed.", show_default=False)
    ] = None,
    workers: WorkersOpt = 2,
    json_out: JsonOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Train a student from teachers on normal video: teachers, pre-training, distillation, threshold."""
    results, logs = consoles(json_out)
    teach_cfg, train_cfg = load_settings(config)
    train_cfg = train_cfg.replace(
        variant=variant, size=_size(size), epochs=epochs, batch=batch, seed=seed, device=device
    )
    data = load_dataset(dataset, root)
    with stage_progress(logs, quiet) as progress:
        result = run_distill(
            data,
            out,
            train_cfg,
            None if config is None else teach_cfg,
            resume=resume,
            quiet=quiet,
            workers=workers,
            progress=progress,
        )
    if result.weights is None or result.threshold is None:
        return
    minutes = sum(result.seconds.values()) / 60
    results.print(
        f"wrote {result.weights} ({minutes:.1f} min); threshold {result.threshold.value:.4g} "
        f"({result.threshold.source})",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    write_results(
        json_out,
        {
            "weights": str(result.weights),
            "threshold": result.threshold.to_dict(),
            "seconds": result.seconds,
            "last_epoch": result.history["distill"][-1] if result.history["distill"] else None,
        },
        logs,
    )
