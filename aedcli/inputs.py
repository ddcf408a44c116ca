"""The student's input: frame size, channels and the (t, t-3, t+3) stack, as one spec.

Training, ``eval``, ``detect`` and ``bench`` all build model input through :class:`InputSpec`, so the
channel order and scaling (method.md section 2: ``(x - 127) / 128``, stack order ``[t, t-3, t+3]``) are the
same everywhere.

>>> spec = InputSpec(height=240, width=360, channels=1)
>>> stacks = frame_stacks((spec.prepare(f) for f in frames), edges=spec.edges)   # (3, 240, 360) each
>>> x = spec.to_tensor(np.stack(batch))                        # (B, 3, 240, 360) float32
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np
import torch

from aedcli.video import EDGES

STACK_ORDER = ("t", "t-offset", "t+offset")


@dataclass(frozen=True)
class InputSpec:
    """Input size (pixels), channels per frame (1 gray, 3 BGR colour), the temporal offset of the stack and
    what a video's first and last ``offset`` frames get (``edges``, see :data:`aedcli.video.EDGES`).

    A stack that repeats frame t for a missing neighbour shows no motion on that side; a student scores such
    stacks 2-5 times higher than the rest of a normal video, so every video started with a false alarm.
    ``hold`` gives those frames the nearest full stack instead. Weights files written before ``edges``
    existed load with ``repeat``, the rule they were evaluated with.
    """

    height: int
    width: int
    channels: int = 1
    offset: int = 3
    edges: str = "hold"

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        if self.height < 16 or self.width < 16:
            raise ValueError(f"input size {self.height}x{self.width} is below the minimum of 16x16")
        if self.offset < 0:
            raise ValueError(f"the stack offset must be 0 or more frames, got {self.offset}")
        if self.edges not in EDGES:
            raise ValueError(f"edges must be one of {', '.join(EDGES)}, got {self.edges!r}")

    @property
    def in_channels(self) -> int:
        """Channels of the stacked network input: 3 frames x channels per frame."""
        return 3 * self.channels

    def prepare(self, frame: np.ndarray) -> np.ndarray:
        """Convert one decoded frame to this spec's colour mode and size (uint8, (H, W) or (H, W, 3))."""
        if self.channels == 1 and frame.ndim == 3:
            frame = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        elif self.channels == 3 and frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        if frame.shape[0] != self.height or frame.shape[1] != self.width:
            shrinking = frame.shape[0] > self.height
            interp = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
            frame = cv2.resize(frame, (self.width, self.height), interpolation=interp)
        return frame

    def to_array(self, stacks: np.ndarray) -> np.ndarray:
        """Batch of stacks (B, 3, H, W) or (B, 3, H, W, C) uint8 -> float32 (B, 3*C, H, W), scaled."""
        if stacks.ndim == 5:  # (B, 3, H, W, C) -> (B, 3, C, H, W) -> (B, 3*C, H, W)
            b, k, h, w, c = stacks.shape
            stacks = stacks.transpose(0, 1, 4, 2, 3).reshape(b, k * c, h, w)
        x = stacks.astype(np.float32)
        x -= 127.0
        x *= 1.0 / 128.0
        return x

    def to_tensor(self, stacks: np.ndarray) -> torch.Tensor:
        """Like :meth:`to_array`, as a torch tensor."""
        return torch.from_numpy(self.to_array(stacks))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InputSpec:
        sizes = {k: int(d[k]) for k in ("height", "width", "channels", "offset") if k in d}
        return cls(**sizes, edges=str(d.get("edges", "repeat")))  # files without it: the old rule
