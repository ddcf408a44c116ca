"""Measure how far a working ``teach -> distill -> eval`` run stands from broken ones on synthetic video.

The end-to-end test (``tests/test_end_to_end.py``) runs the real command line on a small synthetic dataset
and checks its numbers against bars. This script measures where those bars can sit. The teacher stage runs
once per dataset (the velocity teacher is a fitted density with no seed); then, for every seed, through
``aedcli.cli.main`` exactly as the test does:

- ``working``: ``aed distill`` on the teacher's targets, then ``aed eval --weights``;
- ``untrained``: the same variant and input size, random initialisation, no training at all
  (``--no-pretrain --epochs 0``): the weights file, threshold and evaluation are real, nothing was learnt;
- ``pretrain-only``: reconstruction pre-training but no distillation (``--epochs 0``);
- ``shuffled``: trained like ``working`` on targets whose training frames were permuted across the whole
  training set, so every frame is paired with the targets of another one.

Each run gets two numbers:

- ``micro AUC``: the student's frame-level micro AUC on the test videos (``aed eval --weights``);
- ``fit``: Pearson correlation between the student's and the teacher's frame scores over the training videos
  the student was trained on (the student scored by the same code as ``aed eval``): how closely
  distillation followed its teacher.

The teacher's own micro AUC is compared with the same teacher scores circularly shifted in time by a random
offset per video (a teacher whose scores do not line up with the frames), 200 draws. The student learns
targets painted with ``--normalisation per-video-minmax`` (each training video's own score range; the
student never sees test targets); the teacher itself is judged with its default normalisation, which uses
training statistics only (:func:`teacher_report`).

For each number the table ends with the smallest working value, the largest broken one, and their midpoint
when they do not overlap. Runs are deterministic for a given seed on one thread.

    python scripts/synthetic_bar.py                                 # seeds 0-3: about 4 min on 2 busy cores
    python scripts/synthetic_bar.py --seeds 0 1 2 3 4 5 6 7 --json bar.json    # the test's bars: about 7 min
    python scripts/synthetic_bar.py --seeds 0 1 2 3 --data-seeds 1 2           # other generated datasets
    python scripts/synthetic_bar.py --teach-args '--teachers flow --quiet'     # default normalisation
    python scripts/synthetic_bar.py --kinds working --set train_videos=12 --distill-args '--teachers flow ...'
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # before numpy and torch load; importing this module changes nothing
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

from aedcli.data.synthetic import SyntheticConfig, generate_synthetic

PRESET = SyntheticConfig(train_videos=8, test_videos=16, pedestrians=2)
"""Eight normal training videos (one held out for the threshold) and four test videos per anomaly kind; two
pedestrians in view keep the teacher stage fast. Teacher scores shifted off their frames reached micro AUC
0.72 by chance with four test videos, 0.66 with eight, 0.57 with sixteen. Twelve or sixteen training videos
did not make students better."""

TEACHER = "flow"
TEACH_ARGS = ["--teachers", TEACHER, "--normalisation", "per-video-minmax", "--quiet"]
"""With the default normalisation (median -> 0, maximum -> 1 over all training objects) most training targets
stay below 0.15 and students reached micro AUC 0.50-0.69 on this preset, no clearer than untrained ones."""
VAL_VIDEOS = 1
DISTILL_ARGS = [
    "--teachers",
    TEACHER,
    "--variant",
    "fastaed-xs",
    "--size",
    "48x64",
    "--pretrain-epochs",
    "2",
    "--epochs",
    "20",
    "--batch",
    "8",
    "--val-videos",
    str(VAL_VIDEOS),
    "--quiet",
]
"""About 20 s on one busy core. Measured alternatives (smallest working micro AUC over 6 seeds): 64x96 at
batch 16 0.55; 48x64 at batch 16 0.63; 30 epochs at batch 8 0.69 (over 8 seeds) for 10 s more;
``--no-adversarial`` 0.71, kept off so that the test covers the discriminators."""
BROKEN_ARGS = {"untrained": ["--no-pretrain", "--epochs", "0"], "pretrain-only": ["--epochs", "0"]}
KINDS = ("working", "untrained", "pretrain-only", "shuffled")
SHIFT_DRAWS = 200


def aed(args: list[str], *, echo: bool = False) -> None:
    """Run one ``aed`` command in this process; a non-zero exit raises. Its stdout is dropped unless
    ``echo``."""
    from aedcli.cli import main

    try:
        if echo:
            main(args)
        else:
            with open(os.devnull, "w") as sink, redirect_stdout(sink):
                main(args)
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise RuntimeError(f"aed {shlex.join(args)} exited with {exc.code}") from None


def dataset_root(cache: Path, config: SyntheticConfig = PRESET) -> Path:
    """The generated dataset's folder: a folder-layout dataset (``--dataset folder --root``)."""
    return generate_synthetic(config, cache)


def teach(root: Path, targets: Path, args: list[str] | None = None) -> None:
    """``aed teach`` into ``targets`` (``TEACH_ARGS`` unless ``args``); work already there is reused."""
    aed(["teach", "--dataset", "folder", "--root", str(root), "--out", str(targets), *(args or TEACH_ARGS)])


def teacher_report(root: Path, targets: Path, out: Path) -> tuple[dict[str, Any], Path]:
    """The teacher's own evaluation: ``aed eval --model teacher-<name> --json``; returns the report and the
    targets folder it scored.

    The student's targets are painted with ``per-video-minmax``, which on a test video would use that
    video's own score range; the teacher is judged with its default normalisation (statistics of the
    training objects only) instead. A copy of ``targets`` is re-painted that way (``aed teach`` reuses the
    boxes, the fitted teacher and its raw scores), so the student's targets are never touched.
    """
    own = out / "teacher-targets"
    if not own.is_dir():
        shutil.copytree(targets, own)
    teach(root, own, ["--teachers", TEACHER, "--quiet"])
    report = out / "teacher.json"
    args = ["eval", "--dataset", "folder", "--root", str(root), "--targets", str(own)]
    aed([*args, "--model", f"teacher-{TEACHER}", "--json", str(report)])
    return json.loads(report.read_text(encoding="utf-8")), own


def distill(root: Path, run: Path, targets: Path, seed: int, extra: list[str] | None = None) -> Path:
    """Train a student into ``run`` from a copy of ``targets``; returns its weights file."""
    shutil.copytree(targets, run / "targets")
    args = ["distill", "--dataset", "folder", "--root", str(root), "--out", str(run), *DISTILL_ARGS]
    aed([*args, "--seed", str(seed), *(extra or [])])
    return run / "weights.pt"


def evaluate(root: Path, weights: Path, out: Path) -> dict[str, Any]:
    """``aed eval --weights ... --json``; returns the JSON report."""
    aed(["eval", "--dataset", "folder", "--root", str(root), "--weights", str(weights), "--json", str(out)])
    return json.loads(out.read_text(encoding="utf-8"))


def teacher_frame_scores(targets: Path, clips: list[Any]) -> dict[str, np.ndarray]:
    """The teacher's frame scores from its targets, by the student's formula (mean S, max M, max L)."""
    from aedcli.scoring import frame_scores
    from aedcli.teachers.maps import load_targets

    out = {}
    for clip in clips:
        t = load_targets(targets / TEACHER / clip.split / f"{clip.name}.npz")
        out[clip.name] = frame_scores(t.s1, t.m4, t.l16)
    return out


def training_fit(root: Path, weights: Path, targets: Path, val_videos: int = VAL_VIDEOS) -> float:
    """Pearson correlation of student and teacher frame scores over the videos the student trained on."""

    from aedcli.data import load_dataset
    from aedcli.distill import split_validation
    from aedcli.evaluate import student_source

    data = load_dataset("folder", root)
    _, train = split_validation(data.train, val_videos)
    student = student_source(dataclasses.replace(data, test=train), weights, with_regions=False).raw
    teacher = teacher_frame_scores(targets, train)
    names = [c.name for c in train]
    both = np.stack(
        [np.concatenate([student[n] for n in names]), np.concatenate([teacher[n] for n in names])]
    )
    return float(np.corrcoef(both)[0, 1])


def shifted_teacher_aucs(root: Path, targets: Path, draws: int, seed: int = 0) -> list[float]:
    """Micro AUC of the teacher's test scores, each video circularly shifted by a random offset."""
    from aedcli.data import load_dataset
    from aedcli.evaluate import evaluate_scores
    from aedcli.teachers.pipeline import teacher_scores

    data = load_dataset("folder", root)
    scores = teacher_scores(data, targets, TEACHER)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(draws):
        shifted = {}
        for name, s in scores.items():
            n = len(s)
            shifted[name] = np.roll(s, int(rng.integers(n // 8, n - n // 8)))
        out.append(evaluate_scores(data, shifted, sigma=3.0).micro_auc)
    return out


def shuffle_training_targets(targets: Path, seed: int) -> None:
    """Permute the teacher's training targets across all training frames, in place."""
    from aedcli.teachers.maps import Targets, load_targets, save_targets

    paths = sorted((targets / TEACHER / "train").glob("*.npz"))
    loaded = [load_targets(p) for p in paths]
    lengths = [len(t) for t in loaded]
    order = np.random.default_rng(seed).permutation(sum(lengths))
    keys = ("s1", "m4", "l16", "lowres")
    arrays = {k: np.concatenate([getattr(t, k) for t in loaded])[order] for k in keys}
    start = 0
    for path, t, n in zip(paths, loaded, lengths, strict=True):
        part = {k: v[start : start + n] for k, v in arrays.items()}
        save_targets(path, Targets(**part, boxes=t.boxes, raw=t.raw, meta=t.meta))
        start += n


def measure(work: Path, seeds: list[int], kinds: list[str], config: SyntheticConfig) -> list[dict[str, Any]]:
    """Every run of one dataset: the teacher rows, then ``kinds`` x ``seeds``."""
    root = dataset_root(work / "cache", config)
    targets = work / f"targets-{config.cache_key()}"  # one per dataset: teach reuses what it finds
    start = time.perf_counter()
    teach(root, targets)
    teach_s = time.perf_counter() - start
    teacher, teacher_targets = teacher_report(root, targets, work / f"teacher-{config.cache_key()}")
    shifted = shifted_teacher_aucs(root, teacher_targets, SHIFT_DRAWS)
    rows: list[dict[str, Any]] = [
        {
            "data_seed": config.seed,
            "kind": "teacher",
            "seed": "-",
            "micro_auc": teacher["micro_auc"],
            "seconds": teach_s,
        },
        {
            "data_seed": config.seed,
            "kind": "teacher-shifted",
            "seed": f"max of {len(shifted)}",
            "micro_auc": max(shifted),
            "seconds": 0.0,
        },
    ]
    for seed in seeds:
        for kind in kinds:
            run = work / f"{kind}-{config.seed}-{seed}"
            shutil.rmtree(run, ignore_errors=True)
            start = time.perf_counter()
            if kind == "shuffled":
                shuffled = work / f"targets-{config.cache_key()}-shuffled-{seed}"
                shutil.rmtree(shuffled, ignore_errors=True)
                shutil.copytree(targets, shuffled)
                shuffle_training_targets(shuffled, seed)
                weights = distill(root, run, shuffled, seed)
            else:
                weights = distill(root, run, targets, seed, BROKEN_ARGS.get(kind))
            report = evaluate(root, weights, run / "eval.json")
            seconds = time.perf_counter() - start
            row = {
                "data_seed": config.seed,
                "kind": kind,
                "seed": seed,
                "micro_auc": report["micro_auc"],
                "fit": training_fit(root, weights, targets),
                "seconds": seconds,
            }
            rows.append(row)
            print(
                f"  data {config.seed} {kind:13s} seed {seed}: micro AUC {row['micro_auc']:.3f}, "
                f"fit {row['fit']:+.2f} ({seconds:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
    return rows


def separation(working: list[float], broken: list[float]) -> dict[str, float | None]:
    """Smallest working value, largest broken one, and the midpoint when they do not overlap."""
    lo, hi = min(working), max(broken)
    return {"working_min": lo, "broken_max": hi, "bar": (lo + hi) / 2 if lo > hi else None}


def bars(rows: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float | None]]]:
    """:func:`separation` of the teacher from its shifted scores, and of the working students from each kind
    of broken one and from all of them together, for every number."""
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    teacher = [r["micro_auc"] for r in rows if r["kind"] == "teacher"]
    shifted = [r["micro_auc"] for r in rows if r["kind"] == "teacher-shifted"]
    if teacher and shifted:
        out["teacher"] = {"shifted": separation(teacher, shifted)}
    for metric in ("micro_auc", "fit"):
        working = [r[metric] for r in rows if r["kind"] == "working"]
        groups = {kind: (kind,) for kind in KINDS[1:]} | {"all broken": KINDS[1:]}
        for name, kinds in groups.items():
            broken = [r[metric] for r in rows if r["kind"] in kinds]
            if working and broken:
                out.setdefault(metric, {})[name] = separation(working, broken)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3], help="student seeds")
    parser.add_argument("--data-seeds", type=int, nargs="+", default=[PRESET.seed], help="dataset seeds")
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS, help="runs per seed")
    parser.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="FIELD=JSON",
        help="override fields of the preset, e.g. --set train_videos=12 'walk_speed=[0.8, 1.6]'",
    )
    parser.add_argument("--distill-args", help="replace the distill options (one quoted string)")
    parser.add_argument("--teach-args", help="replace the teach options (one quoted string)")
    parser.add_argument("--work", type=Path, help="keep every run in this folder (default: a temporary one)")
    parser.add_argument("--json", type=Path, help="write the rows and the bars to this file")
    args = parser.parse_args()

    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        parsed = json.loads(value)
        overrides[key] = tuple(parsed) if isinstance(parsed, list) else parsed
    preset = dataclasses.replace(PRESET, **overrides)
    if args.distill_args is not None:
        DISTILL_ARGS[:] = shlex.split(args.distill_args)
    if args.teach_args is not None:
        TEACH_ARGS[:] = shlex.split(args.teach_args)

    work = args.work or Path(tempfile.mkdtemp(prefix="aed-bar-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        rows: list[dict[str, Any]] = []
        for data_seed in args.data_seeds:
            rows.extend(measure(work, args.seeds, args.kinds, dataclasses.replace(preset, seed=data_seed)))
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)

    print(f"preset: {preset}")
    print(f"teach: {shlex.join(TEACH_ARGS)}")
    print(f"distill: {shlex.join(DISTILL_ARGS)}")
    print(f"{'data':>4}  {'run':15s} {'seed':>10}  {'micro AUC':>9}  {'fit':>5}  {'seconds':>7}")
    for r in rows:
        fit = f"{r['fit']:+.2f}" if "fit" in r else "-"
        print(
            f"{r['data_seed']:>4}  {r['kind']:15s} {r['seed']!s:>10}  {r['micro_auc']:9.3f}  {fit:>5}  "
            f"{r['seconds']:7.0f}"
        )
    summary: dict[str, Any] = {
        "rows": rows,
        "preset": dataclasses.asdict(preset),
        "teach_args": TEACH_ARGS,
        "distill_args": DISTILL_ARGS,
    }
    summary["bars"] = bars(rows)
    for name, against in summary["bars"].items():
        for kind, b in against.items():
            bar = f"bar {b['bar']:.3f}" if b["bar"] is not None else "overlap: no bar"
            print(
                f"{name:9s} vs {kind:13s}: working min {b['working_min']:+.3f}, "
                f"broken max {b['broken_max']:+.3f}; {bar}"
            )
    if args.json is not None:
        args.json.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
