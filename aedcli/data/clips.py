"""What every dataset reader returns: :class:`Clip` (one video) and :class:`Dataset` (train and test clips).

Clips are cheap descriptions: a path, a frame count and the frame labels. Frames and pixel masks are read only
when :meth:`Clip.frames` / :meth:`Clip.masks` are iterated, one frame at a time.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from aedcli.data import labels as gt
from aedcli.errors import DatasetError
from aedcli.video import iter_frames

Split = Literal["train", "test"]

MaskKind = Literal["folder", "mat", "npy"]
"""How a clip's pixel masks are stored: ``folder`` = one image per frame (UCSD ``TestNNN_gt/*.bmp``, PNG),
``mat`` = a MATLAB file with a ``volLabel`` cell (Avenue), ``npy`` = an ``(N, H, W)`` array (ShanghaiTech)."""


@dataclass(frozen=True)
class Clip:
    """One video of a dataset.

    ``labels`` is ``(frame_count,) uint8`` with 1 for abnormal frames, or ``None`` when the clip has no
    ground truth (training clips, unlabelled footage). ``masks_path`` and ``mask_kind`` locate optional
    per-pixel ground truth.

    A clip can also be a view of another one (``source`` then names it): frames ``start``, ``start + step``,
    ... of the recording (:func:`time_slice`, :func:`sped_up`), magnified ``zoom`` times about the point
    ``centre`` (fractions of the height and width; :func:`zoomed`). Sped-up and magnified views of normal
    training video are the pseudo-anomalies the student learns from.
    """

    name: str
    split: Split
    path: Path
    frame_count: int
    labels: np.ndarray | None = field(default=None, compare=False, repr=False)
    masks_path: Path | None = None
    mask_kind: MaskKind | None = None
    step: int = 1
    source: str | None = None
    start: int = 0
    zoom: float = 1.0
    centre: tuple[float, float] = (0.5, 0.5)

    def __post_init__(self) -> None:
        if self.labels is not None:
            # Clips are shared by every consumer of a dataset, so their labels are made read-only.
            labels = np.array(self.labels, dtype=np.uint8)
            labels.setflags(write=False)
            object.__setattr__(self, "labels", labels)
        if self.labels is not None and len(self.labels) != self.frame_count:
            raise DatasetError(
                f"the labels of video '{self.name}' ({self.path}) cover {len(self.labels)} frames but "
                f"the video has {self.frame_count}; give exactly one label per frame."
            )
        if (self.masks_path is None) != (self.mask_kind is None):
            raise ValueError("masks_path and mask_kind must be given together")
        if self.step < 1:
            raise ValueError(f"step must be 1 or more, got {self.step}")
        if self.start < 0 or self.zoom < 1.0:
            raise ValueError(f"start must be >= 0 and zoom >= 1, got {self.start} and {self.zoom}")

    @property
    def recording(self) -> str:
        """The name of the recording the frames come from (the clip's own for a plain clip)."""
        return self.source or self.name

    @property
    def has_labels(self) -> bool:
        return self.labels is not None

    @property
    def has_masks(self) -> bool:
        return self.masks_path is not None

    def stamp(self) -> str:
        """A digest of what the clip's frames are read from: file names, sizes and modification times.

        Caches made from a clip (boxes, scores) keep it and are rebuilt when it changes: a video replaced
        under the same name, or a development set drawn again into the same folder. The folder itself is not
        part of it, so a dataset moved elsewhere keeps its caches.
        """
        path = Path(self.path)
        if path.is_dir():
            files = sorted(f for f in path.iterdir() if f.is_file())
        else:
            files = [path] if path.is_file() else []
        view = f"step {self.step} start {self.start} zoom {self.zoom} centre {self.centre}"
        digest = hashlib.blake2b(view.encode(), digest_size=12)
        for f in files:
            st = f.stat()
            digest.update(f"|{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
        return digest.hexdigest()

    def frames(self, gray: bool | None = None) -> Iterator[np.ndarray]:
        """Stream the clip's frames (``uint8``; ``gray`` as in :func:`aedcli.video.iter_frames`)."""
        frames = iter_frames(self.path, gray=gray)
        if self.start or self.step != 1 or self.source is not None:
            stop = self.start + self.frame_count * self.step
            frames = itertools.islice(frames, self.start, stop, self.step)
        if self.zoom == 1.0:
            return frames
        return (magnify(f, self.zoom, self.centre) for f in frames)

    def masks(self) -> Iterator[np.ndarray] | None:
        """Stream ``(H, W) bool`` pixel masks, one per frame, or return ``None`` when the clip has none."""
        if self.masks_path is None:
            return None
        if self.mask_kind == "folder":
            return gt.iter_mask_folder(self.masks_path)
        if self.mask_kind == "mat":
            return gt.iter_volume_label_mat(self.masks_path, video=self.name)
        if self.mask_kind == "npy":
            return gt.iter_pixel_mask_npy(self.masks_path, video=self.name)
        raise ValueError(f"unknown mask kind {self.mask_kind!r}")


def magnify(frame: np.ndarray, zoom: float, centre: tuple[float, float]) -> np.ndarray:
    """The part of ``frame`` around ``centre`` (fractions of height and width) that is ``1 / zoom`` of its
    size, scaled back up to the whole frame: everything in it looks ``zoom`` times larger and moves that much
    faster in pixels."""
    h, w = frame.shape[:2]
    ch, cw = max(1, round(h / zoom)), max(1, round(w / zoom))
    y0 = min(max(0, round(centre[0] * h - ch / 2)), h - ch)
    x0 = min(max(0, round(centre[1] * w - cw / 2)), w - cw)
    return cv2.resize(frame[y0 : y0 + ch, x0 : x0 + cw], (w, h), interpolation=cv2.INTER_LINEAR)


def time_slice(clip: Clip, start: int, stop: int) -> Clip:
    """Frames ``start .. stop - 1`` of ``clip`` as a clip of their own, named ``<name>_f<start>-<stop>``."""
    if clip.source is not None:
        raise ValueError(f"clip '{clip.name}' is already a view of '{clip.source}'")
    if not 0 <= start < stop <= clip.frame_count:
        raise ValueError(
            f"frames {start}..{stop} are not inside the {clip.frame_count} frames of {clip.name}"
        )
    labels = None if clip.labels is None else clip.labels[start:stop]
    return replace(
        clip,
        name=f"{clip.name}_f{start}-{stop}",
        frame_count=stop - start,
        labels=labels,
        masks_path=None,
        mask_kind=None,
        source=clip.name,
        start=start,
    )


def zoomed(clip: Clip, zoom: float, centre: tuple[float, float] = (0.5, 0.5)) -> Clip:
    """``clip`` magnified ``zoom`` times about ``centre`` (:func:`magnify`), named ``<name>_z<zoom>``.

    Everything in it is ``zoom`` times larger and, in pixels per frame, faster than in the recording: a
    pseudo-anomaly of size as well as speed. Labels and masks are dropped (made from normal video only).
    """
    if zoom <= 1.0:
        raise ValueError(f"a zoom needs a factor above 1, got {zoom}")
    return replace(
        clip,
        name=f"{clip.name}_z{zoom:g}",
        labels=None,
        masks_path=None,
        mask_kind=None,
        source=clip.source or clip.name,
        zoom=zoom,
        centre=centre,
    )


def sped_up(clip: Clip, step: int) -> Clip:
    """``clip`` played ``step`` times faster: every ``step``-th frame, named ``<name>_x<step>``.

    Everything in it moves ``step`` times faster than in the recording, so a sped-up normal training video
    is a *pseudo-anomaly*: the teachers score its objects like any others, and the student learns from
    those targets what unusually fast motion looks like. Frame ``j`` of the result is frame ``j * step`` of
    ``clip``. Labels and masks are dropped (sped-up clips are made from normal training video only).
    """
    if step < 2:
        raise ValueError(f"a speed-up needs step 2 or more, got {step}")
    if clip.step != 1:
        raise ValueError(f"clip '{clip.name}' is already sped up")
    return replace(
        clip,
        name=f"{clip.name}_x{step}",
        frame_count=-(-clip.frame_count // step),
        labels=None,
        masks_path=None,
        mask_kind=None,
        step=step,
        source=clip.source or clip.name,
    )


def sped_up_clips(clips: list[Clip], steps: tuple[int, ...]) -> list[Clip]:
    """Every clip sped up by every step, step by step (``[c_x2, d_x2, c_x3, d_x3]`` for steps 2, 3)."""
    return [sped_up(c, k) for k in steps for c in clips]


@dataclass(frozen=True)
class Dataset:
    """A dataset: its normal training clips, its test clips, and how its frames look.

    ``gray`` says whether the frames are natively grayscale (the student then takes one channel per frame);
    ``fps`` is the recording rate, used when writing videos and converting times.
    """

    name: str
    root: Path
    train: list[Clip]
    test: list[Clip]
    gray: bool
    fps: float

    @property
    def has_labels(self) -> bool:
        """True when there are test clips and every one of them has frame labels."""
        return bool(self.test) and all(c.has_labels for c in self.test)

    @property
    def has_masks(self) -> bool:
        """True when there are test clips and every one of them has pixel masks."""
        return bool(self.test) and all(c.has_masks for c in self.test)

    def clip(self, name: str) -> Clip:
        """The clip called ``name`` (test clips first, then training clips)."""
        for c in (*self.test, *self.train):
            if c.name == name:
                return c
        raise DatasetError(
            f"dataset '{self.name}' at {self.root} has no video named '{name}'; check the name."
        )

    def require_labels(self) -> None:
        """Raise a :class:`DatasetError` naming the test clips without frame labels, if there are any."""
        if not self.test:
            raise DatasetError(
                f"dataset '{self.name}' at {self.root} has no test videos; add some under its test folder."
            )
        missing = [c.name for c in self.test if not c.has_labels]
        if missing:
            shown = ", ".join(f"'{n}'" for n in missing[:5]) + (" ..." if len(missing) > 5 else "")
            hint = (
                "add labels/<video>.txt (one 0/1 per frame, or 'start end' lines, 1-based)"
                if self.name in ("folder", "synthetic")
                else "restore the dataset's ground-truth files"
            )
            raise DatasetError(
                f"test videos {shown} of dataset '{self.name}' at {self.root} have no frame labels; "
                f"{hint} to evaluate them."
            )
