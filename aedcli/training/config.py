"""What defines a training run, with the shipped recipe as every default.

:class:`TrainConfig` holds the student's and the distillation's settings; the teachers' settings are
:class:`aedcli.teachers.TeachConfig`. ``aed distill`` and ``aed teach`` expose the few options a user needs;
everything else comes from a settings file (``--config FILE``, TOML or JSON) with a ``[teachers]`` and a
``[training]`` section whose keys are these fields::

    [training]
    epochs = 20
    adversarial_weight = 0.0

    [teachers]
    motion = { body_fractions = [0.3, 0.5] }

>>> teach_cfg, train_cfg = load_settings(Path("settings.toml"))
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from aedcli.errors import UsageError
from aedcli.model.student import VARIANTS
from aedcli.scoring import DEFAULT_SIGMA
from aedcli.teachers import TeachConfig


@dataclass(frozen=True)
class TrainConfig:
    """The student and its training. Defaults are the shipped recipe.

    variant, size:  the student (:data:`aedcli.model.student.VARIANTS`) and its input ``(height, width)``;
                    ``None`` = the footage's own size, at most 240 rows (:meth:`InputSpec.for_frames`).
    pretrain_epochs, epochs, epoch_steps: phase 1 (reconstruction) and phase 2 (distillation) epochs of
                    ``epoch_steps`` batches each, drawn from the training data (part of a pass over long
                    footage, several over short footage).
    max_passes:     the most times a phase draws each training item, in all: on short footage its epochs
                    get fewer batches (a student that sees a few hundred frames over a hundred times learns
                    them by heart). 0 = no limit.
    batch, lr, pretrain_lr, weight_decay: Adam's settings; the learning rates fall to a tenth along a cosine
                    over each phase.
    adversarial_weight: weight of the adversarial term (one discriminator per teacher, spectrally
                    normalised, method.md section 4); 0 leaves it out.
    speedups, zooms: pseudo-anomalies. Every training video is also played ``k`` times faster, and shown
                    magnified ``z`` times (everything larger, and faster in pixels); the teachers score those
                    views like any video, and the student learns what they say.
    region_mix:     share of normal training frames that get a rectangle of one of their video's views pasted
                    in, with the same cells of its targets: one unusual object among normal ones.
    validation:     normal footage held out for the validation loss, the threshold and the normal score range:
                    ``auto`` holds out one training video in eight when there are eight or more, else the last
                    :attr:`validation_share` of every video (a time slice, so a single recording works).
    bn_batches:     batches on which BatchNorm statistics are re-estimated after each epoch.
    clip_grad:      the student's gradient norm is clipped to this.
    sigma, percentile: smoothing (frames) and the percentile of held-out normal scores taken as threshold.
    """

    variant: str = "fastaed-xxs"
    size: tuple[int, int] | None = None
    pretrain_epochs: int = 4
    epochs: int = 15
    epoch_steps: int = 200
    max_passes: float = 20.0
    batch: int = 32
    lr: float = 3e-4
    pretrain_lr: float = 1e-3
    weight_decay: float = 5e-6
    adversarial_weight: float = 0.0
    speedups: tuple[int, ...] = (2, 3)
    zooms: tuple[float, ...] = (2.0,)
    region_mix: float = 0.5
    validation: str = "auto"
    validation_share: float = 0.15
    bn_batches: int = 30
    clip_grad: float = 1.0
    sigma: float = DEFAULT_SIGMA
    percentile: float = 99.0
    seed: int = 0
    device: str = "cpu"
    num_workers: int = 0

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise UsageError(f"variant '{self.variant}' is unknown; choose one of {', '.join(VARIANTS)}.")
        if self.size is not None and min(self.size) < 32:
            raise UsageError(f"size {self.size[0]}x{self.size[1]} is too small; use at least 32x32.")
        if self.epoch_steps < 1:
            raise UsageError(f"epoch_steps must be 1 or more, got {self.epoch_steps}.")
        for name in ("pretrain_epochs", "epochs", "bn_batches", "num_workers"):
            if getattr(self, name) < 0:
                raise UsageError(f"{name} must be 0 or more, got {getattr(self, name)}.")
        if self.batch < 2:
            raise UsageError(f"batch must be at least 2 (BatchNorm needs it), got {self.batch}.")
        for name in ("lr", "pretrain_lr"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise UsageError(f"{name} must be a positive number, not {getattr(self, name)}.")
        for name in ("weight_decay", "adversarial_weight", "clip_grad", "sigma", "max_passes"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise UsageError(f"{name} must be 0 or a positive number, not {getattr(self, name)}.")
        if any(k < 2 for k in self.speedups) or any(z <= 1 for z in self.zooms):
            raise UsageError("speedups must be whole factors of 2 or more, and zooms factors above 1.")
        if not 0.0 <= self.region_mix <= 1.0:
            raise UsageError(f"region_mix is a share from 0 to 1, got {self.region_mix}.")
        if self.region_mix > 0 and not (self.speedups or self.zooms):
            raise UsageError("region_mix pastes in sped-up or magnified frames; give speedups or zooms.")
        if self.validation not in ("auto", "videos", "slices", "none"):
            raise UsageError(f"validation must be auto, videos, slices or none, got {self.validation!r}.")
        if not 0.0 < self.validation_share < 0.5:
            raise UsageError(f"validation_share must be above 0 and below 0.5, got {self.validation_share}.")
        if not 0.0 < self.percentile <= 100.0:
            raise UsageError(f"percentile must be above 0 and at most 100, got {self.percentile}.")
        if self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:"):
            raise UsageError(f"device must be cpu or cuda, got {self.device!r}.")

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise UsageError(
                f"unknown training setting '{unknown[0]}'; known ones: {', '.join(sorted(known))}."
            )
        kw = dict(d)
        for key in ("size", "speedups", "zooms"):
            if kw.get(key) is not None:
                kw[key] = tuple(kw[key])
        return cls(**kw)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` (``None`` values are ignored: an option the user did not give)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def read_settings_file(path: Path) -> dict[str, Any]:
    """The mapping in a TOML (``.toml``) or JSON settings file; a :class:`UsageError` naming it otherwise."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UsageError(f"settings file {path} does not exist; pass a .toml or .json file.")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except ModuleNotFoundError:
        raise UsageError(
            f"reading {path} needs Python 3.11 or newer (tomllib); write it as JSON instead."
        ) from None
    except ValueError as exc:  # tomllib.TOMLDecodeError and json.JSONDecodeError are ValueErrors
        raise UsageError(f"settings file {path} cannot be parsed ({exc}); fix its syntax.") from None
    if not isinstance(data, dict) or set(data) - {"teachers", "training"}:
        raise UsageError(f"settings file {path} must hold only a [teachers] and a [training] section.")
    return data


def load_settings(path: Path | None) -> tuple[TeachConfig, TrainConfig]:
    """The teacher and training settings of a file (the recipe's for anything it leaves out)."""
    if path is None:
        return TeachConfig(), TrainConfig()
    data = read_settings_file(path)
    try:
        teach = TeachConfig.from_dict(data.get("teachers", {}))
    except (TypeError, KeyError, ValueError) as exc:
        raise UsageError(f"the [teachers] section of {path} is not valid ({exc}).") from None
    return teach, TrainConfig.from_dict(data.get("training", {}))
