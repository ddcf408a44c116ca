"""The shipping rules of scripts/pick_student.py choose from validation figures alone."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pick_student", ROOT / "scripts" / "pick_student.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["pick_student"] = module
    spec.loader.exec_module(module)
    return module


def _c(name: str, auc: float | None, ratio: float) -> dict[str, object]:
    return {"path": Path(name), "val_auc": auc, "ratio": ratio}


def test_val_auc_rule_takes_the_highest_auc_and_breaks_ties_at_three_decimals_by_the_loss_ratio() -> None:
    pick = _script().pick
    runs = [_c("a", 0.9101, 0.05), _c("b", 0.9504, 0.30), _c("c", 0.9496, 0.10)]
    assert pick(runs, "val-auc")["path"] == Path("c")  # 0.950 = 0.950, and c has the lower ratio
    assert pick(runs[:2], "val-auc")["path"] == Path("b")
    assert pick(runs, "val-kd")["path"] == Path("a")


def test_val_auc_rule_refuses_a_run_without_the_probe() -> None:
    with pytest.raises(SystemExit, match="records no pseudo-anomaly AUC"):
        _script().pick([_c("a", None, 0.1), _c("b", 0.9, 0.2)], "val-auc")
