"""The velocity teacher ranks objects that move too fast or the wrong way above normal ones."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from aedcli.errors import WeightsError
from aedcli.teachers.base import TUBE_RADIUS, TUBE_SIZE, ObjectBatch, ObjectTeacher
from aedcli.teachers.objects import cut_tube, square_window
from aedcli.teachers.velocity import VelocityConfig, VelocityTeacher, crop_mask, real_pairs

FRAME = (240, 360)


def _roc_auc(normal: np.ndarray, abnormal: np.ndarray) -> float:
    """Probability that an abnormal object outscores a normal one (ties count half)."""
    diff = abnormal[:, None] - normal[None, :]
    return float((diff > 0).mean() + 0.5 * (diff == 0).mean())


def drifting_blobs(
    n: int,
    rng: np.random.Generator,
    *,
    speed: float = 1.0,
    sign: float = 1.0,
    centre_y: tuple[float, float] = (40.0, 200.0),
    height: tuple[float, float] = (45.0, 75.0),
) -> ObjectBatch:
    """Textured ellipses drifting horizontally over a static textured background, cut as tubes are cut.

    ``speed`` is in source pixels per frame: normal objects walk right at about 1 px/frame, ``speed=4``
    makes a fast object and ``sign=-1`` one that walks the other way. Boxes are ``height`` px tall, 0.6 times
    as wide, centred at a height drawn from ``centre_y`` in a 240 x 360 frame.
    """
    s = TUBE_SIZE
    tubes = np.zeros((n, 2 * TUBE_RADIUS + 1, s, s), np.uint8)
    boxes = np.zeros((n, 4), np.float32)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    for i in range(n):
        box_h = rng.uniform(*height)
        box_w = 0.6 * box_h
        x0, cy = rng.uniform(0, FRAME[1] - box_w), rng.uniform(*centre_y)
        boxes[i] = [x0, cy - box_h / 2, x0 + box_w, cy + box_h / 2]
        background = cv2.GaussianBlur(rng.uniform(60, 120, (s, s)).astype(np.float32), (0, 0), 2.0)
        texture = cv2.GaussianBlur(rng.uniform(80, 255, (s, s)).astype(np.float32), (0, 0), 1.5)
        side = square_window(boxes[i], 0.1)[2]  # the tube's crop window, as objects.cut_tube cuts it
        v = sign * speed * rng.uniform(0.8, 1.2) * s / side  # crop pixels per frame
        radius_x, radius_y = 0.5 * s * box_w / side, 0.5 * s * box_h / side  # the box, in crop pixels
        for j in range(2 * TUBE_RADIUS + 1):
            dx = v * (j - TUBE_RADIUS)
            mask = ((xx - s / 2 - dx) / radius_x) ** 2 + ((yy - s / 2) / radius_y) ** 2 <= 1.0
            shift = np.float32([[1, 0, dx], [0, 1, 0]])
            moved = cv2.warpAffine(texture, shift, (s, s), borderMode=cv2.BORDER_REFLECT)
            frame = np.where(mask, moved, background) + rng.normal(0, 2, (s, s))
            tubes[i, j] = np.clip(frame, 0, 255).astype(np.uint8)
    return ObjectBatch(tubes=tubes, boxes=boxes, frame_size=FRAME, frames=np.arange(n, dtype=np.int64))


def _concat(*batches: ObjectBatch) -> ObjectBatch:
    return ObjectBatch(
        np.concatenate([b.tubes for b in batches]),
        np.concatenate([b.boxes for b in batches]),
        FRAME,
        np.concatenate([b.frames for b in batches]),
    )


@pytest.fixture(scope="module")
def data() -> dict[str, ObjectBatch]:
    rng = np.random.default_rng(7)
    return {
        "train": drifting_blobs(200, rng),
        "normal": drifting_blobs(60, rng),
        "fast": drifting_blobs(30, rng, speed=4.0),
        "reversed": drifting_blobs(30, rng, sign=-1.0),
        "slow": drifting_blobs(30, rng, speed=0.25),
    }


@pytest.fixture(scope="module")
def fitted(data: dict[str, ObjectBatch]) -> VelocityTeacher:
    teacher = VelocityTeacher(VelocityConfig(k=5))
    teacher.fit([data["train"]])
    return teacher


def test_velocity_teacher_follows_the_teacher_protocol() -> None:
    assert isinstance(VelocityTeacher(), ObjectTeacher)
    assert VelocityTeacher.name == "flow"


def test_features_measure_speed_in_source_pixels_whatever_the_box_size() -> None:
    # One texture sliding 2 px/frame across the whole frame, cut into tubes by the real tube cutter around a
    # small and a large box: the small box's crop magnifies the motion, but converted back to source pixels
    # both must read about 2 px/frame.
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.uniform(0, 255, FRAME).astype(np.float32), (0, 0), 1.5)
    shifts = [np.float32([[1, 0, 2.0 * (j - TUBE_RADIUS)], [0, 1, 0]]) for j in range(2 * TUBE_RADIUS + 1)]
    stack = np.stack([cv2.warpAffine(texture, m, FRAME[::-1], borderMode=cv2.BORDER_REFLECT) for m in shifts])
    stack = stack.astype(np.uint8)
    boxes = np.float32([[150, 100, 166, 124], [140, 90, 180, 140]])  # crop windows 29 and 60 px
    tubes = np.stack([cut_tube(stack, box) for box in boxes])
    batch = ObjectBatch(tubes, boxes, FRAME, np.zeros(2, np.int64))
    feats = VelocityTeacher().features(batch)
    median_speed = np.expm1(feats[:, 0])  # first column: log1p of the median speed
    np.testing.assert_allclose(median_speed, [2.0, 2.0], rtol=0.15)


@pytest.mark.parametrize(
    "box",
    [[150, 100, 180, 160], [0, 100, 40, 148], [330, 200, 360, 240], [100, 0, 200, 230]],
    ids=["middle", "left-edge", "corner", "taller-than-frame"],
)
def test_crop_mask_finds_the_box_where_the_tube_cutter_put_it(box: list[float]) -> None:
    # A bright box on a dark frame, cut by the real tube cutter: the mask must cover the bright pixels.
    b = np.float32(box)
    frame = np.zeros(FRAME, np.uint8)
    frame[int(b[1]) : int(b[3]), int(b[0]) : int(b[2])] = 255
    tube = cut_tube(np.stack([frame] * (2 * TUBE_RADIUS + 1)), b)
    bright = tube[TUBE_RADIUS] > 127
    mask = crop_mask(b, FRAME, TUBE_SIZE, 0.1, box_only=True)
    assert (bright & mask).sum() / (bright | mask).sum() > 0.9


def test_crop_mask_drops_the_rows_a_tall_window_repeats() -> None:
    box = np.float32([100, 0, 200, 230])  # window 276 px tall in a 240 px frame: 36 rows are repeated
    on_frame = crop_mask(box, FRAME, 276, 0.1)
    assert on_frame.all(axis=1).sum() == 240 and not on_frame[:, 0].all()


def test_fast_objects_score_above_normal_ones(fitted: VelocityTeacher, data: dict[str, ObjectBatch]) -> None:
    normal = fitted.score(data["normal"])
    assert _roc_auc(normal, fitted.score(data["fast"])) > 0.95


def test_objects_moving_the_wrong_way_score_above_normal_ones(
    fitted: VelocityTeacher, data: dict[str, ObjectBatch]
) -> None:
    normal = fitted.score(data["normal"])
    assert _roc_auc(normal, fitted.score(data["reversed"])) > 0.95


def test_objects_slower_than_normal_are_flagged_by_default_and_floored_when_asked(
    fitted: VelocityTeacher, data: dict[str, ObjectBatch]
) -> None:
    assert _roc_auc(fitted.score(data["normal"]), fitted.score(data["slow"])) > 0.95
    lenient = VelocityTeacher(VelocityConfig(k=5, flag_slow=False))
    lenient.fit([data["train"]])
    assert _roc_auc(lenient.score(data["normal"]), lenient.score(data["slow"])) < 0.7


def test_speed_is_judged_against_objects_at_the_same_depth() -> None:
    # Perspective: far objects (small, high in the frame) move 1 px/frame, near ones (large, low) 3 px/frame.
    # A far object at 3 px/frame is abnormal although that speed is common in the frame as a whole.
    rng = np.random.default_rng(3)
    far, near = (
        {"centre_y": (50.0, 90.0), "height": (35.0, 45.0)},
        {"centre_y": (160.0, 200.0), "height": (70.0, 90.0)},
    )
    train = [drifting_blobs(80, rng, speed=1.0, **far), drifting_blobs(80, rng, speed=3.0, **near)]
    normal = _concat(drifting_blobs(30, rng, speed=1.0, **far), drifting_blobs(30, rng, speed=3.0, **near))
    fast_far = drifting_blobs(30, rng, speed=3.0, **far)
    conditional = VelocityTeacher(VelocityConfig(k=5, context_neighbours=40))
    conditional.fit(train)
    everywhere = VelocityTeacher(VelocityConfig(k=5, context_neighbours=0))
    everywhere.fit(train)
    assert _roc_auc(conditional.score(normal), conditional.score(fast_far)) > 0.9
    assert _roc_auc(everywhere.score(normal), everywhere.score(fast_far)) < 0.9


def test_scores_are_float32_per_object_and_empty_batches_score_empty(
    fitted: VelocityTeacher, data: dict[str, ObjectBatch]
) -> None:
    scores = fitted.score(data["normal"])
    assert scores.shape == (60,) and scores.dtype == np.float32 and np.isfinite(scores).all()
    empty = ObjectBatch(np.zeros((0, 7, 64, 64), np.uint8), np.zeros((0, 4), np.float32), FRAME, np.zeros(0))
    assert fitted.score(empty).shape == (0,)


def test_fit_is_deterministic_for_a_seed_when_subsampling(data: dict[str, ObjectBatch]) -> None:
    config = VelocityConfig(k=5, max_train=50)
    train = data["train"]
    halves = [
        ObjectBatch(train.tubes[i : i + 50], train.boxes[i : i + 50], FRAME, np.arange(50)) for i in (0, 50)
    ]
    a, b, c = VelocityTeacher(config), VelocityTeacher(config), VelocityTeacher(config)
    seen: list[tuple[int, int]] = []
    a.fit(halves, seed=3, progress=lambda done, total: seen.append((done, total)))
    b.fit(halves, seed=3)
    c.fit(halves, seed=4)
    np.testing.assert_array_equal(a.score(data["fast"]), b.score(data["fast"]))
    assert not np.array_equal(a.score(data["fast"]), c.score(data["fast"]))
    assert seen == [(1, 2), (2, 2)]


def test_save_and_load_give_identical_scores(
    tmp_path: Path, fitted: VelocityTeacher, data: dict[str, ObjectBatch]
) -> None:
    fitted.save(tmp_path / "flow.pt")
    loaded = VelocityTeacher.load(tmp_path / "flow.pt")
    assert loaded.config == fitted.config
    np.testing.assert_array_equal(loaded.score(data["reversed"]), fitted.score(data["reversed"]))


class _Payload:
    """Any class instance: unpickling it would run arbitrary code, so weights_only loading must refuse it."""


def test_load_refuses_a_file_that_holds_a_pickled_object(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"format": "aed-teacher-velocity", "version": 1, "config": _Payload()}, path)
    with pytest.raises(WeightsError, match="pickled"):
        VelocityTeacher.load(path)
    (tmp_path / "garbage.pt").write_bytes(b"not a torch file")
    with pytest.raises(WeightsError):
        VelocityTeacher.load(tmp_path / "garbage.pt")


def test_load_refuses_another_teachers_file(tmp_path: Path) -> None:
    torch.save({"format": "aed-teacher-multitask", "version": 1}, tmp_path / "b.pt")
    with pytest.raises(WeightsError, match="not 'aed-teacher-velocity'"):
        VelocityTeacher.load(tmp_path / "b.pt")


def _with_video(batch: ObjectBatch, video: int) -> ObjectBatch:
    return ObjectBatch(batch.tubes, batch.boxes, batch.frame_size, batch.frames, video=video)


def test_a_training_video_is_scored_against_the_other_videos_only(data: dict[str, ObjectBatch]) -> None:
    # Two training videos. Scored as video 0, an object of video 0 must get exactly the score a teacher
    # fitted on video 1 alone gives it; scored as an unknown video it finds itself in the bank (distance 0).
    train = data["train"]
    first = ObjectBatch(train.tubes[:100], train.boxes[:100], FRAME, np.arange(100), video=0)
    second = ObjectBatch(train.tubes[100:], train.boxes[100:], FRAME, np.arange(100), video=1)
    both = VelocityTeacher(VelocityConfig(k=5))
    stats = both.fit([first, second])
    alone = VelocityTeacher(VelocityConfig(k=5))
    alone.fit([second])
    alone.mean, alone.std, alone.median = both.mean, both.std, both.median  # the same standardisation
    alone.bank = both.bank[100:]
    held_out = both.score(first)
    np.testing.assert_allclose(held_out, alone.score(_with_video(first, -1)), rtol=1e-5)
    in_sample = both.score(_with_video(first, -1))
    # Leaving objects out can only lengthen the distances, and each object's own distance of 0 is gone.
    assert stats["held_out_videos"] and (held_out >= in_sample - 1e-6).all()
    assert float(np.median(held_out)) > 1.2 * float(np.median(in_sample))


def test_held_out_scoring_survives_save_and_load(tmp_path: Path, data: dict[str, ObjectBatch]) -> None:
    train = data["train"]
    halves = [
        _with_video(ObjectBatch(train.tubes[i::2], train.boxes[i::2], FRAME, np.arange(100)), i)
        for i in (0, 1)
    ]
    teacher = VelocityTeacher(VelocityConfig(k=5))
    teacher.fit(halves)
    teacher.save(tmp_path / "flow.pt")
    loaded = VelocityTeacher.load(tmp_path / "flow.pt")
    np.testing.assert_array_equal(loaded.score(halves[0]), teacher.score(halves[0]))
    np.testing.assert_array_equal(loaded.score(data["fast"]), teacher.score(data["fast"]))


def _at_clip_start(batch: ObjectBatch, before: int) -> ObjectBatch:
    """The batch as cut ``before`` frames after a clip starts, where the earlier frames repeat t."""
    tubes = batch.tubes.copy()
    tubes[:, : TUBE_RADIUS - before] = tubes[:, TUBE_RADIUS : TUBE_RADIUS + 1]
    reach = np.tile(np.int64([before, TUBE_RADIUS]), (len(batch), 1))
    return ObjectBatch(tubes, batch.boxes, batch.frame_size, batch.frames, reach=reach)


def test_objects_at_a_clip_start_are_not_mistaken_for_stopped_ones(
    fitted: VelocityTeacher, data: dict[str, ObjectBatch]
) -> None:
    # In the first frames of a clip the pair t-3 -> t repeats frame t and shows no motion. Measured anyway,
    # a normal walker reads half as fast and is flagged as stopped; the teacher must use the real pair only.
    normal, start = data["normal"], _at_clip_start(data["normal"], before=0)
    speed = np.expm1(fitted.features(normal)[:, 0])
    np.testing.assert_allclose(np.expm1(fitted.features(start)[:, 0]), speed, rtol=0.2)
    assert _roc_auc(fitted.score(normal), fitted.score(start)) < 0.7
    measured_anyway = VelocityTeacher(VelocityConfig(k=5, real_pairs_only=False))
    measured_anyway.fit([data["train"]])
    assert _roc_auc(measured_anyway.score(normal), measured_anyway.score(start)) > 0.9


def test_real_pairs_keep_the_pairs_inside_the_real_frames_or_all_when_none_is() -> None:
    pairs = [[0, TUBE_RADIUS], [TUBE_RADIUS, 2 * TUBE_RADIUS]]
    assert real_pairs(pairs, np.int64([TUBE_RADIUS, TUBE_RADIUS])) == pairs
    assert real_pairs(pairs, np.int64([1, TUBE_RADIUS])) == [[TUBE_RADIUS, 2 * TUBE_RADIUS]]
    assert real_pairs(pairs, np.int64([TUBE_RADIUS, 2])) == [[0, TUBE_RADIUS]]
    assert real_pairs(pairs, np.int64([0, 0])) == pairs  # a one-frame clip: nothing real to compare


def test_files_written_before_the_real_pairs_switch_load_with_it_off(
    tmp_path: Path, fitted: VelocityTeacher
) -> None:
    fitted.save(tmp_path / "flow.pt")
    payload = torch.load(tmp_path / "flow.pt", weights_only=True)
    config = json.loads(payload["config"])
    del config["real_pairs_only"]
    payload["config"] = json.dumps(config)
    torch.save(payload, tmp_path / "old.pt")
    assert not VelocityTeacher.load(tmp_path / "old.pt").config.real_pairs_only
    assert VelocityTeacher.load(tmp_path / "flow.pt").config.real_pairs_only
