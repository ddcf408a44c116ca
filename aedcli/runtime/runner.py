"""Running the student over frames: the one path shared by ``eval``, ``detect``, ``bench`` and training.

Frames stream through ``InputSpec.prepare`` (resize / colour) -> :func:`aedcli.video.frame_stacks`
(t, t-3, t+3) -> batches -> ``InputSpec.to_array`` -> the network, in bounded memory (one batch of stacks
plus the stack window). The network is any callable that maps a ``(B, 3C, H, W)`` tensor to
:class:`~aedcli.model.student.StudentMaps`: the optimised PyTorch student or an ONNX Runtime session (built by
:func:`aedcli.runtime.make_runner`), so every command scores a clip the same way. Frame scores follow
method.md section 5 via :func:`aedcli.scoring.frame_scores`.

>>> runner, info = make_runner(load_weights("weights.pt"), batch_size=16)
>>> for maps in runner.run(iter_frames("clip.mp4")):     # one BatchMaps per batch of frames
...     maps.s, maps.m, maps.l                             # (b, K), (b, K, 4, 4), (b, K, 16, 16) numpy
>>> raw, maps16 = runner.score_clip(iter_frames("clip.mp4"))
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple

import numpy as np
import torch

from aedcli.model.inputs import InputSpec
from aedcli.model.student import StudentMaps
from aedcli.scoring import frame_scores
from aedcli.video import frame_stacks

Forward = Callable[[torch.Tensor], StudentMaps]


class BatchMaps(NamedTuple):
    """The student's maps for a batch of consecutive frames, one set per teacher, as float32 numpy arrays."""

    s: np.ndarray  # (b, K)
    m: np.ndarray  # (b, K, 4, 4)
    l: np.ndarray  # (b, K, 16, 16)  # noqa: E741

    @property
    def scores(self) -> np.ndarray:
        """Raw frame scores ``(b,)`` float64 (:func:`aedcli.scoring.frame_scores`)."""
        return frame_scores(self.s, self.m, self.l)

    @property
    def finest(self) -> np.ndarray:
        """The 16x16 map of each frame, cell by cell the largest over the teachers: ``(b, 16, 16)``."""
        return self.l.max(axis=1)


class StudentRunner:
    """Streams frames through a network; see the module docstring.

    ``forward`` runs on ``device`` and takes inputs in ``memory_format``; batches hold ``batch_size`` frames.
    """

    def __init__(
        self,
        forward: Forward,
        spec: InputSpec,
        *,
        device: str | torch.device = "cpu",
        memory_format: torch.memory_format = torch.contiguous_format,
        batch_size: int = 16,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.forward = forward
        self.spec = spec
        self.device = torch.device(device)
        self.memory_format = memory_format
        self.batch_size = batch_size

    def run(self, frames: Iterable[np.ndarray]) -> Iterator[BatchMaps]:
        """Yield the maps of consecutive batches of ``batch_size`` frames (the last may be shorter)."""
        for x in self.batches(frames):
            yield self.run_array(x)

    def batches(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """The network inputs of consecutive batches of ``frames``: float32 ``(b, 3*C, H, W)``, each a new
        array, so a reader thread can build the next while the network runs on this one."""
        spec = self.spec
        stacks = frame_stacks((spec.prepare(f) for f in frames), offset=spec.offset)
        buffer: np.ndarray | None = None  # (batch, 3, H, W[, C]) uint8, reused
        n = 0
        for stack in stacks:
            if buffer is None:
                buffer = np.empty((self.batch_size, *stack.shape), dtype=np.uint8)
            buffer[n] = stack
            n += 1
            if n == self.batch_size:
                yield spec.to_array(buffer)
                n = 0
        if n and buffer is not None:
            yield spec.to_array(buffer[:n])

    def run_array(self, x: np.ndarray) -> BatchMaps:
        """The maps of one network input from :meth:`batches`."""
        # inference_mode only around the call: a generator suspended inside the context would leave it on
        # for the caller's code between batches.
        with torch.inference_mode():
            tensor = torch.from_numpy(x)  # (b, 3C, H, W)
            if self.device.type == "cuda":
                tensor = tensor.pin_memory()  # page-locked, so the copy to the GPU runs asynchronously
            tensor = tensor.to(self.device, non_blocking=True)
            s, m, l = self.forward(tensor.contiguous(memory_format=self.memory_format))  # noqa: E741
        return BatchMaps(s.float().cpu().numpy(), m.float().cpu().numpy(), l.float().cpu().numpy())

    def score_clip(self, frames: Iterable[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Raw frame scores ``(N,)`` float64 and the finest maps ``(N, 16, 16)`` float32 of one video."""
        scores: list[np.ndarray] = []
        maps16: list[np.ndarray] = []
        for maps in self.run(frames):
            scores.append(maps.scores)
            maps16.append(maps.finest)
        if not scores:
            return np.zeros(0), np.zeros((0, 16, 16), dtype=np.float32)
        return np.concatenate(scores), np.concatenate(maps16)
