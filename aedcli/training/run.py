"""A training run, top to bottom: teachers, frames, pre-training, distillation, threshold, weights.

Croitoru et al., "Lightning Fast Video Anomaly Detection via Adversarial Knowledge Distillation" (arXiv
2211.15597), as written down in ``docs/method.md`` section 4, with the pseudo-anomalies that make a student
learn from normal video alone:

1. *Teachers* (:func:`aedcli.teachers.teach`): fitted on the normal training video, they paint targets for
   it and for its pseudo-anomalous views (sped up, magnified;
   :func:`~aedcli.training.data.pseudo_anomaly_views`).
2. *Pre-training*: encoder + transformer + a light decoder reconstruct frame t from the (t, t-3, t+3) stack.
3. *Distillation*: one head set per teacher regresses that teacher's maps (L_KD), on the training frames,
   their views, and frames with a rectangle of a view pasted in (region mixing); with
   ``adversarial_weight > 0`` one discriminator per teacher adds the paper's adversarial term.
4. *Threshold and normal range*: the held-out normal footage (:func:`~aedcli.training.data.split_validation`)
   is scored by the finished student; the threshold is a high percentile of its smoothed scores, and its
   median and 99th percentile are the normal range ``aed detect`` compares new footage with. Nothing is ever
   chosen on test data: the weights written are the last epoch's.

Everything lives in one folder::

    RUN/teachers/<teacher>.pt, teach.json        fitted teachers (aedcli.teachers.teach)
    RUN/targets/<teacher>/<split>/<clip>.npz     their targets
    RUN/cache/frames_HxWxC/<recording>.npy       prepared uint8 frames (memory-mapped)
    RUN/checkpoints/{pretrain,distill}.pt        end-of-epoch state: models, optimisers, RNG, history
    RUN/history.json, RUN/loss.png               losses per epoch
    RUN/weights.pt                               the student (aedcli.model.weights format)

Every epoch ends with an atomic checkpoint, so ``resume=True`` continues after the last finished epoch.
Launched by ``torchrun``, training runs data-parallel (:mod:`aedcli.training.distributed`).

>>> result = distill(load_dataset("folder", "my_cameras"), Path("runs/cam"))
>>> result.weights          # runs/cam/weights.pt
"""

from __future__ import annotations

import json
import math
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

from aedcli.data.clips import Clip, Dataset
from aedcli.errors import AedError, DatasetError, UsageError
from aedcli.files import atomic_path, write_json_atomic
from aedcli.model.inputs import InputSpec
from aedcli.model.student import Discriminator, PretrainNet, Student, count_params, student_config
from aedcli.model.weights import Domain, NormalRange, save_weights
from aedcli.runtime.runner import StudentRunner
from aedcli.scoring import MIN_THRESHOLD_FRAMES, Threshold, threshold_from_normal
from aedcli.teachers import TeachConfig, read_targets, teach
from aedcli.teachers.maps import TargetPaths
from aedcli.teachers.teach import Progress
from aedcli.training.batchnorm import batchnorm_layers, recalibrate_batchnorm
from aedcli.training.budget import check_distill_budget, estimate_distill_budget
from aedcli.training.config import TrainConfig
from aedcli.training.data import (
    EpochSampler,
    FrameCache,
    StackDataset,
    TargetArrays,
    pseudo_anomaly_views,
    split_validation,
)
from aedcli.training.distributed import DistEnv, hardware, init_distributed, wrap
from aedcli.training.loop import (
    batches,
    distill_epoch,
    memory_format,
    pretrain_epoch,
    unwrap,
    validation_loss,
)
from aedcli.training.losses import constant_kd_loss
from aedcli.training.progress import EpochProgress, plot_history

CHECKPOINT_FORMAT = "aed-training-checkpoint"
CHECKPOINT_VERSION = 2

RESUMABLE = frozenset(
    {"epochs", "pretrain_epochs", "num_workers", "device", "sigma", "percentile", "bn_batches"}
)
"""Settings a resumed run may change (they do not change what has been trained so far)."""
PRETRAIN_KEYS = (
    "variant",
    "size",
    "batch",
    "epoch_steps",
    "max_passes",
    "pretrain_lr",
    "weight_decay",
    "validation",
    "validation_share",
    "seed",
)
"""Settings that shape pre-training; the others may change between the phases."""


@dataclass
class DistillResult:
    """What a call to :func:`distill` produced."""

    run_dir: Path
    weights: Path | None
    history: dict[str, list[dict[str, float]]]
    threshold: Threshold | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def few_frames_warning(frames: int, weights: Path) -> str:
    """What ``distill`` says when its threshold rests on fewer than :data:`MIN_THRESHOLD_FRAMES` frames."""
    return (
        f"warning: the threshold rests on {frames} normal frames held out from training, under "
        f"{MIN_THRESHOLD_FRAMES}, so one or two frames set it; before trusting its alarms, calibrate it on a "
        f"few minutes of this camera's normal footage: aed calibrate NORMAL_CLIPS... --weights {weights} "
        "--out my_camera.pt"
    )


def input_spec(dataset: Dataset, cfg: TrainConfig) -> InputSpec:
    """The student's input for ``dataset``: ``cfg.size`` or the footage's own size (at most 240 rows)."""
    channels = 1 if dataset.gray else 3
    if cfg.size is not None:
        return InputSpec(cfg.size[0], cfg.size[1], channels)
    clip = dataset.train[0]
    try:
        first = next(iter(clip.frames()))
    except StopIteration:
        raise DatasetError(f"training video '{clip.name}' ({clip.path}) has no frames.") from None
    return InputSpec.for_frames(int(first.shape[0]), int(first.shape[1]), channels)


def distill(
    dataset: Dataset,
    run_dir: str | Path,
    cfg: TrainConfig | None = None,
    teach_cfg: TeachConfig | None = None,
    *,
    resume: bool = False,
    quiet: bool = False,
    workers: int = 1,
    command: str | None = None,
    progress: Progress | None = None,
) -> DistillResult:
    """Train a student on ``dataset``'s normal training video into ``run_dir`` (see the module docstring).

    ``resume`` continues from the checkpoints in ``run_dir``; without it, an existing checkpoint is an error
    rather than something silently overwritten. ``teach_cfg`` sets how missing teachers are fitted (teachers
    already in ``run_dir/teachers`` are reused as they are); ``workers`` processes analyse the videos.
    """
    cfg = cfg or TrainConfig()
    run_dir = Path(run_dir)
    if not dataset.train:
        raise DatasetError(
            f"dataset '{dataset.name}' at {dataset.root} has no training videos to learn from."
        )
    env = init_distributed(cfg.device)
    try:
        return _Run(dataset, run_dir, cfg, teach_cfg, env, quiet or not env.main, command).execute(
            resume, workers, progress
        )
    finally:
        env.close()


class _Run:
    """The state the phases of one :func:`distill` call share; its methods run top to bottom."""

    def __init__(
        self,
        dataset: Dataset,
        run_dir: Path,
        cfg: TrainConfig,
        teach_cfg: TeachConfig | None,
        env: DistEnv,
        quiet: bool,
        command: str | None,
    ) -> None:
        self.dataset, self.run_dir, self.cfg, self.env, self.quiet = dataset, run_dir, cfg, env, quiet
        self.command = command or shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])
        self.teach_cfg = teach_cfg or _stored_teach_config(run_dir) or TeachConfig()
        self.teachers = tuple(self.teach_cfg.teachers)
        self.spec = input_spec(dataset, cfg)
        self.train_parts, self.val_parts = split_validation(
            dataset.train, cfg.validation, cfg.validation_share
        )
        self.train_views = pseudo_anomaly_views(self.train_parts, cfg.speedups, cfg.zooms, cfg.seed)
        self.val_views = pseudo_anomaly_views(self.val_parts, cfg.speedups, cfg.zooms, cfg.seed + 1)
        self.cache = FrameCache(run_dir / "cache", self.spec)
        self.ckpt_dir = run_dir / "checkpoints"
        self.history: dict[str, list[dict[str, float]]] = {"pretrain": [], "distill": []}
        self.seconds: dict[str, float] = {}
        self.train_targets: TargetArrays | None = None
        self.val_targets: TargetArrays | None = None

    def execute(self, resume: bool, workers: int, progress: Progress | None) -> DistillResult:
        cfg, env = self.cfg, self.env
        if not resume:
            self._refuse_earlier_run()
        views = [*self.train_views, *self.val_views]
        # Refused before anything is written: a run that cannot fit leaves no run folder behind.
        need = estimate_distill_budget(
            self.dataset.train, self.spec, len(self.teachers), self.run_dir, batch=cfg.batch, extra=views
        )
        check_distill_budget(need)
        if env.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)

        start = time.perf_counter()
        if env.main:
            teach(self.dataset, self.run_dir, self.teach_cfg, extra=views, workers=workers, progress=progress)
            self.cache.build(self.dataset.train, views)
        env.barrier()
        self.seconds["teachers_and_frames"] = time.perf_counter() - start
        # Read every target now: a missing or broken one stops the run before hours of pre-training.
        self.train_targets = self._targets([*self.train_parts, *self.train_views])
        self.val_targets = self._targets([*self.val_parts, *self.val_views]) if self.val_parts else None

        state = self._load_checkpoint("distill") if resume else None
        student = Student(student_config(cfg.variant, self.spec.in_channels, self.teachers))
        if state is None and cfg.pretrain_epochs > 0:
            start = time.perf_counter()
            self._pretrain(student, self._load_checkpoint("pretrain") if resume else None)
            self.seconds["pretrain"] = time.perf_counter() - start
        start = time.perf_counter()
        self._distill(student, state)
        self.seconds["distill"] = time.perf_counter() - start
        threshold = weights = None
        if env.main:
            threshold, weights = self._finish(student)
        env.barrier()
        return DistillResult(self.run_dir, weights, self.history, threshold, self.seconds)

    # -- data --------------------------------------------------------------------------------------------

    def _targets(self, clips: Sequence[Clip]) -> TargetArrays:
        """Every clip's targets for every teacher: ``s (M, K)``, ``m (M, K, 4, 4)``, ``l (M, K, 16, 16)``.

        A time slice of a recording takes its frames' share of the recording's targets."""
        s, m, l = [], [], []  # noqa: E741
        for clip in clips:
            plain_slice = clip.source is not None and clip.step == 1 and clip.zoom == 1.0
            whole = self.dataset.clip(clip.recording) if plain_slice else clip
            per = read_targets(self.run_dir, self.teachers, whole)
            window = slice(clip.start, clip.start + clip.frame_count) if plain_slice else slice(None)
            s.append(np.stack([t.s1[window] for t in per], 1))
            m.append(np.stack([t.m4[window] for t in per], 1))
            l.append(np.stack([t.l16[window] for t in per], 1))
        return np.concatenate(s), np.concatenate(m), np.concatenate(l)

    def _stacks(
        self, clips: Sequence[Clip], targets: TargetArrays | None = None, mix: float = 0.0
    ) -> StackDataset:
        return StackDataset(clips, self.cache, self.spec.offset, targets, mix=mix, seed=self.cfg.seed)

    def _steps(self, data: StackDataset, epochs: int) -> int:
        """Batches per process and epoch: ``epoch_steps``, or fewer where a phase of ``epochs`` epochs would
        draw each item more than ``max_passes`` times."""
        cfg = self.cfg
        if cfg.max_passes <= 0 or epochs <= 0:
            return cfg.epoch_steps
        per_batch = cfg.batch * self.env.world
        return max(1, min(cfg.epoch_steps, math.ceil(cfg.max_passes * len(data) / (epochs * per_batch))))

    def _loader(self, data: StackDataset, epoch: int, steps: int) -> DataLoader:
        """An epoch of training: ``steps`` batches per process, drawn afresh each epoch."""
        env, cfg = self.env, self.cfg
        sampler = EpochSampler(len(data), steps * cfg.batch, seed=cfg.seed, world=env.world, rank=env.rank)
        sampler.set_epoch(epoch)
        data.set_epoch(epoch)
        return DataLoader(
            data, batch_size=cfg.batch, sampler=sampler, num_workers=cfg.num_workers, drop_last=True
        )

    def _pass(self, data: StackDataset) -> DataLoader:
        """One pass over held-out data (each process its share), in order."""
        env = self.env
        sampler = DistributedSampler(data, env.world, env.rank, shuffle=False)
        return DataLoader(data, batch_size=self.cfg.batch, sampler=sampler, num_workers=self.cfg.num_workers)

    # -- phase 1 -----------------------------------------------------------------------------------------

    def _pretrain(self, student: Student, state: dict[str, Any] | None) -> None:
        cfg, env = self.cfg, self.env
        torch.manual_seed(cfg.seed)
        net = PretrainNet(student).to(env.device, memory_format=memory_format(env.device))
        optimizer = torch.optim.Adam(net.parameters(), lr=cfg.pretrain_lr, weight_decay=cfg.weight_decay)
        scheduler = _cosine(optimizer, cfg.pretrain_epochs)
        first = 0
        if state is not None:
            net.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            torch.set_rng_state(state["rng"])
            first, self.history = int(state["epoch"]), state["history"]
        train_set = self._stacks(self.train_parts)
        val_set = self._stacks(self.val_parts) if self.val_parts else None
        ddp_net = wrap(net, env)
        steps = self._steps(train_set, cfg.pretrain_epochs)
        with EpochProgress(self.quiet) as progress:
            progress.start("pretrain", first, cfg.pretrain_epochs, steps * cfg.batch)
            for epoch in range(first, cfg.pretrain_epochs):
                progress.epoch(epoch + 1, scheduler.get_last_lr()[0])
                t0 = time.perf_counter()
                res = pretrain_epoch(
                    ddp_net,
                    self._loader(train_set, epoch, steps),
                    self.spec,
                    optimizer,
                    env.device,
                    progress.step,
                )
                seconds = time.perf_counter() - t0
                loss, frames = env.sum([res["loss"], res["frames"]])
                row = {"epoch": epoch + 1, "loss": loss / max(frames, 1), "lr": scheduler.get_last_lr()[0]}
                if val_set is not None:
                    vloss, vframes = env.sum(
                        list(validation_loss(ddp_net, self._pass(val_set), self.spec, env.device, "pretrain"))
                    )
                    row["val_loss"] = vloss / max(vframes, 1)
                scheduler.step()
                state = {
                    "epoch": epoch + 1,
                    "model": net.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                }
                self._end_epoch("pretrain", row, frames, seconds, state, progress)

    # -- phase 2 -----------------------------------------------------------------------------------------

    def _distill(self, student: Student, state: dict[str, Any] | None) -> None:
        cfg, env = self.cfg, self.env
        torch.manual_seed(cfg.seed + 1)
        student.to(env.device, memory_format=memory_format(env.device))
        adversarial = cfg.adversarial_weight > 0
        discriminators = [Discriminator().to(env.device) for _ in self.teachers] if adversarial else []
        optimizer = torch.optim.Adam(student.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        scheduler = _cosine(optimizer, cfg.epochs)
        # One Adam over all discriminators equals one Adam each: Adam's state is per parameter.
        d_params = [p for d in discriminators for p in d.parameters()]
        optimizer_d = (
            torch.optim.Adam(d_params, lr=cfg.lr, weight_decay=cfg.weight_decay) if d_params else None
        )
        first = 0
        if state is not None:
            student.load_state_dict(state["student"])
            for d, sd in zip(discriminators, state["discriminators"], strict=True):
                d.load_state_dict(sd)
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            if optimizer_d is not None:
                optimizer_d.load_state_dict(state["optimizer_d"])
            torch.set_rng_state(state["rng"])
            first, self.history = int(state["epoch"]), state["history"]
        if first >= cfg.epochs:
            return

        targets = self.train_targets
        assert targets is not None  # read by execute() before any training
        train_set = self._stacks([*self.train_parts, *self.train_views], targets, mix=cfg.region_mix)
        val_set, val_constant = None, math.nan
        if self.val_targets is not None:
            val_set = self._stacks([*self.val_parts, *self.val_views], self.val_targets)
            val_constant = constant_kd_loss(targets, self.val_targets)
        ddp_student = wrap(student, env)
        ddp_ds = [wrap(d, env) for d in discriminators]
        steps = self._steps(train_set, cfg.epochs)
        with EpochProgress(self.quiet) as progress:
            progress.start("distill", first, cfg.epochs, steps * cfg.batch)
            for epoch in range(first, cfg.epochs):
                progress.epoch(epoch + 1, scheduler.get_last_lr()[0])
                t0 = time.perf_counter()
                res = distill_epoch(
                    ddp_student,
                    ddp_ds,
                    self._loader(train_set, epoch, steps),
                    self.spec,
                    optimizer,
                    optimizer_d,
                    env.device,
                    adversarial_weight=cfg.adversarial_weight,
                    clip_grad=cfg.clip_grad,
                    on_step=progress.step,
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
                if adversarial:
                    row |= {"adv": adv / n, "d_loss": d_loss / n}
                self._recalibrate(student, train_set, epoch)
                if val_set is not None:
                    vloss, vframes = env.sum(
                        list(
                            validation_loss(
                                ddp_student, self._pass(val_set), self.spec, env.device, "distill"
                            )
                        )
                    )
                    row |= {"val_kd": vloss / max(vframes, 1), "val_kd_constant": val_constant}
                scheduler.step()
                state = {
                    "epoch": epoch + 1,
                    "student": student.state_dict(),
                    "discriminators": [d.state_dict() for d in discriminators],
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "optimizer_d": optimizer_d.state_dict() if optimizer_d else None,
                }
                self._end_epoch("distill", row, frames, seconds, state, progress)

    def _end_epoch(
        self,
        phase: str,
        row: dict[str, float],
        frames: float,
        seconds: float,
        state: dict[str, Any],
        progress: EpochProgress,
    ) -> None:
        """Record a finished epoch of ``phase`` in the history and its checkpoint, then show its summary."""
        row |= {"frames": int(frames), "seconds": seconds, "frames_per_s": frames / max(seconds, 1e-9)}
        self.history[phase].append(row)
        self._save_checkpoint(phase, state)
        progress.summary(phase, row)

    def _recalibrate(self, student: Student, train_set: StackDataset, epoch: int) -> None:
        """Re-estimate BatchNorm statistics on ``bn_batches`` training batches (each process its share, then
        their mean): training's moving averages lag behind weights that move fast."""
        if self.cfg.bn_batches <= 0:
            return
        loader = self._loader(train_set, epoch, self.cfg.bn_batches)
        xs = (x for x, _ in batches(loader, self.spec, self.env.device))
        recalibrate_batchnorm(student, xs, self.cfg.bn_batches)
        if self.env.distributed:
            for layer in batchnorm_layers(student):
                for buffer in (layer.running_mean, layer.running_var):
                    dist.all_reduce(buffer)
                    buffer /= self.env.world

    # -- after training ----------------------------------------------------------------------------------

    def _normal_scores(self, student: Student) -> tuple[dict[str, np.ndarray], str]:
        """Raw scores of the held-out normal footage (or, without any, of the training footage)."""
        parts = self.val_parts or self.train_parts
        runner = StudentRunner(
            unwrap(student).eval(),
            self.spec,
            device=self.env.device,
            memory_format=memory_format(self.env.device),
            batch_size=32,
        )
        raw = {}
        for clip in parts:
            frames = np.load(self.cache.path(clip), mmap_mode="r")[clip.start : clip.start + clip.frame_count]
            raw[clip.name], _ = runner.score_clip(iter(frames))
        if self.val_parts:
            note = f"normal footage held out from training: {_names(parts)}"
        else:
            note = "no footage was held out (validation 'none'), so this is footage the student trained on"
        return raw, note

    def _finish(self, student: Student) -> tuple[Threshold, Path]:
        cfg = self.cfg
        raw, note = self._normal_scores(student)
        thr = threshold_from_normal(raw, cfg.sigma, cfg.percentile)
        threshold = Threshold(thr.value, thr.sigma, thr.percentile, f"{thr.source}; {note}")
        scores = np.concatenate(list(raw.values()))
        normal = NormalRange(
            float(np.median(scores)), float(np.percentile(scores, 99)), int(scores.size), note
        )
        post = self.history["distill"]
        metrics = {
            k: post[-1][k]
            for k in ("kd", "adv", "d_loss", "val_kd", "val_kd_constant")
            if post and k in post[-1]
        }
        if "val_kd" in metrics and metrics["val_kd"] >= metrics["val_kd_constant"]:
            print(
                f"warning: the student's validation L_KD ({metrics['val_kd']:.4g}) does not beat a constant "
                f"answer ({metrics['val_kd_constant']:.4g}): it has not learnt its teachers; train longer.",
                file=sys.stderr,
            )
        clip = self.dataset.train[0]
        first = next(iter(clip.frames()))
        domain = Domain(
            (int(first.shape[0]), int(first.shape[1])),
            1 if self.dataset.gray else 3,
            _fps(self.dataset),
            self.dataset.name,
        )
        provenance = {
            "dataset": {"name": self.dataset.name, "root": str(self.dataset.root)},
            "command": self.command,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "epochs": {"pretrain": len(self.history["pretrain"]), "distill": len(post)},
            "selection": "the last epoch (nothing is chosen on test data)",
            "seconds": self.seconds,
            "train_parts": [c.name for c in self.train_parts],
            "validation_parts": [c.name for c in self.val_parts],
            "train_frames": int(sum(c.frame_count for c in self.train_parts)),
            "pseudo_anomaly_frames": int(sum(c.frame_count for c in self.train_views)),
            "teachers": list(self.teachers),
            "teach_config": self.teach_cfg.to_dict(),
            "train_config": cfg.to_dict(),
            "parameters": count_params(student),
            "hardware": hardware(self.env),
            "metrics": metrics,
        }
        path = save_weights(
            self.run_dir / "weights.pt",
            unwrap(student),
            self.spec,
            sigma=cfg.sigma,
            threshold=threshold,
            normal=normal,
            domain=domain,
            provenance=provenance,
            variant=cfg.variant,
        )
        self._write_history()
        if scores.size < MIN_THRESHOLD_FRAMES:
            print(few_frames_warning(int(scores.size), path), file=sys.stderr)
        return threshold, path

    # -- checkpoints -------------------------------------------------------------------------------------

    def _refuse_earlier_run(self) -> None:
        for phase in ("pretrain", "distill"):
            path = self.ckpt_dir / f"{phase}.pt"
            if path.exists():
                raise UsageError(
                    f"{path} holds an earlier run; pass --resume to continue it, or choose another --out."
                )

    def _save_checkpoint(self, phase: str, payload: dict[str, Any]) -> None:
        if self.env.main:
            payload = {
                "format": CHECKPOINT_FORMAT,
                "version": CHECKPOINT_VERSION,
                "phase": phase,
                "config": self.cfg.to_dict(),
                "input": self.spec.to_dict(),
                "teachers": list(self.teachers),
                "history": self.history,
                "rng": torch.get_rng_state(),
                **payload,
            }
            with atomic_path(self.ckpt_dir / f"{phase}.pt") as tmp:
                torch.save(payload, tmp)
            self._write_history(plot=payload["epoch"] % 5 == 0)
        self.env.barrier()

    def _load_checkpoint(self, phase: str) -> dict[str, Any] | None:
        """The phase's checkpoint, or None; refused when it was trained with other settings."""
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
            raise AedError(
                f"{path} is not an aed training checkpoint of this version; delete it or choose another "
                "--out."
            )
        saved, now = TrainConfig.from_dict(state["config"]).to_dict(), self.cfg.to_dict()
        keys = PRETRAIN_KEYS if phase == "pretrain" else tuple(now)
        changed = [k for k in keys if k not in RESUMABLE and saved.get(k) != now[k]]
        if state["input"] != self.spec.to_dict():
            changed.append("size")
        if list(state.get("teachers", [])) != list(self.teachers):
            changed.append("teachers")
        if changed:
            raise UsageError(
                f"setting '{changed[0]}' differs from the {phase} checkpoint in {self.ckpt_dir}; use the "
                "same settings to resume, or choose another --out to start a new run."
            )
        state["rng"] = state["rng"].cpu()
        return state

    def _write_history(self, plot: bool = True) -> None:
        if not self.env.main:
            return
        write_json_atomic(self.run_dir / "history.json", self.history)
        if plot:
            plot_history(self.history, self.run_dir / "loss.png")


def _cosine(optimizer: torch.optim.Optimizer, epochs: int) -> torch.optim.lr_scheduler.LRScheduler:
    """The learning rate falls from its start to a tenth of it along a cosine over ``epochs``."""
    base = optimizer.param_groups[0]["lr"]
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(epochs, 1), eta_min=base / 10)


def _stored_teach_config(run_dir: Path) -> TeachConfig | None:
    """The options the teachers already in ``run_dir`` were fitted with (``aed teach`` run before)."""
    summary = TargetPaths(run_dir).summary()
    if not summary.is_file():
        return None
    try:
        return TeachConfig.from_dict(json.loads(summary.read_text())["config"])
    except (ValueError, KeyError, TypeError):
        return None


def _fps(dataset: Dataset) -> float | None:
    return float(dataset.fps) if dataset.fps and math.isfinite(dataset.fps) and dataset.fps > 0 else None


def _names(clips: Sequence[Clip]) -> str:
    shown = ", ".join(c.name for c in clips[:6])
    return shown + (f" and {len(clips) - 6} more" if len(clips) > 6 else "")
