"""Frame scores, temporal smoothing (offline and streaming) and thresholds from normal video."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter1d

from aedcli.scoring import (
    CentredSmoother,
    Event,
    EventTracker,
    LiveSmoother,
    StreamingSmoother,
    Threshold,
    frame_scores,
    gaussian_kernel,
    kernel_radius,
    per_video_minmax,
    smooth_scores,
    teacher_scores,
    threshold_from_normal,
)


def _stream(smoother: StreamingSmoother, scores: np.ndarray) -> list[tuple[int, float]]:
    out = []
    for value in scores:
        out.extend(smoother.push(float(value)))
    out.extend(smoother.flush())
    return out


def test_frame_score_of_one_teacher_is_the_papers_mean_of_s_and_the_maxima_of_m_and_l() -> None:
    s = np.array([[0.3], [0.0]])  # (N, K) with K = 1
    m = np.zeros((2, 1, 4, 4))
    m[0, 0, 1, 2] = 0.6
    m[1] = 0.2
    l = np.zeros((2, 1, 16, 16))  # noqa: E741 - the paper's name
    l[0, 0, 15, 0] = 0.9
    expected = np.array([(0.3 + 0.6 + 0.9) / 3, (0.0 + 0.2 + 0.0) / 3])
    np.testing.assert_allclose(frame_scores(s, m, l), expected)
    np.testing.assert_allclose(teacher_scores(s, m, l), expected[:, None])


def test_frame_scores_take_the_largest_teacher_score() -> None:
    rng = np.random.default_rng(3)
    s, m, l = rng.random((5, 3)), rng.random((5, 3, 4, 4)), rng.random((5, 3, 16, 16))  # noqa: E741
    per_teacher = teacher_scores(s, m, l)
    assert per_teacher.shape == (5, 3)
    for k in range(3):
        alone = frame_scores(s[:, k : k + 1], m[:, k : k + 1], l[:, k : k + 1])
        np.testing.assert_allclose(per_teacher[:, k], alone)
        np.testing.assert_allclose(alone, (s[:, k] + m[:, k].max(axis=(1, 2)) + l[:, k].max(axis=(1, 2))) / 3)
    np.testing.assert_allclose(frame_scores(s, m, l), per_teacher.max(axis=1))
    # One teacher that finds a frame unusual decides it, however calm the others are.
    calm = np.zeros((1, 2)), np.zeros((1, 2, 4, 4)), np.zeros((1, 2, 16, 16))
    calm[2][0, 1, 3, 3] = 0.9
    np.testing.assert_allclose(frame_scores(*calm), [0.3])


def test_frame_scores_accept_torch_tensors_and_return_numpy() -> None:
    s = torch.tensor([[0.5]], requires_grad=True)
    m = torch.full((1, 1, 4, 4), 0.25)
    l = torch.full((1, 1, 16, 16), 0.75)  # noqa: E741
    out = frame_scores(s, m, l)
    assert isinstance(out, np.ndarray)
    np.testing.assert_allclose(out, [0.5])


def test_frame_scores_of_no_frames_are_empty() -> None:
    assert frame_scores(np.zeros((0, 2)), np.zeros((0, 2, 4, 4)), np.zeros((0, 2, 16, 16))).shape == (0,)


@pytest.mark.parametrize(
    "shapes",
    [
        ((3, 1), (2, 1, 4, 4), (3, 1, 16, 16)),  # frame counts differ
        ((3, 2), (3, 1, 4, 4), (3, 2, 16, 16)),  # teacher counts differ
        ((3,), (3, 4, 4), (3, 16, 16)),  # no teacher axis
    ],
)
def test_frame_scores_reject_maps_whose_frames_or_teachers_disagree(
    shapes: tuple[tuple[int, ...], ...],
) -> None:
    with pytest.raises(ValueError, match=r"frame scores need s \(N, K\)"):
        frame_scores(*(np.zeros(shape) for shape in shapes))


def test_sigma_zero_leaves_scores_unchanged() -> None:
    x = np.random.default_rng(0).random(20)
    np.testing.assert_array_equal(smooth_scores(x, 0), x)


def test_smoothing_keeps_length_and_a_constant_video_constant_up_to_its_ends() -> None:
    # Zero padding would pull the ends of a constant sequence down; repeating the edge does not.
    out = smooth_scores(np.full(30, 0.7), sigma=5.0)
    assert out.shape == (30,)
    np.testing.assert_allclose(out, 0.7)


def test_smoothing_repeats_the_first_and_last_score_past_the_ends() -> None:
    x = np.random.default_rng(1).random(25)
    sigma = 2.0
    w = gaussian_kernel(sigma)
    r = kernel_radius(sigma)
    expected_first = sum(w[k + r] * x[max(k, 0)] for k in range(-r, r + 1))
    expected_last = sum(w[k + r] * x[min(24 + k, 24)] for k in range(-r, r + 1))
    out = smooth_scores(x, sigma)
    assert out[0] == pytest.approx(expected_first, abs=1e-12)
    assert out[-1] == pytest.approx(expected_last, abs=1e-12)


def test_smoothing_matches_an_independent_gaussian_filter() -> None:
    x = np.random.default_rng(2).random(200)
    for sigma in (1.0, 3.0, 7.0):
        reference = gaussian_filter1d(x, sigma, mode="nearest", truncate=3.0)
        np.testing.assert_allclose(smooth_scores(x, sigma), reference, atol=1e-12)


def test_kernel_radius_is_three_sigma_rounded_up() -> None:
    assert kernel_radius(0) == 0
    assert kernel_radius(3.0) == 9
    assert kernel_radius(2.5) == 8
    assert gaussian_kernel(3.0).sum() == pytest.approx(1.0)


@pytest.mark.parametrize("sigma", [0.0, 0.7, 3.0, 7.0])
@pytest.mark.parametrize("length", [1, 4, 30, 150])
def test_streaming_smoother_equals_the_offline_filter_on_every_frame(sigma: float, length: int) -> None:
    x = np.random.default_rng(length).random(length)
    out = _stream(StreamingSmoother(sigma), x)
    assert [i for i, _ in out] == list(range(length))
    np.testing.assert_allclose([v for _, v in out], smooth_scores(x, sigma), atol=1e-6)


def test_streaming_smoother_emits_frame_t_when_frame_t_plus_lag_arrives() -> None:
    smoother = StreamingSmoother(sigma=1.0)  # radius 3 -> lag 3
    assert smoother.latency_frames == 3
    emitted = [smoother.push(v) for v in np.arange(6.0)]
    assert emitted[:3] == [[], [], []]
    assert [pairs[0][0] for pairs in emitted[3:]] == [0, 1, 2]
    assert [i for i, _ in smoother.flush()] == [3, 4, 5]


def test_streaming_latency_in_seconds_follows_the_frame_rate() -> None:
    smoother = StreamingSmoother(sigma=3.0)
    assert smoother.latency_frames == 9
    assert smoother.latency_seconds(fps=10.0) == pytest.approx(0.9)
    assert StreamingSmoother(sigma=3.0, lag=2).latency_seconds(fps=25.0) == pytest.approx(0.08)


def test_a_shorter_lag_answers_sooner_and_approximates_the_centred_filter() -> None:
    x = np.sin(np.linspace(0, 6, 120))
    offline = smooth_scores(x, 3.0)
    out = _stream(StreamingSmoother(3.0, lag=5), x)
    approx = np.array([v for _, v in out])
    assert approx.shape == offline.shape
    assert np.max(np.abs(approx - offline)[10:-10]) < 0.02  # close on a smooth signal, not exact
    with pytest.raises(ValueError, match="lag"):
        StreamingSmoother(3.0, lag=10)


def test_streaming_smoother_starts_afresh_after_flush() -> None:
    smoother = StreamingSmoother(sigma=2.0)
    _stream(smoother, np.ones(10))
    second = np.random.default_rng(3).random(40)
    out = _stream(smoother, second)
    np.testing.assert_allclose([v for _, v in out], smooth_scores(second, 2.0), atol=1e-9)


def _in_batches(smoother: CentredSmoother | LiveSmoother, scores: np.ndarray, size: int) -> list:
    out = []
    for i in range(0, len(scores), size):
        out.extend(smoother.push_many(scores[i : i + size]))
    return out + smoother.flush()


@pytest.mark.parametrize("sigma", [0.0, 1.0, 3.0])
@pytest.mark.parametrize("length", [1, 5, 40])
@pytest.mark.parametrize("batch", [1, 3, 16])
def test_centred_smoother_is_bit_identical_to_smoothing_the_whole_clip(
    sigma: float, length: int, batch: int
) -> None:
    x = np.random.default_rng(length + batch).random(length)
    out = _in_batches(CentredSmoother(sigma), x, batch)
    assert [i for i, _ in out] == list(range(length))
    np.testing.assert_array_equal([v for _, v in out], smooth_scores(x, sigma))


def test_centred_smoother_trails_by_the_kernel_radius_and_starts_afresh_after_flush() -> None:
    smoother = CentredSmoother(sigma=1.0)  # radius 3
    assert smoother.latency_frames == 3
    assert [i for i, _ in smoother.push_many(np.arange(5.0))] == [0, 1]
    assert [i for i, _ in smoother.flush()] == [2, 3, 4]
    second = np.random.default_rng(5).random(12)
    np.testing.assert_array_equal(
        [v for _, v in _in_batches(smoother, second, 4)], smooth_scores(second, 1.0)
    )


@pytest.mark.parametrize("lag", [None, 2])
def test_live_smoother_gives_the_streaming_smoother_in_batches(lag: int | None) -> None:
    x = np.random.default_rng(6).random(30)
    live = LiveSmoother(2.0, lag)
    assert live.latency_frames == (6 if lag is None else lag)
    assert _in_batches(live, x, 4) == _stream(StreamingSmoother(2.0, lag), x)


def test_event_tracker_turns_runs_of_abnormal_frames_into_events_with_their_peak() -> None:
    tracker = EventTracker(fps=10.0)
    smoothed = [0.1, 0.6, 0.9, 0.7, 0.2, 0.8, 0.85]
    for frame, value in enumerate(smoothed):
        tracker.update(frame, value, value > 0.5)
    events = tracker.finish()  # the run still open at the end is closed
    assert events == [
        Event(start_frame=1, end_frame=3, start_s=0.1, end_s=0.3, peak_score=0.9, peak_frame=2),
        Event(start_frame=5, end_frame=6, start_s=0.5, end_s=0.6, peak_score=0.85, peak_frame=6),
    ]
    assert tracker.abnormal_frames == 5
    assert events[0].to_json()["frames"] == 3


def test_threshold_is_the_percentile_of_smoothed_normal_training_scores() -> None:
    rng = np.random.default_rng(4)
    train = {"Train001": rng.random(100), "Train002": rng.random(50)}
    thr = threshold_from_normal(train, sigma=2.0, percentile=99.0)
    smoothed = np.concatenate([smooth_scores(v, 2.0) for v in train.values()])
    assert thr.value == pytest.approx(np.percentile(smoothed, 99.0))
    assert (thr.sigma, thr.percentile) == (2.0, 99.0)
    assert (
        thr.source
        == "99th percentile of smoothed scores (sigma=2 frames) on 2 normal training videos (150 frames)"
    )


def test_threshold_is_computed_from_scores_alone_without_labels_or_test_videos() -> None:
    params = set(inspect.signature(threshold_from_normal).parameters)
    assert params == {"scores_by_video", "sigma", "percentile"}
    with pytest.raises(ValueError, match="at least one normal training frame"):
        threshold_from_normal({}, sigma=1.0)


def test_threshold_survives_a_round_trip_through_a_dict() -> None:
    thr = Threshold(value=0.42, sigma=3.0, percentile=99.5, source="99.5th percentile of ...")
    assert Threshold.from_dict(thr.to_dict()) == thr


def test_per_video_minmax_maps_each_video_to_the_unit_range() -> None:
    np.testing.assert_allclose(per_video_minmax(np.array([2.0, 4.0, 3.0])), [0.0, 1.0, 0.5])
    np.testing.assert_array_equal(per_video_minmax(np.full(4, 5.0)), np.zeros(4))
    assert math.isclose(per_video_minmax(np.array([-1.0, 1.0]))[1], 1.0)
