"""The multi-task teacher: each proxy task flags the anomaly it is built for, and the sum flags them all."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from aedcli.errors import WeightsError
from aedcli.teachers.base import TUBE_RADIUS, TUBE_SIZE, ObjectBatch, ObjectTeacher
from aedcli.teachers.multitask import (
    TASKS,
    MultiTaskConfig,
    MultiTaskTeacher,
    _prepare,
    _to_float,
    clip_indices,
)

FRAME = (240, 360)
# Small enough to train in a few seconds on one CPU core, big enough to learn the synthetic tasks.
SMALL = MultiTaskConfig(size=16, channels=[8, 16, 16], epochs=5, batch_size=32)


def _roc_auc(normal: np.ndarray, abnormal: np.ndarray) -> float:
    """Probability that an abnormal object outscores a normal one (ties count half)."""
    diff = abnormal[:, None] - normal[None, :]
    return float((diff > 0).mean() + 0.5 * (diff == 0).mean())


def moving_objects(
    n: int, rng: np.random.Generator, *, speed: float = 1.5, sign: float = 1.0, shape: str = "ellipse"
) -> ObjectBatch:
    """Textured objects drifting right over a textured background, in crop pixels per frame.

    Normal objects are upright ellipses at about 1.5 px/frame; ``speed=6`` makes fast ones, ``sign=-1`` ones
    that drift left (as if the clip ran backwards), ``shape="bar"`` a wide flat object of normal speed.
    """
    s = TUBE_SIZE
    tubes = np.zeros((n, 2 * TUBE_RADIUS + 1, s, s), np.uint8)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    for i in range(n):
        background = cv2.GaussianBlur(rng.uniform(60, 120, (s, s)).astype(np.float32), (0, 0), 2.0)
        texture = cv2.GaussianBlur(rng.uniform(80, 255, (s, s)).astype(np.float32), (0, 0), 1.5)
        v = sign * speed * rng.uniform(0.8, 1.2)
        for j in range(2 * TUBE_RADIUS + 1):
            dx = v * (j - TUBE_RADIUS)
            if shape == "ellipse":
                mask = ((xx - s / 2 - dx) / 14) ** 2 + ((yy - s / 2) / 22) ** 2 <= 1.0
            else:
                mask = (np.abs(xx - s / 2 - dx) <= 24) & (np.abs(yy - s / 2) <= 6)
            shift = np.float32([[1, 0, dx], [0, 1, 0]])
            moved = cv2.warpAffine(texture, shift, (s, s), borderMode=cv2.BORDER_REFLECT)
            frame = np.where(mask, moved, background) + rng.normal(0, 2, (s, s))
            tubes[i, j] = np.clip(frame, 0, 255).astype(np.uint8)
    boxes = np.tile(np.float32([100, 80, 140, 140]), (n, 1))
    return ObjectBatch(tubes=tubes, boxes=boxes, frame_size=FRAME, frames=np.arange(n, dtype=np.int64))


@pytest.fixture(scope="module")
def data() -> dict[str, ObjectBatch]:
    rng = np.random.default_rng(0)
    return {
        "train": moving_objects(400, rng),
        "normal": moving_objects(60, rng),
        "fast": moving_objects(30, rng, speed=6.0),
        "reversed": moving_objects(30, rng, sign=-1.0),
        "shape": moving_objects(30, rng, shape="bar"),
    }


@pytest.fixture(scope="module")
def fitted(data: dict[str, ObjectBatch]) -> MultiTaskTeacher:
    teacher = MultiTaskTeacher(SMALL)
    teacher.fit([data["train"]], seed=0)
    return teacher


def _task_auc(teacher: MultiTaskTeacher, data: dict[str, ObjectBatch], kind: str, task: str) -> float:
    j = TASKS.index(task)
    return _roc_auc(teacher.task_scores(data["normal"])[:, j], teacher.task_scores(data[kind])[:, j])


def test_multitask_teacher_follows_the_teacher_protocol() -> None:
    assert isinstance(MultiTaskTeacher(SMALL), ObjectTeacher)
    assert MultiTaskTeacher.name == "b"


def test_regular_and_irregular_clips_have_the_same_length_and_play_in_order() -> None:
    regular, irregular = clip_indices(5)
    assert regular == [(0, 1, 2, 3, 4), (1, 2, 3, 4, 5), (2, 3, 4, 5, 6)]
    assert len(irregular) == 18
    assert all(len(c) == 5 and list(c) == sorted(c) and c[-1] - c[0] > 4 for c in irregular)


def test_window_must_leave_room_to_skip_frames() -> None:
    with pytest.raises(ValueError, match="window"):
        MultiTaskTeacher(MultiTaskConfig(window=7))


def test_arrow_of_time_flags_objects_moving_backwards(
    fitted: MultiTaskTeacher, data: dict[str, ObjectBatch]
) -> None:
    assert _task_auc(fitted, data, "reversed", "arrow") > 0.9


def test_motion_irregularity_flags_objects_moving_too_fast(
    fitted: MultiTaskTeacher, data: dict[str, ObjectBatch]
) -> None:
    assert _task_auc(fitted, data, "fast", "irregularity") > 0.9


def test_middle_prediction_flags_objects_of_an_unseen_shape(
    fitted: MultiTaskTeacher, data: dict[str, ObjectBatch]
) -> None:
    assert _task_auc(fitted, data, "shape", "middle") > 0.9


@pytest.mark.parametrize("kind", ["fast", "reversed", "shape"])
def test_object_score_ranks_every_kind_of_anomaly_above_normal_objects(
    fitted: MultiTaskTeacher, data: dict[str, ObjectBatch], kind: str
) -> None:
    assert fitted.config.combine == "tail-max"  # the default: the largest of the tasks' rarities
    normal = fitted.score(data["normal"])
    assert _roc_auc(normal, fitted.score(data[kind])) > 0.95
    z_sum = _with_combine(fitted, "z-sum")  # the standardised sum of files from before it
    assert _roc_auc(z_sum.score(data["normal"]), z_sum.score(data[kind])) > 0.95


def test_task_errors_are_standardised_on_normal_objects(
    fitted: MultiTaskTeacher, data: dict[str, ObjectBatch]
) -> None:
    # Unseen normal objects land near zero on every task (within a few training standard deviations).
    z = fitted.task_scores(data["normal"])
    assert z.shape == (60, 3) and z.dtype == np.float32
    assert np.all(np.abs(np.median(z, axis=0)) < 2.0)
    empty = ObjectBatch(np.zeros((0, 7, 64, 64), np.uint8), np.zeros((0, 4), np.float32), FRAME, np.zeros(0))
    assert fitted.score(empty).shape == (0,)


def test_pixels_off_the_frame_do_not_change_the_score(
    fitted: MultiTaskTeacher, data: dict[str, ObjectBatch]
) -> None:
    # Boxes taller than the frame allows: their 276 px windows reach 23 px above it (where a tube repeats
    # the top row, the first 5 of 64 tube rows). Whatever those pixels hold must not matter.
    n = 8
    boxes = np.tile(np.float32([100, 0, 200, 230]), (n, 1))
    tubes = data["normal"].tubes[:n].copy()
    noisy = tubes.copy()
    noisy[..., :4, :] = np.random.default_rng(1).integers(0, 256, noisy[..., :4, :].shape, dtype=np.uint8)
    clean_scores = fitted.score(ObjectBatch(tubes, boxes, FRAME, np.arange(n)))
    noisy_scores = fitted.score(ObjectBatch(noisy, boxes, FRAME, np.arange(n)))
    np.testing.assert_allclose(noisy_scores, clean_scores, rtol=1e-5, atol=1e-5)
    # The same noise inside the frame (a smaller box, its window fully on the frame) does change scores.
    small = boxes * 0.5
    in_frame_clean = fitted.score(ObjectBatch(tubes, small, FRAME, np.arange(n)))
    assert not np.allclose(fitted.score(ObjectBatch(noisy, small, FRAME, np.arange(n))), in_frame_clean)


def test_fit_is_deterministic_for_a_seed(data: dict[str, ObjectBatch]) -> None:
    config = MultiTaskConfig(size=16, channels=[4, 8, 8], epochs=1, batch_size=32)
    subset = ObjectBatch(data["train"].tubes[:120], data["train"].boxes[:120], FRAME, np.arange(120))
    a, b, c = MultiTaskTeacher(config), MultiTaskTeacher(config), MultiTaskTeacher(config)
    steps: list[tuple[int, int]] = []
    a.fit([subset], seed=5, progress=lambda done, total: steps.append((done, total)))
    b.fit([subset], seed=5)
    c.fit([subset], seed=6)
    np.testing.assert_array_equal(a.score(data["fast"]), b.score(data["fast"]))
    assert not np.array_equal(a.score(data["fast"]), c.score(data["fast"]))
    # One epoch of 108 training objects (12 held out) in batches of 32: four steps, reported in order.
    assert steps == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_save_and_load_give_identical_scores(
    tmp_path: Path, fitted: MultiTaskTeacher, data: dict[str, ObjectBatch]
) -> None:
    fitted.save(tmp_path / "b.pt")
    loaded = MultiTaskTeacher.load(tmp_path / "b.pt")
    assert loaded.config == fitted.config
    np.testing.assert_array_equal(loaded.score(data["shape"]), fitted.score(data["shape"]))


class _Payload:
    """Any class instance: unpickling it would run arbitrary code, so weights_only loading must refuse it."""


def test_load_refuses_a_file_that_holds_a_pickled_object(tmp_path: Path) -> None:
    torch.save({"format": "aed-teacher-multitask", "version": 1, "config": _Payload()}, tmp_path / "evil.pt")
    with pytest.raises(WeightsError, match="pickled"):
        MultiTaskTeacher.load(tmp_path / "evil.pt")


def test_load_refuses_another_teachers_file(tmp_path: Path) -> None:
    torch.save({"format": "aed-teacher-velocity", "version": 1}, tmp_path / "flow.pt")
    with pytest.raises(WeightsError, match="not 'aed-teacher-multitask'"):
        MultiTaskTeacher.load(tmp_path / "flow.pt")


def test_a_teacher_of_several_seeds_scores_the_mean_of_its_members(data: dict[str, ObjectBatch]) -> None:
    config = MultiTaskConfig(size=16, channels=[4, 8, 8], epochs=1, batch_size=32)
    subset = ObjectBatch(data["train"].tubes[:120], data["train"].boxes[:120], FRAME, np.arange(120))
    singles = []
    for seed in (3, 4):
        single = MultiTaskTeacher(config)
        single.fit([subset], seed=seed)
        singles.append(single.task_scores(data["fast"]))
    pair = MultiTaskTeacher(MultiTaskConfig(size=16, channels=[4, 8, 8], epochs=1, batch_size=32, seeds=2))
    steps: list[tuple[int, int]] = []
    report = pair.fit([subset], seed=3, progress=lambda done, total: steps.append((done, total)))
    np.testing.assert_allclose(pair.task_scores(data["fast"]), np.mean(singles, axis=0), rtol=1e-5, atol=1e-5)
    assert [m["seed"] for m in report["members"]] == [3, 4] and report["seeds"] == 2
    assert steps == [(i, 8) for i in range(1, 9)]  # both members' steps, counted as one run


def test_a_teacher_grown_to_more_seeds_is_the_teacher_trained_with_them(data: dict[str, ObjectBatch]) -> None:
    subset = ObjectBatch(data["train"].tubes[:120], data["train"].boxes[:120], FRAME, np.arange(120))
    config = MultiTaskConfig(size=16, channels=[4, 8, 8], epochs=1, batch_size=32, seeds=3)
    three = MultiTaskTeacher(config)
    three.fit([subset], seed=5)
    one = MultiTaskTeacher(dataclasses.replace(config, seeds=1))
    one.fit([subset], seed=5)
    steps: list[tuple[int, int]] = []
    report = one.resize([subset], 3, progress=lambda done, total: steps.append((done, total)))
    assert [m["seed"] for m in report["members"]] == [6, 7] and steps[-1] == (8, 8)
    assert one.config.seeds == 3 and len(one.members) == 3
    np.testing.assert_allclose(one.score(data["fast"]), three.score(data["fast"]), rtol=1e-5, atol=1e-6)
    assert one.resize([], 2)["members"] == []  # shrinking trains nothing and needs no objects
    assert one.config.seeds == 2 and len(one.members) == 2
    two = MultiTaskTeacher(dataclasses.replace(config, seeds=2))
    two.fit([subset], seed=5)
    np.testing.assert_allclose(one.score(data["fast"]), two.score(data["fast"]), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="seeds must be 1 or more"):
        one.resize([subset], 0)


def test_several_seeds_round_trip_and_old_single_network_files_still_load(
    tmp_path: Path, fitted: MultiTaskTeacher, data: dict[str, ObjectBatch]
) -> None:
    config = MultiTaskConfig(size=16, channels=[4, 8, 8], epochs=1, batch_size=32, seeds=2)
    pair = MultiTaskTeacher(config)
    pair.fit([data["train"]], seed=0)
    pair.save(tmp_path / "pair.pt")
    again = MultiTaskTeacher.load(tmp_path / "pair.pt")
    assert again.config.seeds == 2 and len(again.members) == 2
    np.testing.assert_array_equal(again.score(data["shape"]), pair.score(data["shape"]))

    # a file written before teachers had members: one network under "state_dict", version 1
    old = {
        "format": "aed-teacher-multitask",
        "version": 1,
        "config": json.dumps(
            {k: v for k, v in dataclasses.asdict(fitted.config).items() if k not in ("seeds", "combine")}
        ),
        "state_dict": fitted.net.state_dict(),
        "error_mean": fitted.members[0].error_mean,
        "error_std": fitted.members[0].error_std,
    }
    torch.save(old, tmp_path / "old.pt")
    z_sum = _with_combine(fitted, "z-sum")  # what it held then
    np.testing.assert_array_equal(
        MultiTaskTeacher.load(tmp_path / "old.pt").score(data["shape"]), z_sum.score(data["shape"])
    )


@pytest.mark.parametrize("combine", ["tail-sum", "tail-max"])
def test_tail_combinations_rank_every_kind_of_anomaly_above_normal_objects(
    fitted: MultiTaskTeacher, data: dict[str, ObjectBatch], combine: str
) -> None:
    teacher = _with_combine(fitted, combine)
    normal = teacher.score(data["normal"])
    assert normal.min() >= 0.0  # rarities: -ln q, q at most 1
    for kind in ("fast", "reversed", "shape"):
        assert _roc_auc(normal, teacher.score(data[kind])) > 0.95, kind
    rarities = teacher.task_rarities(data["fast"])
    expected = rarities.max(axis=1) if combine == "tail-max" else rarities.sum(axis=1)
    np.testing.assert_allclose(teacher.score(data["fast"]), expected, rtol=1e-5)


def test_calibrate_measures_again_exactly_the_statistics_of_the_fit(data: dict[str, ObjectBatch]) -> None:
    config = MultiTaskConfig(size=16, channels=[4, 8, 8], epochs=1, batch_size=32, seeds=2)
    teacher = MultiTaskTeacher(config)
    teacher.fit([data["train"]], seed=7)
    fitted = [(m.error_mean.clone(), m.error_std.clone(), m.tails) for m in teacher.members]
    for m in teacher.members:  # as a file from before the tails holds them
        m.error_mean, m.error_std, m.tails = torch.zeros(3), torch.ones(3), []
    with pytest.raises(RuntimeError, match="no tail statistics"):
        _with_combine(teacher, "tail-max").score(data["fast"])
    teacher.calibrate([data["train"]])  # the held-out split of seeds 7 and 8, drawn again
    for member, (mean, std, tails) in zip(teacher.members, fitted, strict=True):
        torch.testing.assert_close(member.error_mean, mean)
        torch.testing.assert_close(member.error_std, std)
        assert member.tails == tails


def _with_combine(teacher: MultiTaskTeacher, combine: str) -> MultiTaskTeacher:
    other = MultiTaskTeacher.__new__(MultiTaskTeacher)
    other.__dict__.update(teacher.__dict__)
    other.config = dataclasses.replace(teacher.config, combine=combine)
    return other


def test_tails_and_seed_round_trip_and_older_files_load_as_the_standardised_sum(
    tmp_path: Path, fitted: MultiTaskTeacher, data: dict[str, ObjectBatch]
) -> None:
    tail_max = _with_combine(fitted, "tail-max")
    tail_max.save(tmp_path / "b.pt")
    loaded = MultiTaskTeacher.load(tmp_path / "b.pt")
    assert loaded.config.combine == "tail-max" and loaded.seed == 0
    assert loaded.members[0].tails == fitted.members[0].tails
    np.testing.assert_array_equal(loaded.score(data["shape"]), tail_max.score(data["shape"]))

    # a version 2 file: no combine in its config, no tails, no seed
    payload = torch.load(tmp_path / "b.pt", weights_only=True)
    config = json.loads(payload["config"])
    del config["combine"]
    old = {k: v for k, v in payload.items() if k not in ("tails", "seed")}
    torch.save({**old, "version": 2, "config": json.dumps(config)}, tmp_path / "v2.pt")
    v2 = MultiTaskTeacher.load(tmp_path / "v2.pt")
    assert v2.config.combine == "z-sum" and v2.members[0].tails == []
    np.testing.assert_array_equal(
        v2.score(data["shape"]), _with_combine(fitted, "z-sum").score(data["shape"])
    )
    # a file that asks for tails it does not hold is refused with the fix
    config["combine"] = "tail-sum"
    torch.save({**old, "version": 2, "config": json.dumps(config)}, tmp_path / "bad.pt")
    with pytest.raises(WeightsError, match="lacks their statistics"):
        MultiTaskTeacher.load(tmp_path / "bad.pt")


def test_unknown_combination_is_refused() -> None:
    with pytest.raises(ValueError, match="combine must be one of"):
        MultiTaskTeacher(MultiTaskConfig(combine="median"))


def _with_views(teacher: MultiTaskTeacher, views: str, batches: list[ObjectBatch]) -> MultiTaskTeacher:
    other = _with_combine(teacher, teacher.config.combine)
    other.members = [
        dataclasses.replace(m) for m in teacher.members
    ]  # calibrate must not touch the fixture's
    other.config = dataclasses.replace(teacher.config, views=views)
    other.calibrate(batches)
    return other


def test_reversed_views_average_the_forward_and_the_backward_clips_errors(
    fitted: MultiTaskTeacher, data: dict[str, ObjectBatch]
) -> None:
    assert fitted.config.views == "centre"  # the default: each task asked once
    teacher = _with_views(fitted, "reversed", [data["train"]])
    net, batch = teacher.net, data["reversed"]
    data_, valid = _prepare(batch, SMALL.size, SMALL.crop_margin)
    tubes = _to_float(data_, valid, SMALL.normalise)
    with torch.no_grad():
        forward = [x.log_softmax(dim=1) for x in net.classify(tubes[:, [2, 3, 4]].unsqueeze(1))]
        backward = [x.log_softmax(dim=1) for x in net.classify(tubes[:, [4, 3, 2]].unsqueeze(1))]
    errors = teacher.raw_errors(batch)[0]
    # arrow: the wrong answer is "backward" for the clip as it plays, "forward" for the clip played back
    torch.testing.assert_close(errors[:, 0], (forward[0][:, 1] + backward[0][:, 0]) / 2)
    torch.testing.assert_close(errors[:, 1], (forward[1][:, 1] + backward[1][:, 1]) / 2)  # both regular
    torch.testing.assert_close(errors[:, 2], fitted.raw_errors(batch)[0][:, 2])  # the middle: asked once
    # the views' own statistics: unseen normal objects stay near the held-out ones, anomalies rank above
    normal = teacher.score(data["normal"])
    for kind in ("fast", "reversed", "shape"):
        assert _roc_auc(normal, teacher.score(data[kind])) > 0.95, kind


def test_mirrored_views_see_a_mirror_symmetric_tube_as_the_tube_itself(
    fitted: MultiTaskTeacher, data: dict[str, ObjectBatch]
) -> None:
    batch = data["shape"]
    symmetric = dataclasses.replace(
        batch, tubes=np.concatenate([batch.tubes, batch.tubes[..., ::-1]], axis=-1)
    )
    reversed_, mirrored = (_with_views(fitted, v, [data["train"]]) for v in ("reversed", "reversed-mirrored"))
    # on a tube that is its own mirror image, the mirrored views repeat the unmirrored ones exactly
    torch.testing.assert_close(mirrored.raw_errors(symmetric)[0], reversed_.raw_errors(symmetric)[0])
    assert not torch.allclose(mirrored.raw_errors(batch)[0], reversed_.raw_errors(batch)[0])


def test_views_round_trip_and_older_files_load_as_the_centre_clip(
    tmp_path: Path, fitted: MultiTaskTeacher, data: dict[str, ObjectBatch]
) -> None:
    teacher = _with_views(fitted, "reversed-mirrored", [data["train"]])
    teacher.save(tmp_path / "b.pt")
    loaded = MultiTaskTeacher.load(tmp_path / "b.pt")
    assert loaded.config.views == "reversed-mirrored"
    np.testing.assert_array_equal(loaded.score(data["fast"]), teacher.score(data["fast"]))
    payload = torch.load(tmp_path / "b.pt", weights_only=True)
    config = json.loads(payload["config"])
    del config["views"]
    torch.save({**payload, "version": 3, "config": json.dumps(config)}, tmp_path / "v3.pt")
    assert MultiTaskTeacher.load(tmp_path / "v3.pt").config.views == "centre"
    with pytest.raises(ValueError, match="views must be one of"):
        MultiTaskTeacher(MultiTaskConfig(views="sideways"))
