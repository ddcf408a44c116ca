"""Options shared by several commands, defined once: ``--dataset``, ``--root``, ``--weights``, ``--device``...

Each is an ``Annotated`` type to put on a command's parameter, so a command reads as a list of what it takes::

    def eval_command(dataset: DatasetOpt, root: RootOpt = None, weights: WeightsOpt = None, ...) -> None:
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from aedcli.data import DATASETS

DatasetOpt = Annotated[
    str,
    typer.Option(
        "--dataset",
        "-d",
        metavar="NAME",
        help=f"Dataset layout: {', '.join(DATASETS)}; 'folder' is your own footage (train/, test/, labels/).",
        show_default=False,
    ),
]
RootOpt = Annotated[
    Path | None,
    typer.Option(
        "--root", metavar="DIR", help="The dataset's folder (default: $AED_DATA/<name>).", show_default=False
    ),
]
RunOpt = Annotated[
    Path,
    typer.Option(
        "--out",
        "-o",
        metavar="DIR",
        help="Run folder: teachers, targets, checkpoints and weights.pt go here (the same for teach and "
        "distill).",
        show_default=False,
    ),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        metavar="FILE",
        help="Settings file (TOML or JSON, sections [teachers] and [training]) for studies; every setting "
        "left out keeps the shipped recipe.",
        show_default=False,
    ),
]
WeightsOpt = Annotated[
    Path | None,
    typer.Option(
        "--weights",
        "-w",
        metavar="FILE",
        help="Student weights written by 'aed distill' or 'aed calibrate' (default: the shipped ped2.pt).",
        show_default=False,
    ),
]
DeviceOpt = Annotated[str, typer.Option("--device", metavar="cpu|cuda", help="Where the network runs.")]
BatchOpt = Annotated[int, typer.Option("--batch", metavar="N", help="Frames per network batch.")]
RuntimeOpt = Annotated[
    str,
    typer.Option(
        "--runtime",
        metavar="auto|torch|onnx",
        help="Inference engine: 'auto' takes ONNX Runtime on a CPU (faster at small batches), PyTorch on "
        "a GPU.",
    ),
]
WorkersOpt = Annotated[int, typer.Option("--workers", metavar="N", help="Processes working in parallel.")]
JsonOpt = Annotated[
    str | None,
    typer.Option(
        "--json",
        metavar="FILE|-",
        help="Also write the results as JSON to FILE; '-' prints only the JSON on stdout (logs go to "
        "stderr).",
        show_default=False,
    ),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite existing output files.")]
SigmaOpt = Annotated[
    float | None,
    typer.Option(
        "--sigma",
        metavar="FRAMES",
        help="Temporal Gaussian smoothing in frames, 0 = none (default: the weights' value, else 3).",
        show_default=False,
    ),
]
