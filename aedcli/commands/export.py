"""`aed export`: the student as an ONNX graph (dynamic batch), checked against PyTorch before it is written.

aed export --weights runs/ped2/weights.pt --onnx student.onnx
aed detect clip.mp4 --runtime onnx            # runs the same graph through onnxruntime
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console


def export(
    weights: Path = typer.Option(
        ..., "--weights", metavar="FILE", help="Student weights written by 'aed distill'."
    ),
    onnx: Path = typer.Option(..., "--onnx", metavar="FILE", help="Where to write the ONNX graph."),
    opset: int = typer.Option(17, "--opset", metavar="N", help="ONNX opset version (14 or newer)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
) -> None:
    """Export the student to ONNX with a dynamic batch axis; fails when it differs from PyTorch by > 1e-4."""
    from aedcli.errors import UsageError
    from aedcli.export import export_onnx
    from aedcli.weights import load_weights

    console = Console(stderr=True)
    if onnx.exists() and not force:
        raise UsageError(
            f"--onnx {onnx} already exists; pass --force to overwrite it or choose another path."
        )
    if onnx.suffix.lower() != ".onnx":
        raise UsageError(f"--onnx {onnx} should end in .onnx so that tools recognise it; rename it.")
    loaded = load_weights(weights)
    with console.status("exporting and checking against PyTorch"):
        report, _ = export_onnx(loaded, onnx, opset=opset)
    shape = "x".join(str(d) for d in report.input_shape)
    console.print(
        f"wrote {report.path} ({report.bytes / 2**20:.1f} MiB, opset {report.opset}, input x: {shape} "
        "float32, outputs s, m, l)",
        highlight=False,
        soft_wrap=True,
        markup=False,
    )
    console.print(
        f"max abs diff vs PyTorch: {report.max_abs_diff:.2e} (s {report.diffs['s']:.1e}, m "
        f"{report.diffs['m']:.1e}, l {report.diffs['l']:.1e}) at batch sizes "
        f"{', '.join(map(str, report.batches_checked))}; tolerance {report.tolerance:g}",
        highlight=False,
        soft_wrap=True,
    )
