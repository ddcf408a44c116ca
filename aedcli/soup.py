"""Average the weights of students distilled from one pre-training into one student (a "model soup").

Runs that start from the same pre-trained network and differ only in their seed (the order of the frames,
the region-mix draws) end near each other in weight space, and the average of their weights is a network
that often does better than a typical member (Wortsman et al., "Model soups", ICML 2022). On Ped2 one run
is one draw from a spread of about three micro-AUC points across seeds; a soup averages part of that spread
away and is still one student, exactly as fast as each member, which an ensemble of their outputs is not.

:func:`soup` refuses members that cannot be averaged: another architecture, input, teachers, held-out videos
or scoring, or another pre-training (checked by a digest of each run's ``checkpoints/pretrain.pt``). The soup
is then measured like an epoch of :func:`aedcli.distill.distill` on the members' held-out videos (validation
L_KD, the pseudo-anomaly probes), gets its threshold the same way, and is written with the members, their
figures and the averaging in its provenance. Nothing reads test data.

>>> result = soup([Path("runs/s4"), Path("runs/s5"), Path("runs/s6")], Path("runs/soup"))
>>> result.metrics["val_kd"], [m.metrics["val_kd"] for m in result.members]
"""

from __future__ import annotations

import hashlib
import json
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from aedcli.data import load_dataset
from aedcli.data.clips import Dataset
from aedcli.distill import DistillConfig, measure_and_write
from aedcli.errors import AedError, UsageError, WeightsError
from aedcli.scoring import Threshold
from aedcli.student import Student
from aedcli.weights import LoadedWeights, load_weights

MATCHING = ("variant", "size", "teachers", "teacher_weights", "heads", "val_videos", "speedups", "sigma")
"""Distillation options every member must share: what shapes the network, its targets and its scoring."""


@dataclass(frozen=True)
class Member:
    """One finished run: its folder, its weights and the digest of the pre-training it started from."""

    run: Path
    loaded: LoadedWeights
    config: DistillConfig
    pretrain: str

    @property
    def metrics(self) -> dict[str, float]:
        return dict(self.loaded.provenance.get("metrics", {}))


@dataclass(frozen=True)
class SoupResult:
    """The written soup: its weights file, threshold and held-out figures, and the members."""

    weights: Path
    threshold: Threshold
    metrics: dict[str, float]
    members: list[Member]


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over a state dict's names and tensor bytes (in name order)."""
    digest = hashlib.sha256()
    for name in sorted(state):
        digest.update(name.encode())
        digest.update(state[name].detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def read_member(run: Path) -> Member:
    """The finished run in folder ``run``: ``weights.pt`` and ``checkpoints/pretrain.pt``."""
    weights = run / "weights.pt"
    if not weights.is_file():
        raise UsageError(f"{run} holds no weights.pt; pass the folders of finished aed distill runs.")
    loaded = load_weights(weights)
    raw = loaded.provenance.get("distill_config")
    if not isinstance(raw, dict):
        raise UsageError(f"{weights} records no distillation options; it was not written by aed distill.")
    config = DistillConfig.from_dict(raw)
    if config.no_pretrain:
        raise UsageError(
            f"{run} was distilled without pre-training (--no-pretrain); only runs that start from one shared "
            "pre-training can be averaged."
        )
    path = run / "checkpoints" / "pretrain.pt"
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
        pretrain = state_digest(state["student"])
    except FileNotFoundError:
        raise UsageError(
            f"{path} is missing; the soup needs it to check that the runs share their pre-training."
        ) from None
    except Exception:
        raise WeightsError(f"{path} is unreadable; it is not an aed pre-training checkpoint.") from None
    return Member(run, loaded, config, pretrain)


def check_members(members: Sequence[Member]) -> None:
    """Refuse members that cannot be averaged into one student (see the module docstring)."""
    if len(members) < 2:
        raise UsageError("aed soup needs at least two runs to average.")
    first = members[0]
    seen: set[Path] = set()
    for m in members:
        if m.run.resolve() in seen:
            raise UsageError(f"{m.run} is given twice; pass each run once.")
        seen.add(m.run.resolve())
    for m in members[1:]:
        a, b = first.config.to_dict(), m.config.to_dict()
        for key in MATCHING:
            if a.get(key) != b.get(key):
                raise UsageError(
                    f"{m.run} was distilled with {key}={b.get(key)!r}, {first.run} with {a.get(key)!r}; "
                    "a soup averages runs that differ only in seed and training options."
                )
        if m.loaded.spec != first.loaded.spec or m.loaded.config != first.loaded.config:
            raise UsageError(
                f"{m.run} has another network or input than {first.run}; they cannot be averaged."
            )
        if m.pretrain != first.pretrain:
            raise UsageError(
                f"{m.run} starts from another pre-training than {first.run}; a soup needs one shared "
                "pre-training (copy one run's checkpoints/pretrain.pt into each run folder, then distil)."
            )


def average_states(states: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The element-wise mean of floating-point tensors (parameters and BatchNorm statistics), computed in
    float64; integer buffers (BatchNorm's batch counters) take their largest value."""
    out: dict[str, torch.Tensor] = {}
    for name, first in states[0].items():
        stacked = torch.stack([s[name].detach().cpu() for s in states])
        if first.is_floating_point():
            out[name] = stacked.double().mean(0).to(first.dtype)
        else:
            out[name] = stacked.max(0).values
    return out


def _seconds(member: Member, phase: str) -> float:
    path = member.run / "history.json"
    if not path.is_file():
        return 0.0
    return float(sum(r.get("seconds", 0.0) for r in json.loads(path.read_text()).get(phase, [])))


def soup(
    runs: Sequence[Path],
    out: Path,
    *,
    dataset: Dataset | None = None,
    device: str = "cpu",
    command: str | None = None,
    bn_batches: int | None = None,
) -> SoupResult:
    """Average the weights of the finished runs in ``runs`` into ``out/weights.pt`` (written atomically).

    ``dataset`` defaults to the one the first run recorded (name and root). The average of the members'
    BatchNorm statistics is not the statistics of the averaged weights, so they are re-estimated on
    ``bn_batches`` training batches (default: what the first run used after each epoch; 0 keeps the
    average). The soup is measured on the members' held-out videos and its threshold taken there, as
    :func:`aedcli.distill.distill` does.
    """
    members = [read_member(Path(r)) for r in runs]
    check_members(members)
    first = members[0]
    if dataset is None:
        recorded = first.loaded.provenance.get("dataset", {})
        try:
            dataset = load_dataset(recorded["name"], recorded.get("root"))
        except (KeyError, AedError):
            raise UsageError(
                f"the dataset {first.run} was trained on is not where it recorded it; pass --dataset "
                "and --root."
            ) from None
    if bn_batches is not None and bn_batches < 0:
        raise UsageError(f"--bn-batches must be 0 or more, not {bn_batches}.")
    n_bn = first.config.bn_batches if bn_batches is None else bn_batches
    student = Student(first.loaded.config)
    student.load_state_dict(average_states([m.loaded.model.state_dict() for m in members]))
    seconds = _seconds(first, "pretrain") + sum(_seconds(m, "distill") for m in members)
    extra: dict[str, Any] = {
        "soup": {
            "averaging": "uniform mean of every parameter and BatchNorm statistic"
            + (f"; BatchNorm statistics then re-estimated on {n_bn} training batches" if n_bn else ""),
            "pretrain_sha256": first.pretrain,
            "members": [
                {
                    "run": str(m.run),
                    "seed": m.config.seed,
                    "selection": m.loaded.provenance.get("selection"),
                    "metrics": m.metrics,
                }
                for m in members
            ],
        },
    }
    config = DistillConfig.from_dict(first.config.to_dict() | {"device": device, "bn_batches": n_bn})
    out.mkdir(parents=True, exist_ok=True)
    selection = (
        f"uniform average of the written weights of {len(members)} runs from one pre-training (seeds "
        f"{', '.join(str(m.config.seed) for m in members)}); no checkpoint selection, no test data"
    )
    threshold, metrics, path = measure_and_write(
        dataset,
        first.run,
        config,
        student,
        out / "weights.pt",
        selection=selection,
        seconds=seconds,
        extra=extra,
        command=command or shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        recalibrate=n_bn > 0,
    )
    return SoupResult(path, threshold, metrics, members)
