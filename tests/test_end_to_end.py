"""The whole pipeline on the synthetic dataset, through the command line: ``aed teach``, ``aed distill`` and
``aed eval --weights``, checked against bars measured on working and deliberately broken runs.

Configuration, commands and helpers come from ``scripts/synthetic_bar.py``, the script that measured the bars,
so the test runs exactly what was measured. It needs no files and no network; the dataset is generated into a
temporary ``AED_CACHE``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from _scripts import load_script

pytestmark = pytest.mark.slow


bar = load_script("synthetic_bar")

SEED = 0
"""Student seed of every run below (initialisation and shuffling); the dataset has its own, fixed seed."""

# Measured with
#     OMP_NUM_THREADS=1 python scripts/synthetic_bar.py --seeds 0 1 2 3 4 5 6 7 --json bar.json
# (the script's defaults, dataset seed 0; every run is deterministic for its seed on one thread):
#
#     student seed                 0      1      2      3      4      5      6      7
#     working        micro AUC 0.773  0.788  0.682  0.731  0.710  0.733  0.730  0.799
#                    fit       +0.95  +0.95  +0.94  +0.91  +0.93  +0.89  +0.93  +0.93
#     untrained      micro AUC 0.439  0.437  0.424  0.529  0.546  0.410  0.394  0.396
#                    fit       -0.02  -0.03  -0.06  -0.01  +0.22  -0.16  +0.01  -0.07
#     pretrain-only  micro AUC 0.508  0.527  0.483  0.642  0.635  0.418  0.542  0.560
#                    fit       -0.03  +0.26  -0.02  +0.00  +0.12  +0.14  -0.05  +0.06
#     shuffled       micro AUC 0.405  0.706  0.433  0.676  0.510  0.689  0.581  0.501
#                    fit       +0.01  +0.04  +0.07  -0.04  +0.02  +0.02  -0.07  -0.04
#
#     teacher micro AUC 0.882; its scores shifted off their frames: at most 0.570 in 200 draws
#
# Each bar is the midpoint between the worst working value and the best broken one. The micro AUC separates
# the distilled student from untrained ones only: on these anomalies (all of them more or unusual motion)
# any motion-sensitive network ranks frames better than chance, so pretrain-only students reach 0.642 and
# students trained on shuffled targets 0.706 (the no-learning optical-flow floor, ``aed eval --baseline
# flow``, scores 0.768). Whether a student learnt its teacher frame by frame is what ``fit`` shows, for
# every broken kind.
TEACHER_AUC_BAR = 0.73  # teacher 0.882 vs shifted 0.570
STUDENT_AUC_BAR = 0.61  # working >= 0.682 vs untrained <= 0.546
FIT_BAR = 0.58  # working >= +0.89 vs broken <= +0.26 (pretrain-only; untrained +0.22, shuffled +0.07)


@dataclass(frozen=True)
class Taught:
    """The generated dataset (folder layout), the teacher's targets and a scratch folder for runs."""

    root: Path
    targets: Path
    work: Path


@pytest.fixture(scope="module")
def taught(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Taught]:
    """Dataset and ``aed teach`` once for the module; runs use one thread, as measured."""
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        cache = tmp_path_factory.mktemp("aed-cache")
        mp.setenv("AED_CACHE", str(cache))
        torch.set_num_threads(1)
        try:
            work = tmp_path_factory.mktemp("end-to-end")
            root = bar.dataset_root(cache)
            bar.teach(root, work / "targets")
            yield Taught(root, work / "targets", work)
        finally:
            torch.set_num_threads(threads)


@dataclass(frozen=True)
class Student:
    """What one ``aed distill`` + ``aed eval --weights`` run scored."""

    micro_auc: float
    fit: float  # correlation with the teacher's frame scores on the training videos


@pytest.fixture(scope="module")
def student(taught: Taught) -> Callable[[str], Student]:
    """``student(kind)``: the run of ``kind`` (one of ``bar.KINDS``), made once per module."""
    done: dict[str, Student] = {}

    def run(kind: str) -> Student:
        if kind not in done:
            out, targets = taught.work / kind, taught.targets
            if kind == "shuffled":
                targets = taught.work / "targets-shuffled"
                shutil.copytree(taught.targets, targets)
                bar.shuffle_training_targets(targets, SEED)
            weights = bar.distill(taught.root, out, targets, SEED, bar.BROKEN_ARGS.get(kind))
            report = bar.evaluate(taught.root, weights, out / "eval.json")
            done[kind] = Student(report["micro_auc"], bar.training_fit(taught.root, weights, taught.targets))
        return done[kind]

    return run


def test_velocity_teacher_scores_synthetic_anomalies_above_its_bar(taught: Taught) -> None:
    report, _ = bar.teacher_report(taught.root, taught.targets, taught.work / "teacher")
    assert report["micro_auc"] >= TEACHER_AUC_BAR


def test_distilled_student_beats_untrained_student_on_synthetic_anomalies(
    student: Callable[[str], Student],
) -> None:
    working, untrained = student("working"), student("untrained")
    assert working.micro_auc >= STUDENT_AUC_BAR, (working, untrained)
    assert untrained.micro_auc < STUDENT_AUC_BAR, (working, untrained)


def test_only_the_student_distilled_from_aligned_targets_follows_its_teacher(
    student: Callable[[str], Student],
) -> None:
    working = student("working")
    assert working.fit >= FIT_BAR, working
    for kind in ("untrained", "pretrain-only", "shuffled"):
        broken = student(kind)
        assert broken.fit < FIT_BAR, (kind, broken)
