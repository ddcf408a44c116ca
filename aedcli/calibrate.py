"""A threshold measured on the user's own normal footage, written into a copy of the weights.

The threshold ``aed distill`` stores comes from held-out training video. Footage from another camera, or
the same camera through another encoder, can sit at a different score level: mp4 compression alone adds
changes between frames that a student reads as motion, and a crowded scene scores higher than a quiet one.
A threshold taken from normal clips of the footage to be judged fits it. :func:`calibrate` scores such
clips with the student (frames streamed, only one float per frame kept), smooths each with the weights'
sigma and takes the same percentile as :func:`aedcli.scoring.threshold_from_normal`. No labels are read:
the clips are taken to be normal because the user says so.

>>> loaded = load_weights("weights/ped2.pt")
>>> result = calibrate(loaded, ["normal_monday.mp4", "normal_tuesday.mp4"])
>>> write_calibrated(loaded, result, "weights/my_camera.pt")
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from aedcli.errors import AedError
from aedcli.inference import StudentRunner
from aedcli.scoring import Threshold, frame_scores, threshold_from_normal, threshold_source
from aedcli.video import iter_frames
from aedcli.weights import LoadedWeights, save_weights

DEFAULT_PERCENTILE = 99.0


@dataclass(frozen=True)
class Calibration:
    """The new threshold, and the clips and frame counts it was measured on."""

    threshold: Threshold
    frames: dict[str, int]
    previous: Threshold | None


def score_normal(
    runner: StudentRunner,
    source: str | Path,
    gray: bool,
    on_batch: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Raw frame scores ``(N,)`` of one clip (file or frame folder), streamed batch by batch."""
    scores = []
    for maps in runner.run(iter_frames(source, gray=gray)):
        scores.append(frame_scores(maps.s, maps.m, maps.l))
        if on_batch is not None:
            on_batch(len(scores[-1]))
    if not scores:
        raise AedError(f"{source} has no frames to calibrate on; pass a clip of normal footage.")
    return np.concatenate(scores)


def calibrate(
    loaded: LoadedWeights,
    sources: Sequence[str | Path],
    *,
    percentile: float | None = None,
    device: str = "cpu",
    batch_size: int = 16,
    on_batch: Callable[[int], None] | None = None,
) -> Calibration:
    """The ``percentile`` (default: that of the stored threshold, else 99) of smoothed scores over
    ``sources``, normal clips of the footage to be judged, with the weights' sigma."""
    if not sources:
        raise AedError("aed calibrate needs at least one clip of normal footage.")
    names = [Path(s).name for s in sources]
    if len(set(names)) != len(names):
        raise AedError("two calibration clips share a name; rename one so the record can tell them apart.")
    previous = loaded.threshold
    if percentile is None:
        percentile = previous.percentile if previous is not None else DEFAULT_PERCENTILE
    if not 0.0 < percentile <= 100.0:
        raise AedError(f"--percentile must be in (0, 100], got {percentile}.")
    runner = StudentRunner(loaded, device=device, batch_size=batch_size)
    gray = loaded.spec.channels == 1
    raw = {name: score_normal(runner, s, gray, on_batch) for name, s in zip(names, sources, strict=True)}
    measured = threshold_from_normal(raw, loaded.sigma, percentile)
    frames = {name: len(r) for name, r in raw.items()}
    kind = ("clip of normal footage", "clips of normal footage")
    where = threshold_source(measured.percentile, measured.sigma, len(raw), sum(frames.values()), kind)
    source = f"{where} given to aed calibrate: {', '.join(names)}"
    return Calibration(
        Threshold(measured.value, measured.sigma, measured.percentile, source), frames, previous
    )


def write_calibrated(loaded: LoadedWeights, result: Calibration, out: str | Path) -> Path:
    """A copy of the weights with the calibrated threshold (written atomically); the network is unchanged."""
    provenance = dict(loaded.provenance)
    previous = result.previous
    provenance["calibration"] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "clips": result.frames,
        "threshold": result.threshold.to_dict(),
        "previous_threshold": previous.to_dict() if previous is not None else None,
    }
    return save_weights(
        out,
        loaded.model,
        loaded.spec,
        sigma=loaded.sigma,
        threshold=result.threshold,
        provenance=provenance,
        variant=loaded.variant,
    )
