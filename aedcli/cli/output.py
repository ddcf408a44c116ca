"""How commands print: results on stdout (or JSON there with ``--json -``), logs and progress on stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from aedcli.files import write_json_atomic


def consoles(json_target: str | None) -> tuple[Console, Console]:
    """``(results, logs)``: results go to stdout unless ``--json -`` claims it for the JSON alone."""
    logs = Console(stderr=True)
    results = logs if json_target == "-" else Console(soft_wrap=True)
    return results, logs


def write_results(json_target: str | None, data: dict[str, Any], logs: Console) -> None:
    """``--json FILE`` writes the file (atomically); ``--json -`` prints the JSON on stdout."""
    if json_target is None:
        return
    if json_target == "-":
        sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        sys.stdout.flush()
        return
    write_json_atomic(Path(json_target).expanduser(), data)
    logs.print(f"results written to {json_target}", highlight=False, markup=False)


@contextmanager
def stage_progress(console: Console, quiet: bool = False) -> Iterator[Callable[[str, int, int | None], None]]:
    """A progress callback ``(task, done, total)`` showing one bar per task on stderr."""
    progress = Progress(
        TextColumn("{task.description:<14}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
    )
    tasks: dict[str, Any] = {}

    def update(task: str, done: int, total: int | None) -> None:
        if task not in tasks:
            tasks[task] = progress.add_task(task, total=total)
        progress.update(tasks[task], completed=done, total=total)

    with progress:
        yield update
