"""Painting object scores into maps, pooling them to the three targets, scaling and the target file format."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aedcli.errors import UsageError
from aedcli.teachers.maps import (
    ScoreScaler,
    TargetsError,
    build_targets,
    grid_shape,
    load_targets,
    paint_boxes,
    pool_targets,
    save_targets,
    smooth_maps,
)


def test_grid_shape_is_frame_size_over_cell_rounded_up() -> None:
    assert grid_shape((240, 360), 8) == (30, 45)
    assert grid_shape((120, 161), 8) == (15, 21)


def test_paint_takes_max_over_overlapping_boxes_and_leaves_zero_elsewhere() -> None:
    rows = np.array(
        [
            [0, 0, 0, 16, 16, 0.3],  # cells (0..1, 0..1)
            [0, 8, 8, 24, 24, 0.8],  # cells (1..2, 1..2): overlaps the first at cell (1, 1)
            [1, 30, 30, 33, 33, 0.5],  # frame 1, a box inside cells (3..4, 3..4)
        ],
        np.float32,
    )
    maps = paint_boxes(rows, frame_count=3, frame_size=(40, 40), cell=8)
    assert maps.shape == (3, 5, 5)
    assert maps[0, 0, 0] == pytest.approx(0.3)
    assert maps[0, 1, 1] == pytest.approx(0.8)  # max, not the last painted or a sum
    assert maps[0, 2, 2] == pytest.approx(0.8)
    assert maps[0, 0, 2] == 0.0 and maps[0, 4, 4] == 0.0
    assert maps[1, 3, 3] == pytest.approx(0.5) and maps[1, 4, 4] == pytest.approx(0.5)
    assert maps[1].sum() == pytest.approx(4 * 0.5)
    assert not maps[2].any()  # a frame without boxes stays zero


def test_paint_ignores_rows_of_frames_outside_the_clip() -> None:
    rows = np.array([[5, 0, 0, 8, 8, 1.0], [-1, 0, 0, 8, 8, 1.0]], np.float32)
    assert not paint_boxes(rows, frame_count=2, frame_size=(16, 16), cell=8).any()


def test_pooled_targets_have_the_contract_shapes_and_share_the_map_maximum() -> None:
    rng = np.random.default_rng(0)
    maps = rng.random((7, 30, 45)).astype(np.float32)
    s1, m4, l16 = pool_targets(maps)
    assert s1.shape == (7,) and m4.shape == (7, 4, 4) and l16.shape == (7, 16, 16)
    assert s1.dtype == m4.dtype == l16.dtype == np.float32
    peak = maps.reshape(7, -1).max(1)
    np.testing.assert_allclose(s1, peak)
    np.testing.assert_allclose(m4.reshape(7, -1).max(1), peak)
    np.testing.assert_allclose(l16.reshape(7, -1).max(1), peak)


def test_mean_filter_spreads_a_spike_over_its_3x3x3_neighbourhood() -> None:
    maps = np.zeros((5, 6, 6), np.float32)
    maps[2, 3, 3] = 27.0
    out = smooth_maps(maps, 3)
    assert out[2, 3, 3] == pytest.approx(1.0)
    assert out[1, 2, 2] == pytest.approx(1.0) and out[3, 4, 4] == pytest.approx(1.0)
    assert out[0].sum() == 0.0
    assert out.sum() == pytest.approx(27.0)
    np.testing.assert_array_equal(smooth_maps(maps, 1), maps)


def test_training_scaler_maps_low_and_high_percentiles_to_0_and_1_and_clips() -> None:
    raw = np.arange(1001, dtype=np.float64)
    scaler = ScoreScaler.from_training(raw, lo_percentile=0.0, hi_percentile=50.0)
    assert scaler.lo == pytest.approx(0.0) and scaler.hi == pytest.approx(500.0)
    np.testing.assert_allclose(scaler.apply(np.array([-10.0, 0.0, 250.0, 500.0, 5000.0])), [0, 0, 0.5, 1, 1])
    # the training scaler ignores the clip it is applied to
    assert scaler.for_clip(np.array([1e6, 2e6])) is scaler


def test_per_video_minmax_uses_each_clips_own_range() -> None:
    scaler = ScoreScaler.from_training(np.arange(10.0), kind="per-video-minmax")
    clip = scaler.for_clip(np.array([100.0, 150.0, 200.0]))
    np.testing.assert_allclose(clip.apply(np.array([100.0, 150.0, 200.0])), [0.0, 0.5, 1.0])


def test_unknown_normalisation_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="--normalisation"):
        ScoreScaler(kind="zscore")


def test_targets_round_trip_through_the_file_format(tmp_path) -> None:
    rows = np.array([[0, 10, 10, 30, 40, 0], [2, 50, 20, 70, 60, 0]], np.float32)[:, :5]
    raw = np.array([1.0, 3.0], np.float32)
    scaler = ScoreScaler.from_training(np.array([0.0, 2.0, 4.0]), lo_percentile=0, hi_percentile=100)
    targets = build_targets(
        rows,
        raw,
        frame_count=4,
        frame_size=(64, 96),
        scaler=scaler,
        meta={"teacher": "a", "source": {"clip": "x"}},
    )
    path = tmp_path / "a" / "test" / "x.npz"
    save_targets(path, targets)
    back = load_targets(path)
    for name in ("s1", "m4", "l16", "boxes", "raw"):
        np.testing.assert_array_equal(getattr(back, name), getattr(targets, name))
    assert back.lowres.dtype == np.float16 and back.lowres.shape == (4, 8, 12)
    assert back.boxes.shape == (2, 6)
    np.testing.assert_allclose(back.boxes[:, 5], [0.25, 0.75])
    assert back.meta["teacher"] == "a" and back.meta["normalisation"] == "train"
    assert back.meta["frame_size"] == [64, 96] and back.meta["version"] == 1
    assert back.meta["stats"]["hi"] == pytest.approx(4.0)
    # the contract's arrays, with the contract's dtypes
    with np.load(path) as z:
        assert {"s1", "m4", "l16", "lowres", "boxes", "meta"} <= set(z.files)
        assert z["s1"].dtype == np.float32 and z["lowres"].dtype == np.float16
        json.loads(str(z["meta"]))
    assert not list(tmp_path.rglob("*.tmp*"))  # atomic write left no temporary file


def test_a_clip_without_objects_gives_all_zero_targets() -> None:
    scaler = ScoreScaler.from_training(np.array([0.0, 1.0]))
    t = build_targets(np.zeros((0, 5)), np.zeros(0), frame_count=6, frame_size=(48, 64), scaler=scaler)
    assert t.s1.shape == (6,) and not t.s1.any() and not t.m4.any() and not t.l16.any() and not t.lowres.any()


def test_loading_a_truncated_target_file_raises_targets_error(tmp_path) -> None:
    scaler = ScoreScaler.from_training(np.array([0.0, 1.0]))
    t = build_targets(
        np.array([[0, 1, 1, 9, 9]]), np.array([0.5]), frame_count=2, frame_size=(16, 16), scaler=scaler
    )
    path = tmp_path / "c.npz"
    save_targets(path, t)
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(TargetsError):
        load_targets(path)


def test_teacher_stage_default_scaling_puts_a_typical_normal_object_at_0_and_the_most_unusual_at_1() -> None:
    from aedcli.teachers.pipeline import TeachConfig

    cfg = TeachConfig()
    # Two teachers with very different raw units and skews end on the same scale.
    for raw in (
        np.random.default_rng(0).normal(5.0, 2.0, 999),
        np.random.default_rng(1).exponential(0.01, 999),
    ):
        scaler = ScoreScaler.from_training(
            raw, lo_percentile=cfg.lo_percentile, hi_percentile=cfg.hi_percentile
        )
        scaled = scaler.apply(raw)
        assert np.median(scaled) == pytest.approx(0.0, abs=1e-6)
        assert scaled.max() == pytest.approx(1.0)
        assert scaler.apply(np.array([raw.max() * 10]))[0] == pytest.approx(1.0)


def test_rarity_scaling_keeps_the_anchors_and_gives_every_teacher_the_same_normal_distribution() -> None:
    # Two teachers with very different raw units and skews: the linear scaling leaves their normal objects
    # at different heights between the anchors, rarity scaling puts them at the same ones.
    raws = [
        np.random.default_rng(0).normal(5.0, 2.0, 20000),
        np.random.default_rng(1).exponential(0.01, 20000),
    ]
    linear, rarity = [], []
    for raw in raws:
        train = ScoreScaler.from_training(raw, lo_percentile=50.0, hi_percentile=100.0)
        rare = ScoreScaler.from_training(raw, kind="train-rarity", lo_percentile=50.0, hi_percentile=100.0)
        assert (rare.lo, rare.hi) == (train.lo, train.hi)
        anchors = rare.apply(np.array([rare.lo, rare.hi, 10 * rare.hi]))
        np.testing.assert_allclose(anchors, [0, 1, 1], atol=1e-4)
        grid = np.linspace(raw.min(), raw.max(), 200)
        assert np.all(np.diff(rare.apply(grid)) >= 0)  # order kept
        linear.append(np.percentile(train.apply(raw), [90, 99]))
        rarity.append(np.percentile(rare.apply(raw), [90, 99]))
    # measured at the 90th and 99th percentiles: linear 0.32 / 0.59 and 0.17 / 0.42, rarity 0.18 / 0.43 and
    # 0.17 / 0.41 (what is left is where each sample's maximum falls in its fitted tail)
    assert np.all(np.abs(linear[0] - linear[1]) > 0.1)
    np.testing.assert_allclose(rarity[0], rarity[1], atol=0.03)


def test_rarity_scaler_round_trips_and_a_linear_one_keeps_its_old_layout() -> None:
    raw = np.random.default_rng(2).gamma(2.0, 1.0, 5000)
    rare = ScoreScaler.from_training(raw, kind="train-rarity", lo_percentile=50.0, hi_percentile=100.0)
    back = ScoreScaler.from_dict(json.loads(json.dumps(rare.to_dict())))
    np.testing.assert_array_equal(back.apply(raw), rare.apply(raw))
    assert "tail" not in rare.summary() and len(rare.to_dict()["tail"]["quantiles"]) > 100
    assert "tail" not in ScoreScaler.from_training(raw).to_dict()


def test_size_scaling_gives_each_height_its_own_anchors() -> None:
    # Small (far) normal objects score twice as high as large ones: with one pair of anchors a normal small
    # object outranks an unusual large one; scaled within their own heights, the large one ranks first.
    rng = np.random.default_rng(3)
    heights = np.concatenate([rng.uniform(0.03, 0.08, 4000), rng.uniform(0.15, 0.4, 4000)])
    raw = np.concatenate([rng.uniform(0.0, 2.0, 4000), rng.uniform(0.0, 1.0, 4000)])
    linear = ScoreScaler.from_training(raw, lo_percentile=50.0, hi_percentile=100.0)
    sized = ScoreScaler.from_training(
        raw, kind="train-size", lo_percentile=50.0, hi_percentile=100.0, heights=heights
    )
    assert (sized.lo, sized.hi) == (linear.lo, linear.hi)
    assert sized.size_edges is not None and len(sized.size_edges) == 4  # five bins of 1,600 objects
    small_normal, large_unusual = np.array([1.8]), np.array([0.95])
    h_small, h_large = np.array([0.05]), np.array([0.3])
    assert linear.apply(small_normal)[0] > linear.apply(large_unusual)[0]
    assert sized.apply(small_normal, h_small)[0] < sized.apply(large_unusual, h_large)[0]
    # every bin's median paints 0 and its max 1
    which = np.digitize(heights, sized.size_edges)
    for i in range(5):
        in_bin = raw[which == i]
        lo_hi = sized.apply(np.array([np.median(in_bin), in_bin.max()]), np.full(2, heights[which == i][0]))
        np.testing.assert_allclose(lo_hi, [0.0, 1.0], atol=1e-6)
    with pytest.raises(ValueError, match="height"):
        sized.apply(raw)


def test_size_scaler_round_trips_and_falls_back_to_one_bin_with_few_objects() -> None:
    rng = np.random.default_rng(4)
    raw, heights = rng.gamma(2.0, 1.0, 3000), rng.uniform(0.05, 0.5, 3000)
    sized = ScoreScaler.from_training(
        raw, kind="train-size", lo_percentile=50.0, hi_percentile=100.0, heights=heights
    )
    back = ScoreScaler.from_dict(json.loads(json.dumps(sized.to_dict())))
    np.testing.assert_array_equal(back.apply(raw, heights), sized.apply(raw, heights))
    assert "size_edges" not in ScoreScaler.from_training(raw).to_dict()
    few = ScoreScaler.from_training(raw[:150], kind="train-size", heights=heights[:150])
    assert few.size_edges == []  # one bin: the plain linear scaling
    np.testing.assert_allclose(
        few.apply(raw[:150], heights[:150]), ScoreScaler.from_training(raw[:150]).apply(raw[:150])
    )
    with pytest.raises(ValueError, match="height"):
        ScoreScaler.from_training(raw, kind="train-size")
