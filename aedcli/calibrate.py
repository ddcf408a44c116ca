"""A threshold and normal range measured on the user's own normal footage, in a copy of the weights.

The threshold ``aed distill`` stores comes from normal footage of the training camera. Footage from another
camera, or the same camera through another encoder, can sit at a different score level: compression alone
adds changes between frames that a student reads as motion, and a busier scene scores higher than a quiet
one. :func:`calibrate` scores clips the user says are normal (frames streamed, one float per frame kept),
smooths each with the weights' sigma and takes the same percentile as
:func:`aedcli.scoring.threshold_from_normal`. It also stores their median and 99th percentile as the normal
range and their frame size, colour and rate as the footage the weights now fit, so ``aed detect`` stops
warning about them.

How much footage: a 99th percentile of N frames rests on the N / 100 highest; below :data:`MIN_FRAMES`
frames that is one or two frames, and calibration is refused. A threshold is only as good as the footage is
varied: :func:`calibrate` says how stable it is by leaving out each clip in turn (or, with one clip, each
quarter of it), and notes when the footage is short (under :data:`ADVISED_SECONDS` seconds) or a single clip.

>>> loaded = load_weights("weights/ped2.pt")
>>> result = calibrate(loaded, ["normal_monday.mp4", "normal_tuesday.mp4"])
>>> write_calibrated(loaded, result, "my_camera.pt")
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from aedcli.detect.domain import is_colour
from aedcli.errors import AedError, UsageError
from aedcli.model.weights import Domain, LoadedWeights, NormalRange, save_weights
from aedcli.runtime import StudentRunner
from aedcli.scoring import MIN_THRESHOLD_FRAMES, Threshold, threshold_from_normal, threshold_source
from aedcli.video import open_video

DEFAULT_PERCENTILE = 99.0
MIN_FRAMES = MIN_THRESHOLD_FRAMES
"""Fewest frames calibration accepts: the 99th percentile of fewer rests on one or two frames."""
ADVISED_SECONDS = 60.0
"""Footage shorter than this (or a single clip) is accepted with a note: the threshold may move with more."""


@dataclass(frozen=True)
class Calibration:
    """The new threshold and normal range, what they were measured on, and how stable they are."""

    threshold: Threshold
    normal: NormalRange
    domain: Domain
    frames: dict[str, int]
    previous: Threshold | None
    leave_one_out: dict[str, float]  # the threshold without each clip (or each quarter of a single clip)
    notes: list[str] = field(default_factory=list)

    @property
    def spread(self) -> tuple[float, float]:
        """The lowest and highest leave-one-out threshold."""
        values = list(self.leave_one_out.values()) or [self.threshold.value]
        return min(values), max(values)


def count_frames(source: str | Path) -> int | None:
    """Frames a clip reports (``None`` when it does not say)."""
    with open_video(source) as video:
        return video.info.frame_count


def check_enough_frames(total: int, percentile: float) -> None:
    """Refuse (:class:`UsageError`, saying how many are needed) footage of fewer than :data:`MIN_FRAMES`."""
    if total < MIN_FRAMES:
        raise UsageError(
            f"the calibration footage has {total} frame(s); the {percentile:g}th percentile of so few rests "
            f"on one or two frames, so give at least {MIN_FRAMES} frames of normal footage (a minute or "
            "more, from several clips, is better)."
        )


def calibrate(
    loaded: LoadedWeights,
    runner: StudentRunner,
    sources: Sequence[str | Path],
    *,
    percentile: float | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> Calibration:
    """The ``percentile`` (default: that of the stored threshold, else 99) of smoothed scores over
    ``sources``, normal clips of the footage to be judged, with the weights' sigma (see the module
    docstring)."""
    if not sources:
        raise UsageError("aed calibrate needs at least one clip of normal footage.")
    names = [Path(s).name for s in sources]
    if len(set(names)) != len(names):
        raise UsageError("two calibration clips share a name; rename one so the record can tell them apart.")
    previous = loaded.threshold
    if percentile is None:
        percentile = previous.percentile if previous is not None else DEFAULT_PERCENTILE
    if not 0.0 < percentile <= 100.0:
        raise UsageError(f"--percentile must be in (0, 100], got {percentile}.")
    raw: dict[str, np.ndarray] = {}
    domain: Domain | None = None
    for name, source in zip(names, sources, strict=True):
        with open_video(source, gray=None) as video:
            info = video.info
            first: list[np.ndarray] = []

            def frames(video=video, first=first):  # type: ignore[no-untyped-def]
                for frame in video.frames():
                    if not first:
                        first.append(frame)
                    yield frame

            scores = []
            for maps in runner.run(frames()):
                scores.append(maps.scores)
                if on_batch is not None:
                    on_batch(len(scores[-1]))
            if domain is None and first:
                fps = info.fps if info.fps_reported else None
                domain = Domain(
                    (info.height, info.width), 3 if is_colour(first[0]) else 1, fps, f"calibrated on {name}"
                )
        raw[name] = np.concatenate(scores) if scores else np.zeros(0)
    total = sum(len(r) for r in raw.values())
    check_enough_frames(total, percentile)
    assert domain is not None  # set by the first clip with a frame
    measured = threshold_from_normal(raw, loaded.sigma, percentile)
    frames = {name: len(r) for name, r in raw.items()}
    kind = ("clip of normal footage", "clips of normal footage")
    where = threshold_source(measured.percentile, measured.sigma, len(raw), total, kind)
    threshold = Threshold(
        measured.value,
        measured.sigma,
        measured.percentile,
        f"{where} given to aed calibrate: {', '.join(names)}",
    )
    scores = np.concatenate(list(raw.values()))
    normal = NormalRange(float(np.median(scores)), float(np.percentile(scores, 99)), total, threshold.source)

    notes = []
    parts = raw if len(raw) > 1 else _quarters(next(iter(raw.items())))
    leave_one_out = {
        left: threshold_from_normal(
            {k: v for k, v in parts.items() if k != left}, loaded.sigma, percentile
        ).value
        for left in parts
        if len(parts) > 1
    }
    seconds = total / (domain.fps or 25.0)
    if len(raw) == 1:
        notes.append(
            "one clip only: its quarters stand in for other clips in the stability figure; add clips from "
            "other times of day"
        )
    if seconds < ADVISED_SECONDS:
        notes.append(
            f"{seconds:.0f} s of footage; a minute or more of normal footage gives a threshold that "
            "moves less"
        )
    return Calibration(threshold, normal, domain, frames, previous, leave_one_out, notes)


def _quarters(item: tuple[str, np.ndarray]) -> dict[str, np.ndarray]:
    name, scores = item
    bounds = np.linspace(0, len(scores), 5).astype(int)
    return {
        f"{name} quarter {i + 1}": scores[a:b] for i, (a, b) in enumerate(itertools.pairwise(bounds)) if b > a
    }


def write_calibrated(loaded: LoadedWeights, result: Calibration, out: str | Path) -> Path:
    """A copy of the weights with the calibrated threshold, normal range and footage (written atomically); the
    network is unchanged."""
    provenance = dict(loaded.provenance)
    previous = result.previous
    provenance["calibration"] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "clips": result.frames,
        "threshold": result.threshold.to_dict(),
        "previous_threshold": previous.to_dict() if previous is not None else None,
        "leave_one_out": result.leave_one_out,
    }
    return save_weights(
        out,
        loaded.model,
        loaded.spec,
        sigma=loaded.sigma,
        threshold=result.threshold,
        normal=result.normal,
        domain=result.domain,
        provenance=provenance,
        variant=loaded.variant,
    )


def check_writable(out: Path, force: bool) -> None:
    """Refuse, before any scoring, an ``--out`` that exists (without ``force``) or cannot be written."""
    import os

    if out.is_dir():
        raise UsageError(f"--out {out} is a folder; give the path of the weights file to write.")
    if out.exists() and not force:
        raise UsageError(f"--out {out} already exists; pass --force to overwrite it or choose another path.")
    parent = out.parent if str(out.parent) else Path(".")
    existing = next((p for p in (parent, *parent.parents) if p.exists()), Path("."))
    if not os.access(existing, os.W_OK | os.X_OK):
        raise AedError(f"cannot write {out}: folder {existing} is not writable; choose another --out.")
