"""Choose the teachers' design options on the synthetic development set, never on a benchmark's test set.

Teacher A sums five calibrated components (appearance and motion reconstruction errors, appearance and
motion classifier logits, object speed) and the velocity teacher has three switches (slow objects floored
at the training median or flagged, flow measured over neighbouring or three-frame pairs, perspective
context on or off). Which of those to use is a design decision; this script makes it on the built-in
synthetic dataset (:mod:`aedcli.data.synthetic`, generated with its own seed, labels known), so no
benchmark's test labels are ever looked at to set a default.

It also tests how teacher A combines its weighted components (``AppearanceMotionConfig.combine``): the
linear sum, or the rarities of the components among normal training objects, summed or their largest. The
linear sum was listed first, so it was kept unless a tail combination beat it by more than the tie margin;
the largest rarity did (0.941 against 0.903), and it is teacher A's default since. Teacher b's three task
errors are tested the same way (``MultiTaskConfig.combine``): standardised and summed, or their rarities
among held-out normal objects, summed or their largest; the largest won (0.672 against 0.617) and is
teacher b's default since.

It also tests the frame calibration of both teachers' defaults: the maximum of the raw object scores, or
the count correction (:mod:`aedcli.teachers.calibration`, ``aed teach --frame-correction``). There the
option under test is listed first, so it is kept unless it loses more than the tie margin; it lost, so it
is off by default.

For every option the script scores each test object, takes the frame score as the max over the frame's
objects (0 without objects, no smoothing) and prints the frame-level micro AUC over all synthetic test
frames. The defaults in ``AppearanceMotionConfig.weights`` and ``VelocityConfig`` are the options marked
``chosen`` by the rule printed with the table: the highest micro AUC, ties (within 0.005) going to the
simpler option.

A second development set (``--dev-set ped2-pasted --root PED2``) is made from a benchmark's *training*
videos only (:mod:`aedcli.data.pasted`): the first twelve of Ped2's train the teachers, and the last four are
held out with the moving foreground of another held-out video pasted in, sped up or gliding sideways. It is
the camera's own scene with motion anomalies, which the synthetic set's simple figures cannot stand in for.
It proved too easy (every option 0.99-1.00); ``--dev-set ped2-one`` pastes one followed object per event,
at graded speeds, among the video's own people.
From the fourteenth round on, each group is decided on the mean micro AUC over both sets (``--decide``, which
measures nothing and applies the same rules to the averaged tables).

    python scripts/teacher_dev.py --work /tmp/teacher-dev --json teacher_dev.json
    python scripts/teacher_dev.py --dev-set ped2-pasted --root PED2 --json teacher_dev_ped2.json
    python scripts/teacher_dev.py --decide teacher_dev.json teacher_dev_ped2.json

One draw of a few hundred frames cannot separate options 0.01 apart. ``--seed`` takes several seeds: each
draws the Ped2-made set afresh, and every group is decided on the mean micro AUC over the draws (the
seventeenth round's rule; the report keeps each draw's table under ``draws``). The draws share their
training videos, so teacher a's file and teacher b's networks are trained once in the working folder.

    python scripts/teacher_dev.py --dev-set ped2-one --root PED2 --seed 2 3 4 --json ped2-choices.json

Teacher b's views (``aed teach --b-views``) are a group too, measured on three networks; ``--only b-views``
measures that group alone, without training teacher a, and decides it under the scaling ``--scaling`` names
(the twenty-first round's rule):

    python scripts/teacher_dev.py --dev-set ped2-one --root PED2 --seed 11 12 13 --only b-views \
        --scaling train-size --json b-views.json

Any camera: make a development set from its normal video with ``aed devset``, run every group on it, and
train the teachers with what it chose (the sixteenth round did this for Ped2). Several sets made with other
``--seed`` values are decided together with ``--decide`` (on sets that ``aed devset`` made, teacher a's
weights keep their appearance components, as on one):

    aed devset --dataset folder --root MYCAM --out MYCAM-dev
    python scripts/teacher_dev.py --dev-set folder --root MYCAM-dev --json MYCAM-choices.json
    aed teach --dataset folder --root MYCAM --out runs/mycam/targets --teachers a,b,flow \
        --choices MYCAM-choices.json
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from aedcli.data import load_dataset
from aedcli.data.clips import Clip, Dataset
from aedcli.data.pasted import ONE_OBJECT, PastedConfig, load_pasted
from aedcli.data.synthetic import SyntheticConfig, load_synthetic
from aedcli.metrics import micro_auc
from aedcli.teachers import choices
from aedcli.teachers.appearance_motion import AppearanceMotionTeacher
from aedcli.teachers.base import ObjectBatch
from aedcli.teachers.calibration import CountCorrection
from aedcli.teachers.choices import pairs_group
from aedcli.teachers.maps import ScoreScaler, box_heights
from aedcli.teachers.multitask import MultiTaskConfig, MultiTaskTeacher
from aedcli.teachers.objects import concat_batches, iter_object_batches
from aedcli.teachers.pipeline import TargetPaths, ensure_targets
from aedcli.teachers.proposals import load_boxes
from aedcli.teachers.velocity import VelocityConfig, VelocityTeacher, object_features

# The development set: larger than the unit tests' default so that every anomaly kind appears twice.
DEV_SET = SyntheticConfig(seed=7, train_videos=8, test_videos=8, frames=96)
# The second: a benchmark's training videos, the last four held out with foreground pasted in faster than
# anyone moves (:mod:`aedcli.data.pasted`); only training video is used, never the benchmark's test set.
# The fifteenth round's: one moving object per event, followed from frame to frame, at graded speeds.
PASTED = PastedConfig()
PASTED_ONE = ONE_OBJECT
DEV_SETS = ("synthetic", "ped2-pasted", "ped2-one", "folder")

# The options of every group, in order of simplicity (on a tie the earlier one wins), live in
# :mod:`aedcli.teachers.choices`, which ``aed teach --choices`` reads a report's choices with.
WEIGHT_OPTIONS = choices.A_WEIGHTS
VELOCITY_OPTIONS = choices.VELOCITY
# How teacher A's weighted components make one score (``AppearanceMotionConfig.combine``): the earlier
# default first, so that it is kept unless a tail combination beats it by more than TIE (the ninth round's
# rule, committed before the script first ran with these options).
COMBINE_OPTIONS = choices.A_COMBINES
# How each teacher's scores are scaled before the teachers' mean (``aed teach --normalisation``): the
# earlier default first, kept unless rarity scaling beats it by more than TIE (the tenth round's rule,
# committed before the script first ran with these options).
SCALING_OPTIONS = choices.SCALINGS
# How teacher b's three task errors make one score (``MultiTaskConfig.combine``): the earlier default first,
# kept unless a tail combination beats it by more than TIE (the twelfth round's rule, committed before the
# script first ran with these options).
B_COMBINE_OPTIONS = choices.B_COMBINES
# Teacher a's and teacher b's combinations chosen for the teachers' mean (the thirteenth round's rule,
# committed before the script first ran with these options): today's defaults first, kept unless another
# pair beats them by more than TIE.
MEAN_COMBINES = {"a": ("tail-max", "tail-sum", "linear"), "b": ("tail-max", "tail-sum", "z-sum")}
MEAN_COMBINE_PAIRS = [(a, b) for a in MEAN_COMBINES["a"] for b in MEAN_COMBINES["b"]]
# Frame calibration: the option under test comes first, so that it is kept unless it costs more than TIE
# (the rule was committed before the script first ran with these options).
CALIBRATION_OPTIONS = tuple(choices.CALIBRATIONS)
TIE = 0.005
# A set made by pasting moving people holds motion anomalies only, so it cannot tell what teacher a's
# appearance components are worth and would always favour dropping them: on such a set alone (the sixteenth
# round's rule) only the weight options that keep them are candidates.
APPEARANCE_CANDIDATES = {
    "teacher a weights": tuple(
        name for name, w in WEIGHT_OPTIONS.items() if w["appearance_error"] or w["appearance_class"]
    )
}
B_SEEDS = (0, 1, 2, 3, 4)
# Teacher b's seed counts (the twentieth round's rule, committed before the script first ran with five): the
# fewest networks first, so that more are trained only when their mean beats fewer by more than TIE. Each
# count is measured on raw scores (the eighth round's group) and, since a camera's teacher b serves scaled,
# under every scaling; the group under the scaling chosen decides.
B_SEED_OPTIONS = {name: B_SEEDS[:count] for name, count in choices.B_SEED_COUNTS.items()}
B_SEEDS_GROUP = "teacher b seeds"
# Teacher b's views (the twenty-first round's rule, committed before the script first ran with them): each
# task asked once first, so that more views (more scoring time) are used only when they beat fewer by more
# than TIE. Measured on the networks of ``B_VIEWS_SEEDS`` (three, Ped2's count since the sixteenth round), on
# raw scores and under every scaling; the group under the scaling chosen decides, as for the seed counts.
B_VIEWS_OPTIONS = choices.B_VIEWS
B_VIEWS_SEEDS = B_SEEDS[:3]
B_VIEWS_GROUP = "teacher b views"
# Groups decided on teacher b's scores as served: measured raw and under every scaling, decided under the
# scaling chosen.
SERVED_B_GROUPS = (B_SEEDS_GROUP, B_VIEWS_GROUP)
# ``--only b-views`` measures that group alone: proposals come from the velocity teacher's stage (seconds),
# and no teacher a is trained.
ONLY = ("b-views",)
# Reports written before five seeds name the options by what they measured.
OLD_SEED_NAMES = {
    "mean of the single-seed AUCs": "one seed",
    "three seeds (mean of their scores)": "three seeds",
}


def renamed(table: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """``table`` with the seed options of a report written before five seeds under today's names."""
    if B_SEEDS_GROUP not in table:
        return table
    return {**table, B_SEEDS_GROUP: {OLD_SEED_NAMES.get(k, k): v for k, v in table[B_SEEDS_GROUP].items()}}


def seeds_group(scaling: str) -> str:
    """The report group of teacher b's seed counts measured on scores scaled with ``scaling``."""
    return scaled_group(B_SEEDS_GROUP, scaling)


def scaled_group(group: str, scaling: str) -> str:
    """The report group ``group`` (one of SERVED_B_GROUPS) measured on scores scaled with ``scaling``."""
    return f"{group} ({scaling} scaling)"


def is_pasted(config: dict[str, Any]) -> bool:
    """Whether a development set (its report's ``dev_set``) was made by pasting moving people.

    A Ped2-made set names its source; a folder is one when ``aed devset`` made it; the synthetic set is not.
    """
    return bool(config.get("pasted")) or config.get("source") not in (None, "folder")


def objects_key(batches: list[ObjectBatch]) -> str:
    """A digest of objects (tubes, boxes, frames, real neighbours, frame size): equal keys, same objects."""
    digest = hashlib.blake2b(digest_size=16)
    for batch in batches:
        for array in (batch.tubes, batch.boxes, batch.frames, batch.real_reach()):
            digest.update(np.ascontiguousarray(array).tobytes())
        digest.update(f"{len(batch)} {batch.frame_size}".encode())
    return digest.hexdigest()


FLOW_SETTINGS = ("pairs", "dis_preset", "finest_scale", "crop_margin", "real_pairs_only")
_FEATURES: dict[tuple[str, str], np.ndarray] = {}


def velocity_features(config: VelocityConfig, batches: list[ObjectBatch]) -> list[np.ndarray]:
    """The velocity teacher's features of every batch, measured once per flow settings and objects.

    The velocity options differ in how features are compared, and only two in how they are measured, so
    most share them; so do the draws of a Ped2-made set, whose training objects are the same.
    """
    settings = json.dumps({k: getattr(config, k) for k in FLOW_SETTINGS}, sort_keys=True)
    out = []
    for batch in batches:
        key = (settings, objects_key([batch]))
        if key not in _FEATURES:
            _FEATURES[key] = object_features(batch, config)
        out.append(_FEATURES[key])
    return out


def fit_velocity(teacher: VelocityTeacher, batches: list[ObjectBatch]) -> None:
    """``teacher.fit(batches)`` with features measured once (:func:`velocity_features`)."""
    kept = [b for b in batches if len(b)]
    features = velocity_features(teacher.config, kept)
    videos = [np.full(len(b), b.video, np.int64) for b in kept]
    teacher.fit_features(np.concatenate(features), np.concatenate(videos))


def score_velocity(teacher: VelocityTeacher, batch: ObjectBatch) -> np.ndarray:
    """``teacher.score(batch)`` with features measured once (:func:`velocity_features`)."""
    if not len(batch):
        return np.zeros(0, np.float32)
    return teacher.score_features(velocity_features(teacher.config, [batch])[0], batch.video)


def fitted_b(train_objects: list[ObjectBatch], seed: int, cache: Path) -> MultiTaskTeacher:
    """Teacher b's network of ``seed`` on these training objects, trained once per working folder.

    Draws of a Ped2-made set share their training videos, so every draw after the first reuses the
    networks. The file name holds a digest of the objects and the settings: other training data or other
    settings train a new network.
    """
    config = MultiTaskConfig(seeds=1)
    # Views change only how the networks are asked, so every view option shares the same networks.
    settings = json.dumps(
        {k: v for k, v in dataclasses.asdict(config).items() if k != "views"}, sort_keys=True
    )
    key = hashlib.blake2b(f"{objects_key(train_objects)} {settings}".encode(), digest_size=8).hexdigest()
    path = cache / f"teacher-b-seed{seed}-{key}.pt"
    if path.is_file():
        return MultiTaskTeacher.load(path)
    teacher = MultiTaskTeacher(config)
    teacher.fit(train_objects, seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    teacher.save(path)
    return teacher


_B_ERRORS: dict[tuple[str, ...], list[Any]] = {}


def b_errors(teacher: MultiTaskTeacher, trained_on: str, batch: ObjectBatch) -> list[Any]:
    """``teacher.raw_errors(batch)`` for the network ``fitted_b`` trained on objects ``trained_on`` (their
    :func:`objects_key`), measured once per views: the draws of a Ped2-made set share their training
    objects, and every draw scores them."""
    key = (trained_on, str(teacher.seed), teacher.config.views, objects_key([batch]))
    if key not in _B_ERRORS:
        _B_ERRORS[key] = teacher.raw_errors(batch)
    return _B_ERRORS[key]


def clip_objects(clip: Clip, boxes: list[np.ndarray], video: int = -1) -> ObjectBatch:
    return concat_batches(
        list(iter_object_batches(clip.frames(gray=True), boxes, batch_size=512, video=video))
    )


def frame_auc(dataset: Dataset, objects: dict[str, ObjectBatch], scores: dict[str, np.ndarray]) -> float:
    """Micro AUC over all test frames of the per-frame max object score (lowest where a frame has none)."""
    floor = min((float(s.min()) for s in scores.values() if len(s)), default=0.0) - 1.0
    labels, frame_scores = {}, {}
    for clip in dataset.test:
        per_frame = np.full(clip.frame_count, floor, np.float64)
        np.maximum.at(per_frame, objects[clip.name].frames, np.asarray(scores[clip.name], np.float64))
        labels[clip.name] = clip.labels
        frame_scores[clip.name] = per_frame
    return micro_auc(labels, frame_scores)


def choose(results: dict[str, float]) -> str:
    best = max(results.values())
    return next(name for name, auc in results.items() if auc >= best - TIE)


def load_dev_set(name: str, root: Path | None, seed: int = 0) -> tuple[Dataset, dict[str, Any], str]:
    """The development set ``name``, its config as JSON, and a line saying what it is.

    ``seed`` draws a Ped2-made set's events afresh (the synthetic set keeps its own seed).
    """
    if name == "synthetic":
        dataset = load_synthetic(DEV_SET)
        about = (
            f"synthetic development set (seed {DEV_SET.seed}: {len(dataset.train)} train / "
            f"{len(dataset.test)} test videos of {DEV_SET.frames} frames)"
        )
        return dataset, dataclasses.asdict(DEV_SET), about
    if name == "folder":  # what ``aed devset`` wrote (or any labelled folder dataset)
        dataset = load_dataset("folder", root)
        made = root / "config.json" if root is not None else None
        config = json.loads(made.read_text()) if made is not None and made.is_file() else {}
        about = f"development set {root} ({len(dataset.train)} train / {len(dataset.test)} test videos)"
        return dataset, {"source": "folder", "root": str(root), "pasted": bool(config), **config}, about
    source_name, variant = name.split("-")
    config = dataclasses.replace(PASTED_ONE if variant == "one" else PASTED, seed=seed)
    source = load_dataset(source_name, root)
    dataset = load_pasted(source, config)
    pasted = "one sped-up or gliding object" if config.single else "sped-up and gliding foreground"
    about = (
        f"{source.name} training videos as a development set ({len(dataset.train)} train; "
        f"{', '.join(c.name for c in dataset.test)} held out with {pasted} pasted in, seed {seed})"
    )
    return dataset, {"source": source.name, **dataclasses.asdict(config)}, about


def measure(dataset: Dataset, work: Path, only: str | None = None) -> dict[str, dict[str, float]]:
    """Frame micro AUC of every option of every group on ``dataset`` (teachers trained under ``work``);
    with ``only="b-views"``, of teacher b's views alone."""
    targets = work / "targets"
    # Proposals for every clip, and teacher A fitted (or, for teacher b alone, the velocity teacher: seconds).
    ensure_targets(dataset, targets, ["flow"] if only else ["a"], progress=False)
    paths = TargetPaths(targets)
    boxes = {
        c.name: load_boxes(paths.boxes(c.split, c.name)).boxes  # type: ignore[union-attr]
        for c in [*dataset.train, *dataset.test]
    }
    test_objects = {c.name: clip_objects(c, boxes[c.name]) for c in dataset.test}
    train_objects = [clip_objects(c, boxes[c.name]) for c in dataset.train]
    train_heights = np.concatenate([box_heights(b.boxes, b.frame_size) for b in train_objects])
    test_heights = {c: box_heights(b.boxes, b.frame_size) for c, b in test_objects.items()}
    views = views_tables(dataset, work, train_objects, test_objects, train_heights, test_heights)
    if only == "b-views":
        return views

    teacher_a = AppearanceMotionTeacher.load(paths.teacher_file("a"))
    raw_components = {name: teacher_a.raw_components(b) for name, b in test_objects.items()}
    components = {name: teacher_a.calibrated(raw) for name, raw in raw_components.items()}

    table: dict[str, dict[str, float]] = {
        "teacher a weights": {},
        "teacher a combination": {},
        "velocity teacher": {},
    }
    for name, weights in WEIGHT_OPTIONS.items():
        scores = {
            clip: np.sum([w * comps[k] for k, w in weights.items()], axis=0)
            for clip, comps in components.items()
        }
        table["teacher a weights"][name] = frame_auc(dataset, test_objects, scores)
    default_combine = teacher_a.config.combine
    for name, combine in COMBINE_OPTIONS.items():
        teacher_a.config = dataclasses.replace(teacher_a.config, combine=combine)
        scores = {clip: teacher_a.combine(raw) for clip, raw in raw_components.items()}
        table["teacher a combination"][name] = frame_auc(dataset, test_objects, scores)
    teacher_a.config = dataclasses.replace(teacher_a.config, combine=default_combine)
    for name, options in VELOCITY_OPTIONS.items():
        teacher = VelocityTeacher(dataclasses.replace(VelocityConfig(), **options))
        fit_velocity(teacher, train_objects)
        scores = {clip: score_velocity(teacher, b) for clip, b in test_objects.items()}
        table["velocity teacher"][name] = frame_auc(dataset, test_objects, scores)

    # Frame calibration, on each teacher's default options. Training videos are tagged so that the velocity
    # teacher scores each against the others, as the pipeline does when it paints training targets.
    tagged = [clip_objects(c, boxes[c.name], video=i) for i, c in enumerate(dataset.train)]
    velocity = VelocityTeacher()
    fit_velocity(velocity, tagged)
    # Each default teacher's scores of the training objects (the velocity teacher's against the other
    # videos) and of the test objects, for the frame calibration here and the teachers' mean below.
    # Raw components and task errors are measured once; each combination below only recombines them.
    train_raw_a = [teacher_a.raw_components(b) for b in tagged]
    train_scores = {
        "a": np.concatenate([teacher_a.combine(raw) for raw in train_raw_a]),
        "flow": np.concatenate([score_velocity(velocity, b) for b in tagged]),
    }
    test_scores = {
        "a": {clip: teacher_a.combine(raw) for clip, raw in raw_components.items()},
        "flow": {clip: score_velocity(velocity, b) for clip, b in test_objects.items()},
    }
    for name, label in (("a", "teacher a"), ("flow", "velocity teacher")):
        correction = CountCorrection.from_training(train_scores[name])
        raw = test_scores[name]
        group = table[f"{label} frame calibration"] = {}
        for name in CALIBRATION_OPTIONS:
            scores = (
                {clip: correction.apply(r, test_objects[clip].frames) for clip, r in raw.items()}
                if name == "count-corrected"
                else raw
            )
            group[name] = frame_auc(dataset, test_objects, scores)

    # Teacher b: each seed alone, and the mean of the first one, three, five networks' scores (what the
    # ``seeds`` option trains), on raw scores and scaled as the teachers' mean scales them.
    singles, singles_train = [], []
    trained_on = objects_key(train_objects)
    for seed in B_SEEDS:
        teacher_b = fitted_b(train_objects, seed, work / "teacher-b")
        train_errors = [b_errors(teacher_b, trained_on, b) for b in train_objects]
        test_errors = {clip: b_errors(teacher_b, trained_on, b) for clip, b in test_objects.items()}
        singles.append({clip: teacher_b.combine(e) for clip, e in test_errors.items()})
        singles_train.append(np.concatenate([teacher_b.combine(e) for e in train_errors]))
        if seed == B_SEEDS[0]:  # the default: one network, the first seed
            teacher_b0, train_errors_b, test_errors_b = teacher_b, train_errors, test_errors
            train_scores["b"] = singles_train[0]
            test_scores["b"] = singles[0]
            default_b_combine = teacher_b.config.combine
            group = table["teacher b combination"] = {}
            for name, combine in B_COMBINE_OPTIONS.items():
                teacher_b.config = dataclasses.replace(teacher_b.config, combine=combine)
                scores = {clip: teacher_b.combine(e) for clip, e in test_errors_b.items()}
                group[name] = frame_auc(dataset, test_objects, scores)
            teacher_b.config = dataclasses.replace(teacher_b.config, combine=default_b_combine)

    def seeds_table(scaling: str | None) -> dict[str, float]:
        def auc(members: tuple[int, ...]) -> float:
            return networks_auc(
                dataset,
                test_objects,
                ([singles_train[i] for i in members], [singles[i] for i in members]),
                scaling,
                (train_heights, test_heights),
            )

        alone = {f"seed {seed}": auc((i,)) for i, seed in enumerate(B_SEEDS)}
        counts = {
            name: float(np.mean(list(alone.values()))) if len(members) == 1 else auc(members)
            for name, members in B_SEED_OPTIONS.items()
        }
        return {**alone, **counts}  # "one seed": the single networks' mean AUC, not seed 0's alone

    table[B_SEEDS_GROUP] = seeds_table(None)
    for scaling in SCALING_OPTIONS:
        table[seeds_group(scaling)] = seeds_table(scaling)

    # The teachers' mean, every teacher at its default options (teacher b: seed 0), each teacher's scores
    # scaled with its own training objects' scores (and, for ``train-size``, their box heights).
    members = ("a", "b", "flow")
    group = table["teachers' mean, scaling"] = {}
    for kind in SCALING_OPTIONS:
        scalers = {
            name: ScoreScaler.from_training(
                train_scores[name], kind=kind, lo_percentile=50.0, hi_percentile=100.0, heights=train_heights
            )
            for name in members
        }
        mean = {
            c: np.mean(
                [scalers[name].apply(test_scores[name][c], test_heights[c]) for name in members], axis=0
            )
            for c in test_objects
        }
        group[kind] = frame_auc(dataset, test_objects, mean)

    # Teacher a's and b's combinations for the teachers' mean, under each scaling (the pairs that count are
    # those under the scaling the group above chooses: every group's choice holds with the others' in place).
    combined_scores: dict[tuple[str, str], tuple[np.ndarray, dict[str, np.ndarray]]] = {}
    measured: dict[str, tuple[Any, list[Any], dict[str, Any]]] = {
        "a": (teacher_a, train_raw_a, raw_components),
        "b": (teacher_b0, train_errors_b, test_errors_b),
    }
    for name, (teacher, train, test) in measured.items():
        default = teacher.config.combine
        for combine in MEAN_COMBINES[name]:
            teacher.config = dataclasses.replace(teacher.config, combine=combine)
            combined_scores[(name, combine)] = (
                np.concatenate([teacher.combine(r) for r in train]),
                {c: teacher.combine(r) for c, r in test.items()},
            )
        teacher.config = dataclasses.replace(teacher.config, combine=default)
    combined_scores[("flow", "")] = (train_scores["flow"], test_scores["flow"])
    for scaling in SCALING_OPTIONS:
        group = table[pairs_group(scaling)] = {}
        for a_combine, b_combine in MEAN_COMBINE_PAIRS:
            keys = (("a", a_combine), ("b", b_combine), ("flow", ""))
            scalers = {
                k: ScoreScaler.from_training(
                    combined_scores[k][0],
                    kind=scaling,
                    lo_percentile=50.0,
                    hi_percentile=100.0,
                    heights=train_heights,
                )
                for k in keys
            }
            mean = {
                c: np.mean(
                    [scalers[k].apply(combined_scores[k][1][c], test_heights[c]) for k in keys], axis=0
                )
                for c in test_objects
            }
            group[f"a {a_combine}, b {b_combine}"] = frame_auc(dataset, test_objects, mean)
    return {**table, **views}


def views_tables(
    dataset: Dataset,
    work: Path,
    train_objects: list[ObjectBatch],
    test_objects: dict[str, ObjectBatch],
    train_heights: np.ndarray,
    test_heights: dict[str, np.ndarray],
) -> dict[str, dict[str, float]]:
    """Teacher b's views group: its networks of ``B_VIEWS_SEEDS`` asked each way, the mean of their scores,
    on raw scores and under every scaling (each network's statistics measured again under the views)."""
    trained_on = objects_key(train_objects)
    scores: dict[str, tuple[list[np.ndarray], list[dict[str, np.ndarray]]]] = {}
    for name, views in B_VIEWS_OPTIONS.items():
        scores[name] = ([], [])
        for seed in B_VIEWS_SEEDS:
            teacher = fitted_b(train_objects, seed, work / "teacher-b")
            if views != teacher.config.views:
                teacher.config = dataclasses.replace(teacher.config, views=views)
                teacher.calibrate(train_objects)  # the tails of these views' errors, on its held-out objects
            train = [teacher.combine(b_errors(teacher, trained_on, b)) for b in train_objects]
            scores[name][0].append(np.concatenate(train))
            scores[name][1].append(
                {c: teacher.combine(b_errors(teacher, trained_on, b)) for c, b in test_objects.items()}
            )

    heights = (train_heights, test_heights)
    return {
        (B_VIEWS_GROUP if scaling is None else scaled_group(B_VIEWS_GROUP, scaling)): {
            name: networks_auc(dataset, test_objects, networks, scaling, heights)
            for name, networks in scores.items()
        }
        for scaling in (None, *SCALING_OPTIONS)
    }


def networks_auc(
    dataset: Dataset,
    test_objects: dict[str, ObjectBatch],
    networks: tuple[list[np.ndarray], list[dict[str, np.ndarray]]],
    scaling: str | None,
    heights: tuple[np.ndarray, dict[str, np.ndarray]],
) -> float:
    """Frame micro AUC of the mean of several teacher b networks' scores, as ``seeds`` serves them.

    ``networks``: each network's scores of the training objects and of every test clip's objects; the mean
    is taken raw (``scaling`` None) or scaled with ``scaling`` on the mean training scores and the objects'
    box ``heights`` (training, per test clip).
    """
    train, test = networks
    mean = {c: np.mean([t[c] for t in test], axis=0) for c in test_objects}
    if scaling is not None:
        scaler = ScoreScaler.from_training(
            np.mean(train, axis=0), kind=scaling, lo_percentile=50.0, hi_percentile=100.0, heights=heights[0]
        )
        mean = {c: scaler.apply(m, heights[1][c]) for c, m in mean.items()}
    return frame_auc(dataset, test_objects, mean)


def report(
    table: dict[str, dict[str, float]],
    about: str,
    candidates: dict[str, tuple[str, ...]] | None = None,
    scaling: str | None = None,
) -> dict[str, str]:
    """Print every group with the option its rule chooses; return the choices.

    ``candidates`` limits a group's choice to the options it names (the others are printed, not chosen).
    ``scaling`` is the scaling teacher b's served groups are decided under when the table has no teachers'
    mean to choose one (``--only``).
    """
    print(f"{about}; frame score = max object score, no smoothing")
    table = renamed(table)
    chosen = {}
    candidates = candidates or {}
    if "teachers' mean, scaling" in table:
        scaling = choose(table["teachers' mean, scaling"])
    elif scaling is None:
        raise ValueError("the table has no teachers' mean to choose a scaling; give the scaling")
    options = {B_SEEDS_GROUP: B_SEED_OPTIONS, B_VIEWS_GROUP: B_VIEWS_OPTIONS}
    fewer = {B_SEEDS_GROUP: "fewer networks", B_VIEWS_GROUP: "fewer views"}
    for group, results in table.items():
        served = next((g for g in SERVED_B_GROUPS if group.startswith(g)), None)
        if served is not None:
            # Decided on teacher b's scores as served (scaled as chosen) when the report has them.
            deciding = scaled_group(served, scaling) if scaled_group(served, scaling) in table else served
            counts = {name: results[name] for name in options[served] if name in results}
            used = group == deciding
            if used:
                chosen[served] = choose(counts)
            note = "" if used else f"; not used: '{deciding}' decides"
            print(f"\n{group}  (rule: highest micro AUC; within {TIE} {fewer[served]}{note})")
            for name, auc in results.items():
                mark = "  <- chosen" if used and name == chosen[served] else ""
                print(f"  {auc:.3f}  {name}{mark}")
            continue
        order = {
            "calibration": "the option under test",
            "combination": "the earlier default, listed first",
            "scaling": "the earlier default, listed first",
            "combinations": "today's defaults, listed first",
        }.get(group.rsplit(" ", 1)[-1], "the earlier, simpler option")
        counts = group not in {pairs_group(s) for s in SCALING_OPTIONS if s != scaling}
        allowed = candidates.get(group, tuple(results))
        if counts:
            chosen[group] = choose({name: auc for name, auc in results.items() if name in allowed})
        note = "" if counts else f"; not used: the scaling chosen is {scaling}"
        if group in candidates:
            note += "; only the options that keep the appearance components are candidates"
        print(f"\n{group}  (rule: highest micro AUC; within {TIE} {order}{note})")
        for name, auc in results.items():
            mark = "  (not a candidate)" if name not in allowed else ""
            if name == chosen.get(group):
                mark = "  <- chosen"
            print(f"  {auc:.3f}  {name}{mark}")
    return chosen


def mean_table(tables: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Every option's micro AUC averaged over development sets (groups and options all of them have)."""
    return {
        group: {
            name: float(np.mean([t[group][name] for t in tables]))
            for name in results
            if all(name in t.get(group, {}) for t in tables)
        }
        for group, results in tables[0].items()
        if all(group in t for t in tables)
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dev-set", choices=DEV_SETS, default="synthetic", help="which development set")
    p.add_argument(
        "--root", type=Path, help="dataset root for a Ped2-made set, or the folder of --dev-set folder"
    )
    p.add_argument(
        "--seed",
        type=int,
        nargs="+",
        default=[0],
        help="draw a Ped2-made set's events with this seed (default 0); several seeds measure one draw "
        "each and decide on their mean micro AUC",
    )
    p.add_argument("--work", type=Path, help="working folder (default runs/teacher-dev[-<dev set>])")
    p.add_argument(
        "--only",
        choices=ONLY,
        help="measure this group alone (b-views: teacher b's views; no teacher a is trained); needs "
        "--scaling",
    )
    p.add_argument(
        "--scaling",
        choices=SCALING_OPTIONS,
        help="decide teacher b's groups under this scaling (with --only, which measures no teachers' mean)",
    )
    p.add_argument("--json", type=Path, help="also write the table (or the decision) as JSON")
    p.add_argument(
        "--decide",
        type=Path,
        nargs="+",
        metavar="REPORT",
        help="measure nothing: choose on the mean micro AUC of these reports' tables",
    )
    args = p.parse_args(argv)

    if args.decide:
        reports = [json.loads(path.read_text()) for path in args.decide]
        table = mean_table([renamed(r["micro_auc"]) for r in reports])
        # Sets made by pasting moving people hold motion anomalies only; when all are, so is their mean.
        pasted = all(is_pasted(r.get("dev_set", {})) for r in reports)
        chosen = report(
            table,
            f"mean over {len(reports)} development sets ({', '.join(map(str, args.decide))})",
            APPEARANCE_CANDIDATES if pasted else None,
            args.scaling,
        )
        if args.json:
            summary = {
                "reports": [str(p) for p in args.decide],
                "dev_set": {"pasted": pasted},  # so that a decision can itself be decided on again
                "micro_auc": table,
                "chosen": chosen,
            }
            args.json.write_text(json.dumps(summary, indent=2))
        return 0

    if args.only and args.scaling is None:
        p.error("--only measures no teachers' mean to choose a scaling; give --scaling too.")
    seeds = list(dict.fromkeys(args.seed))
    if len(seeds) > 1 and not args.dev_set.startswith("ped2-"):
        p.error(f"several seeds draw a Ped2-made set several times; --dev-set {args.dev_set} has one draw.")
    work = args.work or Path("runs/teacher-dev" + ("" if args.dev_set == "synthetic" else f"-{args.dev_set}"))
    os.environ.setdefault("AED_CACHE", str(work / "cache"))
    t0 = time.perf_counter()
    tables, frames = {}, 0
    for seed in seeds:
        dataset, config, about = load_dev_set(args.dev_set, args.root, seed)
        tables[seed] = measure(dataset, work, only=args.only)
        frames += sum(c.frame_count for c in dataset.test)
        if len(seeds) > 1:
            print(f"draw {seed} measured ({time.perf_counter() - t0:.0f} s)", flush=True)
    if len(seeds) > 1:
        table = mean_table(list(tables.values()))
        about = (
            f"{about.rsplit(', seed', 1)[0]}; mean over {len(seeds)} draws, seeds "
            f"{', '.join(map(str, seeds))})"
        )
        config = {**config, "seed": seeds}
    else:
        table = tables[seeds[0]]
    chosen = report(
        table,
        f"{about}; micro AUC over all {frames} test frames",
        APPEARANCE_CANDIDATES if is_pasted(config) else None,
        args.scaling,
    )
    print(f"\n{time.perf_counter() - t0:.0f} s")
    if args.json:
        summary: dict[str, Any] = {"dev_set": config, "micro_auc": table, "chosen": chosen}
        if len(seeds) > 1:
            summary["draws"] = {str(seed): t for seed, t in tables.items()}
        args.json.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
