"""Multi-task teacher: a small 3D CNN on object tubes trained on self-supervised proxy tasks.

Follows Georgescu, Barbalau, Ionescu, Khan, Popescu, Shah, "Anomaly Detection in Video via Self-Supervised and
Multi-Task Learning" (SSMTL, CVPR 2021), without its knowledge-distillation tasks (they need a pre-trained
detector and classifier, and this teacher learns from the user's normal footage only). One shared 3D CNN
trunk sees short clips of an object tube; three heads learn, on normal objects only:

- arrow of time:       is the clip played forward or backward?
- motion irregularity: are the frames consecutive, or were some skipped?
- middle prediction:   reconstruct the crop of frame t from the frames around it.

An object that moves unlike the normal ones (too fast, the wrong way, jerkily) or looks unlike them confuses
the classifiers and is hard to predict. Per object, each task's error (1 - p(correct class) for the two
classifiers, mean absolute error for the prediction; by default their logarithms) is standardised with the
mean and standard deviation of that error on held-out normal training objects, and the standardised errors
are summed, as SSMTL does (``combine="z-sum"``, what files written before the option hold). By default
(``"tail-max"``, which won on the synthetic development set) each task's error is measured instead by its
rarity among those held-out objects, ``-ln q`` with q the share of them erring as much or more
(:class:`aedcli.teachers.calibration.TailModel`), and the largest rarity is the object's score
(``"tail-sum"`` adds them): a task whose classifier saturates on normal objects then does not divide an
irregular object's evidence down by a spread that is numerical noise (``aed teach --b-combine``).

Each task is asked once per object by default (``views="centre"``: the clip centred on t, played forward).
``"reversed"`` also plays that clip backward (the arrow classifier must then answer "backward", the
irregularity classifier still "regular"), and ``"reversed-mirrored"`` also shows both clips and the middle
prediction mirrored left to right (people walk both ways, so a mirrored tube is as normal as the tube): each
task's error is the mean of its (log) errors over the views, one noisy answer counting for less, at 1.5 and
3 times the network passes (``aed teach --b-views``).

Clips come from the 7-frame tube (indices 0..6, frame t at 3). With ``window = 3`` a regular clip is three
consecutive frames (t-1, t, t+1 when scoring, any three in a row when training) and an irregular clip is
three frames in order with a skip, by default at a constant stride (t-2, t, t+2 or t-3, t, t+3), so both
variants hold the same number of frames and a skipped clip looks like an object moving 2-3 times faster. The
middle prediction sees t-1 and t+1 and reconstructs t. Tube pixels that lie off the frame (the tube cutter
repeats the border there) are set to zero and left out of the errors.

>>> teacher = MultiTaskTeacher()
>>> teacher.fit(train_batches)          # 16,000 objects x 4 epochs: several minutes on one CPU core
>>> scores = teacher.score(test_batch)  # (N,) float32, higher = more abnormal
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aedcli.errors import WeightsError
from aedcli.files import atomic_path
from aedcli.teachers.base import TUBE_RADIUS, ObjectBatch
from aedcli.teachers.calibration import TailModel
from aedcli.teachers.velocity import crop_mask, read_teacher_file

FORMAT = "aed-teacher-multitask"
VERSION = 4
READABLE_VERSIONS = (1, 2, 3, 4)
TASKS = ("arrow", "irregularity", "middle")
COMBINES = ("z-sum", "tail-sum", "tail-max")
# Views each task is asked in: (played backward, mirrored) for the classifiers, mirrored for the middle
# prediction. Every view is a transform normal training objects show too.
VIEWS: dict[str, tuple[tuple[tuple[bool, bool], ...], tuple[bool, ...]]] = {
    "centre": (((False, False),), (False,)),
    "reversed": (((False, False), (True, False)), (False,)),
    "reversed-mirrored": (((False, False), (True, False), (False, True), (True, True)), (False, True)),
}
TUBE_LENGTH = 2 * TUBE_RADIUS + 1


@dataclass
class MultiTaskConfig:
    """Settings of the multi-task teacher (all JSON-able; stored with the weights).

    size:           tube crops are resized to size x size before the network; 64 keeps the tubes' own
                    resolution (at 32 a pedestrian moves under half a pixel per frame and the motion tasks
                    got clearly worse on Ped2).
    channels:       widths of the three 3D conv blocks of the trunk.
    window:         frames per classification clip; odd, and short enough to leave room for skips (3: the
                    skipped clips can reach strides of 2 and 3, like objects moving 2-3 times faster).
    epochs, batch_size, lr, weight_decay: Adam training on normal objects.
    max_train:      cap on training objects (a seeded random subset beyond it).
    holdout:        fraction of training objects kept out of training to measure the error statistics.
    task_weights:   weight of each standardised task error in the object score, in the order of TASKS.
    normalise:      standardise every tube by its own mean and spread, so contrast (shade, dark clothes,
                    crowded windows) does not masquerade as an error; off: the student's fixed scaling.
    uniform_skips:  share of irregular training clips that skip frames at a constant stride (t-2, t, t+2 ...)
                    where the window allows; the rest skip at random. Constant strides look exactly like an
                    object moving faster, the anomaly this task is meant to catch.
    crop_margin:    the margin the tubes were cut with (``objects.cut_tube``), to find pixels off the frame.
    middle_offsets: frames, relative to the hidden one, that the middle prediction sees ([-1, 1]: t-1, t+1).
    log_errors:     standardise the logarithm of each task's error: the classifiers' errors are near 0 for
                    almost every normal object, and on a log scale one confident mistake does not outweigh
                    the other tasks' evidence.
    seeds:          networks trained, with seeds s, s + 1, ...; an object's score is the mean of theirs. One
                    network's training is unstable (its classifiers can saturate on normal objects), and a
                    mean over several is steadier at that many times the cost.
    combine:        how the weighted task errors make one score: "tail-max" (the default) takes the
                    largest, "tail-sum" the sum, of their rarities among the held-out normal objects;
                    "z-sum" adds them standardised (SSMTL's way, and what files written before the option
                    hold).
    views:          how many ways each task is asked per object (:data:`VIEWS`): "centre" (the default, and
                    what files written before the option hold) once; "reversed" also with the clip played
                    backward; "reversed-mirrored" also mirrored left to right. A task's error is the mean
                    of its errors over the views (of their logarithms with ``log_errors``). Scoring only:
                    the networks are trained the same way.
    """

    size: int = 64
    channels: list[int] = field(default_factory=lambda: [8, 16, 32])
    window: int = 3
    epochs: int = 4
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-5
    max_train: int = 16_000
    holdout: float = 0.1
    task_weights: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])
    normalise: bool = True
    uniform_skips: float = 1.0
    crop_margin: float = 0.1
    middle_offsets: list[int] = field(default_factory=lambda: [-1, 1])
    log_errors: bool = True
    seeds: int = 1
    combine: str = "tail-max"
    views: str = "centre"


def clip_indices(window: int) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]]]:
    """Every regular (consecutive) and irregular (in order, with a skip) ``window``-frame clip of a tube."""
    regular, irregular = [], []
    for combo in itertools.combinations(range(TUBE_LENGTH), window):
        (regular if combo[-1] - combo[0] == window - 1 else irregular).append(combo)
    return regular, irregular


class _Block(nn.Module):
    """conv 3x3x3 (no bias) -> BatchNorm -> ReLU -> 2x2 spatial max-pool; time is kept."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(c_in, c_out, 3, padding=1, bias=False)
        self.norm = nn.BatchNorm3d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(F.relu(self.norm(self.conv(x))), (1, 2, 2))


class _Up(nn.Module):
    """2x upsample -> conv 3x3 -> BN -> ReLU, plus an additive skip from the trunk (time-averaged)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        return F.relu(self.norm(self.conv(x))) + skip


class MultiTaskNet(nn.Module):
    """Shared 3D CNN trunk with two clip classifiers and a middle-frame decoder.

    Input clips are (B, 1, T, S, S) floats (see ``_to_float``); T may differ between calls.
    """

    def __init__(self, config: MultiTaskConfig) -> None:
        super().__init__()
        c1, c2, c3 = config.channels
        self.blocks = nn.ModuleList([_Block(1, c1), _Block(c1, c2), _Block(c2, c3)])
        self.arrow = nn.Sequential(nn.Linear(2 * c3, 64), nn.ReLU(), nn.Linear(64, 2))  # 0 fwd, 1 bwd
        self.irregularity = nn.Sequential(nn.Linear(2 * c3, 64), nn.ReLU(), nn.Linear(64, 2))  # 0 reg, 1 irr
        self.up3 = _Up(c3, c2)
        self.up2 = _Up(c2, c1)
        self.up1 = nn.Sequential(
            nn.Upsample(scale_factor=2.0, mode="bilinear", align_corners=False),
            nn.Conv2d(c1, c1, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(c1, 1, 1),
        )

    def trunk(self, clip: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        x = clip
        for block in self.blocks:
            x = block(x)
            feats.append(x)  # (B, c1, T, S/2, S/2), (B, c2, T, S/4, S/4), (B, c3, T, S/8, S/8)
        return feats

    def classify(self, clip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Arrow-of-time and irregularity logits, each (B, 2)."""
        top = self.trunk(clip)[-1]
        pooled = torch.cat([top.mean(dim=(2, 3, 4)), top.amax(dim=(2, 3, 4))], dim=1)  # (B, 2 * c3)
        return self.arrow(pooled), self.irregularity(pooled)

    def predict_middle(self, clip: torch.Tensor) -> torch.Tensor:
        """The missing middle frame, (B, S, S), from a clip of its neighbours."""
        f1, f2, f3 = (f.mean(dim=2) for f in self.trunk(clip))  # time-averaged (B, c, S/k, S/k)
        x = self.up3(f3, f2)  # (B, c2, S/4, S/4)
        x = self.up2(x, f1)  # (B, c1, S/2, S/2)
        return self.up1(x)[:, 0]  # (B, S, S)


def _prepare(batch: ObjectBatch, size: int, margin: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Tubes at the network's size and the pixels of each that show the frame.

    Returns (N, 7, size, size) uint8 (compact, to hold many objects) and an (N, size, size) bool mask; the
    other pixels repeat the frame border (see ``crop_mask``).
    """
    x = torch.from_numpy(np.ascontiguousarray(batch.tubes))
    if x.shape[-1] != size:
        x = F.interpolate(x.float(), size=(size, size), mode="area").round().clamp(0, 255).to(torch.uint8)
    valid = np.stack([crop_mask(box, batch.frame_size, size, margin) for box in batch.boxes])
    return x, torch.from_numpy(valid.reshape(len(batch), size, size))


def _to_float(tubes: torch.Tensor, valid: torch.Tensor, normalise: bool) -> torch.Tensor:
    """(B, 7, S, S) uint8 + (B, S, S) mask -> float; pixels off the frame become 0.

    Per tube (x - mean) / (std + 8) over its valid pixels, or the student's (x - 127) / 128. The + 8 gray
    levels keep an almost flat crop (a shadow, an empty window) from being blown up to noise.
    """
    x = tubes.float()
    v = valid[:, None].float()  # (B, 1, S, S)
    if normalise:
        count = v.sum(dim=(1, 2, 3), keepdim=True).clamp_min(1.0) * x.shape[1]
        mean = (x * v).sum(dim=(1, 2, 3), keepdim=True) / count
        std = (((x - mean) * v).square().sum(dim=(1, 2, 3), keepdim=True) / count).sqrt()
        x = (x - mean) / (std + 8.0)
    else:
        x = (x - 127.0) / 128.0
    return x * v


@dataclass
class _Member:
    """One trained network and its per-task error statistics on held-out normal objects: mean and standard
    deviation, and the tail model of every task's errors (in the order of TASKS)."""

    net: MultiTaskNet
    error_mean: torch.Tensor = field(default_factory=lambda: torch.zeros(len(TASKS)))
    error_std: torch.Tensor = field(default_factory=lambda: torch.ones(len(TASKS)))
    tails: list[TailModel] = field(default_factory=list)


class _StepCounter:
    """Reports optimiser steps to a ``progress(step, total)`` callback, counted across all members."""

    def __init__(self, progress: Callable[[int, int], None] | None, done: int, total: int) -> None:
        self.progress, self.done, self.total = progress, done, total

    def step(self) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total)


class MultiTaskTeacher:
    """SSMTL-style object scorer: sum of standardised arrow, irregularity and middle-prediction errors."""

    name = "b"

    def __init__(self, config: MultiTaskConfig | None = None) -> None:
        self.config = config or MultiTaskConfig()
        if not 3 <= self.config.window < TUBE_LENGTH or self.config.window % 2 == 0:
            raise ValueError(f"window must be odd, at least 3 and below the tube length {TUBE_LENGTH}")
        if self.config.seeds < 1:
            raise ValueError(f"seeds must be 1 or more, got {self.config.seeds}")
        if self.config.combine not in COMBINES:
            raise ValueError(f"combine must be one of {', '.join(COMBINES)}, not '{self.config.combine}'")
        if self.config.views not in VIEWS:
            raise ValueError(f"views must be one of {', '.join(VIEWS)}, not '{self.config.views}'")
        self.members = [_Member(MultiTaskNet(self.config)) for _ in range(self.config.seeds)]
        self.seed = 0  # the first member's seed: it fixes which training objects were held out
        self.fitted = False

    @property
    def net(self) -> MultiTaskNet:
        """The first member's network."""
        return self.members[0].net

    # -- clips -----------------------------------------------------------------------------------------
    def _scoring_clips(self) -> tuple[list[int], list[int], int]:
        """Regular clip centred on t, the frames the middle prediction sees, and the hidden index (t)."""
        half = self.config.window // 2
        regular = list(range(TUBE_RADIUS - half, TUBE_RADIUS + half + 1))
        return regular, [TUBE_RADIUS + o for o in self.config.middle_offsets], TUBE_RADIUS

    # -- protocol --------------------------------------------------------------------------------------
    def fit(
        self,
        batches: list[ObjectBatch],
        *,
        epochs: int | None = None,
        seed: int = 0,
        progress: Callable[[int, int], None] | None = None,
    ) -> dict[str, Any]:
        """Train the three tasks on normal objects; returns per-epoch losses and the error statistics.

        With ``seeds > 1`` every member is trained the same way with seeds ``seed``, ``seed + 1``, ...; the
        report is the first member's, with every member's under ``members``. ``progress(step, total)`` is
        called after every optimiser step (for a progress bar).
        """
        seeds = range(seed, seed + self.config.seeds)
        members, reports = self._train_members(
            batches, seeds, epochs, progress, "at least one training object"
        )
        self.members = members
        self.seed = seed
        self.fitted = True
        return {**reports[0], "seeds": self.config.seeds, "members": reports}

    def resize(
        self,
        batches: list[ObjectBatch],
        seeds: int,
        *,
        epochs: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> dict[str, Any]:
        """Keep the first ``seeds`` members and train the missing ones; returns the new members' reports.

        Member i is always trained with seed ``self.seed + i`` on its own split of the training objects, so a
        teacher of three seeds grown to five (``batches``: the objects it was fitted on, in the same order)
        is the teacher ``fit`` would train with five, at the cost of two networks; shrunk to one, it is the
        one-seed teacher.
        """
        if not self.fitted:
            raise RuntimeError("the multi-task teacher must be fitted or loaded before it is resized")
        if seeds < 1:
            raise ValueError(f"seeds must be 1 or more, got {seeds}")
        reports: list[dict[str, Any]] = []
        missing = range(self.seed + len(self.members), self.seed + seeds)
        if missing:
            added, reports = self._train_members(
                batches, missing, epochs, progress, "its training objects to grow"
            )
            self.members += added
        self.members = self.members[:seeds]
        self.config = replace(self.config, seeds=seeds)
        return {"seeds": seeds, "members": reports}

    def _train_members(
        self,
        batches: list[ObjectBatch],
        seeds: range,
        epochs: int | None,
        progress: Callable[[int, int], None] | None,
        needs: str,
    ) -> tuple[list[_Member], list[dict[str, Any]]]:
        """One member trained on ``batches`` per seed in ``seeds``, progress counted across all of them."""
        cfg = self.config
        epochs = cfg.epochs if epochs is None else epochs
        data, valid = self._prepared(batches, needs)
        used = min(len(data), cfg.max_train)
        member_steps = epochs * math.ceil((used - self._held_out(used)) / cfg.batch_size)
        members, reports = [], []
        for k, seed in enumerate(seeds):
            step = _StepCounter(progress, k * member_steps, len(seeds) * member_steps)
            member, report = self._fit_member(data, valid, epochs, seed, step)
            members.append(member)
            reports.append(report)
        return members, reports

    def calibrate(self, batches: list[ObjectBatch]) -> None:
        """Measure every member's error statistics again on its held-out objects, keeping the networks.

        ``batches`` must be the training objects the teacher was fitted on, in the same order: the held-out
        split is drawn again from the members' seeds. This is how a teacher written before the tail
        combinations existed gets their statistics.
        """
        if not self.fitted:
            raise RuntimeError("the multi-task teacher must be fitted or loaded before it is calibrated")
        data, valid = self._prepared(batches, "at least one normal object to be calibrated")
        for i, member in enumerate(self.members):
            held, train = self._split(len(data), np.random.default_rng(self.seed + i))
            member.net.eval()
            stats = self._statistics(member.net, data, valid, held if len(held) else train)
            member.error_mean, member.error_std, member.tails = stats

    def _prepared(self, batches: list[ObjectBatch], needs: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Every object's tube, (N, 7, S, S) uint8, and its on-frame pixels, (N, S, S) bool."""
        prepared = [_prepare(b, self.config.size, self.config.crop_margin) for b in batches if len(b)]
        if not prepared:
            raise ValueError(f"the multi-task teacher needs {needs}")
        return torch.cat([p[0] for p in prepared]), torch.cat([p[1] for p in prepared])

    def _held_out(self, used: int) -> int:
        """How many of ``used`` training objects are kept out to measure the error statistics."""
        return round(self.config.holdout * used) if used >= 20 else 0

    def _split(self, total: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Held-out and training rows of ``total`` prepared objects: the first draw of a member's ``rng``."""
        order = rng.permutation(total)[: self.config.max_train]
        n_hold = self._held_out(len(order))
        return np.sort(order[:n_hold]), np.sort(order[n_hold:])

    def _statistics(
        self, net: MultiTaskNet, data: torch.Tensor, valid: torch.Tensor, rows: np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor, list[TailModel]]:
        """Mean, standard deviation and tail model of every task's error on the normal objects ``rows``."""
        errors = self._task_errors(net, data[rows], valid[rows])  # (M, 3)
        mean = errors.mean(dim=0)
        # The floor stops a task that is solved almost perfectly on held-out data from dominating the sum.
        std = errors.std(dim=0).clamp_min(1e-3) if len(errors) > 1 else torch.ones(len(TASKS))
        tails = [TailModel.from_training(errors[:, k].numpy()) for k in range(len(TASKS))]
        return mean, std, tails

    def _fit_member(
        self, data: torch.Tensor, valid: torch.Tensor, epochs: int, seed: int, progress: _StepCounter
    ) -> tuple[_Member, dict[str, Any]]:
        """Train one network on prepared tubes; its error statistics come from its held-out objects."""
        cfg = self.config
        total = len(data)
        rng = np.random.default_rng(seed)
        held, train = self._split(total, rng)

        torch.manual_seed(seed)
        net = MultiTaskNet(cfg)
        optimiser = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        regular, irregular = clip_indices(cfg.window)
        strided = [c for c in irregular if len({b - a for a, b in itertools.pairwise(c)}) == 1]
        history: list[dict[str, float]] = []
        net.train()
        for _ in range(epochs):
            sums = dict.fromkeys(TASKS, 0.0)
            steps = 0
            perm = rng.permutation(len(train))
            for start in range(0, len(train), cfg.batch_size):
                rows = train[perm[start : start + cfg.batch_size]]
                tubes = _to_float(data[rows], valid[rows], cfg.normalise)  # (B, 7, S, S)
                losses = self._training_losses(net, tubes, valid[rows], regular, irregular, strided, rng)
                loss = sum(losses.values())
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                for task in TASKS:
                    sums[task] += losses[task].item()
                steps += 1
                progress.step()
            history.append({task: sums[task] / max(steps, 1) for task in TASKS})

        net.eval()
        mean, std, tails = self._statistics(net, data, valid, held if len(held) else train)
        report = {
            "objects": total,
            "trained_on": len(train),
            "held_out": len(held),
            "epochs": epochs,
            "seed": seed,
            "losses": history,
            "error_mean": dict(zip(TASKS, mean.tolist(), strict=True)),
            "error_std": dict(zip(TASKS, std.tolist(), strict=True)),
        }
        return _Member(net, mean, std, tails), report

    def _training_losses(
        self,
        net: MultiTaskNet,
        tubes: torch.Tensor,
        valid: torch.Tensor,
        regular: list[tuple[int, ...]],
        irregular: list[tuple[int, ...]],
        strided: list[tuple[int, ...]],
        rng: np.random.Generator,
    ) -> dict[str, torch.Tensor]:
        """One regular and one irregular clip per object, each played forward or backward at random."""
        b = len(tubes)
        reg_pick = [regular[i] for i in rng.integers(len(regular), size=b)]
        irr_pick = [irregular[i] for i in rng.integers(len(irregular), size=b)]
        if strided:
            use_stride = rng.random(b) < self.config.uniform_skips
            stride_pick = rng.integers(len(strided), size=b)
            irr_pick = [
                strided[j] if u else p for p, u, j in zip(irr_pick, use_stride, stride_pick, strict=True)
            ]
        picks = reg_pick + irr_pick
        backward = rng.random(2 * b) < 0.5
        rows = torch.arange(b).repeat(2)
        index = torch.tensor([p[::-1] if bwd else p for p, bwd in zip(picks, backward, strict=True)])
        clips = tubes[rows[:, None], index]  # (2B, window, S, S)
        arrow_logits, irr_logits = net.classify(clips.unsqueeze(1))
        arrow_target = torch.from_numpy(backward.astype(np.int64))
        irr_target = torch.cat([torch.zeros(b, dtype=torch.long), torch.ones(b, dtype=torch.long)])

        # Middle prediction: a hidden frame anywhere its context fits in the tube.
        offsets = torch.tensor(self.config.middle_offsets)
        lowest, highest = -min(0, int(offsets.min())), TUBE_LENGTH - 1 - max(0, int(offsets.max()))
        middle = torch.from_numpy(rng.integers(lowest, highest + 1, size=b))  # (B,)
        context = middle[:, None] + offsets[None, :]  # (B, K)
        inputs = tubes[torch.arange(b)[:, None], context]  # (B, K, S, S)
        target = tubes[torch.arange(b), middle]  # (B, S, S)
        predicted = net.predict_middle(inputs.unsqueeze(1))
        v = valid.float()
        return {
            "arrow": F.cross_entropy(arrow_logits, arrow_target),
            "irregularity": F.cross_entropy(irr_logits, irr_target),
            "middle": ((predicted - target).abs() * v).sum() / v.sum().clamp_min(1.0),
        }

    @torch.no_grad()
    def _task_errors(
        self, net: MultiTaskNet, data: torch.Tensor, valid: torch.Tensor, chunk: int = 256
    ) -> torch.Tensor:
        """Per-task errors of prepared tubes (N, 7, S, S) uint8 and masks -> (N, 3), order of TASKS.

        1 - p(correct class) for the classifiers and the mean absolute error of the middle prediction, or
        their logarithms with ``log_errors`` (taken from log-softmax, exact even when p is within float
        precision of 1); with several ``views``, each task's mean over them (taken on the logarithms).
        """
        regular, context, middle = self._scoring_clips()
        clip_views, middle_views = VIEWS[self.config.views]
        out = []
        for start in range(0, len(data), chunk):
            v = valid[start : start + chunk].float()  # (C, S, S)
            tubes = _to_float(
                data[start : start + chunk], valid[start : start + chunk], self.config.normalise
            )
            arrow, irregular = [], []
            for backward, mirrored in clip_views:
                order = regular[::-1] if backward else regular
                clips = tubes[:, order].flip(-1) if mirrored else tubes[:, order]
                arrow_logits, irr_logits = net.classify(clips.unsqueeze(1))
                # Class 0 is "forward" and "regular": the error is the log-probability of the wrong class.
                arrow.append(arrow_logits.log_softmax(dim=1)[:, 0 if backward else 1])
                irregular.append(irr_logits.log_softmax(dim=1)[:, 1])
            middle_errors = []
            for mirrored in middle_views:
                seen, target, pixels = tubes[:, context], tubes[:, middle], v
                if mirrored:
                    seen, target, pixels = seen.flip(-1), target.flip(-1), pixels.flip(-1)
                predicted = net.predict_middle(seen.unsqueeze(1))
                error = (predicted - target).abs() * pixels  # off-frame pixels left out
                middle_errors.append(
                    (error.sum(dim=(1, 2)) / pixels.sum(dim=(1, 2)).clamp_min(1.0)).clamp_min(1e-6).log()
                )
            errors = torch.stack(
                [torch.stack(e).mean(dim=0) for e in (arrow, irregular, middle_errors)], dim=1
            )
            out.append(errors if self.config.log_errors else errors.exp())
        return torch.cat(out) if out else torch.zeros(0, len(TASKS))

    def raw_errors(self, batch: ObjectBatch) -> list[torch.Tensor]:
        """Every member's raw task errors of the objects in ``batch``, each (N, 3) in the order of TASKS."""
        if not self.fitted:
            raise RuntimeError("the multi-task teacher must be fitted or loaded before scoring")
        if len(batch) == 0:
            return [torch.zeros(0, len(TASKS)) for _ in self.members]
        data, valid = _prepare(batch, self.config.size, self.config.crop_margin)
        for m in self.members:
            m.net.eval()
        return [self._task_errors(m.net, data, valid) for m in self.members]

    def task_scores(self, batch: ObjectBatch) -> np.ndarray:
        """Standardised error of every task per object, (N, 3) float32 in the order of TASKS.

        Each member's errors are standardised with its own statistics, then averaged over the members.
        """
        return self._standardised(self.raw_errors(batch))

    def _standardised(self, errors: list[torch.Tensor]) -> np.ndarray:
        z = [(e - m.error_mean) / m.error_std for e, m in zip(errors, self.members, strict=True)]
        return (sum(z) / len(self.members)).numpy().astype(np.float32)

    def task_rarities(self, batch: ObjectBatch) -> np.ndarray:
        """Rarity of every task's error among held-out normal objects, -ln q, (N, 3) float32, averaged over
        the members."""
        if len(batch) == 0:
            return np.zeros((0, len(TASKS)), np.float32)
        return np.mean(self._rarities(self.raw_errors(batch)), axis=0).astype(np.float32)

    def _rarities(self, errors: list[torch.Tensor]) -> list[np.ndarray]:
        out = []
        for e, m in zip(errors, self.members, strict=True):
            if len(m.tails) != len(TASKS):
                raise RuntimeError(
                    "this teacher b has no tail statistics; calibrate it on its training objects first"
                )
            out.append(np.stack([m.tails[k].rarity(e[:, k].numpy()) for k in range(len(TASKS))], axis=1))
        return out

    def combine(self, errors: list[torch.Tensor]) -> np.ndarray:
        """One score per object, (N,) float32, from the members' raw errors (:meth:`raw_errors`): the
        weighted task errors combined as ``config.combine`` says (for several members, the mean of the
        members' scores)."""
        weights = np.asarray(self.config.task_weights, np.float32)
        if self.config.combine == "z-sum" or len(errors[0]) == 0:
            return (self._standardised(errors) * weights).sum(axis=1).astype(np.float32)
        used = weights != 0
        scores = []
        for r in self._rarities(errors):
            weighted = r[:, used] * weights[used]
            scores.append(weighted.max(axis=1) if self.config.combine == "tail-max" else weighted.sum(axis=1))
        return np.mean(scores, axis=0).astype(np.float32)

    def score(self, batch: ObjectBatch) -> np.ndarray:
        """One score per object, (N,) float32: its raw task errors, combined."""
        return self.combine(self.raw_errors(batch))

    def save(self, path: Path) -> None:
        """Write config, network weights and error statistics as tensors (loadable with weights_only)."""
        if not self.fitted:
            raise RuntimeError("the multi-task teacher must be fitted before saving")
        payload = {
            "format": FORMAT,
            "version": VERSION,
            "config": json.dumps(asdict(self.config)),
            "state_dicts": [m.net.state_dict() for m in self.members],
            "error_means": torch.stack([m.error_mean for m in self.members]),
            "error_stds": torch.stack([m.error_std for m in self.members]),
            "tails": json.dumps([[t.to_dict() for t in m.tails] for m in self.members]),
            "seed": self.seed,
        }
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)

    @classmethod
    def load(cls, path: Path) -> MultiTaskTeacher:
        """Read a teacher written by :meth:`save`; refuses files that would need to unpickle objects."""
        payload = read_teacher_file(Path(path), FORMAT, READABLE_VERSIONS)
        config = json.loads(payload["config"])
        config.setdefault("seeds", 1)  # a file from before members existed holds one network
        config.setdefault("combine", "z-sum")  # and one from before the tail combinations adds z-scores
        config.setdefault("views", "centre")  # and one from before the views asks each task once
        teacher = cls(MultiTaskConfig(**config))
        if payload["version"] == 1:  # one network, written before members existed
            states = [payload["state_dict"]]
            means, stds = payload["error_mean"][None], payload["error_std"][None]
        else:
            states, means, stds = payload["state_dicts"], payload["error_means"], payload["error_stds"]
        if not len(states) == len(means) == len(stds) == teacher.config.seeds:
            raise WeightsError(f"teacher file {path} is inconsistent ({len(states)} networks); refit it.")
        tails = json.loads(payload.get("tails", "[]")) or [[] for _ in states]
        if len(tails) != len(states):
            raise WeightsError(f"teacher file {path} is inconsistent ({len(tails)} tail sets); refit it.")
        if teacher.config.combine != "z-sum" and any(len(t) != len(TASKS) for t in tails):
            raise WeightsError(
                f"teacher file {path} combines by tails but lacks their statistics; delete it to retrain."
            )
        for member, state, mean, std, tail in zip(teacher.members, states, means, stds, tails, strict=True):
            member.net.load_state_dict(state)
            member.net.eval()
            member.error_mean, member.error_std = mean.float(), std.float()
            member.tails = [TailModel.from_dict(t) for t in tail]
        teacher.seed = int(payload.get("seed", 0))
        teacher.fitted = True
        return teacher
