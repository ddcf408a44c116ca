"""Training data: which normal footage trains and which validates, the pseudo-anomalies, and frame stacks.

- :func:`split_validation`: whole videos held out when there are many, else a time slice of each video;
- :func:`pseudo_anomaly_views`: every training part sped up and magnified (the student's pseudo-anomalies);
- :class:`FrameCache`: every recording's frames prepared for the student once (uint8, memory-mapped);
- :class:`StackDataset`: every frame of some clips as a (t, t-3, t+3) stack with its teachers' targets, with
  region mixing (:func:`region_mix`);
- :class:`EpochSampler`: a given number of items per epoch, drawn from shuffled passes over the data.

>>> train, val = split_validation(dataset.train, "auto", 0.15)
>>> views = pseudo_anomaly_views(train, speedups=(2, 3), zooms=(2.0,), seed=0)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset as TorchDataset
from torch.utils.data import Sampler

from aedcli.data.clips import Clip, sped_up, time_slice, zoomed
from aedcli.errors import DatasetError, UsageError
from aedcli.files import atomic_path
from aedcli.model.inputs import InputSpec
from aedcli.video import stack_indices

TargetArrays = tuple[np.ndarray, np.ndarray, np.ndarray]
"""Targets of many frames for K teachers: ``s (M, K)``, ``m (M, K, 4, 4)``, ``l (M, K, 16, 16)``."""

MIN_VIDEOS_TO_HOLD_OUT = 8
"""With at least this many training videos, ``auto`` validation holds out whole videos (one in eight)."""
MIN_CLIP_FRAMES = 7
"""A held-out slice or a pseudo-anomalous view needs a full stack (frames t - 3 .. t + 3) to show motion."""


def split_validation(clips: Sequence[Clip], rule: str, share: float) -> tuple[list[Clip], list[Clip]]:
    """``(training parts, validation parts)`` of the normal training ``clips``.

    ``videos`` holds out one video in eight (evenly spaced), ``slices`` the last ``share`` of every video,
    ``none`` nothing; ``auto`` takes ``videos`` when there are at least :data:`MIN_VIDEOS_TO_HOLD_OUT` videos
    and ``slices`` otherwise, so a single long recording trains and validates too.
    """
    clips = list(clips)
    if rule == "none":
        return clips, []
    if rule == "auto":
        rule = "videos" if len(clips) >= MIN_VIDEOS_TO_HOLD_OUT else "slices"
    if rule == "videos":
        if len(clips) < 2:
            raise UsageError("validation 'videos' needs at least two training videos; use 'slices'.")
        n = max(1, len(clips) // 8)
        picks = sorted({int((i + 1) * len(clips) / (n + 1)) for i in range(n)})
        return [c for i, c in enumerate(clips) if i not in picks], [clips[i] for i in picks]
    train: list[Clip] = []
    val: list[Clip] = []
    for clip in clips:
        held = round(clip.frame_count * share)
        cut = clip.frame_count - held
        if held < MIN_CLIP_FRAMES or cut < MIN_CLIP_FRAMES:
            train.append(clip)  # too short to cut into two parts that show motion: trains whole
            continue
        train.append(time_slice(clip, 0, cut))
        val.append(time_slice(clip, cut, clip.frame_count))
    return train, val


def pseudo_anomaly_views(
    clips: Sequence[Clip], speedups: Sequence[int], zooms: Sequence[float], seed: int
) -> list[Clip]:
    """Every clip played ``k`` times faster for each speed-up, and magnified ``z`` times for each zoom about a
    point drawn (with ``seed``) from the middle of the frame: the views the teachers score as
    pseudo-anomalies. A view too short to show motion (:data:`MIN_CLIP_FRAMES`) is left out."""
    rng = np.random.default_rng(seed)
    views = [sped_up(c, k) for k in speedups for c in clips if -(-c.frame_count // k) >= MIN_CLIP_FRAMES]
    for z in zooms:
        for c in clips:
            centre = (float(rng.uniform(0.3, 0.7)), float(rng.uniform(0.3, 0.7)))
            if c.frame_count >= MIN_CLIP_FRAMES:
                views.append(zoomed(c, z, centre))
    return views


class FrameCache:
    """Each recording's frames (or a magnified view of it) prepared by the input spec, in one ``.npy`` file
    each (uint8, written atomically, memory-mapped when read). A clip's frames are then indices into its
    recording's file."""

    def __init__(self, folder: Path, spec: InputSpec) -> None:
        self.folder = Path(folder) / f"frames_{spec.height}x{spec.width}x{spec.channels}"
        self.spec = spec

    def path(self, clip: Clip) -> Path:
        if clip.zoom == 1.0:
            return self.folder / f"{clip.recording}.npy"
        y, x = clip.centre
        name = f"{clip.recording}_z{clip.zoom:g}_{y:.3f}_{x:.3f}"
        return self.folder / f"{name}.npy"

    def build(self, recordings: Sequence[Clip], views: Sequence[Clip] = ()) -> None:
        """Write the files of ``recordings`` (whole training videos) and of the magnified ``views``."""
        by_path: dict[Path, Clip] = {self.path(c): c for c in recordings}
        whole = {c.name: c for c in recordings}
        for view in views:
            if view.zoom != 1.0:
                source = whole[view.recording]
                by_path[self.path(view)] = zoomed(source, view.zoom, view.centre)
        for path, clip in by_path.items():
            self._write(path, clip)

    def _write(self, path: Path, clip: Clip) -> None:
        spec = self.spec
        shape = (clip.frame_count, spec.height, spec.width) + (() if spec.channels == 1 else (3,))
        if path.is_file():
            try:
                if np.load(path, mmap_mode="r").shape == shape:
                    return
            except (ValueError, OSError):
                pass  # damaged: rebuilt
        with atomic_path(path) as tmp:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
            n = 0
            for frame in clip.frames(gray=spec.channels == 1):
                if n == clip.frame_count:
                    n += 1
                    break
                out[n] = spec.prepare(frame)
                n += 1
            out.flush()
            del out
            if n != clip.frame_count:
                raise DatasetError(
                    f"video '{clip.name}' ({clip.path}) does not have the {clip.frame_count} frames the "
                    "dataset lists; check that the video is complete and not being written to."
                )


def region_mix(
    stack: np.ndarray,
    targets: tuple[np.ndarray, np.ndarray, np.ndarray],
    patch_stack: np.ndarray,
    patch_targets: tuple[np.ndarray, np.ndarray, np.ndarray],
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Paste a rectangle of one frame stack into another, and the same rectangle of its targets.

    The rectangle is one or two cells high and wide on the 4x4 target grid, at a random place: ``m`` takes
    the patch's cells there, ``l`` the 16x16 cells under them, the stack the pixels under them (rows and
    columns split evenly), and ``s`` (the whole map's peak) becomes the max of the new ``l``, per teacher.
    The targets say what the teachers say of each part, as the teachers' scores are local. Returns
    ``(stack, s, m, l)``, new arrays; targets carry a leading teacher axis.
    """
    _, m, l = targets  # noqa: E741
    _, pm, pl = patch_targets
    grid, fine = m.shape[-1], l.shape[-1]
    per = fine // grid
    height, width = stack.shape[1:3]
    rows, cols = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    r0, c0 = int(rng.integers(0, grid - rows + 1)), int(rng.integers(0, grid - cols + 1))
    y0, y1 = r0 * height // grid, (r0 + rows) * height // grid
    x0, x1 = c0 * width // grid, (c0 + cols) * width // grid
    out = stack.copy()
    out[:, y0:y1, x0:x1] = patch_stack[:, y0:y1, x0:x1]
    m, l = m.copy(), l.copy()  # noqa: E741
    m[..., r0 : r0 + rows, c0 : c0 + cols] = pm[..., r0 : r0 + rows, c0 : c0 + cols]
    fr, fc = slice(r0 * per, (r0 + rows) * per), slice(c0 * per, (c0 + cols) * per)
    l[..., fr, fc] = pl[..., fr, fc]
    s = l.reshape(*l.shape[:-2], -1).max(axis=-1).astype(l.dtype)
    return out, s, m, l


class StackDataset(TorchDataset):
    """Every frame of ``clips`` as a (t, t-3, t+3) stack of prepared uint8 frames, with its targets.

    Item i -> ``(stack,)`` or ``(stack, s (K,), m (K, 4, 4), l (K, 16, 16))``. A clip's stacks follow the
    stacking rule (:func:`aedcli.video.stack_indices`) within the clip, read from its recording's cache file:
    a sped-up view by ``k`` reads (t, t-3k, t+3k). ``mix`` > 0 pastes a rectangle of a view (sped-up or
    magnified) of the same recording into that share of the plain frames (:func:`region_mix`), drawn afresh
    each epoch (:meth:`set_epoch`) from ``seed``, epoch and item, so a resumed run mixes as an
    uninterrupted one would. The cache files are memory-mapped lazily, so loader workers open their own.
    """

    def __init__(
        self,
        clips: Sequence[Clip],
        cache: FrameCache,
        offset: int,
        targets: TargetArrays | None = None,
        *,
        mix: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.clips = list(clips)
        self.paths = [cache.path(c) for c in self.clips]
        self.offset = offset
        counts = [c.frame_count for c in self.clips]
        self.clip_of = np.repeat(np.arange(len(counts)), counts)  # (M,)
        self.t_of = np.concatenate([np.arange(n) for n in counts]) if counts else np.zeros(0, np.int64)
        self.targets = targets
        if targets is not None and len(targets[0]) != len(self.clip_of):
            raise ValueError(f"{len(targets[0])} targets for {len(self.clip_of)} frames")
        self.mix, self.seed, self.epoch = mix, seed, 0
        self.patches: dict[int, np.ndarray] = {}  # plain clip -> items of its recording's views
        if mix > 0:
            plain = [i for i, c in enumerate(self.clips) if c.step == 1 and c.zoom == 1.0]
            views = np.flatnonzero([not (c.step == 1 and c.zoom == 1.0) for c in self.clips])
            view_items = np.flatnonzero(np.isin(self.clip_of, views))
            recording = np.asarray([c.recording for c in self.clips])
            for i in plain:
                same = view_items[recording[self.clip_of[view_items]] == self.clips[i].recording]
                self.patches[i] = same
            if targets is None:
                raise ValueError("region mixing needs targets")
        self._frames: list[np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.clip_of)

    def set_epoch(self, epoch: int) -> None:
        """Draw this epoch's mixing (the same for a resumed run as for an uninterrupted one)."""
        self.epoch = epoch

    def stack(self, i: int) -> np.ndarray:
        """Item ``i``'s uint8 stack ``(3, H, W[, C])``."""
        if self._frames is None:
            self._frames = [np.load(p, mmap_mode="r") for p in self.paths]
        c, t = int(self.clip_of[i]), int(self.t_of[i])
        clip = self.clips[c]
        rows = [clip.start + j * clip.step for j in stack_indices(t, clip.frame_count, self.offset)]
        return np.stack([self._frames[c][r] for r in rows])

    def __getitem__(self, i: int) -> tuple[np.ndarray, ...]:
        stack = self.stack(i)
        if self.targets is None:
            return (stack,)
        s, m, l = self.targets  # noqa: E741
        patches = self.patches.get(int(self.clip_of[i]))
        if patches is not None and len(patches):
            rng = np.random.default_rng([self.seed, self.epoch, i])
            if rng.random() < self.mix:
                j = int(patches[rng.integers(len(patches))])
                return region_mix(stack, (s[i], m[i], l[i]), self.stack(j), (s[j], m[j], l[j]), rng)
        return stack, s[i], m[i], l[i]


class EpochSampler(Sampler[int]):
    """The items of one epoch: ``items`` of them, whatever the data's size, drawn from shuffled passes over it
    (seeded by ``seed`` and the epoch, so a resumed run draws what an uninterrupted one would), and shared
    out among ``world`` processes (``rank`` takes every ``world``-th). Small data is seen several times an
    epoch, large data in part; the run sets ``items`` (fewer on short footage: ``TrainConfig.max_passes``).
    """

    def __init__(self, size: int, items: int, *, seed: int = 0, world: int = 1, rank: int = 0) -> None:
        if size < 1:
            raise ValueError("an epoch needs at least one item to draw from")
        self.size, self.items, self.seed, self.world, self.rank = size, items, seed, world, rank
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch])
        passes = -(-self.items * self.world // self.size)
        order = np.concatenate([rng.permutation(self.size) for _ in range(passes)])[: self.items * self.world]
        return iter(order[self.rank :: self.world].tolist())

    def __len__(self) -> int:
        return self.items
