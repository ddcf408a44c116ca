"""Running the student over frames: the one path shared by ``eval``, ``detect``, ``bench`` and training.

Frames stream through ``InputSpec.prepare`` (resize / colour) -> :func:`aedcli.video.frame_stacks`
(t, t-3, t+3) -> batches -> ``InputSpec.to_tensor`` -> the student under ``torch.inference_mode``, in bounded
memory (one batch of stacks plus the stack window). By default the network is an inference copy prepared by
:func:`aedcli.runtime.optimise_for_inference`: BatchNorm folded into the convolutions, channels-last and, on
CPU, oneDNN primitives with fused activations (same maps within float tolerance; about 2x faster on CPU).
Frame scores follow method.md section 5 via
:func:`aedcli.scoring.frame_scores` (Croitoru et al., arXiv 2211.15597).

>>> runner = StudentRunner(load_weights("weights.pt"), batch_size=16)
>>> for maps in runner.run(iter_frames("clip.mp4")):     # one BatchMaps per batch of frames
...     maps.s, maps.m, maps.l                             # (b,), (b, 4, 4), (b, 16, 16) numpy
>>> raw, maps16 = runner.score_clip(iter_frames("clip.mp4"))
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import NamedTuple

import numpy as np
import torch

from aedcli.inputs import InputSpec
from aedcli.scoring import frame_scores
from aedcli.student import Student
from aedcli.video import frame_stacks
from aedcli.weights import LoadedWeights


class BatchMaps(NamedTuple):
    """The student's maps for a batch of consecutive frames, as float32 numpy arrays."""

    s: np.ndarray  # (b,)
    m: np.ndarray  # (b, 4, 4)
    l: np.ndarray  # (b, 16, 16)  # noqa: E741


class StudentRunner:
    """Streams frames through a student; see the module docstring.

    ``device`` is ``"cpu"`` or ``"cuda"`` (or a torch device); ``fuse`` runs the optimised inference copy
    (same outputs within float tolerance, faster); ``fuse=False`` runs a plain eval-mode copy.
    """

    def __init__(
        self,
        weights: LoadedWeights,
        device: str | torch.device = "cpu",
        batch_size: int = 16,
        fuse: bool = True,
    ) -> None:
        self._setup(weights.model, weights.spec, device, batch_size, fuse)

    @classmethod
    def from_model(
        cls,
        model: Student,
        spec: InputSpec,
        device: str | torch.device = "cpu",
        batch_size: int = 16,
        fuse: bool = True,
    ) -> StudentRunner:
        """A runner for an in-memory student (training uses it to score validation video)."""
        runner = cls.__new__(cls)
        runner._setup(model, spec, device, batch_size, fuse)
        return runner

    def _setup(
        self, model: Student, spec: InputSpec, device: str | torch.device, batch_size: int, fuse: bool
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if model.config.in_channels != spec.in_channels:
            raise ValueError(
                f"student takes {model.config.in_channels} channels but the spec gives {spec.in_channels}"
            )
        self.device = torch.device(device)
        self.spec = spec
        self.batch_size = batch_size
        if fuse:
            # Imported here: aedcli.runtime builds its ONNX runner on this class.
            from aedcli.runtime import optimise_for_inference

            prepared = optimise_for_inference(model, device=self.device)
            self.memory_format = prepared.memory_format
            self.model = prepared.model
            return
        # Without it, copy too so the caller's module keeps its own mode and device. Channels-last
        # convolutions are 5-50% faster on CPU (more at larger batches).
        self.memory_format = torch.channels_last if self.device.type == "cpu" else torch.contiguous_format
        self.model = _eval_copy(model).to(self.device, memory_format=self.memory_format)

    def run(self, frames: Iterable[np.ndarray]) -> Iterator[BatchMaps]:
        """Yield the maps of consecutive batches of ``batch_size`` frames (the last may be shorter)."""
        spec, model, device, fmt = self.spec, self.model, self.device, self.memory_format
        stacks = frame_stacks((spec.prepare(f) for f in frames), offset=spec.offset, edges=spec.edges)
        buffer: np.ndarray | None = None  # (batch, 3, H, W[, C]) uint8, reused
        n = 0
        for stack in stacks:
            if buffer is None:
                buffer = np.empty((self.batch_size, *stack.shape), dtype=np.uint8)
            buffer[n] = stack
            n += 1
            if n == self.batch_size:
                yield _forward(model, spec, buffer, device, fmt)
                n = 0
        if n and buffer is not None:
            yield _forward(model, spec, buffer[:n], device, fmt)

    def score_clip(self, frames: Iterable[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Raw frame scores ``(N,)`` float64 and the L maps ``(N, 16, 16)`` float32 of one video."""
        scores: list[np.ndarray] = []
        maps16: list[np.ndarray] = []
        for maps in self.run(frames):
            scores.append(frame_scores(maps.s, maps.m, maps.l))
            maps16.append(maps.l)
        if not scores:
            return np.zeros(0), np.zeros((0, 16, 16), dtype=np.float32)
        return np.concatenate(scores), np.concatenate(maps16)


def _forward(
    model: torch.nn.Module,
    spec: InputSpec,
    stacks: np.ndarray,
    device: torch.device,
    fmt: torch.memory_format,
) -> BatchMaps:
    # inference_mode only around the call: a generator suspended inside the context would leave it on
    # for the caller's code between batches.
    with torch.inference_mode():
        x = (
            spec.to_tensor(stacks).to(device, non_blocking=True).contiguous(memory_format=fmt)
        )  # (b, 3C, H, W)
        s, m, l = model(x)  # noqa: E741
    return BatchMaps(s.float().cpu().numpy(), m.float().cpu().numpy(), l.float().cpu().numpy())


def _eval_copy(model: Student) -> Student:
    import copy

    return copy.deepcopy(model).eval()
