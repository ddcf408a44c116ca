"""A labelled development set made from a fixed camera's normal training video alone.

Choosing a detector's options on a benchmark's test labels would make its figures dishonest, and a synthetic
scene looks little like a real camera's. This module turns a dataset's *normal training videos* into a
development set with known anomalies, in the same scene:

- the last ``held_out`` training videos become test videos; the others stay training videos;
- into each held-out video, ``events`` times, the moving foreground of another held-out video is pasted for
  a stretch of frames, moving faster than anyone does in the footage. The events alternate between two kinds:

  - ``sped_up``: the foreground played ``speed`` times faster (frame ``t0 + j`` of the stretch shows the
    foreground of source frame ``s + speed * j``): people who move, legs and all, like a fast-forward;
  - ``gliding``: the foreground at its recorded rate, carried sideways by ``glide`` pixels per frame (at a
    frame height of 240, scaled to the video's): people who walk normally but travel like a cyclist or a
    skater.

With ``single``, one moving object of the source is pasted instead of all its foreground: a connected
foreground region drawn at the event's first source frame and followed from frame to frame by its nearest
region (the event ends early where it is lost), so that one fast object moves among the video's own people,
as in most benchmark anomalies.

A source frame's foreground is where it differs from the source video's per-pixel median by more than
``threshold`` grey levels (after a light blur), opened and slightly dilated, so the pasted pixels carry the
person and a thin rim of the same scene's background. A frame is abnormal when at least ``min_area`` (a
fraction of the frame) of pasted foreground lies in it, and the pasted foreground is its pixel mask.

The camera must not move between videos (one scene, as in UCSD Ped1/Ped2 or Avenue), since a pasted person
keeps the position it had in its own video. The set is written in the folder layout
(:mod:`aedcli.data.folder`; training videos linked, not copied) under ``$AED_CACHE/pasted-<name>-<hash>/``,
where the hash covers the config and the source clips, built in a temporary folder and renamed into place.
The held-out videos are read whole into memory together (events paste from one into another): the builder is
meant for short training clips such as a benchmark's (Ped2's four: 630 frames, about 50 MB with their masks).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from aedcli.data.clips import Clip, Dataset
from aedcli.data.folder import load_folder
from aedcli.data.synthetic import cache_root, cached_folder, write_frames
from aedcli.errors import DatasetError

# Part of the cache key: bump it whenever the builder's output changes for an unchanged config.
BUILDER_VERSION = 1
KINDS = ("sped_up", "gliding")


@dataclass(frozen=True)
class PastedConfig:
    """How the development set is made (see the module docstring)."""

    held_out: int = 4
    events: int = 2
    speeds: tuple[int, ...] = (3, 4)
    glides: tuple[float, ...] = (2.5, 3.5)
    threshold: float = 25.0
    min_area: float = 0.002
    seed: int = 0
    single: bool = False

    def __post_init__(self) -> None:
        if self.held_out < 2:
            raise ValueError(
                f"held_out must be 2 or more (a video's foreground comes from another), got {self.held_out}"
            )
        if self.events < 1 or not self.speeds or not self.glides:
            raise ValueError("events, speeds and glides must be non-empty")
        if min(self.speeds) < 2:
            raise ValueError(f"speeds must be 2 or more, got {self.speeds}")

    def cache_key(self, train: list[Clip]) -> str:
        sources = [(c.name, str(c.path.resolve()), c.frame_count) for c in train]
        blob = json.dumps({"v": BUILDER_VERSION, **asdict(self), "sources": sources}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


ONE_OBJECT = PastedConfig(single=True, events=3, speeds=(2, 3, 4), glides=(1.5, 2.5, 3.5))
"""One followed object per event at graded speeds: the development set ``--dataset devset:NAME`` reads."""


@dataclass(frozen=True)
class Event:
    """One pasted stretch: ``kind`` from ``source`` into frames ``start`` .. ``start + length - 1``."""

    kind: str
    source: int  # index into the held-out videos
    start: int
    length: int
    source_start: int
    rate: float  # speed (sped_up) or signed pixels per frame (gliding)


def load_pasted(
    dataset: Dataset, config: PastedConfig | None = None, cache_dir: Path | None = None
) -> Dataset:
    """Build the development set of ``dataset``'s training videos if it is not cached yet, then read it."""
    folder = build_pasted(dataset, config, cache_dir)
    loaded = load_folder(folder, name=f"{dataset.name}-pasted")
    return Dataset(loaded.name, loaded.root, loaded.train, loaded.test, gray=dataset.gray, fps=dataset.fps)


def build_pasted(dataset: Dataset, config: PastedConfig | None = None, cache_dir: Path | None = None) -> Path:
    """The folder holding the development set, written now when it does not exist yet."""
    cfg = config or PastedConfig()
    parent = Path(cache_dir) if cache_dir is not None else cache_root()
    return write_pasted(dataset, cfg, parent / f"pasted-{dataset.name}-{cfg.cache_key(dataset.train)}")


def write_pasted(dataset: Dataset, config: PastedConfig, out: Path) -> Path:
    """Write the development set into ``out`` (atomically; an existing ``out`` is returned as it is)."""
    if len(dataset.train) < config.held_out + 1:
        raise DatasetError(
            f"dataset '{dataset.name}' at {dataset.root} has {len(dataset.train)} training videos; a "
            f"development set holding {config.held_out} of them out needs at least {config.held_out + 1}; "
            "add training videos."
        )
    return cached_folder(out, lambda tmp: _write(dataset.train, config, tmp))


def plan_events(lengths: list[int], cfg: PastedConfig) -> list[list[Event]]:
    """The events of every held-out video (``lengths``: their frame counts), drawn from ``cfg.seed``.

    Video ``i``'s ``events`` split it into equal segments; each event fills the middle half of its segment
    (shorter when its source is too short to play it), so every video keeps normal frames before, between
    and after its events. Event ``j`` of video ``i`` takes its foreground from held-out video
    ``i + 1 + j`` (cyclically, never itself) and its kind alternates with ``i + j``.
    """
    rng = np.random.default_rng(cfg.seed)
    count = len(lengths)
    plan: list[list[Event]] = []
    n_event = 0
    for i, n in enumerate(lengths):
        segment = n // cfg.events
        events = []
        for j in range(cfg.events):
            source = (i + 1 + j % (count - 1)) % count
            kind = KINDS[(i + j) % len(KINDS)]
            if kind == "sped_up":
                rate: float = float(cfg.speeds[n_event % len(cfg.speeds)])
                step = int(rate)
            else:
                rate = cfg.glides[n_event % len(cfg.glides)] * (1 if rng.random() < 0.5 else -1)
                step = 1
            length = min(segment // 2, (lengths[source] - 1) // step + 1)
            start = j * segment + (segment - length) // 2
            span = (length - 1) * step + 1
            source_start = int(rng.integers(0, lengths[source] - span + 1))
            events.append(Event(kind, source, start, length, source_start, rate))
            n_event += 1
        plan.append(events)
    return plan


def foreground(frames: list[np.ndarray], threshold: float) -> Iterator[np.ndarray]:
    """``(H, W) bool`` moving-foreground masks of ``frames`` against their per-pixel median."""
    gray = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) if f.ndim == 3 else f for f in frames]
    background = cv2.GaussianBlur(np.median(np.stack(gray), axis=0).astype(np.uint8), (5, 5), 0)
    opening = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    dilation = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    for g in gray:
        mask = (cv2.absdiff(cv2.GaussianBlur(g, (5, 5), 0), background) > threshold).astype(np.uint8)
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, opening)
        yield cv2.dilate(mask, dilation).astype(bool)


def _shift(image: np.ndarray, dx: int) -> np.ndarray:
    """``image`` moved ``dx`` pixels to the right (left when negative), the uncovered side zero."""
    out = np.zeros_like(image)
    w = image.shape[1]
    if abs(dx) >= w:
        return out
    if dx >= 0:
        out[:, dx:] = image[:, : w - dx]
    else:
        out[:, :dx] = image[:, -dx:]
    return out


def source_frames(event: Event) -> list[int]:
    """The source frame shown at each step of ``event``."""
    step = int(event.rate) if event.kind == "sped_up" else 1
    return [event.source_start + step * j for j in range(event.length)]


def follow_one(
    masks: list[np.ndarray], frames: list[int], min_pixels: float, rng: np.random.Generator
) -> list[np.ndarray]:
    """One object's masks at ``frames`` of a source: a region of at least ``min_pixels`` drawn at the first
    frame, then at each frame the region whose centre is nearest the last one's, if it lies within the
    object's height (plus the frames skipped); the list ends where the object is lost."""
    out: list[np.ndarray] = []
    centre: np.ndarray | None = None
    height = 0.0
    gap = frames[1] - frames[0] if len(frames) > 1 else 1
    for s in frames:
        count, labels, stats, centres = cv2.connectedComponentsWithStats(
            masks[s].astype(np.uint8), connectivity=8
        )
        big = [k for k in range(1, count) if stats[k, cv2.CC_STAT_AREA] >= min_pixels]
        if not big:
            break
        if centre is None:
            k = int(rng.choice(big))
        else:
            distance = {k: float(np.linalg.norm(centres[k] - centre)) for k in big}
            k = min(distance, key=distance.__getitem__)
            if distance[k] > height + 2.0 * gap:
                break
        centre, height = centres[k], float(stats[k, cv2.CC_STAT_HEIGHT])
        out.append(labels == k)
    return out


def paste_events(
    frames: list[np.ndarray],
    sources: list[list[np.ndarray]],
    event_masks: list[list[np.ndarray]],
    events: list[Event],
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``frames`` with ``events`` pasted in, and the ``(H, W) bool`` pasted-foreground mask of every frame.

    ``event_masks[k][j]`` is what event ``k`` pastes at its step ``j`` (in its source frame's coordinates);
    an event with fewer masks than steps ends early.
    """
    out = [f.copy() for f in frames]
    h, w = frames[0].shape[:2]
    pasted = [np.zeros((h, w), bool) for _ in frames]
    for e, pieces in zip(events, event_masks, strict=True):
        for j, (s, mask) in enumerate(zip(source_frames(e), pieces, strict=False)):
            t = e.start + j
            src = sources[e.source][s]
            if src.shape[:2] != (h, w):
                raise DatasetError(
                    f"held-out training videos differ in frame size ({src.shape[1]}x{src.shape[0]} against "
                    f"{w}x{h}); a development set is pasted from videos of one fixed camera."
                )
            if e.kind == "gliding":
                dx = round(e.rate * h / 240 * (j - (e.length - 1) / 2))
                src, mask = _shift(src, dx), _shift(mask, dx)
            out[t][mask] = src[mask]
            pasted[t] |= mask
    return out, pasted


def _write(train: list[Clip], cfg: PastedConfig, out: Path) -> None:
    kept, held = train[: -cfg.held_out], train[-cfg.held_out :]
    (out / "train").mkdir(parents=True)
    for clip in kept:
        os.symlink(clip.path.resolve(), out / "train" / (clip.name + clip.path.suffix))
    lengths = [c.frame_count for c in held]
    plan = plan_events(lengths, cfg)
    # Foreground of every held-out video, read once; frames stay in memory for the pasting below.
    frames = [list(c.frames()) for c in held]
    masks = [list(foreground(f, cfg.threshold)) for f in frames]
    labels_dir = out / "labels"
    labels_dir.mkdir()
    summary = []
    h, w = frames[0][0].shape[:2]
    rng = np.random.default_rng([cfg.seed, 1])
    for clip, video, events in zip(held, frames, plan, strict=True):
        event_masks = [
            follow_one(masks[e.source], source_frames(e), cfg.min_area * h * w, rng)
            if cfg.single
            else [masks[e.source][s] for s in source_frames(e)]
            for e in events
        ]
        pasted_frames, pasted = paste_events(video, frames, event_masks, events)
        abnormal = [int(m.sum() >= cfg.min_area * h * w) for m in pasted]
        name = f"{clip.name}_pasted"
        write_frames(out / "test" / name, pasted_frames)
        write_frames(out / "masks" / name, [m.astype(np.uint8) * 255 for m in pasted])
        (labels_dir / f"{name}.txt").write_text("".join(f"{a}\n" for a in abnormal), encoding="utf-8")
        summary.append(
            {
                "video": name,
                "from": clip.name,
                "abnormal_frames": int(sum(abnormal)),
                "events": [
                    {**asdict(e), "source": held[e.source].name, "pasted_steps": len(m)}
                    for e, m in zip(events, event_masks, strict=True)
                ],
            }
        )
    info = {"builder": BUILDER_VERSION, **asdict(cfg), "train": [c.name for c in kept], "test": summary}
    (out / "config.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
