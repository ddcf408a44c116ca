"""What ``aed detect`` reads and where its results go: sources, their names, and the output folder.

A source is a video file, a folder of frames, a camera index or a stream URL; a folder of videos (and of
frame folders) is every one of them, each scored on its own. Results of a source named ``<stem>`` go to
``<stem>_scores.csv``, ``<stem>_summary.json`` and, when asked for, ``<stem>_overlay.mp4`` and
``<stem>_timeline.png`` in one folder (by default ``<stem>_aed/`` beside the source). ``aed eval --scores``
reads ``<video>_scores.csv`` back by the same rule.

>>> list_sources("clips/")                 # [PosixPath('clips/a.mp4'), PosixPath('clips/b/'), ...]
>>> OutputPaths.plan(Path("out"), "a", overlay=True, plot=False).csv
PosixPath('out/a_scores.csv')
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from aedcli.errors import AedError, UsageError, VideoError
from aedcli.video import FRAME_SUFFIXES

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".mpg", ".mpeg", ".webm", ".wmv", ".flv", ".ts")
"""Files taken as videos when the source is a folder of videos."""

Source = str | Path | int


@dataclass(frozen=True)
class OutputPaths:
    """Where one source's results go; ``overlay`` / ``timeline`` are ``None`` when not asked for."""

    folder: Path
    csv: Path
    summary: Path
    overlay: Path | None = None
    timeline: Path | None = None

    @classmethod
    def plan(cls, folder: Path, stem: str, *, overlay: bool, plot: bool) -> OutputPaths:
        return cls(
            folder=folder,
            csv=folder / f"{stem}_scores.csv",
            summary=folder / f"{stem}_summary.json",
            overlay=folder / f"{stem}_overlay.mp4" if overlay else None,
            timeline=folder / f"{stem}_timeline.png" if plot else None,
        )

    def files(self) -> list[Path]:
        """Every file this run writes."""
        return [p for p in (self.csv, self.summary, self.overlay, self.timeline) if p is not None]


def is_camera(source: object) -> bool:
    return isinstance(source, int) or (isinstance(source, str) and source.strip().isdigit())


def is_url(source: object) -> bool:
    return isinstance(source, str) and "://" in source


def is_live(source: object) -> bool:
    return is_camera(source) or is_url(source)


def _has_frames(folder: Path) -> bool:
    return any(p.suffix.lower() in FRAME_SUFFIXES for p in folder.iterdir() if p.is_file())


def list_sources(source: Source) -> list[Source]:
    """The videos to process: the source itself, or every video and frame folder inside a folder.

    A folder whose files are frames is one source. A folder of videos (and frame folders) lists each of them.
    A folder that mixes loose frames with videos or frame folders is refused with a sentence naming what was
    found, since either reading would silently drop the rest.
    """
    if is_live(source):
        return [source]
    path = Path(source).expanduser()
    if not path.is_dir():
        return [path]  # a file (or a missing path: open_video explains)
    entries = [p for p in path.iterdir() if not p.name.startswith(".")]
    frames = sorted(p for p in entries if p.is_file() and p.suffix.lower() in FRAME_SUFFIXES)
    videos = [p for p in entries if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES]
    folders = [p for p in entries if p.is_dir() and _has_frames(p)]
    if frames and not videos and not folders:
        return [path]
    if frames:
        others = [*videos, *folders]
        raise VideoError(
            f"folder {path} mixes {len(frames)} frame image(s) (such as {frames[0].name}) with "
            f"{len(others)} video(s) or frame folder(s) (such as {others[0].name}); move the frames into a "
            "folder of their own, or pass one video or frame folder."
        )
    found = sorted([*videos, *folders], key=lambda p: p.name.lower())
    if not found:
        raise VideoError(
            f"folder {path} holds neither frames ({' '.join(FRAME_SUFFIXES)}) nor videos "
            f"({' '.join(VIDEO_SUFFIXES)}); pass a video file, a folder of frames or a folder of videos."
        )
    return list(found)


def safe_name(name: str) -> str:
    """A file-name stem: letters of any script, digits, ``.``, ``_`` and ``-`` kept, the rest ``_``."""
    return re.sub(r"[^\w.-]+", "_", name, flags=re.UNICODE).strip("_") or "video"


def source_stem(source: Source) -> str:
    """A file-name stem: the video's stem, the frame folder's name, ``camera0`` or ``<host>_<path>``."""
    if is_camera(source):
        return f"camera{int(source)}"
    if is_url(source):
        parts = urlsplit(str(source))
        path = PurePosixPath(parts.path)
        if path.suffix:  # a file served over http: drop its extension like a local file's
            path = path.with_suffix("")
        return safe_name("_".join([parts.hostname or "stream", *path.parts[1:]]))
    path = Path(source).expanduser()
    return safe_name(path.name if path.is_dir() else path.stem)


def default_out_dir(source: Source) -> Path:
    """``<stem>_aed/`` next to a file or folder; in the working folder for cameras and URLs."""
    if is_live(source):
        return Path.cwd() / f"{source_stem(source)}_aed"
    path = Path(source).expanduser()
    return path.parent / f"{source_stem(path)}_aed"


def unique_stems(sources: list[Source]) -> list[str]:
    """One stem per source, never two alike (``a.mp4`` and ``a.avi`` keep their extension)."""
    stems = [source_stem(s) for s in sources]
    named = [
        f"{stem}_{Path(str(s)).suffix.lstrip('.')}" if stems.count(stem) > 1 and Path(str(s)).suffix else stem
        for stem, s in zip(stems, sources, strict=True)
    ]
    unique: list[str] = []
    for name in named:
        candidate, k = name, 1
        while candidate in unique:
            k += 1
            candidate = f"{name}_{k}"
        unique.append(candidate)
    return unique


def check_outputs_free(paths: Iterable[OutputPaths], force: bool) -> None:
    """Refuse (:class:`UsageError`, naming the file) to overwrite an existing output unless ``force``."""
    for planned in paths:
        for path in planned.files():
            if path.is_dir():
                raise UsageError(f"output {path} is a folder; remove it or choose another --out.")
            if path.exists() and not force:
                raise UsageError(
                    f"output {path} already exists; pass --force to overwrite it or choose another --out."
                )


def make_out_dir(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; return those created, outermost first (AedError if not)."""
    if folder.is_dir():
        if not os.access(folder, os.W_OK | os.X_OK):
            raise AedError(
                f"output folder {folder} is not writable; pass --out with a folder you can write to."
            )
        return []
    if folder.exists():
        raise AedError(f"output folder {folder} is a file, not a folder; pass --out with a folder path.")
    missing: list[Path] = []  # innermost first
    for path in (folder, *folder.parents):
        if path.exists():
            break
        missing.append(path)
    try:
        folder.mkdir(parents=True)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise AedError(
            f"output folder {folder} cannot be created ({reason}); pass --out with a folder you can write to."
        ) from None
    return missing[::-1]


def remove_if_empty(folders: list[Path]) -> None:
    """Remove the folders (innermost first) that are still empty."""
    for folder in reversed(folders):
        with contextlib.suppress(OSError):
            folder.rmdir()  # fails (and is left alone) when anything is inside
