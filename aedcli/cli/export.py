"""``aed export``: the student as an ONNX graph (dynamic batch), checked against PyTorch before it is written.

    aed export --weights runs/cam/weights.pt --onnx student.onnx

The graph carries the input spec, smoothing and threshold in its metadata; ONNX Runtime, OpenVINO or
TensorRT can run it wherever PyTorch is not installed. ``aed detect --runtime onnx`` runs the same graph.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from aedcli.cli.options import ForceOpt, WeightsOpt
from aedcli.cli.output import consoles
from aedcli.errors import UsageError
from aedcli.model.weights import load_weights
from aedcli.resources import resolve_weights
from aedcli.runtime.onnx import DEFAULT_OPSET, export_onnx


def export(
    onnx: Annotated[
        Path, typer.Option("--onnx", metavar="FILE", help="Where to write the ONNX graph (.onnx).")
    ],
    weights: WeightsOpt = None,
    opset: Annotated[
        int, typer.Option("--opset", metavar="N", help="ONNX opset version (14 or newer).")
    ] = DEFAULT_OPSET,
    force: ForceOpt = False,
) -> None:
    """Export the student to ONNX with a dynamic batch axis; refused when it differs from PyTorch by more
    than 1e-4."""
    results, logs = consoles(None)
    if onnx.exists() and not force:
        raise UsageError(
            f"--onnx {onnx} already exists; pass --force to overwrite it or choose another path."
        )
    if onnx.suffix.lower() != ".onnx":
        raise UsageError(f"--onnx {onnx} should end in .onnx so that tools recognise it; rename it.")
    loaded = load_weights(resolve_weights(weights))
    with logs.status("exporting and checking against PyTorch"):
        report, _ = export_onnx(loaded, onnx, opset=opset)
    shape = "x".join(str(d) for d in report.input_shape)
    results.print(
        f"wrote {report.path} ({report.bytes / 2**20:.1f} MiB, opset {report.opset}, input x: {shape} "
        "float32, outputs s, m, l)",
        highlight=False,
        soft_wrap=True,
        markup=False,
    )
    results.print(
        f"max abs diff vs PyTorch: {report.max_abs_diff:.2e} at batch sizes "
        f"{', '.join(map(str, report.batches_checked))}; tolerance {report.tolerance:g}",
        highlight=False,
        soft_wrap=True,
    )
