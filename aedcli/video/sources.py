"""Reading video: files, frame folders, cameras and streams, one frame at a time.

Every source streams ``numpy.uint8`` frames, ``(H, W)`` grayscale or ``(H, W, 3)`` BGR, one at a time:

>>> with open_video("Test001/", gray=True) as video:          # or "clip.mp4", 0, "rtsp://cam/live"
...     print(video.info.width, video.info.height, video.info.frame_count)
...     for frame in video.frames():
...         ...

Sources and how they end:

- A video file is decoded with OpenCV's FFmpeg backend. When the decoder stops more than
  ``max(2, 2%)`` frames short of the count the container reports, the file is taken as truncated or
  damaged: :meth:`VideoSource.frames` raises :class:`VideoError` ("breaks after frame 14 of 30"), or, with
  ``on_error="stop"``, ends quietly with ``truncated=True`` and ``frames_read`` set. What OpenCV does with
  damaged files: a cut ``.avi`` or ``.mkv`` whose header survives opens (reporting the full count) and decodes
  the frames before the cut, after which every read fails; an ``.mp4``/``.mov`` written by OpenCV keeps its
  index (``moov``) at the end, so any cut removes it and the file no longer opens at all (a
  :class:`VideoError` from :func:`open_video`); corrupt bytes inside an intact mp4 stop the decoder at the
  first bad frame. Reading stops at the first failed read and never retries, so the frames yielded for one
  file are always the same. A container that reports no count (or a live source) ends without a check.
- A folder of frames (``.tif .tiff .png .jpg .jpeg .bmp``, hidden and other files ignored) is read in
  natural order (``2.png`` before ``10.png``). Gaps in the numbering are allowed and listed in
  :attr:`VideoSource.missing_frames`; an unreadable frame or one whose size differs from the first breaks
  the stream like a damaged file does. Folders have no frame rate, so ``fps`` is 25 with
  ``fps_reported=False``.
- A camera index (``0`` or ``"0"``) or an ``rtsp://``, ``rtmp://`` or ``http(s)://`` URL is live and simply
  ends when the source stops sending. For URLs, opening and each read wait at most ``timeout_s`` seconds,
  so an unreachable address fails instead of hanging; passwords are masked in ``info.source`` and in error
  messages.

A source that decodes no frame at all always raises :class:`VideoError` from :func:`open_video`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal, TypeVar
from urllib.parse import urlsplit, urlunsplit

import cv2
import numpy as np

from aedcli.errors import VideoError

FRAME_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp")
STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https")
DEFAULT_FPS = 25.0
DEFAULT_TIMEOUT_S = 10.0

OnError = Literal["raise", "stop"]
T = TypeVar("T")


@dataclass(frozen=True)
class VideoInfo:
    """What is known about a source before reading it.

    ``channels`` is that of the frames as yielded (1 gray, 3 BGR); ``frame_count`` is ``None`` when unknown
    (live sources, containers without a count); ``fps_reported`` is ``False`` when the source gives no
    usable rate and ``fps`` fell back to 25.
    """

    source: str
    width: int
    height: int
    fps: float
    frame_count: int | None
    channels: int
    is_live: bool
    fps_reported: bool


class VideoSource:
    """An open source of frames; a context manager. Build one with :func:`open_video`.

    After (or during) iteration: ``frames_read`` counts the frames yielded, ``truncated`` says the source
    broke before its end, ``stop_reason`` holds the error sentence for that break, and ``missing_frames``
    lists numbers absent from a frame folder's numbering.
    """

    info: VideoInfo

    def __init__(self, info: VideoInfo, first_frame: np.ndarray, on_error: OnError) -> None:
        self.info = info
        self.frames_read = 0
        self.truncated = False
        self.stop_reason: str | None = None
        self.missing_frames: tuple[int, ...] = ()
        self._on_error = on_error
        # The first frame is decoded while opening (to learn the size and catch sources that decode
        # nothing) and handed out first; afterwards only the current frame is held.
        self._pending: np.ndarray | None = first_frame
        self._started = False

    def frames(self) -> Iterator[np.ndarray]:
        """Yield the frames in order, each converted to ``info.channels``; a source is read once."""
        if self._started:
            raise RuntimeError(f"frames of {self.info.source} were already read; open the source again")
        self._started = True
        while True:
            if self._pending is not None:
                frame, self._pending = self._pending, None
            else:
                try:
                    frame = self._read_next()
                except VideoError as exc:
                    self.truncated = True
                    self.stop_reason = str(exc)
                    if self._on_error == "raise":
                        raise
                    return
                if frame is None:
                    return
            self.frames_read += 1
            yield to_channels(frame, self.info.channels)

    def close(self) -> None:
        """Release the underlying reader; safe to call twice."""

    def _read_next(self) -> np.ndarray | None:
        """The next decoded frame, ``None`` at a clean end, :class:`VideoError` at a break."""
        raise NotImplementedError

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def open_video(
    source: str | Path | int,
    *,
    gray: bool | None = None,
    on_error: OnError = "raise",
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> VideoSource:
    """Open a video file, frame folder, camera index or stream URL (see the module docstring).

    ``gray=True`` yields ``(H, W)`` frames, ``gray=False`` ``(H, W, 3)`` BGR, ``None`` what the source has
    (gray frame folders stay gray; video files decode to BGR). ``on_error="stop"`` ends a stream that breaks
    midway quietly instead of raising. ``timeout_s`` bounds opening and each read of a stream URL. An ``int``
    or a string of digits is a camera index; a :class:`~pathlib.Path` is always a path, even one named ``0``.
    """
    if on_error not in ("raise", "stop"):
        raise ValueError(f"on_error must be 'raise' or 'stop', got {on_error!r}")
    if isinstance(source, int) or (isinstance(source, str) and source.strip().isdigit()):
        return _open_camera(int(source), gray, on_error)
    if isinstance(source, str) and "://" in source:
        return _open_stream(source, gray, on_error, timeout_s)
    path = Path(source).expanduser()
    if path.is_dir():
        return _FolderSource.from_folder(path, gray, on_error)
    if not path.exists():
        raise VideoError(
            f"Video source {path} does not exist; check the path, or pass a camera index such as 0 "
            f"or an rtsp:// URL."
        )
    return _open_file(path, gray, on_error)


def iter_frames(
    source: str | Path | int,
    gray: bool | None = None,
    *,
    on_error: OnError = "raise",
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> Iterator[np.ndarray]:
    """Yield the frames of ``source``, closing it when the loop ends: ``for f in iter_frames("a.mp4")``."""
    with open_video(source, gray=gray, on_error=on_error, timeout_s=timeout_s) as video:
        yield from video.frames()


def to_channels(frame: np.ndarray, channels: int) -> np.ndarray:
    """Convert a uint8 frame (gray, gray with a channel axis, BGR or BGRA) to 1 or 3 channels."""
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if channels == 1:
        if frame.ndim == 2:
            return frame
        code = cv2.COLOR_BGRA2GRAY if frame.shape[2] == 4 else cv2.COLOR_BGR2GRAY
        return cv2.cvtColor(frame, code)
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    return frame


# --- video files, cameras and streams (OpenCV VideoCapture) ---


class _CaptureSource(VideoSource):
    def __init__(
        self,
        cap: cv2.VideoCapture,
        info: VideoInfo,
        first_frame: np.ndarray,
        on_error: OnError,
    ) -> None:
        super().__init__(info, first_frame, on_error)
        self._cap: cv2.VideoCapture | None = cap

    def _read_next(self) -> np.ndarray | None:
        if self._cap is None:
            raise RuntimeError(f"{self.info.source} was closed while its frames were being read")
        ok, frame = self._cap.read()
        if ok:
            return frame
        expected = self.info.frame_count
        if expected is not None and self.frames_read < expected - _count_tolerance(expected):
            raise VideoError(
                f"Video {self.info.source} breaks after frame {self.frames_read} of {expected} (truncated or "
                "damaged file); re-encode or re-download it."
            )
        return None

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


def _count_tolerance(reported: int) -> int:
    # Containers without a stored count (mkv, some streams) report duration x fps, which can be off by a
    # frame or two, or more when an audio track is longer than the video.
    return max(2, reported // 50)


def _open_file(path: Path, gray: bool | None, on_error: OnError) -> VideoSource:
    if path.stat().st_size == 0:
        raise VideoError(f"Video file {path} is empty (0 bytes); pass a complete video file.")
    cap = cv2.VideoCapture(str(path), _backend())
    if not cap.isOpened():
        raise VideoError(
            f"{path} is neither a video OpenCV can decode nor a folder of frames (an .mp4 cut short loses "
            f"its index and cannot be opened); pass a complete video file or a folder of images."
        )
    if _fourcc(cap) == "ansi":  # FFmpeg renders plain text files as 'ANSI art' video
        cap.release()
        raise VideoError(f"{path} is a text file, not a video; pass a video file or a folder of frames.")
    ok, first = cap.read()
    if not ok:
        cap.release()
        raise VideoError(
            f"Video {path} opens but decodes no frames; the file is empty or damaged, re-encode or "
            f"re-download it."
        )
    info = _capture_info(str(path), cap, first, gray, _reported_count(cap), is_live=False)
    return _CaptureSource(cap, info, first, on_error)


def _open_camera(index: int, gray: bool | None, on_error: OnError) -> VideoSource:
    cap = cv2.VideoCapture(index)
    if not cap.isOpened():
        raise VideoError(
            f"Camera {index} cannot be opened; check that it is connected and not used by another program, "
            f"or pass another index."
        )
    ok, first = cap.read()
    if not ok:
        cap.release()
        raise VideoError(f"Camera {index} opens but sends no frames; check the device or pass another index.")
    info = _capture_info(f"camera {index}", cap, first, gray, None, is_live=True)
    return _CaptureSource(cap, info, first, on_error)


def _open_stream(url: str, gray: bool | None, on_error: OnError, timeout_s: float) -> VideoSource:
    shown = _mask_password(url)
    scheme = urlsplit(url).scheme.lower()
    if scheme not in STREAM_SCHEMES:
        raise VideoError(
            f"Stream {shown} uses the unsupported scheme '{scheme}://'; use one of "
            f"{', '.join(s + '://' for s in STREAM_SCHEMES)} or a local path."
        )
    timeout_ms = max(1, int(timeout_s * 1000))
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms]
    cap = cv2.VideoCapture(url, _backend(), params)
    if not cap.isOpened():
        raise VideoError(
            f"Stream {shown} cannot be opened within {timeout_s:g} s; check the address and that the "
            f"server is reachable, or allow a longer timeout."
        )
    ok, first = cap.read()
    if not ok:
        cap.release()
        raise VideoError(
            f"Stream {shown} opens but sends no frame within {timeout_s:g} s; check that it is "
            f"broadcasting, or allow a longer timeout."
        )
    # A file served over http has a count; a live stream has none.
    info = _capture_info(shown, cap, first, gray, _reported_count(cap), is_live=True)
    return _CaptureSource(cap, info, first, on_error)


def _capture_info(
    source: str,
    cap: cv2.VideoCapture,
    first: np.ndarray,
    gray: bool | None,
    frame_count: int | None,
    is_live: bool,
) -> VideoInfo:
    fps = cap.get(cv2.CAP_PROP_FPS)
    # 0 or NaN means the container does not say; 1000 and more is a timebase, not a frame rate.
    fps_reported = math.isfinite(fps) and 0 < fps < 1000
    native = 1 if first.ndim == 2 or first.shape[2] == 1 else 3
    return VideoInfo(
        source=source,
        width=int(first.shape[1]),
        height=int(first.shape[0]),
        fps=float(fps) if fps_reported else DEFAULT_FPS,
        frame_count=frame_count,
        channels=native if gray is None else (1 if gray else 3),
        is_live=is_live,
        fps_reported=fps_reported,
    )


def _reported_count(cap: cv2.VideoCapture) -> int | None:
    count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
    # Unknown counts come back as 0, -1 or huge negatives (a single image read as video).
    return round(count) if math.isfinite(count) and 0 < count < 2**31 else None


def _backend() -> int:
    # Pinning FFmpeg keeps OpenCV's image-sequence reader from taking paths such as "frame_001.png" as
    # patterns, and it is the backend that honours the open/read timeouts.
    return cv2.CAP_FFMPEG if cv2.videoio_registry.hasBackend(cv2.CAP_FFMPEG) else cv2.CAP_ANY


def _fourcc(cap: cv2.VideoCapture) -> str:
    code = int(cap.get(cv2.CAP_PROP_FOURCC))
    return code.to_bytes(4, "little").decode("latin-1").lower()


def _mask_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


# --- folders of frames ---


class _FolderSource(VideoSource):
    def __init__(
        self,
        folder: Path,
        files: list[Path],
        info: VideoInfo,
        first_frame: np.ndarray,
        on_error: OnError,
    ) -> None:
        super().__init__(info, first_frame, on_error)
        self._folder = folder
        self._files = files
        self._next = 1  # files[0] was decoded while opening
        self.missing_frames = _missing_numbers(files)

    @classmethod
    def from_folder(cls, folder: Path, gray: bool | None, on_error: OnError) -> _FolderSource:
        files = frame_files(folder)
        if not files:
            raise VideoError(
                f"Folder {folder} holds no frames ({' '.join(FRAME_SUFFIXES)}); pass a folder of images or "
                f"a video file."
            )
        # IMREAD_ANYCOLOR keeps gray images 2-D, so a gray folder stays gray when gray is None.
        flags = cv2.IMREAD_ANYCOLOR if gray is None else (cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR)
        first = _read_image(files[0], flags)
        channels = (1 if first.ndim == 2 else 3) if gray is None else (1 if gray else 3)
        info = VideoInfo(
            source=str(folder),
            width=int(first.shape[1]),
            height=int(first.shape[0]),
            fps=DEFAULT_FPS,
            frame_count=len(files),
            channels=channels,
            is_live=False,
            fps_reported=False,
        )
        return cls(folder, files, info, first, on_error)

    def _read_next(self) -> np.ndarray | None:
        if self._next >= len(self._files):
            return None
        path = self._files[self._next]
        self._next += 1
        frame = _read_image(path, cv2.IMREAD_GRAYSCALE if self.info.channels == 1 else cv2.IMREAD_COLOR)
        if frame.shape[:2] != (self.info.height, self.info.width):
            raise VideoError(
                f"Frame {path} is {frame.shape[1]}x{frame.shape[0]} but the folder's first frame "
                f"{self._files[0].name} is {self.info.width}x{self.info.height}; resize or remove it."
            )
        return frame


def _read_image(path: Path, flags: int) -> np.ndarray:
    # Reading the bytes ourselves separates I/O errors from decoding errors and accepts non-ASCII paths
    # on every platform (cv2.imread does not on Windows).
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise VideoError(f"Frame {path} cannot be read ({exc.strerror}); check its permissions.") from exc
    frame = cv2.imdecode(data, flags) if data.size else None
    if frame is None:
        raise VideoError(f"Frame {path} is not a readable image; replace or delete it.")
    return frame


def frame_files(folder: Path) -> list[Path]:
    """The frames of a folder in reading order: visible image files, natural order, other files skipped."""
    files = [
        p
        for p in folder.iterdir()
        if p.suffix.lower() in FRAME_SUFFIXES and not p.name.startswith(".") and p.is_file()
    ]
    return sorted(files, key=lambda p: natural_key(p.name))


def natural_key(name: str) -> tuple[tuple[str | int, ...], str]:
    """Sort key ordering embedded numbers by value (``2.png`` before ``10.png``), case-insensitively."""
    # re.split with a group alternates text and digits, so position i always holds the same type; the
    # name itself breaks ties between names differing only in case or leading zeros.
    parts = re.split(r"(\d+)", name.lower())
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts)), name


def _missing_numbers(files: list[Path]) -> tuple[int, ...]:
    """Numbers absent between the first and last frame number; empty when frames are not numbered 1:1."""
    numbers = []
    for path in files:
        digits = re.findall(r"\d+", path.stem)
        if not digits:
            return ()
        numbers.append(int(digits[-1]))
    present = set(numbers)
    if len(present) != len(numbers):  # e.g. cam1_001.png and cam2_001.png: numbering is not per frame
        return ()
    return tuple(n for n in range(min(numbers), max(numbers) + 1) if n not in present)
