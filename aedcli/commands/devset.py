"""`aed devset`: a labelled development set made from normal training video alone.

aed devset --dataset folder --root ~/cams/lobby --out runs/lobby-dev
aed teach --dataset folder --root runs/lobby-dev --out runs/lobby-dev-targets
aed eval --dataset folder --root runs/lobby-dev --model teachers --targets runs/lobby-dev-targets
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console


def devset(
    dataset: str = typer.Option(
        ..., "--dataset", "-d", metavar="NAME", help="Dataset whose training videos to use."
    ),
    root: Path | None = typer.Option(
        None, "--root", metavar="DIR", help="Dataset folder (default $AED_DATA/<name>).", show_default=False
    ),
    out: Path = typer.Option(..., "--out", "-o", metavar="DIR", help="Folder to write (must not exist)."),
    held_out: int = typer.Option(4, "--held-out", min=2, help="Training videos held out as test videos."),
    events: int = typer.Option(3, "--events", min=1, help="Pasted events per held-out video."),
    crowd: bool = typer.Option(
        False, "--crowd", help="Paste all of a source video's moving foreground, not one followed object."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the events' placement and objects."),
) -> None:
    """Hold out the last training videos and paste into them moving objects of the others' footage, sped up
    2-4x or gliding sideways, with frame labels and pixel masks: a development set in the camera's own scene,
    for choosing options without anyone's test labels. The camera must not move between videos."""
    from dataclasses import replace

    from aedcli.data import load_dataset
    from aedcli.data.folder import load_folder
    from aedcli.data.pasted import ONE_OBJECT, write_pasted
    from aedcli.errors import UsageError

    if out.exists():
        raise UsageError(f"{out} already exists; choose another --out or remove it first.")
    config = replace(ONE_OBJECT, held_out=held_out, events=events, single=not crowd, seed=seed)
    write_pasted(load_dataset(dataset, root), config, out)
    made = load_folder(out)
    frames = sum(c.frame_count for c in made.test)
    abnormal = sum(int(c.labels.sum()) for c in made.test if c.labels is not None)
    Console().print(
        f"wrote {out}: {len(made.train)} training videos, {len(made.test)} held out with pasted events "
        f"({abnormal} of {frames} frames abnormal); train and score on it with --dataset folder --root {out}",
        highlight=False,
        soft_wrap=True,
    )
