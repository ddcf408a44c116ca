"""Running an exported student with ONNX Runtime: a session, and a callable that acts like the student.

>>> session = onnx_session(model_bytes, threads=2)
>>> maps = OnnxStudent(session)(x)      # StudentMaps, like the eval-mode student's within float tolerance
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from aedcli.errors import AedError, UsageError
from aedcli.model.student import StudentMaps

INPUT_NAME = "x"
OUTPUT_NAMES = ("s", "m", "l")

CPU_CHUNK = 8
"""Largest batch run at once on a CPU; bigger batches run in chunks of this many frames (their
full-resolution maps then stay in the last-level cache)."""


def require_onnxruntime(alternative: str = "") -> Any:
    """The ``onnxruntime`` module, or an :class:`AedError` that says how to install it (and ``alternative``,
    such as "or use --runtime torch", where the command has one)."""
    try:
        import onnxruntime
    except ImportError:
        other = f" {alternative}" if alternative else ""
        raise AedError(
            f"this needs the 'onnxruntime' package, which is not installed; install it with "
            f"'pip install onnxruntime'{other}."
        ) from None
    return onnxruntime


def onnxruntime_available() -> bool:
    """Whether ``onnxruntime`` can be imported."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def onnx_providers(device: str | torch.device) -> list[str]:
    """Execution providers for ``device`` that this onnxruntime has (CUDA first on a GPU)."""
    ort = _ort()
    available = ort.get_available_providers()
    wanted = ["CUDAExecutionProvider", "CPUExecutionProvider"] if str(device).startswith("cuda") else []
    wanted = wanted or ["CPUExecutionProvider"]
    return [p for p in wanted if p in available]


def _ort() -> Any:
    return require_onnxruntime()


def onnx_session(
    model: bytes | str | Path,
    *,
    threads: int | None = None,
    device: str | torch.device = "cpu",
    spinning: bool = False,
) -> Any:
    """An ``onnxruntime.InferenceSession`` with every graph optimisation, ``threads`` intra-op threads
    (``None``: onnxruntime's default, one per physical core) and a sequential executor.

    Without ``spinning``, idle worker threads sleep: the decoding and writing threads of ``aed detect`` (and
    whatever else runs on a small CPU) get the cores between operators. Spinning wakes them faster, which
    pays at batch 1."""
    ort = _ort()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1  # one chain of operators: parallelism is inside each operator
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    if threads is not None:
        options.intra_op_num_threads = int(threads)
    providers = onnx_providers(device)
    if str(device).startswith("cuda") and "CUDAExecutionProvider" not in providers:
        raise UsageError(
            "--runtime onnx --device cuda needs onnxruntime-gpu, but this onnxruntime has no CUDA provider; "
            "install onnxruntime-gpu or use --runtime torch."
        )
    source = str(model) if isinstance(model, Path | str) else model
    index = torch.device(device).index
    chosen: list[Any] = [
        ("CUDAExecutionProvider", {"device_id": index}) if p == "CUDAExecutionProvider" and index else p
        for p in providers
    ]
    try:
        return ort.InferenceSession(source, options, providers=chosen)
    except Exception as exc:  # onnxruntime raises its own exception types for unreadable graphs
        name = f"ONNX file {model}" if isinstance(model, Path | str) else "the exported ONNX graph"
        raise AedError(
            f"{name} cannot be loaded by onnxruntime ({type(exc).__name__}); re-create it with 'aed export'."
        ) from None


class OnnxStudent:
    """Calls an ONNX session like the student: a float32 ``(B, 3*C, H, W)`` tensor in, maps out."""

    def __init__(self, session: Any, chunk: int | None = CPU_CHUNK) -> None:
        self.session = session
        self.chunk = chunk
        self._input = INPUT_NAME
        self._outputs = list(OUTPUT_NAMES)

    def __call__(self, x: torch.Tensor) -> StudentMaps:
        array = x.detach().cpu().numpy()
        if not array.flags.c_contiguous:  # onnxruntime reads the buffer as dense NCHW
            array = np.ascontiguousarray(array)
        if self.chunk is None or len(array) <= self.chunk:
            outputs = self.session.run(self._outputs, {self._input: array})
        else:  # see CPU_CHUNK
            parts = [
                self.session.run(self._outputs, {self._input: array[i : i + self.chunk]})
                for i in range(0, len(array), self.chunk)
            ]
            outputs = [np.concatenate(maps) for maps in zip(*parts, strict=True)]
        s, m, l = (torch.from_numpy(o) for o in outputs)  # noqa: E741
        return StudentMaps(s, m, l)
