"""Writing video: an mp4 that appears complete or not at all, H.264 where possible.

:class:`VideoWriter` encodes H.264 (``yuv420p``, the profile every web browser and phone plays) through PyAV,
which carries its own FFmpeg build, so nothing outside Python is needed. Where PyAV is not installed it falls
back to OpenCV's MPEG-4 Part 2 (``mp4v``), which desktop players open but browsers refuse; ``codec`` says
which one was used, and ``aed detect`` reports it in its summary.

>>> with VideoWriter("overlay.mp4", fps=25, size=(360, 240)) as out:
...     out.write(frame)                  # (240, 360) gray or (240, 360, 3) BGR uint8
>>> out.codec
'h264'
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from types import TracebackType
from typing import Any

import cv2
import numpy as np

from aedcli.errors import VideoError
from aedcli.files import atomic_path

DEFAULT_FPS = 25.0
H264 = "h264"
MP4V = "mp4v"
SINGLE_THREAD_PIXELS = 1280 * 720
"""Pictures up to this size are encoded on one thread (see :class:`_PyAvEncoder`)."""


def h264_available() -> bool:
    """Whether PyAV (with its bundled H.264 encoder) can be imported."""
    return importlib.util.find_spec("av") is not None


class VideoWriter:
    """Write BGR or gray frames of one size to a video file that appears only when the block succeeds.

    Frames go to a hidden temporary file beside ``path`` that is renamed to ``path`` when the ``with`` block
    ends cleanly and deleted when an exception escapes it. Missing parent folders are created. A writer
    closed without any frame leaves no file, since a video without frames cannot be played. ``fps <= 0``
    writes at 25 fps. ``codec`` is ``"h264"`` (PyAV, when installed) or ``"mp4v"`` (OpenCV); the default
    takes H.264 when it can. Both store ``yuv420p``, which needs even sizes: an odd width or height is padded
    by one pixel (a copy of the last column or row), where OpenCV alone would crop it away.
    """

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int], codec: str | None = None) -> None:
        width, height = (int(v) for v in size)
        if width <= 0 or height <= 0:
            raise ValueError(f"size must be positive (width, height), got {size}")
        if codec is None:
            codec = H264 if h264_available() else MP4V
        if codec not in (H264, MP4V):
            raise ValueError(f"codec must be '{H264}' or '{MP4V}', got {codec!r}")
        self.path = Path(path).expanduser()
        self.fps = float(fps) if math.isfinite(fps) and fps > 0 else DEFAULT_FPS
        self.size = (width, height)
        self.codec = codec
        self.frames_written = 0
        self._pad = (width % 2, height % 2)  # yuv420p needs even sizes
        self._encoder: _Encoder | None = None
        self._atomic = atomic_path(self.path)

    def __enter__(self) -> VideoWriter:
        try:
            tmp = self._atomic.__enter__()
        except OSError as exc:
            in_the_way = isinstance(exc, (FileExistsError, NotADirectoryError))
            reason = "a file stands where a folder is needed" if in_the_way else exc.strerror
            raise VideoError(
                f"Cannot write {self.path}: folder {self.path.parent} cannot be created or written to "
                f"({reason}); choose another output path."
            ) from exc
        try:
            stored = (self.size[0] + self._pad[0], self.size[1] + self._pad[1])
            self._encoder = (
                _PyAvEncoder(tmp, self.fps, stored)
                if self.codec == H264
                else _OpenCvEncoder(tmp, self.fps, stored)
            )
        except VideoError as error:
            self._atomic.__exit__(VideoError, error, None)  # deletes the temporary file
            raise
        return self

    def write(self, frame: np.ndarray) -> None:
        """Append one uint8 frame, ``(H, W)`` gray or ``(H, W, 3)`` BGR, of the declared size."""
        if self._encoder is None:
            raise RuntimeError("VideoWriter.write is only available inside its 'with' block")
        if frame.dtype != np.uint8 or frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] != 3):
            raise ValueError(f"frames must be uint8 (H, W) or (H, W, 3), got {frame.dtype} {frame.shape}")
        if (frame.shape[1], frame.shape[0]) != self.size:
            raise ValueError(
                f"frame is {frame.shape[1]}x{frame.shape[0]} but the writer was opened for "
                f"{self.size[0]}x{self.size[1]}"
            )
        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        if any(self._pad):
            frame = cv2.copyMakeBorder(frame, 0, self._pad[1], 0, self._pad[0], cv2.BORDER_REPLICATE)
        self._encoder.write(frame)
        self.frames_written += 1

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._encoder is not None:
            try:
                self._encoder.close(flush=exc_type is None)
            finally:
                self._encoder = None
        if exc_type is None and self.frames_written == 0:
            # Throwing into atomic_path makes it delete the temporary file; it returns False, not raising.
            exc_type, exc, tb = _NoFrames, _NoFrames(), None
        self._atomic.__exit__(exc_type, exc, tb)


class _NoFrames(Exception):
    """Signals :func:`atomic_path` to discard the file of a writer that received no frame."""


class _Encoder:
    def write(self, frame: np.ndarray) -> None:  # (H, W, 3) BGR uint8
        raise NotImplementedError

    def close(self, flush: bool) -> None:
        raise NotImplementedError


class _PyAvEncoder(_Encoder):
    """H.264 in an mp4 through PyAV: ``yuv420p``, x264's ``ultrafast`` preset, ``+faststart`` (the index
    first, so a browser can start playing before the whole file has arrived).

    ``ultrafast`` encodes about twice as fast as ``veryfast`` for files about twice as large at the same
    quality (crf 23): the overlay must keep up with the detector on a small CPU."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int]) -> None:
        from fractions import Fraction

        import av

        width, height = size  # even
        container: Any = None
        try:
            options = {"movflags": "+faststart"}
            container = av.open(str(path), mode="w", format="mp4", options=options)
            rate = Fraction(fps).limit_denominator(1001)
            self.stream: Any = container.add_stream("libx264", rate=rate)
        except Exception as exc:  # av.error.* or a build without libx264
            if container is not None:
                container.close()
            raise VideoError(
                f"Cannot write {path} as H.264 ({exc}); reinstall PyAV ('pip install av')."
            ) from exc
        self.container: Any = container
        self.stream.width = width
        self.stream.height = height
        self.stream.pix_fmt = "yuv420p"
        self.stream.options = {"preset": "ultrafast", "crf": "23"}
        if width * height <= SINGLE_THREAD_PIXELS:
            # Up to 720p one x264 thread keeps up with the detector and spends less CPU than several, which
            # on a small machine is CPU the network needs; larger pictures take x264's own threading.
            self.stream.codec_context.thread_count = 1
        self._frame_type = av.VideoFrame

    def write(self, frame: np.ndarray) -> None:
        # OpenCV's BGR -> I420 conversion (BT.601, as FFmpeg's default) costs less CPU than FFmpeg's scaler
        # (about 0.2 ms less for a 360x270 picture), and the overlay's frame rate depends on it.
        planes = cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420)
        picture = self._frame_type.from_ndarray(planes, format="yuv420p")
        for packet in self.stream.encode(picture):
            self.container.mux(packet)

    def close(self, flush: bool) -> None:
        try:
            if flush:
                for packet in self.stream.encode():
                    self.container.mux(packet)
        finally:
            self.container.close()


class _OpenCvEncoder(_Encoder):
    """MPEG-4 Part 2 (``mp4v``) through OpenCV: plays in desktop players, not in web browsers."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int]) -> None:
        self.writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*MP4V), fps, size, True)
        if not self.writer.isOpened():
            raise VideoError(f"OpenCV cannot write {path} with codec 'mp4v'; use a .mp4 or .avi name.")

    def write(self, frame: np.ndarray) -> None:
        self.writer.write(frame)

    def close(self, flush: bool) -> None:
        self.writer.release()
