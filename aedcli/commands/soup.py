"""`aed soup`: average the weights of runs distilled from one pre-training into one student.

aed soup runs/s4 runs/s5 runs/s6 runs/s7 --out runs/soup
aed eval --dataset ped2 --weights runs/soup/weights.pt
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table


def soup(
    runs: list[Path] = typer.Argument(
        ...,
        help="Folders of finished aed distill runs that share one pre-training (at least two).",
        show_default=False,
    ),
    out: Path = typer.Option(..., "--out", "-o", metavar="DIR", help="Folder for the soup's weights.pt."),
    dataset: str | None = typer.Option(
        None,
        "--dataset",
        metavar="NAME",
        help="Dataset the runs were trained on (default: the one they recorded).",
        show_default=False,
    ),
    root: Path | None = typer.Option(
        None, "--root", metavar="DIR", help="Dataset folder (default: the recorded one).", show_default=False
    ),
    device: str = typer.Option("cpu", "--device", help="'cpu' or 'cuda', to measure the soup."),
    bn_batches: int | None = typer.Option(
        None,
        "--bn-batches",
        metavar="N",
        help="Re-estimate the soup's BatchNorm statistics on N training batches: the average of the members' "
        "statistics is not the statistics of their averaged weights (default: as many as the runs used "
        "after each epoch; 0 keeps the average).",
        show_default=False,
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing OUT/weights.pt."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the path written."),
) -> None:
    """Average the weights of students distilled with different seeds from one shared pre-training (a model
    soup): one student as fast as each, measured on their held-out videos, with its own threshold."""
    from aedcli.data import load_dataset
    from aedcli.errors import UsageError
    from aedcli.soup import soup as make_soup

    if (out / "weights.pt").exists() and not force:
        raise UsageError(
            f"{out / 'weights.pt'} already exists; pass --force to overwrite it or choose another --out."
        )
    if root is not None and dataset is None:
        raise UsageError("--root needs --dataset (the name of the dataset in that folder).")
    data = load_dataset(dataset, root) if dataset is not None else None
    result = make_soup(runs, out, dataset=data, device=device, bn_batches=bn_batches)
    console = Console()
    if not quiet:
        table = Table(title="held-out videos (no test data)")
        for column in ("student", "seed", "val L_KD", "/ constant", "box probe AUC", "cell probe AUC"):
            table.add_column(column)

        def row(name: str, seed: str, m: dict[str, float]) -> None:
            def fmt(key: str) -> str:
                return f"{m[key]:.4f}" if key in m else "-"

            ratio = f"{m['val_kd'] / m['val_kd_constant']:.4f}" if "val_kd" in m else "-"
            table.add_row(name, seed, fmt("val_kd"), ratio, fmt("val_auc_box"), fmt("val_auc"))

        for member in result.members:
            row(str(member.run), str(member.config.seed), member.metrics)
        row("soup", "-", result.metrics)
        console.print(table)
        console.print(f"threshold {result.threshold.value:.4f} ({result.threshold.source})", highlight=False)
    console.print(str(result.weights), highlight=False, soft_wrap=True)
