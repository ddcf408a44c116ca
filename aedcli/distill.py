"""Two-phase training of the student: reconstruction pre-training, then standard + adversarial distillation.

Croitoru et al., "Lightning Fast Video Anomaly Detection via Adversarial Knowledge Distillation" (arXiv
2211.15597), as written down in ``docs/method.md`` section 4:

1. *Pre-training* (:func:`pretrain_epoch`): encoder + transformer + a light decoder
   (:class:`aedcli.student.PretrainNet`) reconstruct frame t at half resolution from the (t, t-3, t+3) stack;
   MSE; Adam lr 1e-3, weight decay 5e-6, lr halved every 10 epochs. The decoder is then dropped.
2. *Distillation* (:func:`distill_epoch`) on every normal training frame with the teachers' targets:
   ``L_KD = sum_k sum_s w_k MSE(student_s, teacher_k,s)`` over the scales s in {1x1, 4x4, 16x16}, plus
   ``0.1 * sum_k BCE(D_k(student), 1)``; one :class:`aedcli.student.Discriminator` per teacher learns
   ``BCE(D_k(teacher), 1) + BCE(D_k(student.detach()), 0)``. Adam lr 1e-4 for the student and for every
   discriminator.

The weights kept are those of the last epoch, or of the epoch ``select`` picks on held-out training video
(validation L_KD, or the pseudo-anomaly AUC of :mod:`aedcli.probe`); nothing is ever selected on test data.
The decision threshold is the 99th percentile of smoothed student scores on ``val_videos`` normal training
videos held out from training (or on all training videos when ``val_videos=0``, which the threshold's source
then says).

Everything lives in one output folder::

    OUT/targets/<teacher>/train/<clip>.npz   teacher targets (aedcli.teachers.pipeline.ensure_targets)
    OUT/cache/frames_HxWxC/<clip>.npy        prepared uint8 training frames (memory-mapped)
    OUT/checkpoints/{pretrain,distill}.pt    end-of-epoch state: models, optimisers, schedulers, RNG, history
    OUT/history.json, OUT/loss.png           losses per epoch
    OUT/weights.pt                           the student (aedcli.weights format) with threshold and provenance

Every epoch ends with an atomic checkpoint, so ``resume=True`` continues after the last finished epoch and a
run killed mid-epoch loses only that epoch. Launched by ``torchrun`` (``RANK``/``WORLD_SIZE`` set), training
runs data-parallel (DistributedDataParallel: gloo on CPU, nccl on CUDA; discriminators too); rank 0 writes
every file.

>>> cfg = DistillConfig(variant="fastaed-s", size=(240, 360), epochs_pretrain=5, epochs=10)
>>> result = distill(load_dataset("ped2"), Path("runs/ped2"), cfg)
>>> result.weights          # runs/ped2/weights.pt
"""

from __future__ import annotations

import json
import math
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from torch.utils.data import Dataset as TorchDataset

from aedcli.batchnorm import batchnorm_layers, recalibrate_batchnorm
from aedcli.budget import check_distill_budget, estimate_distill_budget
from aedcli.data.clips import Clip, Dataset, sped_up_clips
from aedcli.errors import AedError, DatasetError, UsageError
from aedcli.files import atomic_path, write_json_atomic
from aedcli.inputs import InputSpec
from aedcli.probe import PseudoAnomalyProbe, cell_rect, probe_auc
from aedcli.scoring import Threshold, threshold_from_normal
from aedcli.student import (
    VARIANTS,
    Discriminator,
    PretrainNet,
    Student,
    StudentMaps,
    count_params,
    reconstruction_target,
    student_config,
)
from aedcli.weights import save_weights

Stage = Literal["teachers", "pretrain", "distill", "all"]
STAGES: tuple[str, ...] = ("teachers", "pretrain", "distill", "all")
HEADS: tuple[str, ...] = ("s", "m", "l")
SELECTIONS: tuple[str, ...] = ("last", "val", "val-auc", "val-auc-box")
PROBE_KEYS: dict[str, str] = {"cells": "val_auc", "box": "val_auc_box"}
"""History column of each pseudo-anomaly probe region (:mod:`aedcli.probe`)."""
DEFAULT_TEACHERS: tuple[str, ...] = ("a", "b")
"""Used when no teachers are named and the teacher pipeline does not declare its own defaults."""

CHECKPOINT_FORMAT = "aed-distill-checkpoint"
CHECKPOINT_VERSION = 1

# Options that may change between a run and its resumption (they do not change what is being trained).
_RESUMABLE_CHANGES = frozenset(
    {"epochs_pretrain", "epochs", "num_workers", "device", "sigma", "percentile", "bn_batches"}
)
# Options that shape pre-training; distillation options may change between the phases.
_PRETRAIN_KEYS = (
    "variant",
    "size",
    "batch",
    "lr_pretrain",
    "weight_decay",
    "lr_step",
    "lr_gamma",
    "val_videos",
    "seed",
)


# ---------------------------------------------------------------------------------------------------------
# Configuration and result


@dataclass
class DistillConfig:
    """Everything that defines a training run. Optimisation defaults are the paper's (method.md section 4:
    35 + 35 epochs, batch 48, Adam 1e-3 / 1e-4, weight decay 5e-6, lr halved every 10 epochs, adversarial
    weight 0.1); on a CPU, fewer epochs, a smaller variant and a smaller input are the practical choice.

    size:          (height, width) of the student's input; None = the dataset's frame size.
    teachers:      names of the teachers whose targets to distil; empty = the teacher pipeline's defaults.
    teacher_weights: w_k per teacher (default 1 each).
    heads:         scales that enter L_KD (s = 1x1, m = 4x4, l = 16x16); discriminators always see all three.
    val_videos:    normal training videos held out for the validation loss and the threshold (0 = none;
                   the threshold then comes from the training videos themselves).
    sigma, percentile: temporal smoothing (frames) and percentile of the stored threshold.
    adv_warmup:    distillation epochs before the adversarial term joins L_KD (the discriminators train from
                   the first epoch, so they are ready when it does).
    lr_d:          the discriminators' Adam learning rate (None = ``lr``, the paper's choice).
    real_label:    the discriminators' target for teacher maps: 0.9 is one-sided label smoothing (Salimans
                   et al., 2016), 1.0 the paper's plain form.
    spectral_norm: spectral normalisation in the discriminators (see :class:`aedcli.student.Discriminator`).
    clip_grad:     the student's gradient norm is clipped to this before each step (0 = no clipping). Without
                   it, a single bad batch late in training can throw a CPU run at a raised --lr off for good.
    select:        which epoch's student is written: ``last``; ``val``, the epoch with the lowest
                   validation L_KD (normal training video held out; never test data), needs --val-videos;
                   ``val-auc``, the epoch with the highest pseudo-anomaly AUC on the held-out videos
                   (:mod:`aedcli.probe`, grid-cell pastes; ties go to the lower L_KD), which also needs
                   --speedups; or ``val-auc-box``, the same with the probe's object-box pastes.
    speedups:      pseudo-anomalies: each training (and validation) video is also played this many times
                   faster (:func:`aedcli.data.clips.sped_up`), the teachers score those clips like any other,
                   and the student learns from both (empty = normal video only, the paper's recipe).
    region_mix:    probability that a normal training frame gets a rectangle of a sped-up frame of the same
                   video pasted in, stacks and targets alike (:func:`region_mix`): a local pseudo-anomaly
                   among normal motion, where sped-up copies alone only show whole frames in a hurry.
                   Needs ``speedups``; 0 = off. Validation frames are never mixed.
    bn_batches:    after each distillation epoch, every BatchNorm layer's running statistics are re-estimated
                   on this many training batches (:mod:`aedcli.batchnorm`) before validation and saving; 0 =
                   off (the moving averages of training, as runs before this option). Training is unchanged.
    """

    variant: str = "fastaed"
    size: tuple[int, int] | None = None
    epochs_pretrain: int = 35
    epochs: int = 35
    batch: int = 48
    lr_pretrain: float = 1e-3
    lr: float = 1e-4
    weight_decay: float = 5e-6
    lr_step: int = 10
    lr_gamma: float = 0.5
    adv_weight: float = 0.1
    adv_warmup: int = 0
    lr_d: float | None = None
    real_label: float = 0.9
    spectral_norm: bool = True
    clip_grad: float = 1.0
    select: str = "last"
    speedups: tuple[int, ...] = ()
    region_mix: float = 0.0
    bn_batches: int = 30
    teachers: tuple[str, ...] = ()
    teacher_weights: tuple[float, ...] | None = None
    heads: tuple[str, ...] = HEADS
    no_adversarial: bool = False
    no_pretrain: bool = False
    val_videos: int = 2
    sigma: float = 3.0
    percentile: float = 99.0
    seed: int = 0
    num_workers: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        for name in ("epochs_pretrain", "epochs", "val_videos", "num_workers", "adv_warmup", "bn_batches"):
            if getattr(self, name) < 0:
                raise UsageError(f"--{_opt(name)} must be 0 or more, got {getattr(self, name)}.")
        if self.batch < 1:
            raise UsageError(f"--batch must be at least 1, got {self.batch}.")
        # Options of the command are named as options; the others (API only) by their field.
        for name, label in (("lr", "--lr"), ("lr_d", "--lr-d"), ("lr_pretrain", "lr_pretrain")):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise UsageError(f"{label} must be a positive number, not {value:g}.")
        for name in ("weight_decay", "adv_weight"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise UsageError(f"{name} must be 0 or a positive number, not {value:g}.")
        if not (math.isfinite(self.sigma) and self.sigma >= 0):
            raise UsageError(f"--sigma must be 0 (no smoothing) or more frames, not {self.sigma:g}.")
        if not 0 < self.percentile <= 100:
            raise UsageError(f"--percentile must be above 0 and at most 100, not {self.percentile:g}.")
        if not 0.5 < self.real_label <= 1.0:
            raise UsageError(f"--real-label must be above 0.5 and at most 1, got {self.real_label}.")
        bad = [h for h in self.heads if h not in HEADS]
        if bad or not self.heads:
            raise UsageError(
                f"--heads takes a comma-separated subset of s,m,l, got {','.join(self.heads)!r}."
            )
        if self.size is not None and min(self.size) < 32:
            raise UsageError(f"--size {self.size[0]}x{self.size[1]} is too small; use at least 32x32.")
        if self.teacher_weights is not None and len(self.teacher_weights) != len(self.teachers):
            raise UsageError(
                "give one teacher weight per teacher (--teachers and their weights differ in number)."
            )
        if self.device not in ("cpu", "cuda"):
            raise UsageError(f"--device must be cpu or cuda, got {self.device!r}.")
        if any(k < 2 for k in self.speedups) or len(set(self.speedups)) != len(self.speedups):
            raise UsageError(
                "--speedups takes distinct whole factors of 2 or more, got "
                f"{','.join(map(str, self.speedups))}."
            )
        if not (math.isfinite(self.region_mix) and 0.0 <= self.region_mix <= 1.0):
            raise UsageError(f"--region-mix is a probability from 0 to 1, got {self.region_mix}.")
        if self.region_mix > 0 and not self.speedups:
            raise UsageError("--region-mix pastes in sped-up frames; add --speedups (e.g. 2,3).")
        if not (math.isfinite(self.clip_grad) and self.clip_grad >= 0):
            raise UsageError(f"--clip-grad must be 0 (off) or a positive norm, got {self.clip_grad}.")
        if self.select not in SELECTIONS:
            raise UsageError(f"--select must be one of {', '.join(SELECTIONS)}, got {self.select!r}.")
        if self.select != "last" and self.val_videos == 0:
            raise UsageError(f"--select {self.select} needs held-out videos; pass --val-videos 1 or more.")
        if self.select.startswith("val-auc") and not self.speedups:
            raise UsageError(
                f"--select {self.select} pastes sped-up video into held-out frames; pass --speedups."
            )
        if self.variant not in VARIANTS:
            raise UsageError(f"--variant {self.variant!r} is unknown; choose one of {', '.join(VARIANTS)}.")

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DistillConfig:
        kw = {f.name: d[f.name] for f in fields(cls) if f.name in d}
        for key in ("size", "teachers", "teacher_weights", "heads", "speedups"):
            if kw.get(key) is not None:
                kw[key] = tuple(kw[key])
        return cls(**kw)


@dataclass
class DistillResult:
    """What a call to :func:`distill` produced."""

    out_dir: Path
    weights: Path | None
    history: dict[str, list[dict[str, float]]]
    threshold: Threshold | None = None
    stages_run: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------------------
# Training data: prepared frames (memory-mapped cache) and the teachers' targets


def stack_indices(t: int, n: int, offset: int) -> tuple[int, int, int]:
    """Frame indices of the stack of frame t: (t, t-offset, t+offset), a neighbour outside the clip -> t.

    The same rule as :func:`aedcli.video.frame_stacks`, for random access during training.
    """
    before = t - offset if t - offset >= 0 else t
    after = t + offset if t + offset < n else t
    return t, before, after


def cache_frames(clips: Sequence[Clip], spec: InputSpec, cache_dir: Path) -> list[Path]:
    """Write every clip's frames, prepared by ``spec``, to ``cache_dir/<clip>.npy`` (uint8); reuse valid ones.

    Each file is ``(N, H, W)`` or ``(N, H, W, C)`` and is written atomically, so an interrupted run leaves
    either a complete file or none.
    """
    paths = []
    frame_shape = (spec.height, spec.width) if spec.channels == 1 else (spec.height, spec.width, 3)
    for clip in clips:
        path = cache_dir / f"{clip.name}.npy"
        shape = (clip.frame_count, *frame_shape)
        if path.is_file():
            try:
                if np.load(path, mmap_mode="r").shape == shape:
                    paths.append(path)
                    continue
            except (ValueError, OSError):
                pass  # damaged cache file: rebuild it
        with atomic_path(path) as tmp:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
            n = 0
            for frame in clip.frames(gray=spec.channels == 1):
                if n == clip.frame_count:  # more frames than listed
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
        paths.append(path)
    return paths


Targets = tuple[np.ndarray, np.ndarray, np.ndarray]
"""One frame's targets ``s (K,)``, ``m (K, 4, 4)``, ``l (K, 16, 16)`` (or many, with a leading frame axis)."""


def target_path(targets_dir: Path, teacher: str, clip: Clip) -> Path:
    """``<targets>/<teacher>/<split>/<clip>.npz`` (the format of :mod:`aedcli.teachers.maps`)."""
    return targets_dir / teacher / clip.split / f"{clip.name}.npz"


def missing_targets(targets_dir: Path, teachers: Sequence[str], clips: Sequence[Clip]) -> list[Path]:
    """Target files that do not exist yet; targets are complete when every clip has one per teacher."""
    return [p for t in teachers for c in clips if not (p := target_path(targets_dir, t, c)).is_file()]


def ensure_teacher_targets(
    dataset: Dataset,
    targets_dir: Path,
    teachers: Sequence[str],
    *,
    workers: int = 1,
    progress: bool = True,
    extra: Sequence[Clip] = (),
    teach: Any = None,
    normalisation: str | None = None,
) -> None:
    """Run the teacher pipeline unless every training clip (and ``extra`` clip, e.g. sped-up training video)
    already has a target file per teacher.

    A teacher not yet painted in ``targets_dir`` is trained and painted with ``teach`` (a
    :class:`aedcli.teachers.pipeline.TeachConfig`, e.g. from ``--choices``) and ``normalisation``, the
    pipeline's defaults when they are ``None``; one already painted keeps the options it was painted with.
    """
    needed = [*dataset.train, *extra]
    if not missing_targets(targets_dir, teachers, needed):
        return
    try:
        from aedcli.teachers.pipeline import (
            DEFAULT_NORMALISATION,
            TargetPaths,
            ensure_targets,
            stored_scaling,
        )
    except ImportError:
        raise AedError(
            f"teacher targets are missing under {targets_dir} and the teacher pipeline is not available; "
            "write the targets there first."
        ) from None
    # A folder painted by 'aed teach' with its own options keeps them for the targets added now; teachers
    # painted alike run together (they share the proposals and training objects).
    groups: dict[str, tuple[str, Any, list[str]]] = {}
    for name in teachers:
        if TargetPaths(targets_dir).scaler(name).is_file():
            scaling, config = stored_scaling(targets_dir, name)
        else:
            scaling, config = normalisation or DEFAULT_NORMALISATION, teach
        key = repr((scaling, config))
        groups.setdefault(key, (scaling, config, []))[2].append(name)
    for scaling, config, names in groups.values():
        ensure_targets(
            dataset,
            targets_dir,
            names,
            workers=workers,
            progress=progress,
            extra=extra,
            normalisation=scaling,
            config=config,
        )
    still = missing_targets(targets_dir, teachers, needed)
    if still:
        raise AedError(f"teacher target {still[0]} was not written; re-run 'aed distill --stage teachers'.")


def read_targets(targets_dir: Path, teachers: Sequence[str], clips: Sequence[Clip]) -> Targets:
    """The targets of ``clips`` (in order) for every teacher: s (M, K), m (M, K, 4, 4), l (M, K, 16, 16)."""
    from aedcli.teachers.maps import TargetsError, load_targets

    s, m, l = [], [], []  # noqa: E741
    for clip in clips:
        per = []
        for teacher in teachers:
            path = target_path(targets_dir, teacher, clip)
            if not path.is_file():
                raise AedError(f"teacher target {path} is missing; run 'aed distill --stage teachers' first.")
            try:
                t = load_targets(path)
            except TargetsError:
                raise AedError(
                    f"teacher target {path} is unreadable; delete it and re-run "
                    "'aed distill --stage teachers'."
                ) from None
            if len(t) != clip.frame_count:
                raise AedError(
                    f"teacher target {path} covers {len(t)} frames but video '{clip.name}' has "
                    f"{clip.frame_count}; delete it and re-run 'aed distill --stage teachers'."
                )
            per.append(t)
        s.append(np.stack([t.s1 for t in per], axis=1))  # (N, K)
        m.append(np.stack([t.m4 for t in per], axis=1))  # (N, K, 4, 4)
        l.append(np.stack([t.l16 for t in per], axis=1))  # (N, K, 16, 16)
    return (
        np.concatenate(s).astype(np.float32),
        np.concatenate(m).astype(np.float32),
        np.concatenate(l).astype(np.float32),
    )


def region_mix(
    stack: np.ndarray,
    targets: Targets,
    patch_stack: np.ndarray,
    patch_targets: Targets,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Paste a rectangle of one frame stack into another, and the same rectangle of its targets.

    The rectangle is one or two cells high and wide on the 4x4 target grid, at a random place: ``m`` takes
    the patch's cells there, ``l`` the 16x16 cells under them (4x4 maps are block maxima of the 16x16 ones,
    as both pool the same painted map), the stack the pixels under them (rows and columns split evenly), and
    ``s``, the max of the whole map, becomes the max of the new ``l``. With the same camera on both sides the
    seam is nearly invisible, and the targets say what the teachers say of each part: the object-centric
    scores are local. Returns (stack, s, m, l), new arrays.
    """
    _, m, l = targets  # noqa: E741
    _, pm, pl = patch_targets
    grid, fine = m.shape[-1], l.shape[-1]
    per = fine // grid
    height, width = stack.shape[1:3]
    rows = int(rng.integers(1, 3))
    cols = int(rng.integers(1, 3))
    r0, c0 = int(rng.integers(0, grid - rows + 1)), int(rng.integers(0, grid - cols + 1))
    y0, y1, x0, x1 = cell_rect(rows, cols, r0, c0, height, width, grid)
    out = stack.copy()
    out[:, y0:y1, x0:x1] = patch_stack[:, y0:y1, x0:x1]
    m, l = m.copy(), l.copy()  # noqa: E741
    m[:, r0 : r0 + rows, c0 : c0 + cols] = pm[:, r0 : r0 + rows, c0 : c0 + cols]
    fr, fc = slice(r0 * per, (r0 + rows) * per), slice(c0 * per, (c0 + cols) * per)
    l[:, fr, fc] = pl[:, fr, fc]
    s = l.reshape(len(l), -1).max(axis=1).astype(l.dtype)
    return out, s, m, l


class StackDataset(TorchDataset):
    """Every frame of some clips as a (t, t-3, t+3) stack of prepared uint8 frames, with its targets.

    Item i -> ``(stack (3, H, W[, C]) uint8,)`` or ``(stack, s (K,), m (K, 4, 4), l (K, 16, 16))``. The
    frame caches are memory-mapped lazily, so DataLoader workers each open their own. ``steps[c]`` = k > 1
    reads clip c sped up k times (:func:`aedcli.data.clips.sped_up`) from its normal-speed cache: frames
    0, k, 2k, ... as (t, t-3k, t+3k) stacks, in the order of the sped-up clip's targets. ``mix`` > 0 pastes
    a rectangle of a sped-up frame of the same video into that share of the normal-speed frames
    (:func:`region_mix`), drawn afresh each epoch (:meth:`set_epoch`) from ``seed``, epoch and item.
    """

    def __init__(
        self,
        frame_paths: Sequence[Path],
        offset: int,
        targets: Targets | None = None,
        steps: Sequence[int] | None = None,
        *,
        mix: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.frame_paths = list(frame_paths)
        self.offset = offset
        self.steps = list(steps) if steps is not None else [1] * len(self.frame_paths)
        if len(self.steps) != len(self.frame_paths):
            raise ValueError(f"{len(self.steps)} steps for {len(self.frame_paths)} clips")
        lengths = [int(np.load(p, mmap_mode="r").shape[0]) for p in self.frame_paths]
        times = [np.arange(0, n, k) for n, k in zip(lengths, self.steps, strict=True)]
        self.clip_of = np.repeat(np.arange(len(lengths)), [len(t) for t in times])  # (M,)
        self.t_of = np.concatenate(times) if lengths else np.zeros(0, np.int64)
        self.lengths = lengths
        self.targets = targets
        if targets is not None and len(targets[0]) != len(self.clip_of):
            raise ValueError(f"{len(targets[0])} targets for {len(self.clip_of)} frames")
        self.mix, self.seed, self.epoch = mix, seed, 0
        self.patches: dict[int, np.ndarray] = {}  # normal-speed clip -> items of its video's sped-up copies
        if mix > 0:
            normal = {str(p): c for c, p in enumerate(self.frame_paths) if self.steps[c] == 1}
            owner = np.asarray([normal.get(str(p), -1) for p in self.frame_paths], np.int64)  # per clip
            fast = np.flatnonzero(np.asarray(self.steps)[self.clip_of] > 1)
            self.patches = {c: fast[owner[self.clip_of[fast]] == c] for c in normal.values()}
            if targets is None or not any(len(v) for v in self.patches.values()):
                raise ValueError("region mixing needs targets and sped-up copies of the clips")
        self._frames: list[np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.clip_of)

    def set_epoch(self, epoch: int) -> None:
        """Draw this epoch's mixing (the same for a resumed run as for an uninterrupted one)."""
        self.epoch = epoch

    def _stack(self, i: int) -> np.ndarray:
        if self._frames is None:
            self._frames = [np.load(p, mmap_mode="r") for p in self.frame_paths]
        c, t = int(self.clip_of[i]), int(self.t_of[i])
        offset = self.offset * self.steps[c]
        return np.stack([self._frames[c][j] for j in stack_indices(t, self.lengths[c], offset)])

    def __getitem__(self, i: int) -> tuple[np.ndarray, ...]:
        stack = self._stack(i)  # (3, H, W[, C])
        if self.targets is None:
            return (stack,)
        s, m, l = self.targets  # noqa: E741
        patches = self.patches.get(int(self.clip_of[i]))
        if patches is not None and len(patches):
            rng = np.random.default_rng([self.seed, self.epoch, i])
            if rng.random() < self.mix:
                j = int(patches[rng.integers(len(patches))])
                return region_mix(stack, (s[i], m[i], l[i]), self._stack(j), (s[j], m[j], l[j]), rng)
        return stack, s[i], m[i], l[i]


# ---------------------------------------------------------------------------------------------------------
# One epoch of each phase


@dataclass
class _Dist:
    """Where this process stands in a (possibly single-process) run."""

    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    owns_group: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum of ``values`` over all processes."""
        if not self.distributed:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()


def _unwrap(m: nn.Module) -> nn.Module:
    return m.module if isinstance(m, DistributedDataParallel) else m


def memory_format(device: torch.device) -> torch.memory_format:
    """Channels-last on CPU, where it makes the convolutions 15-35% faster; the default elsewhere."""
    return torch.channels_last if device.type == "cpu" else torch.contiguous_format


def _batches(
    loader: DataLoader, spec: InputSpec, device: torch.device
) -> Iterator[tuple[torch.Tensor, list[torch.Tensor]]]:
    fmt = memory_format(device)
    for batch in loader:
        x = spec.to_tensor(batch[0].numpy()).to(device, non_blocking=True)  # (B, 3*C, H, W)
        yield x.contiguous(memory_format=fmt), [b.to(device, non_blocking=True) for b in batch[1:]]


def pretrain_epoch(
    net: nn.Module,
    loader: DataLoader,
    spec: InputSpec,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> dict[str, float]:
    """One epoch of phase 1: MSE between the decoder's output and frame t at half resolution."""
    net.train()
    fc = _unwrap(net).decoder.out.out_channels
    total, frames = 0.0, 0
    for x, _ in _batches(loader, spec, device):
        recon = net(x)  # (B, C, H/2, W/2)
        loss = F.mse_loss(recon, reconstruction_target(x, fc, recon.shape[-2:]))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(x)
        frames += len(x)
        if on_step is not None:
            on_step(len(x), {"mse": total / frames})
    return {"loss": total, "frames": frames}


def kd_loss(
    maps: StudentMaps,
    s: torch.Tensor,
    m: torch.Tensor,
    l: torch.Tensor,  # noqa: E741
    weights: Sequence[float],
    heads: Sequence[str],
) -> torch.Tensor:
    """``sum_k sum_scale w_k MSE(student_scale, teacher_k,scale)``.

    Targets: s (B, K), m (B, K, 4, 4), l (B, K, 16, 16) for K teachers; ``heads`` picks the scales.
    """
    loss = maps.s.new_zeros(())
    for k, w in enumerate(weights):
        if "s" in heads:
            loss = loss + w * F.mse_loss(maps.s, s[:, k])
        if "m" in heads:
            loss = loss + w * F.mse_loss(maps.m, m[:, k])
        if "l" in heads:
            loss = loss + w * F.mse_loss(maps.l, l[:, k])
    return loss


def constant_kd_loss(
    train: Targets,
    val: Targets,
    weights: Sequence[float],
    heads: Sequence[str] = HEADS,
) -> float:
    """L_KD on ``val`` of a student that ignores its input and always answers the mean training targets.

    The mean is taken over frames and teachers, per cell (one number at 1x1, a mean 4x4 and a mean 16x16
    map): the best a single set of heads can do without looking at the video. A student whose validation
    L_KD does not beat this has not learnt its teachers.
    """
    total = 0.0
    for scale, tr, va in zip(("s", "m", "l"), train, val, strict=True):
        if scale not in heads or len(tr) == 0 or len(va) == 0:
            continue
        mean = tr.mean(axis=(0, 1), dtype=np.float64)  # () or (4, 4) or (16, 16)
        for k, w in enumerate(weights):
            total += w * float(np.mean((va[:, k] - mean) ** 2))
    return total


def distill_epoch(
    student: nn.Module,
    discriminators: Sequence[nn.Module],
    loader: DataLoader,
    spec: InputSpec,
    optimizer: torch.optim.Optimizer,
    optimizer_d: torch.optim.Optimizer | None,
    cfg: DistillConfig,
    weights: Sequence[float],
    device: torch.device,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    adv_weight: float | None = None,
) -> dict[str, float]:
    """One epoch of phase 2; returns summed losses and the frame count (averaged by the caller).

    ``adv_weight`` overrides ``cfg.adv_weight`` for this epoch (0 during the adversarial warm-up: the
    discriminators still learn, the student feels only L_KD).
    """
    student.train()
    sums = {"kd": 0.0, "adv": 0.0, "d": 0.0, "grad_norm": 0.0}
    frames = 0
    adversarial = bool(discriminators) and not cfg.no_adversarial
    adv_weight = cfg.adv_weight if adv_weight is None else adv_weight
    for x, (s_t, m_t, l_t) in _batches(loader, spec, device):
        b = len(x)
        maps = student(x)  # StudentMaps: (B,), (B, 4, 4), (B, 16, 16)
        kd = kd_loss(maps, s_t, m_t, l_t, weights, cfg.heads)
        adv = maps.s.new_zeros(())
        if adversarial:
            ones = torch.ones(b, device=device)
            for d in discriminators:
                # Gradients reach the student through D_k, but not D_k's own parameters; eval mode keeps
                # the spectral norm's power iteration (a buffer update) for D_k's own step.
                inner = _unwrap(d)
                frozen = {n: p.detach() for n, p in inner.named_parameters()}
                inner.eval()
                adv = adv + F.binary_cross_entropy_with_logits(
                    functional_call(inner, frozen, tuple(maps)), ones
                )
                inner.train()
        loss = kd + adv_weight * adv
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        limit = cfg.clip_grad if cfg.clip_grad > 0 else float("inf")
        norm = torch.nn.utils.clip_grad_norm_(student.parameters(), limit)  # the norm before clipping
        optimizer.step()

        d_loss = torch.zeros(())
        if adversarial and optimizer_d is not None:
            real_fake = torch.cat(
                [torch.full((b,), cfg.real_label, device=device), torch.zeros(b, device=device)]
            )
            fake = [t.detach() for t in maps]
            d_loss = maps.s.new_zeros(())
            for k, d in enumerate(discriminators):
                # One forward per discriminator per step: teacher k's maps (label 1), then the student's (0).
                logits = d(
                    torch.cat([s_t[:, k], fake[0]]),
                    torch.cat([m_t[:, k], fake[1]]),
                    torch.cat([l_t[:, k], fake[2]]),
                )  # (2B,)
                d_loss = d_loss + 2 * F.binary_cross_entropy_with_logits(
                    logits, real_fake
                )  # = BCE(real) + BCE(fake)
            optimizer_d.zero_grad(set_to_none=True)
            d_loss.backward()
            optimizer_d.step()

        sums["kd"] += kd.item() * b
        sums["adv"] += adv.item() * b
        sums["d"] += d_loss.item() * b
        sums["grad_norm"] += float(norm) * b
        frames += b
        if on_step is not None:
            live = {"kd": sums["kd"] / frames}
            if adversarial:
                live |= {"adv": sums["adv"] / frames, "d": sums["d"] / frames}
            on_step(b, live)
    return {**sums, "frames": frames}


@torch.no_grad()
def validation_loss(
    net: nn.Module,
    loader: DataLoader,
    spec: InputSpec,
    device: torch.device,
    phase: str,
    weights: Sequence[float] = (),
    heads: Sequence[str] = HEADS,
) -> tuple[float, int]:
    """Summed validation loss and frame count: reconstruction MSE (pretrain) or L_KD (distill)."""
    net.eval()
    total, frames = 0.0, 0
    for x, targets in _batches(loader, spec, device):
        if phase == "pretrain":
            recon = net(x)
            fc = _unwrap(net).decoder.out.out_channels
            loss = F.mse_loss(recon, reconstruction_target(x, fc, recon.shape[-2:]))
        else:
            loss = kd_loss(net(x), *targets, weights, heads)
        total += loss.item() * len(x)
        frames += len(x)
    return total, frames


# ---------------------------------------------------------------------------------------------------------
# The run


def distill(
    dataset: Dataset,
    out_dir: str | Path,
    config: DistillConfig,
    *,
    stage: Stage = "all",
    resume: bool = False,
    quiet: bool = False,
    command: str | None = None,
    target_workers: int = 1,
    teach: Any = None,
    teach_normalisation: str | None = None,
) -> DistillResult:
    """Train a student on ``dataset``'s normal training video into ``out_dir`` (see the module docstring).

    ``stage``: ``teachers`` (targets only), ``pretrain`` (phase 1 only), ``distill`` (phase 2 from a finished
    phase 1, or from scratch with ``no_pretrain``, then the weights file) or ``all``. ``resume`` continues
    from the checkpoints in ``out_dir``; without it, an existing checkpoint of a phase about to start is an
    error rather than something silently overwritten. ``teach`` (a
    :class:`aedcli.teachers.pipeline.TeachConfig`) and ``teach_normalisation`` set how teachers missing from
    ``out_dir/targets`` are trained and painted (see :func:`ensure_teacher_targets`).
    """
    if stage not in STAGES:
        raise UsageError(f"--stage must be one of {', '.join(STAGES)}, got {stage!r}.")
    run = _Run(dataset, Path(out_dir), config, quiet=quiet, command=command)
    run.teach, run.teach_normalisation = teach, teach_normalisation
    try:
        return run.execute(stage, resume, target_workers)
    finally:
        run.close()


def measure_and_write(
    dataset: Dataset,
    run_dir: Path,
    config: DistillConfig,
    student: Student,
    out: Path,
    *,
    selection: str,
    seconds: float,
    extra: dict[str, Any],
    command: str | None = None,
    recalibrate: bool = False,
) -> tuple[Threshold, dict[str, float], Path]:
    """Measure ``student``, a network made from the finished run in ``run_dir`` (trained with ``config``), on
    that run's held-out videos as :func:`distill` measures an epoch (validation L_KD, the probes), take its
    threshold as :func:`distill` does, and write it to the weights file ``out``.

    With ``recalibrate``, its BatchNorm statistics are first re-estimated on ``config.bn_batches`` training
    batches, as :func:`distill` does after every epoch (a network whose weights were not trained as they
    are, such as an average of several, has no statistics of its own).

    The run's targets and frame cache are read, never written. ``selection`` says how ``student`` was made,
    ``seconds`` the training time behind it; ``extra`` is added to the provenance. Returns the threshold, the
    held-out figures and the path written.
    """
    run = _Run(dataset, out.parent, config, quiet=True, command=command)
    run.targets_dir, run.cache_dir = run_dir / "targets", run_dir / "cache"
    try:
        history = run_dir / "history.json"
        if history.is_file():
            run.history = json.loads(history.read_text())
        student.to(run.env.device, memory_format=memory_format(run.env.device))
        train_clips = [*run.train_clips, *run.train_fast]
        targets = read_targets(run.targets_dir, run.teachers, train_clips)
        if recalibrate:
            run._recalibrate(student, run._stacks(train_clips, targets, mix=config.region_mix), 0)
        val_set, val_constant = run._validation_set(targets)
        metrics = run._held_out(student, val_set, val_constant, run._probes(), 0)
        threshold = run._threshold(student)
        path = run._save(
            out, student, threshold, run._provenance(student, metrics, selection, seconds) | extra
        )
    finally:
        run.close()
    return threshold, metrics, path


class _Run:
    """State shared by the stages of one :func:`distill` call."""

    def __init__(self, dataset: Dataset, out: Path, cfg: DistillConfig, *, quiet: bool, command: str | None):
        if not dataset.train:
            raise DatasetError(
                f"dataset '{dataset.name}' at {dataset.root} has no training videos to learn from."
            )
        self.dataset = dataset
        self.out = out
        self.targets_dir = out / "targets"
        self.cache_dir = out / "cache"
        self.cfg = cfg
        self.teach: Any = None  # TeachConfig for teachers not yet in targets/ (None: the defaults)
        self.teach_normalisation: str | None = None
        self.command = command or shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])
        self.teachers = tuple(cfg.teachers) or _default_teachers()
        self.teacher_weights = tuple(cfg.teacher_weights or (1.0,) * len(self.teachers))
        self.spec = _input_spec(dataset, cfg)
        self.val_clips, self.train_clips = split_validation(dataset.train, cfg.val_videos)
        self.train_fast = sped_up_clips(self.train_clips, cfg.speedups)
        self.val_fast = sped_up_clips(self.val_clips, cfg.speedups)
        self.ckpt_dir = out / "checkpoints"
        self.history: dict[str, list[dict[str, float]]] = {"pretrain": [], "distill": []}
        self.stages_run: list[str] = []
        self.best: tuple[int, float] = (0, math.inf)  # (epoch, validation L_KD) for --select val
        self._frame_paths: dict[str, Path] | None = None
        self.env = _init_distributed(cfg.device)
        self.quiet = quiet or not self.env.main

    def close(self) -> None:
        if self.env.owns_group and dist.is_initialized():
            dist.destroy_process_group()

    # -- stages ------------------------------------------------------------------------------------------

    def execute(self, stage: str, resume: bool, target_workers: int) -> DistillResult:
        cfg = self.cfg
        if self.env.main:
            self.out.mkdir(parents=True, exist_ok=True)
        self._check_fresh_start(stage, resume)
        if stage != "teachers":  # before the teachers run: refuse now, not hours later, when data cannot fit
            need = estimate_distill_budget(
                self.dataset.train,
                self.spec,
                len(self.teachers),
                self.out,
                batch=cfg.batch,
                extra=[*self.train_fast, *self.val_fast],
                processes=int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if self.env.distributed else 1,
            )
            check_distill_budget(need)
        if stage in ("teachers", "distill", "all"):
            if self.env.main:
                ensure_teacher_targets(
                    self.dataset,
                    self.targets_dir,
                    self.teachers,
                    workers=target_workers,
                    progress=not self.quiet,
                    extra=[*self.train_fast, *self.val_fast],
                    teach=self.teach,
                    normalisation=self.teach_normalisation,
                )
            self.env.barrier()
            self.stages_run.append("teachers")
        if stage == "teachers":
            return DistillResult(self.out, None, self.history, None, self.stages_run)

        distill_state = self._load_checkpoint("distill") if resume and stage != "pretrain" else None
        if stage in ("pretrain", "all") and not cfg.no_pretrain and distill_state is None:
            self._pretrain(self._load_checkpoint("pretrain") if resume else None)
            self.stages_run.append("pretrain")
        if stage == "pretrain":
            return DistillResult(self.out, None, self.history, None, self.stages_run)

        student = self._distill(distill_state)
        self.stages_run.append("distill")
        threshold = weights = None
        if self.env.main:
            threshold, weights = self._finish(student)
        self.env.barrier()
        return DistillResult(self.out, weights, self.history, threshold, self.stages_run)

    def _check_fresh_start(self, stage: str, resume: bool) -> None:
        if resume:
            return
        phases = {"pretrain": ["pretrain"], "distill": ["distill"], "all": ["pretrain", "distill"]}.get(
            stage, []
        )
        if self.cfg.no_pretrain and "pretrain" in phases:
            phases.remove("pretrain")
        for phase in phases:
            path = self.ckpt_dir / f"{phase}.pt"
            if path.exists():
                raise UsageError(
                    f"{path} holds an earlier run; pass --resume to continue it, or choose another --out."
                )

    # -- phase 1 -----------------------------------------------------------------------------------------

    def _pretrain(self, state: dict[str, Any] | None) -> None:
        cfg, env = self.cfg, self.env
        torch.manual_seed(cfg.seed)
        student = Student(student_config(cfg.variant, self.spec.in_channels))
        net = PretrainNet(student).to(env.device, memory_format=memory_format(env.device))
        optimizer = torch.optim.Adam(net.parameters(), lr=cfg.lr_pretrain, weight_decay=cfg.weight_decay)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, cfg.lr_step, cfg.lr_gamma)
        start, elapsed = 0, 0.0
        if state is not None:
            net.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            torch.set_rng_state(state["rng"])
            start, elapsed = int(state["epoch"]), float(state["elapsed_s"])
            self.history = state["history"]
        if start >= cfg.epochs_pretrain:
            return
        train_set = self._stacks(self.train_clips)
        val_set = self._stacks(self.val_clips) if self.val_clips else None
        ddp_net = _wrap(net, env)
        with _Progress(self.quiet) as progress:
            progress.start("pretrain", start, cfg.epochs_pretrain, self._epoch_frames(train_set))
            for epoch in range(start, cfg.epochs_pretrain):
                loader = self._loader(train_set, epoch, shuffle=True)
                progress.epoch(epoch + 1, scheduler.get_last_lr()[0])
                t0 = time.perf_counter()
                res = pretrain_epoch(ddp_net, loader, self.spec, optimizer, env.device, progress.step)
                seconds = time.perf_counter() - t0
                loss, frames = env.sum([res["loss"], res["frames"]])
                row = {"epoch": epoch + 1, "loss": loss / max(frames, 1), "lr": scheduler.get_last_lr()[0]}
                if val_set is not None:
                    vloss, vframes = env.sum(
                        list(
                            validation_loss(
                                ddp_net, self._loader(val_set, epoch), self.spec, env.device, "pretrain"
                            )
                        )
                    )
                    row["val_loss"] = vloss / max(vframes, 1)
                scheduler.step()
                elapsed += seconds
                row |= {
                    "frames": int(frames),
                    "seconds": seconds,
                    "frames_per_s": frames / max(seconds, 1e-9),
                }
                self.history["pretrain"].append(row)
                self._save_checkpoint(
                    "pretrain",
                    {
                        "epoch": epoch + 1,
                        "elapsed_s": elapsed,
                        "model": net.state_dict(),
                        "student": student.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                    },
                )
                progress.summary("pretrain", row)
        self._write_history()

    # -- phase 2 -----------------------------------------------------------------------------------------

    def _distill(self, state: dict[str, Any] | None) -> Student:
        cfg, env = self.cfg, self.env
        torch.manual_seed(cfg.seed + 1)
        student = Student(student_config(cfg.variant, self.spec.in_channels))
        student.to(env.device, memory_format=memory_format(env.device))
        discriminators = (
            []
            if cfg.no_adversarial
            else [Discriminator(spectral=cfg.spectral_norm).to(env.device) for _ in self.teachers]
        )
        optimizer = torch.optim.Adam(student.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, cfg.lr_step, cfg.lr_gamma)
        # One Adam over all discriminators equals one Adam each: Adam's state is per parameter.
        d_params = [p for d in discriminators for p in d.parameters()]
        optimizer_d = (
            torch.optim.Adam(
                d_params, lr=cfg.lr if cfg.lr_d is None else cfg.lr_d, weight_decay=cfg.weight_decay
            )
            if d_params
            else None
        )
        scheduler_d = (
            torch.optim.lr_scheduler.StepLR(optimizer_d, cfg.lr_step, cfg.lr_gamma) if optimizer_d else None
        )
        start, elapsed = 0, 0.0
        if state is not None:
            student.load_state_dict(state["student"])
            for d, sd in zip(discriminators, state["discriminators"], strict=True):
                d.load_state_dict(sd)
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            if optimizer_d is not None and scheduler_d is not None:
                optimizer_d.load_state_dict(state["optimizer_d"])
                scheduler_d.load_state_dict(state["scheduler_d"])
            torch.set_rng_state(state["rng"])
            start, elapsed = int(state["epoch"]), float(state["elapsed_s"])
            self.history = state["history"]
            self.best = (int(state.get("best_epoch", 0)), float(state.get("best_val", math.inf)))
        elif not cfg.no_pretrain:
            pre = self._load_checkpoint("pretrain", keys=("variant", "size", "val_videos"))
            if pre is None or int(pre["epoch"]) < cfg.epochs_pretrain:
                done = 0 if pre is None else int(pre["epoch"])
                raise UsageError(
                    f"pre-training in {self.ckpt_dir} finished {done} of {cfg.epochs_pretrain} epochs; run "
                    "--stage pretrain (with --resume) first, or pass --no-pretrain."
                )
            student.load_state_dict(pre["student"])  # encoder + transformer trained; heads as initialised
            self.history = pre["history"]
        if start >= cfg.epochs:
            return self._selected(student)

        train_clips = [*self.train_clips, *self.train_fast]
        targets = read_targets(self.targets_dir, self.teachers, train_clips)
        train_set = self._stacks(train_clips, targets, mix=self.cfg.region_mix)
        val_set, val_constant = self._validation_set(targets)
        probes = self._probes()
        partial_heads = set(cfg.heads) != set(HEADS)
        ddp_student = _wrap(student, env, find_unused=cfg.no_adversarial and partial_heads)
        ddp_ds = [_wrap(d, env) for d in discriminators]
        with _Progress(self.quiet) as progress:
            progress.start("distill", start, cfg.epochs, self._epoch_frames(train_set))
            for epoch in range(start, cfg.epochs):
                loader = self._loader(train_set, epoch, shuffle=True)
                progress.epoch(epoch + 1, scheduler.get_last_lr()[0])
                t0 = time.perf_counter()
                res = distill_epoch(
                    ddp_student,
                    ddp_ds,
                    loader,
                    self.spec,
                    optimizer,
                    optimizer_d,
                    cfg,
                    self.teacher_weights,
                    env.device,
                    progress.step,
                    adv_weight=0.0 if epoch < cfg.adv_warmup else cfg.adv_weight,
                )
                seconds = time.perf_counter() - t0
                kd, adv, d_loss, norm, frames = env.sum(
                    [res["kd"], res["adv"], res["d"], res["grad_norm"], res["frames"]]
                )
                n = max(frames, 1)
                row = {
                    "epoch": epoch + 1,
                    "kd": kd / n,
                    "lr": scheduler.get_last_lr()[0],
                    "grad_norm": norm / n,
                }
                if discriminators:
                    row |= {"adv": adv / n, "loss": (kd + cfg.adv_weight * adv) / n, "d_loss": d_loss / n}
                self._recalibrate(student, train_set, epoch)
                row |= self._held_out(ddp_student, val_set, val_constant, probes, epoch)
                scheduler.step()
                if scheduler_d is not None:
                    scheduler_d.step()
                elapsed += seconds
                row |= {
                    "frames": int(frames),
                    "seconds": seconds,
                    "frames_per_s": frames / max(seconds, 1e-9),
                }
                self.history["distill"].append(row)
                if self._improves(row):
                    self.best = (epoch + 1, row["val_kd"])
                    self._save_best(student)
                self._save_checkpoint(
                    "distill",
                    {
                        "epoch": epoch + 1,
                        "elapsed_s": elapsed,
                        "best_epoch": self.best[0],
                        "best_val": self.best[1],
                        "student": student.state_dict(),
                        "discriminators": [d.state_dict() for d in discriminators],
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "optimizer_d": optimizer_d.state_dict() if optimizer_d else None,
                        "scheduler_d": scheduler_d.state_dict() if scheduler_d else None,
                    },
                )
                progress.summary("distill", row)
        return self._selected(student)

    def _recalibrate(self, student: Student, train_set: StackDataset, epoch: int) -> None:
        """Re-estimate the student's BatchNorm statistics on ``cfg.bn_batches`` of this epoch's training
        batches (each process its own share, then their mean); nothing when the option is 0."""
        if self.cfg.bn_batches <= 0:
            return
        batches = (
            x for x, _ in _batches(self._loader(train_set, epoch, shuffle=True), self.spec, self.env.device)
        )
        recalibrate_batchnorm(student, batches, self.cfg.bn_batches)
        if self.env.distributed:
            for layer in batchnorm_layers(student):
                for buffer in (layer.running_mean, layer.running_var):
                    dist.all_reduce(buffer)
                    buffer /= self.env.world

    def _validation_set(self, targets: Targets) -> tuple[StackDataset | None, float]:
        """The held-out videos (sped-up copies included) with their targets, and the validation L_KD of the
        constant answer learnt from the training ``targets``; ``(None, nan)`` without held-out videos."""
        if not self.val_clips:
            return None, math.nan
        val_clips = [*self.val_clips, *self.val_fast]
        val_targets = read_targets(self.targets_dir, self.teachers, val_clips)
        constant = constant_kd_loss(targets, val_targets, self.teacher_weights, self.cfg.heads)
        return self._stacks(val_clips, val_targets), constant

    def _held_out(
        self,
        net: nn.Module,
        val_set: StackDataset | None,
        val_constant: float,
        probes: dict[str, PseudoAnomalyProbe],
        epoch: int,
    ) -> dict[str, float]:
        """``net``'s validation L_KD (and the constant answer's) and probe AUCs: the held-out columns of a
        history row."""
        row: dict[str, float] = {}
        if val_set is not None:
            loss, frames = self.env.sum(
                list(
                    validation_loss(
                        net,
                        self._loader(val_set, epoch),
                        self.spec,
                        self.env.device,
                        "distill",
                        self.teacher_weights,
                        self.cfg.heads,
                    )
                )
            )
            row["val_kd"] = loss / max(frames, 1)
            row["val_kd_constant"] = val_constant
        for key, probe in probes.items():  # every rank scores the whole (small) probe: all agree
            row[key] = probe_auc(_unwrap(net), probe, self.spec, self.env.device)
        return row

    def _probes(self) -> dict[str, PseudoAnomalyProbe]:
        """The held-out videos' pseudo-anomaly probes by history column, one per paste region (none without
        sped-up held-out video or boxes); their boxes come from the first teacher's targets."""
        from aedcli.teachers.maps import load_targets

        if not self.val_fast:
            return {}
        clips = [*self.val_clips, *self.val_fast]
        found = [load_targets(target_path(self.targets_dir, self.teachers[0], c)) for c in clips]
        sizes = [tuple(map(int, t.meta.get("frame_size", (0, 0)))) for t in found]
        frames, steps, boxes = self._frames(clips), [c.step for c in clips], [t.boxes for t in found]
        probes = {
            key: PseudoAnomalyProbe(frames, steps, boxes, sizes, self.spec.offset, region=region)
            for region, key in PROBE_KEYS.items()
        }
        if self.cfg.select.startswith("val-auc") and not len(probes["val_auc"]):
            raise AedError(
                f"--select {self.cfg.select} found no proposal box in the sped-up copies of the held-out "
                f"videos ({', '.join(c.name for c in self.val_clips)}); use --select val."
            )
        return {key: probe for key, probe in probes.items() if len(probe)}

    def _improves(self, row: dict[str, float]) -> bool:
        """Whether this epoch beats the best so far under ``--select`` (never with ``last``)."""
        if self.cfg.select == "last":
            return False
        if self.best[0] == 0:
            return True
        best = self.history["distill"][self.best[0] - 1]
        if self.cfg.select.startswith("val-auc"):
            key = "val_auc_box" if self.cfg.select == "val-auc-box" else "val_auc"
            return (-row[key], row["val_kd"]) < (-best[key], best["val_kd"])
        return row["val_kd"] < best["val_kd"]

    def _selection_note(self, epochs: int) -> str:
        """How the written epoch was chosen, for the weights' provenance."""
        if not self._written_epoch():
            return "weights of the last epoch (no checkpoint selection, no test data)"
        if self.cfg.select == "val-auc":
            how = (
                "the highest pseudo-anomaly AUC (sped-up rectangles pasted into normal frames) on the "
                "held-out training videos"
            )
        elif self.cfg.select == "val-auc-box":
            how = (
                "the highest pseudo-anomaly AUC (sped-up object boxes pasted into normal frames) on the "
                "held-out training videos"
            )
        elif self.cfg.speedups:
            how = "the lowest validation L_KD on the held-out training videos and their sped-up copies"
        else:
            how = "the lowest validation L_KD on the held-out normal training videos"
        return f"weights of epoch {self.best[0]} of {epochs}, {how} (no test data)"

    def _save_best(self, student: Student) -> None:
        """The student of the best validation epoch so far, to ``checkpoints/best.pt`` (rank 0)."""
        if self.env.main:
            with atomic_path(self.ckpt_dir / "best.pt") as tmp:
                torch.save(
                    {"epoch": self.best[0], "val_kd": self.best[1], "student": student.state_dict()}, tmp
                )

    def _written_epoch(self) -> int:
        """The epoch ``--select val`` chose (1-based), or 0 when the last epoch is written."""
        return self.best[0] if self.cfg.select != "last" else 0

    def _selected(self, student: Student) -> Student:
        """``student`` (the last epoch's) or, with ``--select val``/``val-auc``, the chosen epoch's."""
        if not self._written_epoch():
            return student
        path = self.ckpt_dir / "best.pt"
        try:
            best = torch.load(path, weights_only=True, map_location=self.env.device)
            student.load_state_dict(best["student"])
        except Exception:
            raise AedError(
                f"{path} (the best validation epoch's student) is unreadable; delete the run's checkpoints "
                "or choose another --out."
            ) from None
        return student

    # -- after training ----------------------------------------------------------------------------------

    def _threshold(self, student: Student) -> Threshold:
        """The ``percentile`` of smoothed scores on normal training video (held-out when possible)."""
        from aedcli.inference import StudentRunner

        clips = self.val_clips or self.train_clips
        runner = StudentRunner.from_model(student, self.spec, device=self.env.device, batch_size=32)
        raw = {}
        for clip, path in zip(clips, self._frames(clips), strict=True):
            frames = np.load(path, mmap_mode="r")
            raw[clip.name], _ = runner.score_clip(iter(frames))
        thr = threshold_from_normal(raw, self.cfg.sigma, self.cfg.percentile)
        if self.val_clips:
            note = f"videos held out from training: {', '.join(c.name for c in clips)}"
        else:
            note = "no video was held out (--val-videos 0), so these are videos the student was trained on"
        return Threshold(thr.value, thr.sigma, thr.percentile, f"{thr.source}; {note}")

    def _finish(self, student: Student) -> tuple[Threshold, Path]:
        """Threshold from normal training video (held-out when possible), then weights, history and plot."""
        threshold = self._threshold(student)
        pre, post = self.history["pretrain"], self.history["distill"]
        total_s = sum(r["seconds"] for r in pre) + sum(r["seconds"] for r in post)
        metrics: dict[str, float] = {}
        if post:
            keys = ("kd", "adv", "d_loss", "val_kd", "val_kd_constant", *PROBE_KEYS.values())
            chosen = post[self._written_epoch() - 1]  # index -1 (the last epoch) when nothing was chosen
            metrics |= {k: chosen[k] for k in keys if k in chosen}
            if "val_kd" in metrics and metrics["val_kd"] >= metrics["val_kd_constant"]:
                vkd, const = metrics["val_kd"], metrics["val_kd_constant"]
                print(
                    f"warning: the student's validation L_KD ({vkd:.4g}) does not beat a constant answer "
                    f"({const:.4g}): it has not learnt its teachers; train longer or with another --lr.",
                    file=sys.stderr,
                )
        if pre:
            metrics |= {f"pretrain_{k}": pre[-1][k] for k in ("loss", "val_loss") if k in pre[-1]}
        provenance = self._provenance(student, metrics, self._selection_note(len(post)), total_s)
        weights = self._save(self.out / "weights.pt", student, threshold, provenance)
        self._write_history()
        return threshold, weights

    def _save(self, path: Path, student: Student, threshold: Threshold, provenance: dict[str, Any]) -> Path:
        """``student`` with this run's input spec, sigma and variant, to the weights file ``path``."""
        return save_weights(
            path,
            student,
            self.spec,
            sigma=self.cfg.sigma,
            threshold=threshold,
            provenance=provenance,
            variant=self.cfg.variant,
        )

    def _provenance(
        self, student: Student, metrics: dict[str, float], selection: str, seconds: float
    ) -> dict[str, Any]:
        """What a weights file records of this run: data, command, time, configuration and ``metrics``."""
        return {
            "dataset": {"name": self.dataset.name, "root": str(self.dataset.root)},
            "command": self.command,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "epochs": {"pretrain": len(self.history["pretrain"]), "distill": len(self.history["distill"])},
            "selection": selection,
            "training_seconds": seconds,
            "train_videos": [c.name for c in self.train_clips],
            "val_videos": [c.name for c in self.val_clips],
            "train_frames": int(sum(c.frame_count for c in self.train_clips)),
            "pseudo_anomaly_frames": int(sum(c.frame_count for c in self.train_fast)),
            "teachers": list(self.teachers),
            "teacher_weights": list(self.teacher_weights),
            "distill_config": self.cfg.to_dict(),
            "parameters": count_params(student),
            "hardware": _hardware(self.env),
            "metrics": metrics,
        }

    # -- helpers -----------------------------------------------------------------------------------------

    def _frames(self, clips: Sequence[Clip]) -> list[Path]:
        """Cache paths of ``clips``' prepared frames; rank 0 builds the cache of all training clips once."""
        if self._frame_paths is None:
            spec = self.spec
            cache = self.cache_dir / f"frames_{spec.height}x{spec.width}x{spec.channels}"
            if self.env.main:
                cache_frames(self.dataset.train, spec, cache)
            self.env.barrier()
            self._frame_paths = {c.name: cache / f"{c.name}.npy" for c in self.dataset.train}
        return [self._frame_paths[c.source or c.name] for c in clips]

    def _stacks(
        self, clips: Sequence[Clip], targets: Targets | None = None, mix: float = 0.0
    ) -> StackDataset:
        """``clips`` (sped-up ones included) as frame stacks from the frame cache, with their targets."""
        steps = [c.step for c in clips]
        frames = self._frames(clips)
        return StackDataset(frames, self.spec.offset, targets, steps, mix=mix, seed=self.cfg.seed)

    def _loader(self, data: StackDataset, epoch: int, shuffle: bool = False) -> DataLoader:
        env = self.env
        # The sampler shuffles with seed + epoch, so a resumed run sees the order an uninterrupted one would.
        sampler = DistributedSampler(data, env.world, env.rank, shuffle=shuffle, seed=self.cfg.seed)
        sampler.set_epoch(epoch)
        data.set_epoch(epoch)
        return DataLoader(
            data,
            batch_size=self.cfg.batch,
            sampler=sampler,
            num_workers=self.cfg.num_workers,
            drop_last=shuffle and self._drop_last(data),
        )

    def _drop_last(self, data: StackDataset) -> bool:
        # BatchNorm cannot train on a last batch of one frame; drop an incomplete last batch when there are
        # full ones (the shuffle changes which frames wait for the next epoch).
        return math.ceil(len(data) / self.env.world) > self.cfg.batch

    def _epoch_frames(self, data: StackDataset) -> int:
        per_rank = math.ceil(len(data) / self.env.world)
        return per_rank - per_rank % self.cfg.batch if self._drop_last(data) else per_rank

    def _save_checkpoint(self, phase: str, payload: dict[str, Any]) -> None:
        if self.env.main:
            payload = {
                "format": CHECKPOINT_FORMAT,
                "version": CHECKPOINT_VERSION,
                "phase": phase,
                "config": self.cfg.to_dict(),
                "input": self.spec.to_dict(),
                "teachers": list(self.teachers),
                "val_videos": [c.name for c in self.val_clips],
                "history": self.history,
                "rng": torch.get_rng_state(),
                **payload,
            }
            path = self.ckpt_dir / f"{phase}.pt"
            with atomic_path(path) as tmp:
                torch.save(payload, tmp)
            self._write_history(plot=payload["epoch"] % 5 == 0)
        self.env.barrier()

    def _load_checkpoint(self, phase: str, keys: Sequence[str] | None = None) -> dict[str, Any] | None:
        """The phase's checkpoint, or None; its config must agree with this run on ``keys``.

        ``keys`` defaults to what shapes that phase (every option for distillation, the network, data and
        optimiser options for pre-training), minus the options a resumed run may change.
        """
        path = self.ckpt_dir / f"{phase}.pt"
        if not path.is_file():
            return None
        try:
            state = torch.load(path, weights_only=True, map_location=self.env.device)
        except Exception:
            raise AedError(
                f"checkpoint {path} is unreadable; delete it to redo that phase, or choose another --out."
            ) from None
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise AedError(f"{path} is not an aed training checkpoint; delete it or choose another --out.")
        saved = DistillConfig.from_dict(state["config"]).to_dict()
        now = self.cfg.to_dict()
        if keys is None:
            keys = _PRETRAIN_KEYS if phase == "pretrain" else tuple(now)
        changed = [k for k in keys if k not in _RESUMABLE_CHANGES and saved.get(k) != now[k]]
        frames = ("height", "width", "channels", "offset")  # the edge rule plays no part in training
        if any(self.spec.to_dict()[k] != state["input"].get(k) for k in frames):
            changed.append("size")
        if changed:
            key = changed[0]
            raise UsageError(
                f"--{_opt(key)} differs from the {phase} checkpoint in {self.ckpt_dir} ({saved.get(key)!r} "
                "there); pass the same value, or choose another --out to start a new run."
            )
        state["rng"] = state["rng"].cpu()
        return state

    def _write_history(self, plot: bool = True) -> None:
        """history.json after every epoch; the plot every few epochs and at the end of a phase."""
        if not self.env.main:
            return
        write_json_atomic(self.out / "history.json", self.history)
        if plot:
            plot_history(self.history, self.out / "loss.png")


def split_validation(clips: Sequence[Clip], n: int) -> tuple[list[Clip], list[Clip]]:
    """Hold out ``n`` evenly spaced clips for validation: returns (validation clips, training clips)."""
    if n == 0:
        return [], list(clips)
    if n >= len(clips):
        raise UsageError(
            f"--val-videos {n} would hold out every one of the {len(clips)} training videos; use at most "
            f"{len(clips) - 1} (or 0)."
        )
    picks = sorted({int((i + 1) * len(clips) / (n + 1)) for i in range(n)})
    val = [clips[i] for i in picks]
    return val, [c for i, c in enumerate(clips) if i not in picks]


def plot_history(history: dict[str, list[dict[str, float]]], path: Path) -> None:
    """Loss curves per epoch (one panel per phase) to a PNG, atomically."""
    from matplotlib.figure import Figure  # a bare Figure renders with Agg; no pyplot, no global state
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(10, 4))
    panels = [(p, history.get(p) or []) for p in ("pretrain", "distill")]
    panels = [(p, rows) for p, rows in panels if rows] or [("no epochs yet", [])]
    for i, (phase, rows) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        keys = [k for k in ("loss", "val_loss", "kd", "val_kd", "adv", "d_loss") if rows and k in rows[0]]
        epochs = [r["epoch"] for r in rows]
        for key in keys:
            ax.plot(epochs, [r.get(key, math.nan) for r in rows], marker="o", markersize=3, label=key)
        ax.set_title(phase)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if keys:
            ax.set_yscale("log" if all(r.get(k, 1) > 0 for r in rows for k in keys) else "linear")
            ax.legend()
        ax.grid(alpha=0.3)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.13, top=0.9, wspace=0.25)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)


# ---------------------------------------------------------------------------------------------------------
# Progress display


class _Progress:
    """A rich progress bar per phase with live losses; silent when ``quiet``."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self._progress: Any = None
        self._task: Any = None
        self._phase = ""

    def __enter__(self) -> _Progress:
        if not self.quiet:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[losses]}"),
                console=Console(stderr=True),
            )
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def start(self, phase: str, done_epochs: int, epochs: int, frames_per_epoch: int) -> None:
        self._phase, self._epochs = phase, epochs
        if self._progress is not None:
            self._task = self._progress.add_task(
                phase, total=max(epochs - done_epochs, 0) * frames_per_epoch, losses=""
            )
            if done_epochs:
                self._progress.console.print(f"{phase}: resuming after epoch {done_epochs}")

    def epoch(self, epoch: int, lr: float) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=f"{self._phase} {epoch}/{self._epochs} lr {lr:.1e}")

    def step(self, frames: int, losses: dict[str, float]) -> None:
        if self._progress is not None:
            text = " ".join(f"{k} {v:.4g}" for k, v in losses.items())
            self._progress.update(self._task, advance=frames, losses=text)

    def summary(self, phase: str, row: dict[str, float]) -> None:
        if self._progress is not None:
            skip = ("epoch", "lr", "frames", "seconds", "frames_per_s")
            parts = [f"{k} {v:.4g}" for k, v in row.items() if k not in skip]
            self._progress.console.print(
                f"{phase} epoch {int(row['epoch'])}: {' '.join(parts)} "
                f"({row['seconds']:.0f} s, {row['frames_per_s']:.1f} frames/s)"
            )


# ---------------------------------------------------------------------------------------------------------
# Small helpers


def _opt(name: str) -> str:
    return {
        "epochs_pretrain": "pretrain-epochs",
        "no_adversarial": "no-adversarial",
        "no_pretrain": "no-pretrain",
        "val_videos": "val-videos",
        "num_workers": "workers",
    }.get(name, name.replace("_", "-"))


def _default_teachers() -> tuple[str, ...]:
    try:
        from aedcli.teachers import pipeline
    except ImportError:
        return DEFAULT_TEACHERS
    return tuple(getattr(pipeline, "DEFAULT_TEACHERS", DEFAULT_TEACHERS))


def _input_spec(dataset: Dataset, cfg: DistillConfig) -> InputSpec:
    channels = 1 if dataset.gray else 3
    if cfg.size is not None:
        return InputSpec(cfg.size[0], cfg.size[1], channels)
    clip = dataset.train[0]
    try:
        first = next(iter(clip.frames()))
    except StopIteration:
        raise DatasetError(f"training video '{clip.name}' ({clip.path}) has no frames.") from None
    return InputSpec(int(first.shape[0]), int(first.shape[1]), channels)


def _wrap(module: nn.Module, env: _Dist, find_unused: bool = False) -> nn.Module:
    if not env.distributed:
        return module
    ids = [env.device.index] if env.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids, find_unused_parameters=find_unused)


def _init_distributed(device: str) -> _Dist:
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was given but no CUDA GPU is available; use --device cpu.")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch.device("cuda", local_rank) if device == "cuda" else torch.device("cpu")
    if device == "cuda":
        torch.cuda.set_device(dev)
    if world <= 1:
        return _Dist(device=dev)
    owns = False
    if not dist.is_initialized():
        # Long timeout: rank 0 may spend a while on teacher targets and frame caches before the others go on.
        dist.init_process_group("nccl" if device == "cuda" else "gloo", timeout=timedelta(hours=4))
        owns = True
    return _Dist(dist.get_rank(), dist.get_world_size(), dev, owns)


def _hardware(env: _Dist) -> dict[str, Any]:
    info: dict[str, Any] = {
        "device": env.device.type,
        "processes": env.world,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    if env.device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(env.device)
    return info
