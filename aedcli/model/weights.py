"""The one weights-file format of ``aed``: a trained student and everything needed to use it.

A weights file is ``torch.save`` of a plain dict holding only tensors and JSON-able values, so it loads with
``torch.load(..., weights_only=True)`` and can never run code:

- ``format`` / ``version``: ``"aed-student"`` and :data:`FORMAT_VERSION`;
- ``state_dict``: the student's parameters and BatchNorm statistics (:class:`aedcli.model.student.Student`);
- ``config``: the :class:`~aedcli.model.student.StudentConfig` as a dict (its teachers' head sets included),
  and ``variant`` (its name);
- ``input``: the :class:`~aedcli.model.inputs.InputSpec` as a dict (size, channels, offset);
- ``scoring``: ``{"sigma": ...}``, the temporal Gaussian of method.md section 5;
- ``threshold``: :class:`aedcli.scoring.Threshold` as a dict (value, sigma, percentile, source), taken from
  normal training video only, or None;
- ``normal``: :class:`NormalRange`, the raw frame scores of normal video the student did not train on
  (median and 99th percentile), or None: what ``aed detect`` compares a new camera's first seconds with;
- ``domain``: :class:`Domain`, the footage it was trained on (frame size, colour, frame rate), or None;
- ``provenance``: dataset, command line, date, epochs, training time, hardware, metrics when known.

(Croitoru et al., arXiv 2211.15597; the student is the only network needed at inference.)

>>> save_weights("weights.pt", student, spec, sigma=7.0, threshold=thr, provenance={...})
>>> loaded = load_weights("weights.pt")
>>> loaded.model(x)        # eval mode
"""

from __future__ import annotations

import json
import math
import pickle
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from aedcli.errors import WeightsError
from aedcli.files import atomic_path
from aedcli.model.inputs import InputSpec
from aedcli.model.student import Student, StudentConfig
from aedcli.scoring import Threshold

FORMAT_TAG = "aed-student"
FORMAT_VERSION = 2


@dataclass(frozen=True)
class NormalRange:
    """Raw frame scores of normal video the student did not train on: their median and 99th percentile."""

    median: float
    p99: float
    frames: int
    source: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NormalRange:
        return cls(float(d["median"]), float(d["p99"]), int(d["frames"]), str(d["source"]))


@dataclass(frozen=True)
class Domain:
    """The footage a student was trained on: frame size ``(height, width)``, channels (1 gray, 3 colour)
    and frame rate (``None`` when the frames came without one)."""

    frame_size: tuple[int, int]
    channels: int
    fps: float | None
    dataset: str

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "frame_size": list(self.frame_size)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Domain:
        h, w = (int(v) for v in d["frame_size"])
        fps = d.get("fps")
        return cls((h, w), int(d["channels"]), None if fps is None else float(fps), str(d["dataset"]))


@dataclass
class LoadedWeights:
    """A student ready to run (eval mode) and what came with it."""

    model: Student
    config: StudentConfig
    spec: InputSpec
    sigma: float
    threshold: Threshold | None
    normal: NormalRange | None = None
    domain: Domain | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    variant: str | None = None
    path: Path | None = None


def save_weights(
    path: str | Path,
    model: Student,
    spec: InputSpec,
    *,
    sigma: float,
    threshold: Threshold | None = None,
    normal: NormalRange | None = None,
    domain: Domain | None = None,
    provenance: dict[str, Any] | None = None,
    variant: str | None = None,
) -> Path:
    """Write ``model`` and its metadata to ``path`` atomically; returns the path.

    ``provenance`` must be JSON-able (checked here, so a bad value fails at save time, not when someone
    loads the file).
    """
    if model.config.in_channels != spec.in_channels:
        raise ValueError(
            f"student expects {model.config.in_channels} input channels, the input spec {spec.in_channels}"
        )
    meta = {
        "variant": variant,
        "config": model.config.to_dict(),
        "input": spec.to_dict(),
        "scoring": {"sigma": float(sigma)},
        "threshold": threshold.to_dict() if threshold is not None else None,
        "normal": normal.to_dict() if normal is not None else None,
        "domain": domain.to_dict() if domain is not None else None,
        "provenance": provenance or {},
    }
    # JSON round trip: proves the metadata is plain data and turns tuples into lists.
    meta = json.loads(json.dumps(meta))
    payload = {
        "format": FORMAT_TAG,
        "version": FORMAT_VERSION,
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
        **meta,
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def read_weights_payload(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The raw dict of a weights file, refusing missing, corrupt, unsafe and foreign files (WeightsError)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(
            f"weights file {path} does not exist; pass the weights.pt written by 'aed distill'."
        )
    try:
        payload = torch.load(path, weights_only=True, map_location=map_location)
    except pickle.UnpicklingError as exc:
        # weights_only refuses a class or function reference as "GLOBAL ..."; garbage bytes fail otherwise.
        if "global" in str(exc).lower():
            raise WeightsError(
                f"weights file {path} holds pickled Python objects that could run code, so it was not "
                "loaded; use a weights.pt written by 'aed distill'."
            ) from None
        raise _corrupt(path) from None
    except Exception:
        # Truncated zip (RuntimeError), empty file (EOFError), text or random bytes (KeyError, ...).
        raise _corrupt(path) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_TAG:
        raise WeightsError(
            f"weights file {path} is not an aed student weights file (no '{FORMAT_TAG}' format tag); "
            "pass a weights.pt written by 'aed distill'."
        )
    version = payload.get("version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise WeightsError(
            f"weights file {path} has format version {version!r}, newer than this aed reads "
            f"({FORMAT_VERSION}); upgrade aed to load it."
        )
    if version < FORMAT_VERSION:
        raise WeightsError(
            f"weights file {path} was written by an aed before 0.2 (format version {version}); train it "
            "again with 'aed distill', or use the weights shipped with this version."
        )
    return payload


def load_weights(path: str | Path, map_location: str | torch.device = "cpu") -> LoadedWeights:
    """Load a weights file written by :func:`save_weights`; the model is returned in eval mode.

    Raises :class:`WeightsError` (one sentence naming the file) for a missing, truncated or corrupt file, a
    file carrying pickled objects, or a file of another format or architecture.
    """
    path = Path(path)
    payload = read_weights_payload(path, map_location)
    try:
        config = StudentConfig.from_dict(payload["config"])
        spec = InputSpec.from_dict(payload["input"])
        sigma = float(payload["scoring"]["sigma"])
        threshold = Threshold.from_dict(payload["threshold"]) if payload.get("threshold") else None
        normal = NormalRange.from_dict(payload["normal"]) if payload.get("normal") else None
        domain = Domain.from_dict(payload["domain"]) if payload.get("domain") else None
        # NaN would not fail later: detect would quietly not smooth, or never flag a frame as abnormal.
        if not (math.isfinite(sigma) and sigma >= 0):
            raise ValueError(f"smoothing sigma {sigma:g} is not a finite number of frames >= 0")
        if threshold is not None and not (math.isfinite(threshold.value) and math.isfinite(threshold.sigma)):
            raise ValueError(f"threshold {threshold.value:g} at sigma {threshold.sigma:g} is not finite")
    except (KeyError, TypeError, ValueError) as exc:
        raise WeightsError(
            f"weights file {path} has an unreadable student config, input spec or threshold ({exc}); "
            "re-export it with 'aed distill'."
        ) from None
    if config.in_channels != spec.in_channels:
        raise WeightsError(
            f"weights file {path} pairs a {config.in_channels}-channel student with a "
            f"{spec.in_channels}-channel input spec; re-export it with 'aed distill'."
        )
    model = Student(config)
    state = payload.get("state_dict")
    if not isinstance(state, dict):
        raise WeightsError(
            f"weights file {path} has no state_dict; pass a weights.pt written by 'aed distill'."
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError:
        raise WeightsError(
            f"weights file {path} holds parameters that do not match its student config (another "
            "architecture or a damaged file); pass a weights.pt written by 'aed distill'."
        ) from None
    floats = ((k, v) for k, v in state.items() if v.is_floating_point())
    broken = next((k for k, v in floats if not torch.isfinite(v).all()), None)
    if broken is not None:
        raise WeightsError(
            f"weights file {path} holds NaN or infinite values (in {broken}), so every score would be "
            "meaningless; use the weights of a run that did not diverge."
        )
    model.to(map_location).eval()
    return LoadedWeights(
        model=model,
        config=config,
        spec=spec,
        sigma=sigma,
        threshold=threshold,
        normal=normal,
        domain=domain,
        provenance=payload.get("provenance") or {},
        variant=payload.get("variant"),
        path=path,
    )


def _corrupt(path: Path) -> WeightsError:
    return WeightsError(
        f"weights file {path} is truncated or corrupt and cannot be read; copy it again or re-run "
        "'aed distill'."
    )
