"""The teachers: flow, the motion teacher's maps, moving objects and their scores, maps, files, the stage."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from aedcli.data import load_dataset
from aedcli.data.clips import Clip, Dataset, sped_up, zoomed
from aedcli.data.folder import load_folder
from aedcli.errors import WeightsError
from aedcli.teachers import TEACHERS, TeachConfig, read_targets, teach
from aedcli.teachers.files import load_teacher, save_teacher
from aedcli.teachers.flow import clip_flows, working_size
from aedcli.teachers.maps import (
    CELL,
    Normaliser,
    TargetPaths,
    Targets,
    TargetsError,
    cell_max,
    grid_shape,
    load_targets,
    paint_boxes,
    pool_targets,
    save_targets,
    squash,
)
from aedcli.teachers.motion import MotionTeacher
from aedcli.teachers.objects import ObjectTeacher, find_objects

SIZE = (48, 64)


def moving_block(
    frames: int, speed: int, size: tuple[int, int] = (10, 10), start: int = 4
) -> list[np.ndarray]:
    """Gray frames of a textured block moving right by ``speed`` pixels a frame over a textured background."""
    rng = np.random.default_rng(0)
    background = cv2.GaussianBlur(rng.integers(60, 120, SIZE).astype(np.uint8), (5, 5), 0)
    patch = cv2.GaussianBlur(rng.integers(150, 255, size).astype(np.uint8), (3, 3), 0)
    out = []
    for t in range(frames):
        frame = background.copy()
        x = start + speed * t
        frame[20 : 20 + size[0], x : x + size[1]] = patch[:, : max(0, min(size[1], SIZE[1] - x))]
        out.append(frame)
    return out


def write_clip(folder: Path, frames: list[np.ndarray]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for t, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{t:04d}.png"), frame)
    return folder


# ---------------------------------------------------------------------------------------------------- maps


def test_grid_counts_partial_cells_and_cell_max_pads_with_zero() -> None:
    assert grid_shape((48, 64)) == (48 // CELL, 64 // CELL)
    assert grid_shape((50, 65)) == (7, 9)
    x = np.zeros((50, 65), np.float32)
    x[49, 64] = 3.0  # the last, partial cell
    assert cell_max(x).shape == (7, 9) and cell_max(x)[6, 8] == 3.0 and cell_max(x).sum() == 3.0


def test_painting_takes_the_largest_value_over_overlapping_boxes_and_zero_elsewhere() -> None:
    grid = paint_boxes(np.array([[0, 0, 16, 8], [8, 0, 24, 8]]), np.array([0.2, 0.7]), (4, 4))
    assert grid[0].tolist() == pytest.approx([0.2, 0.7, 0.7, 0.0])
    assert grid[1:].sum() == 0.0


def test_normaliser_puts_the_median_frame_at_zero_and_the_99th_percentile_at_one() -> None:
    peaks = np.arange(1001, dtype=np.float32)
    norm = Normaliser.fit(peaks)
    assert norm(np.array([500.0, 990.0])) == pytest.approx([0.0, 1.0])
    assert squash(norm(np.array([0.0, 990.0, 1e9]))) == pytest.approx([0.0, 0.5, 1.0], abs=1e-6)


def test_targets_are_adaptive_max_pools_of_the_fine_grid_and_share_its_peak() -> None:
    fine = np.zeros((2, 30, 45), np.float32)
    fine[0, 29, 44] = 0.9
    s1, m4, l16 = pool_targets(fine)
    assert s1.shape == (2,) and m4.shape == (2, 4, 4) and l16.shape == (2, 16, 16)
    assert s1[0] == m4[0, 3, 3] == l16[0, 15, 15] == pytest.approx(0.9) and s1[1] == 0.0


def test_target_files_round_trip_and_broken_ones_are_refused(tmp_path: Path) -> None:
    targets = Targets.from_fine(
        np.random.default_rng(0).random((3, 6, 8)).astype(np.float32), {"teacher": "x"}
    )
    path = tmp_path / "t.npz"
    save_targets(path, targets)
    back = load_targets(path)
    assert np.array_equal(back.l16, targets.l16) and back.meta["teacher"] == "x"
    assert back.frame_scores == pytest.approx(targets.s1)  # S, max M and max L are all the grid's peak
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(TargetsError):
        load_targets(path)


def test_one_path_scheme_for_teachers_and_targets(tmp_path: Path) -> None:
    paths = TargetPaths(tmp_path)
    clip = Clip("v1", "test", tmp_path, 3)
    assert paths.teacher("motion") == tmp_path / "teachers" / "motion.pt"
    assert paths.targets("objects", clip) == tmp_path / "targets" / "objects" / "test" / "v1.npz"


# ---------------------------------------------------------------------------------------------------- flow


def test_flow_gives_every_frame_the_motion_that_led_to_it_and_frame_zero_its_successors() -> None:
    frames = moving_block(6, speed=2)
    flows = [f for _, f in clip_flows(iter(frames))]
    assert len(flows) == 6
    assert np.array_equal(flows[0], flows[1])
    inside = flows[3][22:28, 14:20, 0]
    assert 1.0 < float(np.median(inside)) < 3.0  # two pixels a frame to the right
    single = list(clip_flows(iter(frames[:1])))
    assert len(single) == 1 and not single[0][1].any()


def test_teachers_work_at_most_240_rows_with_the_aspect_kept() -> None:
    assert working_size(240, 360) == (240, 360)
    assert working_size(720, 1280) == (240, 427)
    assert working_size(120, 160) == (120, 160)


# ---------------------------------------------------------------------------------------------------- motion


def test_motion_maps_rise_with_speed_and_stay_near_zero_where_nothing_moves() -> None:
    teacher = MotionTeacher(object_height=10.0)
    slow = [teacher.raw_maps(f) for _, f in clip_flows(iter(moving_block(8, speed=1)))]
    fast = [teacher.raw_maps(f) for _, f in clip_flows(iter(moving_block(8, speed=4)))]
    teacher.fit(np.stack([r.max(axis=(1, 2)) for r in slow]))
    slow_maps, fast_maps = teacher.maps(np.stack(slow)), teacher.maps(np.stack(fast))
    assert slow_maps.min() >= 0.0 and fast_maps.max() < 1.0
    assert fast_maps[2:].max(axis=(1, 2)).mean() > slow_maps[2:].max(axis=(1, 2)).mean() + 0.2
    assert slow_maps[:, 0, :].max() == 0.0  # the top rows hold only background


def test_a_large_body_counts_on_the_body_maps_where_a_small_one_of_the_same_speed_does_not() -> None:
    teacher = MotionTeacher(object_height=30.0)  # the larger body disc: 0.5 x 30 = 15 pixels
    large = teacher.raw_maps([f for _, f in clip_flows(iter(moving_block(6, 2, size=(18, 18))))][3])
    small = teacher.raw_maps([f for _, f in clip_flows(iter(moving_block(6, 2, size=(5, 5))))][3])
    area, body = teacher.components.index("area"), teacher.components.index("body@0.5")
    assert small[area].max() > 0.6 * large[area].max()  # both move fast
    assert small[body].max() < 0.4 * large[body].max()  # only one is a body larger than a torso


def test_motion_teacher_state_round_trips_through_its_file(tmp_path: Path) -> None:
    teacher = MotionTeacher(object_height=12.5)
    teacher.fit(np.random.default_rng(0).random((50, len(teacher.components))))
    save_teacher(tmp_path / "motion.pt", teacher)
    back = load_teacher(tmp_path / "motion.pt")
    assert isinstance(back, MotionTeacher) and back.object_height == 12.5
    assert back.normalisers == teacher.normalisers


# ---------------------------------------------------------------------------------------------------- objects


def test_objects_moving_opposite_ways_side_by_side_are_two_objects() -> None:
    flow = np.zeros((48, 64, 2), np.float32)
    flow[10:30, 10:20, 0] = 2.0  # right
    flow[10:30, 20:30, 0] = -2.0  # left, touching it
    boxes, features = find_objects(flow)
    assert len(boxes) == 2
    assert sorted(np.sign(features[:, 0]).tolist()) == [-1.0, 1.0]


def test_an_unusual_velocity_is_farther_from_normal_objects_than_a_usual_one() -> None:
    rng = np.random.default_rng(0)
    normal = np.column_stack(
        [rng.normal(1, 0.2, 300), rng.normal(0, 0.1, 300), rng.normal(0.7, 0.05, 300),
         rng.normal(0.9, 0.05, 300), rng.normal(5, 0.3, 300)]
    ).astype(np.float32)  # fmt: skip
    videos = np.repeat(np.arange(3), 100)
    teacher = ObjectTeacher.fit(normal, videos)
    usual, unusual = normal[:1], normal[:1].copy()
    unusual[0, 1] = 3.0  # moving up, where every normal object moves right
    assert teacher.distances(unusual)[0] > 5 * teacher.distances(usual)[0]


def test_a_training_object_is_compared_with_other_videos_only() -> None:
    feats = np.array([[0, 0, 0, 0, 0], [10, 0, 0, 0, 0]], np.float32).repeat(5, axis=0)
    videos = np.array([0] * 5 + [1] * 5)
    teacher = ObjectTeacher.fit(feats, videos)
    assert teacher.distances(feats[:1], video=-1)[0] == pytest.approx(0.0, abs=1e-5)
    assert teacher.distances(feats[:1], video=0)[0] > 1.0  # its own video's twins are left out


def test_object_teacher_file_keeps_its_bank_and_scale(tmp_path: Path) -> None:
    feats = np.random.default_rng(1).random((40, 5)).astype(np.float32)
    teacher = ObjectTeacher.fit(feats, np.arange(40) % 4)
    teacher.fit_scale(np.random.default_rng(2).random(100))
    save_teacher(tmp_path / "objects.pt", teacher)
    back = load_teacher(tmp_path / "objects.pt")
    assert isinstance(back, ObjectTeacher)
    assert np.allclose(back.distances(feats[:5], 1), teacher.distances(feats[:5], 1))
    assert back.normaliser == teacher.normaliser


def test_a_teacher_file_holding_pickled_objects_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "motion.pt"
    torch.save({"format": "aed-teacher", "version": 1, "name": "motion", "state": Path("code")}, path)
    with pytest.raises(WeightsError, match=r"could run code|corrupt"):
        load_teacher(path)
    (tmp_path / "other.pt").write_bytes(b"not a teacher")
    with pytest.raises(WeightsError, match="corrupt"):
        load_teacher(tmp_path / "other.pt")


# ---------------------------------------------------------------------------------------------------- stage


@pytest.fixture(scope="module")
def block_dataset(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """Three training clips of a block crossing at normal speed, one test clip where it crosses 3x faster."""
    root = tmp_path_factory.mktemp("blocks")
    for i, start in enumerate((2, 6, 10)):
        write_clip(root / "train" / f"walk{i}", moving_block(14, speed=1, start=start))
    write_clip(root / "test" / "run", moving_block(14, speed=1)[:5] + moving_block(9, speed=4, start=8)[:9])
    (root / "labels").mkdir()
    (root / "labels" / "run.txt").write_text("\n".join(["0"] * 5 + ["1"] * 9) + "\n")
    return load_folder(root)


def test_teach_fits_every_teacher_and_paints_train_views_and_test(
    block_dataset: Dataset, tmp_path: Path
) -> None:
    views = [sped_up(block_dataset.train[0], 2), zoomed(block_dataset.train[1], 2.0)]
    result = teach(block_dataset, tmp_path, TeachConfig(height_sample=50), extra=views, test=True)
    assert tuple(result.teachers) == TEACHERS
    paths = TargetPaths(tmp_path)
    for clip in [*block_dataset.train, *views, *block_dataset.test]:
        for name in TEACHERS:
            assert paths.targets(name, clip).is_file()
    run = block_dataset.test[0]
    motion, _ = read_targets(tmp_path, TEACHERS, run)
    assert motion.frame_scores[6:].mean() > motion.frame_scores[:4].mean() + 0.2  # the fast block stands out
    again = teach(block_dataset, tmp_path, TeachConfig(height_sample=50), extra=views, test=True)
    assert again.clips_painted == 0  # everything was there: the stage resumes


def test_teach_refuses_footage_in_which_nothing_moves(tmp_path: Path) -> None:
    still = [np.full(SIZE, 100, np.uint8)] * 6
    write_clip(tmp_path / "data" / "train" / "still", still)
    dataset = load_folder(tmp_path / "data")
    with pytest.raises(Exception, match="nothing moves"):
        teach(dataset, tmp_path / "run", TeachConfig(height_sample=10))


def test_teachers_of_the_synthetic_dataset_rank_its_anomalies_above_normal_frames(tmp_path: Path) -> None:
    dataset = load_dataset("synthetic", tmp_path / "cache")
    result = teach(dataset, tmp_path / "run", TeachConfig(), test=True)
    labels = np.concatenate([c.labels for c in dataset.test])
    per = [read_targets(tmp_path / "run", list(result.teachers), c) for c in dataset.test]
    combined = np.concatenate([np.max([t.frame_scores for t in p], axis=0) for p in per])
    from aedcli.evaluation.metrics import roc_auc

    assert roc_auc(labels, combined) > 0.8


def test_every_stage_of_teach_reports_itself_finished(block_dataset: Dataset, tmp_path: Path) -> None:
    calls: dict[str, tuple[int, int | None]] = {}

    def progress(task: str, done: int, total: int | None) -> None:
        calls[task] = (done, total)

    teach(block_dataset, tmp_path, TeachConfig(height_sample=50), progress=progress)
    assert calls and all(total is not None and done == total for done, total in calls.values()), calls
