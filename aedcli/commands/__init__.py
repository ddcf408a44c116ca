"""The subcommands of ``aed``; each module defines one Typer command function."""

from __future__ import annotations

import typer


def register_commands(app: typer.Typer) -> None:
    """Attach every subcommand to ``app`` (imports stay lazy inside each command body)."""
    from aedcli.commands import bench, calibrate, detect, devset, distill, evaluate, export, soup, teach

    app.command("teach")(teach.teach)
    app.command("distill")(distill.distill)
    app.command("eval")(evaluate.eval_command)
    app.command("detect")(detect.detect)
    app.command("bench")(bench.bench)
    app.command("calibrate")(calibrate.calibrate)
    app.command("export")(export.export)
    app.command("soup")(soup.soup)
    app.command("devset")(devset.devset)
