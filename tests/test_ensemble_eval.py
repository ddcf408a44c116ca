"""scripts/ensemble_eval.py averages the members' raw frame scores video by video."""

from __future__ import annotations

from types import ModuleType

import numpy as np
import pytest
from _scripts import load_script


def _script() -> ModuleType:
    return load_script("ensemble_eval")


def test_ensemble_score_is_the_per_frame_mean_of_the_members() -> None:
    a = {"v1": np.array([0.0, 1.0, 2.0]), "v2": np.array([4.0])}
    b = {"v1": np.array([2.0, 3.0, 6.0]), "v2": np.array([0.0])}
    out = _script().mean_scores([a, b])
    np.testing.assert_array_equal(out["v1"], [1.0, 2.0, 4.0])
    np.testing.assert_array_equal(out["v2"], [2.0])


def test_ensemble_refuses_members_that_scored_different_frames() -> None:
    with pytest.raises(SystemExit, match="different frame counts of v1"):
        _script().mean_scores([{"v1": np.zeros(3)}, {"v1": np.zeros(4)}])
