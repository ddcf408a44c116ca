"""The student's input: frame size, channels and the (t, t-3, t+3) stack, as one spec.

Training, ``eval``, ``detect`` and ``bench`` all build model input through :class:`InputSpec`, so the
channel order and scaling (method.md section 2: ``(x - 127) / 128``, stack order ``[t, t-3, t+3]``) are the
same everywhere.

>>> spec = InputSpec(height=240, width=360, channels=1)
>>> stacks = frame_stacks((spec.prepare(f) for f in frames), offset=spec.offset)   # (3, 240, 360) each
>>> x = spec.to_tensor(np.stack(batch))                        # (B, 3, 240, 360) float32
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np
import torch

STACK_ORDER = ("t", "t-offset", "t+offset")
MAX_HEIGHT = 240
"""Default input height: footage taller than this is scaled down (aspect kept) before the student sees it."""


@dataclass(frozen=True)
class InputSpec:
    """Input size (pixels), channels per frame (1 gray, 3 BGR colour) and the temporal offset of the stack
    (frames t, t - offset, t + offset; :mod:`aedcli.video.stacks` has the rule for a video's ends)."""

    height: int
    width: int
    channels: int = 1
    offset: int = 3

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        if self.height < 16 or self.width < 16:
            raise ValueError(f"input size {self.height}x{self.width} is below the minimum of 16x16")
        if self.offset < 0:
            raise ValueError(f"the stack offset must be 0 or more frames, got {self.offset}")

    @classmethod
    def for_frames(cls, height: int, width: int, channels: int, offset: int = 3) -> InputSpec:
        """The default input for footage of ``height x width``: its own size, scaled down to at most
        :data:`MAX_HEIGHT` rows with the aspect kept, both sides a multiple of 8."""
        scale = min(1.0, MAX_HEIGHT / height)
        return cls(
            height=max(16, round(height * scale / 8) * 8),
            width=max(16, round(width * scale / 8) * 8),
            channels=channels,
            offset=offset,
        )

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
        # One pass through OpenCV (x / 128 - 127 / 128 in float32): about twice numpy's three passes.
        rows = np.ascontiguousarray(stacks).reshape(-1, stacks.shape[-1])
        x = np.empty(rows.shape, dtype=np.float32)
        cv2.addWeighted(rows, 1.0 / 128.0, rows, 0.0, -127.0 / 128.0, x, dtype=cv2.CV_32F)
        return x.reshape(stacks.shape)

    def to_tensor(self, stacks: np.ndarray) -> torch.Tensor:
        """Like :meth:`to_array`, as a torch tensor."""
        return torch.from_numpy(self.to_array(stacks))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InputSpec:
        return cls(**{k: int(d[k]) for k in ("height", "width", "channels", "offset")})
