"""`aed distill`: train a student from the teachers' maps on a dataset's normal training video.

A thin layer over :func:`aedcli.distill.distill` (method.md section 4; Croitoru et al., arXiv 2211.15597).
Teacher targets are made first when ``OUT/targets`` lacks any (``aedcli.teachers.pipeline``); then
pre-training and distillation run with a checkpoint per epoch, and ``OUT/weights.pt`` is written with its
threshold and provenance.

    aed distill --dataset ped2 --root ~/data/ped2 --out runs/ped2 --variant fastaed-s --size 160x240 \\
        --pretrain-epochs 5 --epochs 15 --batch 16
    aed distill ... --resume                           # continue after the last finished epoch
    torchrun --nproc_per_node 2 -m aedcli distill ...   # data-parallel on 2 processes (or GPUs)
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import typer
from rich.console import Console

from aedcli.errors import UsageError


def distill(
    dataset: str = typer.Option(
        ...,
        "--dataset",
        metavar="NAME",
        help="Dataset name: ped2, ped1, avenue, shanghaitech, folder or synthetic.",
    ),
    root: Path | None = typer.Option(
        None, "--root", metavar="DIR", help="Dataset folder (default: $AED_DATA/<name>).", show_default=False
    ),
    out: Path = typer.Option(
        ...,
        "--out",
        metavar="DIR",
        help="Run folder: targets/, checkpoints/, history.json, loss.png and weights.pt go here.",
    ),
    variant: str = typer.Option(
        "fastaed", "--variant", help="Student size: fastaed (the paper's), fastaed-s or fastaed-xs."
    ),
    size: str | None = typer.Option(
        None,
        "--size",
        metavar="HxW",
        help="Student input as height x width, e.g. 240x360 (default: the dataset's frame size).",
        show_default=False,
    ),
    epochs: int = typer.Option(35, "--epochs", help="Distillation epochs."),
    pretrain_epochs: int = typer.Option(35, "--pretrain-epochs", help="Reconstruction pre-training epochs."),
    batch: int = typer.Option(48, "--batch", help="Frames per batch (per process under torchrun)."),
    lr: float = typer.Option(
        1e-4, "--lr", help="Adam learning rate of distillation (student and discriminators)."
    ),
    teachers: str | None = typer.Option(
        None,
        "--teachers",
        metavar="A,B",
        help="Comma-separated teachers to distil (default: the teacher pipeline's).",
        show_default=False,
    ),
    no_adversarial: bool = typer.Option(
        False, "--no-adversarial", help="Plain distillation: no discriminators, no adversarial loss."
    ),
    adv_warmup: int = typer.Option(
        0,
        "--adv-warmup",
        metavar="N",
        help="Distillation epochs of L_KD alone before the adversarial term joins.",
    ),
    lr_d: float | None = typer.Option(
        None, "--lr-d", help="Discriminators' learning rate (default: --lr).", show_default=False
    ),
    real_label: float = typer.Option(
        0.9, "--real-label", help="Discriminators' target for teacher maps (1.0: no label smoothing)."
    ),
    spectral_norm: bool = typer.Option(
        True,
        "--spectral-norm/--no-spectral-norm",
        help="Spectral normalisation in the discriminators (off: the paper's plain form).",
    ),
    clip_grad: float = typer.Option(
        1.0, "--clip-grad", metavar="NORM", help="Clip the student's gradient norm to this (0: off)."
    ),
    select: str = typer.Option(
        "last",
        "--select",
        metavar="last|val|val-auc|val-auc-box",
        help="Write the last epoch's student; the epoch with the lowest validation L_KD (held-out normal "
        "training video); val-auc, the epoch that best tells held-out frames from the same frames with a "
        "sped-up rectangle of grid cells pasted in; or val-auc-box, the same with sped-up object boxes "
        "(both need --speedups).",
    ),
    speedups: str | None = typer.Option(
        None,
        "--speedups",
        metavar="K,K",
        help="Pseudo-anomalies: also learn from the training videos played K times faster, scored by the "
        "teachers (e.g. 2,3; default: none, the paper's recipe).",
        show_default=False,
    ),
    region_mix: float = typer.Option(
        0.0,
        "--region-mix",
        metavar="P",
        help="Local pseudo-anomalies: paste a rectangle of a sped-up frame (and its targets) into this share "
        "of the normal training frames (needs --speedups; default 0: off).",
    ),
    bn_batches: int = typer.Option(
        30,
        "--bn-batches",
        min=0,
        metavar="N",
        help="After each distillation epoch, re-estimate the student's BatchNorm statistics on N training "
        "batches before it is validated and saved (0: keep training's moving averages; training itself is "
        "the same either way).",
    ),
    no_pretrain: bool = typer.Option(
        False, "--no-pretrain", help="Skip reconstruction pre-training; distil from random initialisation."
    ),
    heads: str = typer.Option("s,m,l", "--heads", metavar="s,m,l", help="Scales in the distillation loss."),
    val_videos: int = typer.Option(
        2,
        "--val-videos",
        metavar="N",
        help="Normal training videos held out for the validation loss and the threshold (0: none).",
    ),
    sigma: float = typer.Option(
        3.0, "--sigma", metavar="FRAMES", help="Temporal smoothing stored with the weights and its threshold."
    ),
    percentile: float = typer.Option(
        99.0, "--percentile", help="Percentile of smoothed normal scores used as the threshold."
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out after its last epoch."),
    workers: int = typer.Option(
        1, "--workers", metavar="N", help="Worker processes for teacher targets and for data loading."
    ),
    device: str = typer.Option("cpu", "--device", metavar="cpu|cuda", help="Where to train."),
    stage: str = typer.Option(
        "all",
        "--stage",
        metavar="teachers|pretrain|distill|all",
        help="Run only the teacher targets, only pre-training, only distillation (+ weights), or all.",
    ),
    seed: int = typer.Option(0, "--seed", help="Random seed (initialisation and shuffling)."),
    choices: Path | None = typer.Option(
        None,
        "--choices",
        metavar="REPORT",
        help="Train and paint teachers missing from OUT/targets with the options a development run chose "
        "(the JSON of scripts/teacher_dev.py, as 'aed teach --choices'); teachers already painted there "
        "keep their own.",
        show_default=False,
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Train a student: teacher targets, pre-training, adversarial distillation, weights with a threshold."""
    from aedcli.data import load_dataset
    from aedcli.distill import DistillConfig
    from aedcli.distill import distill as run_distill

    config = DistillConfig(
        variant=variant,
        size=parse_size(size) if size else None,
        epochs_pretrain=pretrain_epochs,
        epochs=epochs,
        batch=batch,
        lr=lr,
        teachers=_names(teachers, "--teachers") if teachers else (),
        heads=_names(heads, "--heads"),
        no_adversarial=no_adversarial,
        adv_warmup=adv_warmup,
        lr_d=lr_d,
        real_label=real_label,
        spectral_norm=spectral_norm,
        clip_grad=clip_grad,
        select=select,
        speedups=parse_factors(speedups) if speedups else (),
        region_mix=region_mix,
        bn_batches=bn_batches,
        no_pretrain=no_pretrain,
        val_videos=val_videos,
        sigma=sigma,
        percentile=percentile,
        seed=seed,
        num_workers=max(workers - 1, 0),
        device=device,
    )
    teach, teach_normalisation = None, None
    if choices is not None:
        from aedcli.teachers.choices import load_choices
        from aedcli.teachers.pipeline import TeachConfig

        chosen = load_choices(choices)
        teach, teach_normalisation = TeachConfig.with_choices(chosen), chosen.normalisation
        Console(stderr=True).print(
            f"teachers not yet in {out / 'targets'}: options from {choices}: {chosen.describe()}",
            markup=False,
            highlight=False,
        )
    data = load_dataset(dataset, root)
    command = shlex.join(["aed", *sys.argv[1:]])
    result = run_distill(
        data,
        out,
        config,
        stage=stage,
        resume=resume,
        quiet=quiet,
        command=command,
        target_workers=workers,
        teach=teach,
        teach_normalisation=teach_normalisation,
    )
    if result.weights is not None:
        console = Console(stderr=True)
        thr = result.threshold
        console.print(f"weights: {result.weights}", highlight=False, markup=False)
        if thr is not None:
            console.print(f"threshold {thr.value:.4f} ({thr.source})", highlight=False, markup=False)


def parse_size(text: str) -> tuple[int, int]:
    """'240x360' -> (240, 360): height x width."""
    parts = text.lower().replace(" ", "").split("x")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise UsageError(f"--size takes height x width in pixels such as 240x360, got {text!r}.")
    return int(parts[0]), int(parts[1])


def parse_factors(text: str) -> tuple[int, ...]:
    """'2,3' -> (2, 3) for --speedups: whole factors of 2 or more."""
    names = _names(text, "--speedups")
    if not all(n.isdigit() for n in names):
        raise UsageError(f"--speedups takes whole numbers such as 2,3, got {text!r}.")
    factors = tuple(int(n) for n in names)
    if any(k < 2 for k in factors):
        raise UsageError(f"--speedups takes whole factors of 2 or more, got {text!r}.")
    return factors


def _names(text: str, option: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise UsageError(f"{option} needs at least one comma-separated name, got {text!r}.")
    return names
