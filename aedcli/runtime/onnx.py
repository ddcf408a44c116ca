"""ONNX export of the student: one graph with a dynamic batch axis, checked against PyTorch before writing.

The graph takes ``x`` float32 ``(B, 3*C, H, W)`` (the output of
:meth:`aedcli.model.inputs.InputSpec.to_tensor`: stack order ``[t, t-3, t+3]``, pixels scaled
``(x - 127) / 128``) and returns ``s (B, K)``, ``m (B, K, 4, 4)`` and ``l (B, K, 16, 16)``, the maps of
method.md section 2 for each of the K teachers (Croitoru et al., arXiv 2211.15597). ``H`` and ``W`` are fixed
to the weights' input size; ``B`` is free. BatchNorm is folded into the convolutions first
(:func:`aedcli.model.student.fuse_for_inference`), so the graph has no BatchNorm nodes.

ONNX has no adaptive pooling, and the heads pool an ``h x w`` grid (15 x 23 at 240 x 360) to 2 x 2, 4 x 4 and
16 x 16 cells whose windows overlap unevenly. During export each adaptive max-pool is therefore written as
max-reductions over PyTorch's own windows (rows ``floor(i*h/n) .. ceil((i+1)*h/n)``, then columns); a max over
a rectangle is a max of row maxima, so the result is identical. The window bounds are constants of the
graph, which is why the spatial size is fixed.

The exported graph is run with ONNX Runtime at two batch sizes (1 and 7 by default, neither the batch it was
traced with) and compared with the unfused PyTorch student; the file is written (atomically) only when the
largest absolute difference is within the tolerance. The input spec, smoothing sigma, threshold and variant
travel in the model's metadata (``aed.*`` keys), so a runner can use the file on its own.

>>> report = export_onnx(load_weights("weights.pt"), "student.onnx")
>>> report.max_abs_diff < 1e-4
True
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aedcli import __version__
from aedcli.errors import AedError, UsageError
from aedcli.files import atomic_path
from aedcli.model.inputs import InputSpec
from aedcli.model.student import Student, fuse_for_inference
from aedcli.model.weights import LoadedWeights
from aedcli.runtime.session import INPUT_NAME, OUTPUT_NAMES, onnx_providers, onnx_session, require_onnxruntime

DEFAULT_OPSET = 17
"""LayerNormalization is a single ONNX operator from opset 17 on (earlier opsets spell it out)."""

MIN_OPSET = 14
"""Scaled dot-product attention and the other operators the student needs export from opset 14 on."""

TOLERANCE = 1e-4
"""Largest absolute difference from PyTorch that an export may show on any output."""

CHECK_BATCHES = (1, 7)
"""Batch sizes the exported graph is run at: neither is the traced batch (2), so a baked-in size fails."""

METADATA_PREFIX = "aed."


# ---------------------------------------------------------------------------------------------------------
# Optional dependencies


def require_onnx() -> Any:
    """The ``onnx`` module, or an :class:`AedError` that says how to install it."""
    try:
        import onnx
    except ImportError:
        raise AedError(
            "ONNX export needs the 'onnx' package, which is not installed; install it with "
            "'pip install onnx'."
        ) from None
    return onnx


# ---------------------------------------------------------------------------------------------------------
# Adaptive max-pooling with constant windows


def adaptive_windows(size: int, cells: int) -> list[tuple[int, int]]:
    """PyTorch's adaptive-pooling windows ``[start, end)`` of ``cells`` cells over ``size`` positions."""
    return [((i * size) // cells, -((-(i + 1) * size) // cells)) for i in range(cells)]


def _static_adaptive_max_pool2d(
    x: torch.Tensor, output_size: int | Sequence[int | None], return_indices: bool = False
) -> torch.Tensor:
    """``F.adaptive_max_pool2d`` as slices and max-reductions whose bounds are plain integers."""
    if return_indices:
        raise NotImplementedError("export of adaptive max-pooling with indices is not supported")
    # int(): under the exporter's tracer the sizes are traced values; the graph must hold constants here.
    h, w = (int(v) for v in x.shape[-2:])
    oh, ow = (output_size, output_size) if isinstance(output_size, int) else output_size
    oh, ow = int(oh if oh is not None else h), int(ow if ow is not None else w)
    rows = torch.cat([x[..., a:b, :].amax(dim=-2, keepdim=True) for a, b in adaptive_windows(h, oh)], dim=-2)
    return torch.cat([rows[..., a:b].amax(dim=-1, keepdim=True) for a, b in adaptive_windows(w, ow)], dim=-1)


@contextlib.contextmanager
def static_adaptive_pooling() -> Iterator[None]:
    """Within the block, ``F.adaptive_max_pool2d`` is the constant-window form above (export only)."""
    original = F.adaptive_max_pool2d
    F.adaptive_max_pool2d = _static_adaptive_max_pool2d  # type: ignore[assignment]
    try:
        yield
    finally:
        F.adaptive_max_pool2d = original  # type: ignore[assignment]


class _MapsAsTuple(nn.Module):
    """The student with a plain tuple output (the exporter flattens it into three named outputs)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        s, m, l = self.model(x)  # noqa: E741
        return s, m, l


# ---------------------------------------------------------------------------------------------------------
# Export and verification


@dataclass
class ExportReport:
    """What :func:`export_onnx` wrote and how closely the graph matches PyTorch."""

    path: str | None
    opset: int
    input_shape: list[int | str]
    max_abs_diff: float
    diffs: dict[str, float]
    batches_checked: list[int]
    tolerance: float
    bytes: int
    seconds: float
    providers: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def onnx_metadata(spec: InputSpec, loaded: LoadedWeights | None = None) -> dict[str, str]:
    """The ``aed.*`` metadata stored in an exported graph (all values are JSON strings)."""
    meta: dict[str, Any] = {"input": spec.to_dict(), "format_version": 2, "aed_version": __version__}
    if loaded is not None:
        meta |= {
            "variant": loaded.variant,
            "config": loaded.config.to_dict(),
            "sigma": loaded.sigma,
            "threshold": loaded.threshold.to_dict() if loaded.threshold is not None else None,
            "weights": str(loaded.path) if loaded.path is not None else None,
        }
    return {METADATA_PREFIX + k: json.dumps(v) for k, v in meta.items()}


def read_onnx_metadata(model_bytes: bytes) -> dict[str, Any]:
    """The ``aed.*`` metadata of a serialised graph, keys without the prefix, values decoded."""
    onnx = require_onnx()
    proto = onnx.load_from_string(model_bytes)
    out: dict[str, Any] = {}
    for prop in proto.metadata_props:
        if prop.key.startswith(METADATA_PREFIX):
            try:
                out[prop.key[len(METADATA_PREFIX) :]] = json.loads(prop.value)
            except json.JSONDecodeError:
                out[prop.key[len(METADATA_PREFIX) :]] = prop.value
    return out


def max_opset() -> int:
    """Newest opset the installed exporter writes (20 when PyTorch does not say)."""
    try:
        from torch.onnx import _constants

        return int(_constants.ONNX_MAX_OPSET)
    except (ImportError, AttributeError):
        return 20


def student_to_onnx(
    model: Student,
    spec: InputSpec,
    *,
    opset: int = DEFAULT_OPSET,
    metadata: dict[str, str] | None = None,
) -> bytes:
    """Serialised ONNX graph of ``model`` (BatchNorm folded) at ``spec``'s size with a dynamic batch axis."""
    onnx = require_onnx()
    if opset < MIN_OPSET:
        raise UsageError(f"--opset {opset} is too old for the student's operators; use {MIN_OPSET} or newer.")
    if opset > max_opset():
        raise UsageError(
            f"--opset {opset} is newer than this PyTorch's ONNX exporter writes (up to {max_opset()}); "
            f"use {DEFAULT_OPSET}."
        )
    if model.config.in_channels != spec.in_channels:
        raise ValueError(f"student takes {model.config.in_channels} channels, the spec {spec.in_channels}")
    net = _MapsAsTuple(fuse_for_inference(model).cpu().float()).eval()
    # Traced with batch 2: with batch 1 the tracer may treat the size-1 axis as a constant.
    example = torch.zeros(2, spec.in_channels, spec.height, spec.width)
    dynamic = {name: {0: "batch"} for name in (INPUT_NAME, *OUTPUT_NAMES)}
    buffer = io.BytesIO()
    with (
        static_adaptive_pooling(),
        torch.no_grad(),
        warnings.catch_warnings(),
    ):
        # The tracer warns about the deliberate int() of sizes and the exporter about its own deprecation.
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                net,
                (example,),
                buffer,
                input_names=[INPUT_NAME],
                output_names=list(OUTPUT_NAMES),
                dynamic_axes=dynamic,
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
        except (ValueError, RuntimeError) as exc:
            if "opset" in str(exc).lower():
                raise UsageError(
                    f"--opset {opset} is not supported by this PyTorch's ONNX exporter ({exc}); "
                    f"use {DEFAULT_OPSET}."
                ) from None
            raise
    proto = onnx.load_from_string(buffer.getvalue())
    for key, value in (metadata or {}).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "aedcli"
    proto.producer_version = __version__
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def random_stack_input(spec: InputSpec, batch: int, seed: int = 0) -> torch.Tensor:
    """A batch of random frame stacks as the model sees them: uint8 pixels scaled by the spec."""
    rng = np.random.default_rng(seed)
    stacks = rng.integers(0, 256, size=(batch, 3, spec.height, spec.width, spec.channels), dtype=np.uint8)
    if spec.channels == 1:
        stacks = stacks[..., 0]
    return spec.to_tensor(stacks)


def compare_with_torch(
    model_bytes: bytes,
    model: Student,
    spec: InputSpec,
    batches: Sequence[int] = CHECK_BATCHES,
    *,
    seed: int = 0,
) -> dict[str, float]:
    """Largest absolute difference per output between ONNX Runtime and the eval-mode PyTorch student."""
    session = onnx_session(model_bytes, threads=None)
    reference = _eval_copy_on_cpu(model)
    diffs = dict.fromkeys(OUTPUT_NAMES, 0.0)
    for i, batch in enumerate(batches):
        x = random_stack_input(spec, batch, seed=seed + i)
        with torch.inference_mode():
            expected = [t.numpy() for t in reference(x)]
        got = session.run(list(OUTPUT_NAMES), {INPUT_NAME: x.numpy()})
        for name, e, g in zip(OUTPUT_NAMES, expected, got, strict=True):
            if g.shape != e.shape:
                raise AedError(
                    f"the exported graph gives {name} of shape {tuple(g.shape)} for batch {batch}, PyTorch "
                    f"{tuple(e.shape)}; the export is broken, please report it."
                )
            diffs[name] = max(diffs[name], float(np.max(np.abs(g.astype(np.float64) - e))) if e.size else 0.0)
    return diffs


def _eval_copy_on_cpu(model: Student) -> Student:
    import copy

    return copy.deepcopy(model).cpu().float().eval()


def export_onnx(
    loaded: LoadedWeights,
    out: str | Path | None,
    *,
    opset: int = DEFAULT_OPSET,
    tolerance: float = TOLERANCE,
    batches: Sequence[int] = CHECK_BATCHES,
) -> tuple[ExportReport, bytes]:
    """Export ``loaded`` to ``out`` (atomically) after checking it against PyTorch; ``out=None`` keeps it in
    memory. Returns the report and the serialised graph.

    Raises :class:`AedError` when the graph differs from PyTorch by more than ``tolerance`` (nothing is
    written then) and when ``onnx`` / ``onnxruntime`` are missing.
    """
    start = time.perf_counter()
    require_onnxruntime()  # fail before the (slower) export when the check cannot run
    model_bytes = student_to_onnx(
        loaded.model, loaded.spec, opset=opset, metadata=onnx_metadata(loaded.spec, loaded)
    )
    diffs = compare_with_torch(model_bytes, loaded.model, loaded.spec, batches)
    worst = max(diffs.values())
    if not math.isfinite(worst) or worst > tolerance:
        raise AedError(
            f"the exported graph differs from PyTorch by {worst:.3g} (more than {tolerance:g}), so "
            f"{out if out is not None else 'the graph'} was not written; try another --opset or report it."
        )
    path: Path | None = None
    if out is not None:
        path = Path(out).expanduser()
        with atomic_path(path) as tmp:
            tmp.write_bytes(model_bytes)
    report = ExportReport(
        path=str(path) if path is not None else None,
        opset=opset,
        input_shape=["batch", loaded.spec.in_channels, loaded.spec.height, loaded.spec.width],
        max_abs_diff=worst,
        diffs=diffs,
        batches_checked=list(batches),
        tolerance=tolerance,
        bytes=len(model_bytes),
        seconds=time.perf_counter() - start,
        providers=onnx_providers("cpu"),
    )
    return report, model_bytes


def load_onnx_file(path: str | Path, spec: InputSpec | None = None) -> bytes:
    """The bytes of an ``.onnx`` file written by ``aed export``, refusing one exported for another input."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise AedError(f"ONNX file {path} does not exist; write one with 'aed export --onnx {path}'.")
    model_bytes = path.read_bytes()
    try:
        meta = read_onnx_metadata(model_bytes)
    except Exception:  # protobuf's DecodeError and friends
        raise AedError(
            f"ONNX file {path} is not a readable ONNX model; re-create it with 'aed export'."
        ) from None
    stored = InputSpec.from_dict(meta["input"]) if isinstance(meta.get("input"), dict) else None
    if stored is None:
        raise AedError(
            f"ONNX file {path} carries no aed input spec in its metadata; re-create it with 'aed export'."
        )
    if spec is not None and spec != stored:
        raise UsageError(
            f"ONNX file {path} was exported for input {stored} but the weights expect {spec}; export it "
            "again from these weights."
        )
    return model_bytes
