"""How the student runs at inference: optimised PyTorch or ONNX Runtime, behind one runner.

Both compute the function of the eval-mode :class:`aedcli.model.student.Student` (within float tolerance) and
stream frames through :class:`StudentRunner`, so ``eval``, ``detect`` and ``bench`` get the same scores
whichever runs. ``runtime="auto"`` takes ONNX Runtime on a CPU (when installed; about twice as fast at small
batches) and PyTorch on a GPU.

- :mod:`aedcli.runtime.runner`: frames -> stacks -> batches -> maps.
- :mod:`aedcli.runtime.optimise`: the PyTorch inference copy (BatchNorm folded, oneDNN, channels-last).
- :mod:`aedcli.runtime.onnx`: export to an ONNX graph, checked against PyTorch.
- :mod:`aedcli.runtime.session`: ONNX Runtime sessions.

>>> runner, info = make_runner(load_weights("weights.pt"), batch_size=16)
>>> raw, maps16 = runner.score_clip(iter_frames("clip.mp4"))
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from aedcli.errors import UsageError
from aedcli.model.weights import LoadedWeights
from aedcli.runtime.onnx import export_onnx, load_onnx_file
from aedcli.runtime.optimise import check_device, check_precision, optimise_for_inference, set_threads
from aedcli.runtime.runner import BatchMaps, StudentRunner
from aedcli.runtime.session import (
    CPU_CHUNK,
    OnnxStudent,
    onnx_session,
    onnxruntime_available,
    require_onnxruntime,
)

__all__ = ["RUNTIMES", "BatchMaps", "RunnerInfo", "StudentRunner", "make_runner", "resolve_runtime"]

RUNTIMES = ("auto", "torch", "onnx")


@dataclass
class RunnerInfo:
    """What a runner built by :func:`make_runner` does, for reports."""

    runtime: str
    device: str
    precision: str
    threads: int
    optimisations: list[str]
    notes: list[str]
    providers: list[str] = field(default_factory=list)


def resolve_runtime(runtime: str, device: str, precision: str = "fp32") -> str:
    """``auto`` -> ``onnx`` on a CPU in fp32 when onnxruntime is installed, else ``torch``."""
    if runtime not in RUNTIMES:
        raise UsageError(f"--runtime must be one of {', '.join(RUNTIMES)}, not '{runtime}'.")
    if runtime != "auto":
        return runtime
    on_cpu = torch.device(device).type == "cpu"
    return "onnx" if on_cpu and precision == "fp32" and onnxruntime_available() else "torch"


def make_runner(
    loaded: LoadedWeights,
    *,
    runtime: str = "auto",
    device: str = "cpu",
    batch_size: int = 16,
    precision: str = "fp32",
    threads: int | None = None,
    onnx_file: str | Path | None = None,
) -> tuple[StudentRunner, RunnerInfo]:
    """A runner for ``loaded`` with the chosen runtime, and a description of it.

    ``runtime="torch"``: the network of :func:`optimise_for_inference`. ``runtime="onnx"``: an ONNX Runtime
    session on ``onnx_file`` or, without one, on a graph exported from ``loaded`` in memory and checked
    against PyTorch (as ``aed export`` does).
    """
    torch_device = check_device(device)
    runtime = resolve_runtime(runtime, device, precision)
    check_precision(precision, torch_device, runtime)
    used_threads = set_threads(threads)
    if runtime == "onnx":
        require_onnxruntime("or use --runtime torch")
        if onnx_file is not None:
            model_bytes = load_onnx_file(onnx_file, loaded.spec)
        else:
            _, model_bytes = export_onnx(loaded, None)
        # One frame at a time, operators are short and waking idle threads dominates: let them spin. Larger
        # batches share the cores with the decoding and writing threads instead.
        spinning = batch_size == 1
        session = onnx_session(model_bytes, threads=threads, device=device, spinning=spinning)
        chunk = CPU_CHUNK if torch_device.type == "cpu" else None
        # Input batches are built on the host and handed to onnxruntime, which copies them to a GPU itself.
        runner = StudentRunner(OnnxStudent(session, chunk), loaded.spec, batch_size=batch_size)
        info = RunnerInfo(
            "onnx",
            device,
            precision,
            threads if threads is not None else os.cpu_count() or 1,
            [
                "onnxruntime graph optimisations: all",
                "batchnorm folded at export",
                f"idle threads {'spin' if spinning else 'sleep'}",
            ],
            [],
            list(session.get_providers()),
        )
        return runner, info
    prepared = optimise_for_inference(loaded.model, device=torch_device, precision=precision)
    runner = StudentRunner(
        prepared.model,
        loaded.spec,
        device=torch_device,
        memory_format=prepared.memory_format,
        batch_size=batch_size,
    )
    return runner, RunnerInfo("torch", device, precision, used_threads, prepared.applied, prepared.notes)
