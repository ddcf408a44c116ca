"""Count correction: a score among many objects counts for less; crowded normal frames stop ranking high."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import spearmanr

from aedcli.teachers.calibration import CountCorrection


def _normal_scores(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).gamma(2.0, 1.0, n)


def _frames(counts: np.ndarray) -> np.ndarray:
    return np.repeat(np.arange(len(counts)), counts)


def test_the_same_score_counts_for_less_in_a_crowded_frame() -> None:
    corr = CountCorrection.from_training(_normal_scores(20000))
    # frame 0 holds one object, frame 1 holds ten; the first object of each scores 6.0
    raw = np.array([6.0, 6.0, *[1.0] * 9])
    out = corr.apply(raw, _frames(np.array([1, 10])))
    assert out[0] > out[1] + 1.5  # ln(10) ~ 2.3 apart for a rare score
    # within a frame the order of the objects is kept
    assert np.all(out[1] > out[2:])


def test_corrected_scores_rise_with_the_raw_score_beyond_anything_seen_in_training() -> None:
    train = _normal_scores(5000)
    corr = CountCorrection.from_training(train)
    raw = np.linspace(0.0, train.max() * 3, 200)
    out = corr.apply(raw, np.arange(200))  # one object per frame
    assert np.all(np.diff(out) >= 0)
    beyond = raw > train.max()
    assert np.all(np.diff(out[beyond]) > 0)  # no ceiling above the training maximum
    assert np.all(np.isfinite(out))


def test_frame_maxima_of_normal_frames_no_longer_grow_with_the_object_count() -> None:
    rng = np.random.default_rng(1)
    corr = CountCorrection.from_training(_normal_scores(50000, seed=2))
    counts = rng.integers(1, 16, 3000)
    frames = _frames(counts)
    raw = _normal_scores(len(frames), seed=3)
    corrected = corr.apply(raw, frames)

    def frame_max(scores: np.ndarray) -> np.ndarray:
        out = np.full(len(counts), -np.inf)
        np.maximum.at(out, frames, scores)
        return out

    assert spearmanr(counts, frame_max(raw)).correlation > 0.4
    assert abs(spearmanr(counts, frame_max(corrected)).correlation) < 0.1


def test_the_correction_round_trips_through_json() -> None:
    corr = CountCorrection.from_training(_normal_scores(3000))
    again = CountCorrection.from_dict(json.loads(json.dumps(corr.to_dict())))
    raw, frames = _normal_scores(100, seed=5), np.arange(100) // 7
    np.testing.assert_array_equal(corr.apply(raw, frames), again.apply(raw, frames))


@pytest.mark.parametrize("train", [np.zeros(0), np.full(50, 2.0)])
def test_degenerate_training_scores_still_give_finite_ordered_scores(train: np.ndarray) -> None:
    corr = CountCorrection.from_training(train)
    out = corr.apply(np.array([0.0, 2.0, 5.0]), np.arange(3))
    assert np.all(np.isfinite(out)) and out[2] >= out[1] >= out[0]
    assert len(corr.apply(np.zeros(0), np.zeros(0, int))) == 0
