"""Overlay drawing: pure functions of a frame, an anomaly map and scores."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from aedcli.detect.overlay import (
    DARK,
    OverlayStyle,
    annotate_frame,
    blend_anomaly_map,
    draw_score_label,
    draw_timeline,
    overlay_size,
    strip_height,
    to_bgr,
)

H, W = 120, 160
THR = 0.4
STYLE = OverlayStyle.for_threshold(THR)
STRIP = strip_height(W, H)


def gray_frame(h: int = H, w: int = W) -> np.ndarray:
    return np.random.default_rng(0).integers(60, 120, (h, w), dtype=np.uint8)


def is_red(pixel: np.ndarray) -> bool:
    b, g, r = (int(v) for v in pixel)
    return r > 200 and g < 60 and b < 60


def is_white(pixel: np.ndarray) -> bool:
    return bool(np.all(pixel > 200))


def test_annotate_frame_turns_gray_into_bgr_and_leaves_the_input_alone() -> None:
    frame = gray_frame()
    original = frame.copy()
    out = annotate_frame(frame, np.zeros((16, 16)), 0.1, THR, [0.1, 0.2], STYLE)
    assert out.ndim == 3 and out.shape[2] == 3 and out.dtype == np.uint8
    np.testing.assert_array_equal(frame, original)


def test_overlay_picture_is_the_frame_with_the_score_strip_added_below_it() -> None:
    frame = gray_frame()
    out = annotate_frame(frame, np.zeros((16, 16)), 0.1, THR, [0.1, 0.2], STYLE)
    assert overlay_size(W, H) == (W, H + STRIP)
    assert out.shape == (H + STRIP, W, 3)
    assert STRIP >= 24 and STRIP % 2 == 0  # H.264 needs even sizes
    # Nothing of the scene is hidden: below the label box, the picture is the frame itself.
    np.testing.assert_array_equal(out[H // 2 : H], to_bgr(frame)[H // 2 :])
    assert np.median(out[H:]) <= 60  # the strip is dark behind the curve


def test_strip_height_is_even_and_grows_with_the_shorter_side() -> None:
    assert strip_height(64, 48) == 24
    assert strip_height(1920, 1080) == 136
    assert strip_height(1080, 1920) == 136
    assert all(strip_height(w, h) % 2 == 0 for w in (33, 99, 641) for h in (17, 481, 999))


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


def test_map_colours_are_those_of_the_opencv_colour_map_at_the_style_opacity() -> None:
    frame = np.full((H, W), 100, np.uint8)
    cells = np.full((16, 16), STYLE.map_high * 2)  # every cell at the hottest colour, full opacity
    out = blend_anomaly_map(frame, cells, STYLE)
    hottest = cv2.applyColorMap(np.array([[255]], np.uint8), STYLE.colormap)[0, 0].astype(float)
    expected = (1 - STYLE.alpha) * 100 + STYLE.alpha * hottest
    np.testing.assert_allclose(out[H // 2, W // 2], expected, atol=1.0)


def test_alarm_border_is_drawn_only_when_the_score_is_above_the_threshold() -> None:
    frame = gray_frame()
    calm = annotate_frame(frame, np.zeros((16, 16)), THR * 0.9, THR, [THR * 0.9], STYLE)
    alarm = annotate_frame(frame, np.zeros((16, 16)), THR * 1.1, THR, [THR * 1.1], STYLE)
    # The border frames the picture (the strip below is not part of it).
    assert is_red(alarm[H - 1, W // 2]) and is_red(alarm[H // 2, 0]) and is_red(alarm[H // 2, W - 1])
    assert not is_red(calm[H - 1, W // 2]) and not is_red(calm[H // 2, 0])


def test_score_label_prints_text_on_a_solid_box_in_the_top_left_and_turns_red_above_the_threshold() -> None:
    frame = np.full((H, W), 100, np.uint8)
    calm = draw_score_label(frame, 0.2, THR)
    alarm = draw_score_label(frame, 0.9, THR)
    corner = (slice(0, H // 4), slice(0, W))
    assert np.any(calm[corner] != 100)
    assert np.any(np.all(calm[corner] == DARK, axis=-1))  # the box behind the text
    assert np.array_equal(calm[H // 2 :], to_bgr(frame)[H // 2 :])
    assert not any(is_red(p) for p in calm[corner].reshape(-1, 3))
    assert any(is_white(p) for p in calm[corner].reshape(-1, 3))
    assert any(is_red(p) for p in alarm[corner].reshape(-1, 3))


def _label_box(picture: np.ndarray) -> tuple[int, int, int, int]:
    """Rows and columns (y0, y1, x0, x1) spanned by the label's dark box on a uniform frame."""
    dark = np.all(picture == DARK, axis=-1)
    ys, xs = np.nonzero(dark)
    return int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1


def test_label_box_and_its_text_fit_inside_a_portrait_90x160_frame() -> None:
    w, h = 90, 160
    frame = np.full((h, w), 100, np.uint8)
    out = draw_score_label(frame, 0.123, THR)
    y0, y1, x0, x1 = _label_box(out)
    assert x0 > 0 and x1 < w and y0 > 0 and y1 < h // 3
    # Every pixel of text is drawn inside the box: outside it the frame is untouched.
    outside = np.ones((h, w), bool)
    outside[y0:y1, x0:x1] = False
    assert np.all(out[outside] == 100)
    inside = out[y0:y1, x0:x1]
    assert np.any(inside != DARK)  # the text itself


def test_label_font_grows_with_the_frame() -> None:
    small = _label_box(draw_score_label(np.full((240, 360), 100, np.uint8), 0.5, THR))
    large = _label_box(draw_score_label(np.full((1080, 1920), 100, np.uint8), 0.5, THR))
    assert (large[1] - large[0]) > 2 * (small[1] - small[0])


def test_timeline_strip_has_the_threshold_line_at_mid_height_and_red_above_it() -> None:
    calm_history = np.full(50, THR * 0.5)
    calm = draw_timeline(W, STRIP, calm_history, THR, STYLE)
    assert calm.shape == (STRIP, W, 3)
    assert np.median(calm) <= 60  # the strip is dark behind the curve
    # Threshold line: mid height of the strip, since the axis runs to twice the threshold.
    yellow_rows = {y for y in range(STRIP) if calm[y, 2, 2] > 150 and calm[y, 2, 0] < 100}
    assert yellow_rows and abs(np.mean(sorted(yellow_rows)) - (STRIP - 1) / 2) <= 2
    assert not any(is_red(p) for p in calm.reshape(-1, 3))

    alarm_history = np.r_[np.full(40, THR * 0.5), np.full(10, THR * 1.8)]
    alarm = draw_timeline(W, STRIP, alarm_history, THR, STYLE)
    reds = [x for y in range(STRIP) for x in range(W) if is_red(alarm[y, x])]
    assert reds and min(reds) > W // 2  # recent frames (the right end) are the abnormal ones


def test_annotated_strip_is_the_timeline_of_the_history() -> None:
    history = np.r_[np.full(40, THR * 0.5), np.full(10, THR * 1.8)]
    out = annotate_frame(gray_frame(), np.zeros((16, 16)), THR * 1.8, THR, history, STYLE)
    np.testing.assert_array_equal(out[H:], draw_timeline(W, STRIP, history, THR, STYLE))


def test_timeline_axis_can_be_raised_so_high_scores_stay_inside_the_strip() -> None:
    history = np.full(20, THR * 5)
    clipped = draw_timeline(W, STRIP, history, THR, STYLE)
    raised = draw_timeline(W, STRIP, history, THR, STYLE, score_max=THR * 10)
    assert not np.array_equal(clipped, raised)


def test_overlay_style_rejects_an_empty_colour_scale() -> None:
    with pytest.raises(ValueError, match="map_high"):
        OverlayStyle(map_low=0.5, map_high=0.5, score_max=1.0)
