"""Frame-level AUC (micro, macro under both conventions) and RBDC/TBDC on hand-worked cases."""

from __future__ import annotations

from itertools import product
from pathlib import Path

import numpy as np
import pytest

from aedcli.errors import DatasetError
from aedcli.evaluation.metrics import (
    MacroConvention,
    Region,
    Track,
    box_iou,
    gt_tracks_from_masks,
    macro_auc,
    micro_auc,
    rbdc_tbdc,
    rbdc_tbdc_by_video,
    read_regions,
    read_tracks,
    regions_from_map,
    regions_from_rows,
    roc_auc,
    roc_curve,
    write_regions_csv,
)

# ----------------------------------------------------------------------------------------------- frame AUC


def _pairwise_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Independent definition: P(abnormal score > normal score) + 0.5 P(equal), over all pairs."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    wins = [1.0 if p > n else 0.5 if p == n else 0.0 for p, n in product(pos, neg)]
    return float(np.mean(wins))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roc_auc_equals_the_pairwise_definition_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 150)
    scores = rng.integers(0, 6, 150).astype(float)  # few distinct values: many ties
    assert roc_auc(labels, scores) == pytest.approx(_pairwise_auc(labels, scores), abs=1e-12)


def test_roc_auc_rejects_labels_of_one_class() -> None:
    with pytest.raises(ValueError, match="both normal and abnormal"):
        roc_auc(np.zeros(5), np.arange(5.0))
    with pytest.raises(ValueError, match="all 3 frames are abnormal"):
        roc_auc(np.ones(3), np.arange(3.0))


def test_roc_auc_rejects_nan_scores_and_length_mismatch() -> None:
    with pytest.raises(ValueError, match="NaN"):
        roc_auc([0, 1], [0.1, float("nan")])
    with pytest.raises(ValueError, match="differ in length"):
        roc_auc([0, 1, 1], [0.1, 0.2])


def test_roc_curve_runs_from_origin_to_one_and_its_area_is_the_auc() -> None:
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, 300)
    scores = np.round(rng.random(300) + 0.3 * labels, 1)
    curve = roc_curve(labels, scores)
    assert (curve.fpr[0], curve.tpr[0], curve.fpr[-1], curve.tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.all(np.diff(curve.fpr) >= 0) and np.all(np.diff(curve.tpr) >= 0)
    assert curve.auc == pytest.approx(roc_auc(labels, scores), abs=1e-12)


def test_micro_auc_is_one_when_scores_equal_labels() -> None:
    labels = {"a": np.array([0, 0, 1, 1, 0]), "b": np.array([0, 0, 0]), "c": np.array([1, 0, 1])}
    assert micro_auc(labels, {k: v.astype(float) for k, v in labels.items()}) == 1.0


def test_micro_auc_of_random_scores_is_close_to_one_half() -> None:
    rng = np.random.default_rng(6)
    labels = {f"v{i}": rng.integers(0, 2, 2000) for i in range(5)}
    scores = {k: rng.random(v.size) for k, v in labels.items()}
    assert micro_auc(labels, scores) == pytest.approx(0.5, abs=0.02)  # sd of the AUC here is about 0.004


def test_micro_auc_pools_frames_while_macro_averages_videos() -> None:
    # Each video is ranked perfectly, but video b's normal frames outscore video a's abnormal frames.
    labels = {"a": np.array([0, 1]), "b": np.array([0, 1])}
    scores = {"a": np.array([0.1, 0.2]), "b": np.array([0.5, 0.6])}
    assert macro_auc(labels, scores) == 1.0
    # Pairs (abnormal, normal): 0.2>0.1, 0.2<0.5, 0.6>0.1, 0.6>0.5 -> 3/4.
    assert micro_auc(labels, scores) == pytest.approx(0.75)


def test_micro_auc_names_a_video_without_scores() -> None:
    with pytest.raises(ValueError, match="b"):
        micro_auc({"a": [0, 1], "b": [0, 1]}, {"a": [0.0, 1.0]})


def test_macro_auc_counts_a_single_class_video_as_one_under_convention_one() -> None:
    labels = {"mixed": np.array([0, 0, 1, 1]), "normal": np.array([0, 0])}
    scores = {"mixed": np.array([0.1, 0.4, 0.35, 0.8]), "normal": np.array([0.2, 1.5])}
    # mixed: abnormal 0.35 beats 0.1 only, 0.8 beats both -> 3/4; normal counts 1.0.
    assert macro_auc(labels, scores, convention="one") == pytest.approx((0.75 + 1.0) / 2)


def test_macro_auc_pads_every_video_with_a_normal_zero_and_an_abnormal_one() -> None:
    labels = {"mixed": np.array([0, 0, 1, 1]), "normal": np.array([0, 0])}
    scores = {"mixed": np.array([0.1, 0.4, 0.35, 0.8]), "normal": np.array([0.2, 1.5])}
    # mixed padded: normals {0, 0.1, 0.4}, abnormals {0.35, 0.8, 1}: 2 + 3 + 3 wins of 9 -> 8/9.
    # normal padded: normals {0, 0.2, 1.5}, abnormal {1}: beats 0 and 0.2, loses to 1.5 -> 2/3.
    expected = (8 / 9 + 2 / 3) / 2
    assert macro_auc(labels, scores, convention=MacroConvention.PAD) == pytest.approx(expected)


def test_padding_also_applies_to_videos_with_both_classes() -> None:
    # Unpadded AUC is 0 (perfectly inverted); the padded frames add wins, as in the published scripts.
    labels = {"v": np.array([1, 0])}
    scores = {"v": np.array([0.2, 0.6])}
    assert macro_auc(labels, scores, "one") == 0.0
    # Padded: normals {0, 0.6}, abnormals {0.2, 1}: 0.2 beats 0; 1 beats both -> 3/4.
    assert macro_auc(labels, scores, "pad") == pytest.approx(0.75)


def test_every_macro_convention_has_a_description_naming_its_rule() -> None:
    assert "1.0" in MacroConvention.ONE.description
    assert "scored 0" in MacroConvention.PAD.description and "scored 1" in MacroConvention.PAD.description
    with pytest.raises(ValueError):
        MacroConvention("mean")


# ----------------------------------------------------------------------------------------------- RBDC/TBDC


def _track(frames: range, box: tuple[float, float, float, float] = (10, 10, 20, 20), tid: int = 0) -> Track:
    return Track(tid, tuple(Region(f, *box) for f in frames))


def test_box_iou_of_identical_disjoint_and_half_overlapping_boxes() -> None:
    iou = box_iou([[0, 0, 10, 10]], [[0, 0, 10, 10], [20, 20, 30, 30], [5, 0, 15, 10]])
    np.testing.assert_allclose(iou, [[1.0, 0.0, 50 / 150]])


def test_perfect_detections_score_one_on_both_criteria() -> None:
    tracks = [_track(range(10)), _track(range(3, 8), (50, 50, 70, 90), tid=1)]
    detections = [Region(r.frame, r.x0, r.y0, r.x1, r.y1, 0.9) for t in tracks for r in t.regions]
    result = rbdc_tbdc(detections, tracks, num_frames=10)
    assert (result.rbdc, result.tbdc) == (1.0, 1.0)
    assert (result.gt_regions, result.gt_tracks, result.frames) == (15, 2, 10)


def test_a_track_counts_as_detected_when_one_of_its_ten_regions_is() -> None:
    result = rbdc_tbdc([Region(4, 10, 10, 20, 20, 0.8)], [_track(range(10))], num_frames=10)
    assert result.rbdc == pytest.approx(0.1)  # 1 of 10 regions, no false positives: flat at 0.1
    assert result.tbdc == pytest.approx(1.0)  # 10% of the track reaches alpha = 0.1


def test_a_track_needs_a_tenth_of_its_regions_detected() -> None:
    track = _track(range(30))
    two = [Region(f, 10, 10, 20, 20, 0.8) for f in (0, 1)]
    three = [*two, Region(2, 10, 10, 20, 20, 0.8)]
    assert rbdc_tbdc(two, [track], 30).tbdc == 0.0  # 2/30 < 10%
    assert rbdc_tbdc(three, [track], 30).tbdc == 1.0  # 3/30 = 10% exactly


def test_false_positives_in_half_the_frames_ranked_first_halve_the_area() -> None:
    track = _track(range(10))
    hits = [Region(f, 10, 10, 20, 20, 0.9) for f in range(10)]
    false_alarms = [Region(f, 100, 100, 120, 120, 0.95) for f in range(5)]
    result = rbdc_tbdc(hits + false_alarms, [track], num_frames=10)
    # Threshold 0.95: 0.5 FP per frame, nothing detected; 0.9: everything detected at 0.5 FP per frame.
    # Curve (0, 0) -> (0.5, 0) -> (0.5, 1) -> flat to (1, 1): area 0.5.
    assert result.rbdc == pytest.approx(0.5)
    assert result.tbdc == pytest.approx(0.5)
    np.testing.assert_allclose(result.curve.fp_per_frame, [0.0, 0.5, 0.5])


def test_false_positives_ranked_below_the_detections_do_not_cost_anything() -> None:
    track = _track(range(10))
    hits = [Region(f, 10, 10, 20, 20, 0.9) for f in range(10)]
    false_alarms = [Region(f, 100, 100, 120, 120, 0.5) for f in range(10)]
    assert rbdc_tbdc(hits + false_alarms, [track], num_frames=10).rbdc == pytest.approx(1.0)


def test_interleaved_scores_give_a_stepped_curve() -> None:
    tracks = [_track(range(1)), _track(range(1, 2), tid=1)]
    detections = [
        Region(0, 10, 10, 20, 20, 0.9),  # detects region 1 of 2
        Region(0, 80, 80, 90, 90, 0.7),  # false positive: 0.5 per frame over 2 frames
        Region(1, 10, 10, 20, 20, 0.6),  # detects region 2
    ]
    result = rbdc_tbdc(detections, tracks, num_frames=2)
    # (0, 0) -> (0, 0.5) -> (0.5, 0.5) -> (0.5, 1) -> (1, 1): 0.5 * 0.5 + 0.5 * 1 = 0.75.
    assert result.rbdc == pytest.approx(0.75)
    assert result.tbdc == pytest.approx(0.75)


def test_tied_scores_enter_together_as_a_sloped_segment() -> None:
    detections = [Region(0, 10, 10, 20, 20, 0.5), Region(0, 80, 80, 90, 90, 0.5)]
    result = rbdc_tbdc(detections, [_track(range(1))], num_frames=2)
    # (0, 0) -> (0.5, 1): triangle 0.25, then flat at 1 for 0.5: 0.75.
    assert result.rbdc == pytest.approx(0.75)


def test_the_curve_is_cut_at_one_false_positive_per_frame() -> None:
    detections = [Region(f % 2, 80, 80, 90, 90, 0.8) for f in range(4)] + [Region(0, 10, 10, 20, 20, 0.8)]
    result = rbdc_tbdc(detections, [_track(range(1))], num_frames=2)
    # One operating point (2 FP per frame, rate 1); the line from (0, 0) reaches 0.5 at x = 1: area 0.25.
    assert result.rbdc == pytest.approx(0.25)


def test_a_detection_overlapping_below_the_iou_floor_is_a_false_positive_and_detects_nothing() -> None:
    # Overlap 1 x 10 with a 10 x 10 ground truth: IoU 10 / 190 < 0.1.
    result = rbdc_tbdc([Region(0, 19, 10, 29, 20, 0.9)], [_track(range(1))], num_frames=1)
    assert (result.rbdc, result.tbdc) == (0.0, 0.0)
    np.testing.assert_allclose(result.curve.fp_per_frame, [0.0, 1.0])


def test_false_positives_are_counted_per_frame_over_every_video() -> None:
    tracks = {"a": [_track(range(2))]}
    detections = {
        "a": [Region(f, 10, 10, 20, 20, 0.5) for f in range(2)],
        "b": [Region(f, 10, 10, 20, 20, 0.9) for f in range(4)],  # video b has no anomalies
    }
    result = rbdc_tbdc_by_video(detections, tracks, {"a": 2, "b": 6})
    # Threshold 0.9: 4 FP over 8 frames = 0.5, nothing detected; 0.5: all detected: area 0.5.
    assert result.rbdc == pytest.approx(0.5)
    assert result.frames == 8


def test_no_detections_score_zero() -> None:
    result = rbdc_tbdc([], [_track(range(5))], num_frames=5)
    assert (result.rbdc, result.tbdc, result.detections) == (0.0, 0.0, 0)


def test_tracks_from_masks_link_a_moving_blob_and_start_new_tracks_for_new_objects() -> None:
    masks = []
    for f in range(6):
        m = np.zeros((60, 80), dtype=bool)
        m[10:20, 5 + 3 * f : 15 + 3 * f] = True  # moves 3 px per frame: overlaps the previous frame
        if 2 <= f <= 3 or f == 5:
            m[40:50, 60:70] = True  # appears, vanishes for frame 4, returns as a new track
        masks.append(m)
    tracks = gt_tracks_from_masks(masks)
    assert [len(t.regions) for t in tracks] == [6, 2, 1]
    first = tracks[0].regions
    assert [r.frame for r in first] == list(range(6))
    assert (first[0].x0, first[0].y0, first[0].x1, first[0].y1) == (5, 10, 15, 20)
    assert (first[5].x0, first[5].x1) == (20, 30)
    assert [r.frame for r in tracks[2].regions] == [5]


def test_tracks_from_masks_keep_one_region_per_frame_when_a_blob_splits() -> None:
    big = np.zeros((20, 40), dtype=bool)
    big[5:15, 5:35] = True
    split = np.zeros_like(big)
    split[5:15, 5:25] = True  # the larger part keeps the track
    split[5:15, 28:35] = True  # the smaller part starts a new one
    tracks = gt_tracks_from_masks([big, split])
    assert [[r.frame for r in t.regions] for t in tracks] == [[0, 1], [1]]
    assert tracks[0].regions[1].x1 == 25


def test_regions_from_map_box_connected_cells_in_frame_pixels_scored_by_their_maximum() -> None:
    score_map = np.zeros((4, 4))
    score_map[0, 1], score_map[0, 2] = 0.6, 0.7
    score_map[2, 0] = 0.9
    score_map[3, 3] = 0.4  # below the level
    regions = regions_from_map(score_map, (240, 360), threshold=0.5, frame=7)
    boxes = sorted((r.x0, r.y0, r.x1, r.y1, r.score, r.frame) for r in regions)
    assert boxes == [(0.0, 120.0, 90.0, 180.0, 0.9, 7), (90.0, 0.0, 270.0, 60.0, 0.7, 7)]


def test_regions_from_rows_read_teacher_boxes() -> None:
    rows = np.array([[3, 1, 2, 30, 40, 0.5]], dtype=np.float32)
    assert regions_from_rows(rows) == [Region(3, 1.0, 2.0, 30.0, 40.0, 0.5)]


def test_track_files_are_read_with_header_commas_or_spaces(tmp_path: Path) -> None:
    path = tmp_path / "Test001.txt"
    path.write_text("track_id,frame_id,x_min,y_min,x_max,y_max\n1,5,0,0,10,10\n0,2,1,1,5,5\n1,4,0,0,9,9\n")
    tracks = read_tracks(path)
    assert [t.id for t in tracks] == [0, 1]
    assert [r.frame for r in tracks[1].regions] == [4, 5]
    spaced = tmp_path / "spaced.txt"
    spaced.write_text("0 2 1 1 5 5\n")
    assert read_tracks(spaced)[0].regions[0] == Region(2, 1.0, 1.0, 5.0, 5.0, 1.0)


def test_region_files_round_trip_and_bad_rows_name_the_line(tmp_path: Path) -> None:
    regions = [Region(0, 1.5, 2, 30, 40, 0.25), Region(9, 0, 0, 5, 5, 1.0)]
    path = tmp_path / "Test002.csv"
    write_regions_csv(path, regions)
    assert read_regions(path) == regions
    path.write_text("frame,x_min,y_min,x_max,y_max,score\n0,1,2,3,4,0.5\n1,1,2,three,4,0.5\n")
    with pytest.raises(DatasetError, match="line 3"):
        read_regions(path)
