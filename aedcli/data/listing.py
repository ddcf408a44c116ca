"""Finding clips on disk: frame folders, video files, natural order and cheap frame counts.

Dataset readers list clips without decoding them: a frame folder's length is the number of image files in it,
a video file's length is what its container reports. Decoding happens later, one frame at a time, through
:mod:`aedcli.video`.

>>> natural_sorted(["10.tif", "9.tif", "100.tif"])
['9.tif', '10.tif', '100.tif']
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from aedcli.errors import DatasetError
from aedcli.video import FRAME_SUFFIXES, frame_files, natural_key, open_video

# The same order and suffixes as the frame-folder reader, so mask i of a mask folder belongs to frame i.
IMAGE_SUFFIXES = frozenset(FRAME_SUFFIXES)
VIDEO_SUFFIXES = frozenset({".avi", ".mp4", ".mov", ".mkv", ".webm", ".mpg", ".mpeg", ".m4v", ".wmv"})


def natural_sorted(names: Iterable[str]) -> list[str]:
    """``names`` in natural order (see :func:`natural_key`)."""
    return sorted(names, key=natural_key)


def is_visible(path: Path) -> bool:
    """False for hidden entries such as macOS ``._001.tif`` resource forks, which are not frames."""
    return not path.name.startswith(".")


def is_image(path: Path) -> bool:
    """True for a visible image file that can be a frame or a mask."""
    return is_visible(path) and path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()


def is_video_file(path: Path) -> bool:
    """True for a visible file with a video container suffix."""
    return is_visible(path) and path.suffix.lower() in VIDEO_SUFFIXES and path.is_file()


def image_files(folder: Path) -> list[Path]:
    """The image files directly inside ``folder``, natural order; other files (``Thumbs.db``) are skipped."""
    return frame_files(folder)


def count_frames(source: Path) -> int:
    """Frames in a frame folder (image files) or a video file (the container's count, nothing decoded).

    Only when a container reports no count (some streams written without an index) are the frames read
    once to count them.
    """
    if source.is_dir():
        return len(image_files(source))
    with open_video(source) as video:
        if video.info.frame_count is not None and video.info.frame_count > 0:
            return int(video.info.frame_count)
        return sum(1 for _ in video.frames())


def video_fps(source: Path) -> float | None:
    """The frame rate a video file or frame folder reports, or ``None`` when it has none of its own."""
    with open_video(source) as video:
        return float(video.info.fps) if video.info.fps_reported else None


def is_gray_source(source: Path) -> bool:
    """True when the first frame of ``source`` is grayscale (one channel, or three equal channels)."""
    with open_video(source) as video:
        frame = next(iter(video.frames()), None)
    if frame is None:
        raise DatasetError(f"{source} has no frames; remove it or replace it with a readable video.")
    if frame.ndim == 2:
        return True
    # Grey footage stored in a colour codec decodes to three identical channels.
    return bool((frame[..., 0] == frame[..., 1]).all() and (frame[..., 1] == frame[..., 2]).all())


def find_clip_sources(folder: Path) -> list[Path]:
    """The clips in ``folder``: video files and sub-folders holding frames, in natural order.

    Hidden entries and stray non-video files are skipped; a sub-folder without image files is an error,
    since it most likely holds frames in a format that is not supported.
    """
    sources: list[Path] = []
    for name in natural_sorted(p.name for p in folder.iterdir() if is_visible(p)):
        path = folder / name
        if path.is_dir():
            if not image_files(path):
                raise DatasetError(
                    f"{path} holds no image frames ({', '.join(sorted(IMAGE_SUFFIXES))}); "
                    "put the frames of one video in it or remove it."
                )
            sources.append(path)
        elif is_video_file(path):
            sources.append(path)
    return sources


def clip_name(source: Path) -> str:
    """A clip's name: the folder name for frame folders, the file name without suffix for videos."""
    return source.name if source.is_dir() else source.stem
