"""scripts/ensemble_eval.py averages the members' raw frame scores video by video."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ensemble_eval", ROOT / "scripts" / "ensemble_eval.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["ensemble_eval"] = module
    spec.loader.exec_module(module)
    return module


def test_ensemble_score_is_the_per_frame_mean_of_the_members() -> None:
    a = {"v1": np.array([0.0, 1.0, 2.0]), "v2": np.array([4.0])}
    b = {"v1": np.array([2.0, 3.0, 6.0]), "v2": np.array([0.0])}
    out = _script().mean_scores([a, b])
    np.testing.assert_array_equal(out["v1"], [1.0, 2.0, 4.0])
    np.testing.assert_array_equal(out["v2"], [2.0])


def test_ensemble_refuses_members_that_scored_different_frames() -> None:
    with pytest.raises(SystemExit, match="different frame counts of v1"):
        _script().mean_scores([{"v1": np.zeros(3)}, {"v1": np.zeros(4)}])
