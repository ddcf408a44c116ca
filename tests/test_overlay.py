"""Overlay drawing: pure functions of a frame, an anomaly map and scores."""

from __future__ import annotations

import numpy as np
import pytest

from aedcli.overlay import (
    RED,
    OverlayStyle,
    annotate_frame,
    blend_anomaly_map,
    draw_alarm_border,
    draw_score_label,
    draw_timeline,
    to_bgr,
)

H, W = 120, 160
THR = 0.4
STYLE = OverlayStyle.for_threshold(THR)


def gray_frame() -> np.ndarray:
    return np.random.default_rng(0).integers(60, 120, (H, W), dtype=np.uint8)


def is_red(pixel: np.ndarray) -> bool:
    b, g, r = (int(v) for v in pixel)
    return r > 200 and g < 60 and b < 60


def test_annotate_frame_turns_gray_into_bgr_of_the_same_size_and_leaves_the_input_alone() -> None:
    frame = gray_frame()
    original = frame.copy()
    out = annotate_frame(frame, np.zeros((16, 16)), 0.1, THR, [0.1, 0.2], STYLE)
    assert out.shape == (H, W, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(frame, original)


def test_map_below_the_colour_scale_leaves_every_pixel_unchanged() -> None:
    frame = gray_frame()
    low_map = np.full((16, 16), STYLE.map_low * 0.99)
    np.testing.assert_array_equal(blend_anomaly_map(frame, low_map, STYLE), to_bgr(frame))


def test_a_high_map_cell_colours_only_its_own_region_of_the_frame() -> None:
    frame = gray_frame()
    cells = np.zeros((16, 16))
    cells[0, 0] = STYLE.map_high * 2  # top-left cell: the top-left 10x7.5 pixels and a bilinear fringe
    out = blend_anomaly_map(frame, cells, STYLE)
    changed = np.any(out != to_bgr(frame), axis=2)
    assert changed[:4, :5].all()
    assert not changed[H // 4 :, :].any() and not changed[:, W // 4 :].any()
    # The hottest colour of the JET map is red: red rises and blue falls where the map is high.
    assert int(out[1, 1, 2]) > int(frame[1, 1]) and int(out[1, 1, 0]) < int(frame[1, 1])


def test_alarm_border_is_drawn_only_when_the_score_is_above_the_threshold() -> None:
    frame = gray_frame()
    calm = annotate_frame(frame, np.zeros((16, 16)), THR * 0.9, THR, [THR * 0.9], STYLE)
    alarm = annotate_frame(frame, np.zeros((16, 16)), THR * 1.1, THR, [THR * 1.1], STYLE)
    assert is_red(alarm[0, W // 2]) and is_red(alarm[H // 2, 0]) and is_red(alarm[H // 2, W - 1])
    assert not is_red(calm[0, W // 2]) and not is_red(calm[H // 2, 0])
    np.testing.assert_array_equal(draw_alarm_border(frame)[0, 0], RED)


def test_score_label_prints_text_in_the_top_left_corner_and_turns_red_above_the_threshold() -> None:
    frame = np.full((H, W), 100, np.uint8)
    calm = draw_score_label(frame, 0.2, THR)
    alarm = draw_score_label(frame, 0.9, THR)
    corner = (slice(0, H // 4), slice(0, W))
    assert np.any(calm[corner] != 100)
    assert np.array_equal(calm[H // 2 :], to_bgr(frame)[H // 2 :])
    assert not any(is_red(p) for p in calm[corner].reshape(-1, 3))
    assert any(is_red(p) for p in alarm[corner].reshape(-1, 3))


def test_timeline_strip_sits_at_the_bottom_with_the_threshold_line_and_red_above_it() -> None:
    frame = np.full((H, W), 100, np.uint8)
    strip_top = H - max(16, round(H * STYLE.timeline_fraction))
    calm_history = np.full(50, THR * 0.5)
    calm = draw_timeline(frame, calm_history, THR, STYLE)
    np.testing.assert_array_equal(calm[:strip_top], to_bgr(frame)[:strip_top])
    assert np.median(calm[strip_top:]) <= 60  # the strip is darkened behind the curve
    # Threshold line: mid height of the strip, since the axis runs to twice the threshold.
    yellow_rows = {y for y in range(strip_top, H) if calm[y, 2, 2] > 150 and calm[y, 2, 0] < 100}
    assert yellow_rows and abs(np.mean(sorted(yellow_rows)) - (strip_top + H - 1) / 2) <= 2
    assert not any(is_red(p) for p in calm[strip_top:].reshape(-1, 3))

    alarm_history = np.r_[np.full(40, THR * 0.5), np.full(10, THR * 1.8)]
    alarm = draw_timeline(frame, alarm_history, THR, STYLE)
    reds = [x for y in range(strip_top, H) for x in range(W) if is_red(alarm[y, x])]
    assert reds and min(reds) > W // 2  # recent frames (the right end) are the abnormal ones


def test_timeline_axis_can_be_raised_so_high_scores_stay_inside_the_strip() -> None:
    frame = np.full((H, W), 100, np.uint8)
    history = np.full(20, THR * 5)
    clipped = draw_timeline(frame, history, THR, STYLE)
    raised = draw_timeline(frame, history, THR, STYLE, score_max=THR * 10)
    assert not np.array_equal(clipped, raised)


def test_overlay_style_rejects_an_empty_colour_scale() -> None:
    with pytest.raises(ValueError, match="map_high"):
        OverlayStyle(map_low=0.5, map_high=0.5, score_max=1.0)
