"""The shipping rules of scripts/pick_student.py choose from validation figures alone."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest
from _scripts import load_script


def _script() -> ModuleType:
    return load_script("pick_student")


def _c(name: str, auc: float | None, ratio: float, box: float | None = None) -> dict[str, object]:
    return {"path": Path(name), "val_auc": auc, "val_auc_box": box, "ratio": ratio}


def test_val_auc_rule_takes_the_highest_auc_and_breaks_ties_at_three_decimals_by_the_loss_ratio() -> None:
    pick = _script().pick
    runs = [_c("a", 0.9101, 0.05), _c("b", 0.9504, 0.30), _c("c", 0.9496, 0.10)]
    assert pick(runs, "val-auc")["path"] == Path("c")  # 0.950 = 0.950, and c has the lower ratio
    assert pick(runs[:2], "val-auc")["path"] == Path("b")
    assert pick(runs, "val-kd")["path"] == Path("a")


def test_val_auc_rule_refuses_a_run_without_the_probe() -> None:
    with pytest.raises(SystemExit, match="records no val_auc; it was trained without --speedups"):
        _script().pick([_c("a", None, 0.1), _c("b", 0.9, 0.2)], "val-auc")


def test_val_auc_box_rule_takes_the_highest_box_auc_then_the_cell_auc_then_the_loss_ratio() -> None:
    pick = _script().pick
    runs = [
        _c("a", 0.999, 0.05, box=0.8701),
        _c("b", 0.990, 0.30, box=0.9104),
        _c("c", 0.995, 0.40, box=0.9096),
        _c("d", 0.995, 0.20, box=0.9098),
    ]
    assert pick(runs, "val-auc-box")["path"] == Path("d")  # b, c, d tie at 0.910; c, d at 0.995; d's ratio
    assert pick(runs[:2], "val-auc-box")["path"] == Path("b")  # a's cell AUC does not outweigh b's box AUC
    assert pick(runs, "val-auc")["path"] == Path("a")


def test_val_auc_box_rule_refuses_a_run_trained_before_the_box_probe() -> None:
    with pytest.raises(SystemExit, match="records no val_auc_box; it was trained without"):
        _script().pick([_c("a", 0.99, 0.1), _c("b", 0.9, 0.2, box=0.8)], "val-auc-box")


def _kd(name: str, val_kd: float, constant: float = 0.1) -> dict[str, object]:
    return {
        "path": Path(name),
        "val_auc": None,
        "val_auc_box": None,
        "val_kd": val_kd,
        "ratio": val_kd / constant,
    }


def test_soup_rule_ships_the_soup_when_its_loss_is_below_the_members_mean() -> None:
    pick = _script().pick
    members = [_kd("m1", 0.010), _kd("m2", 0.012), _kd("m3", 0.020)]  # mean 0.014
    assert pick([_kd("soup", 0.013), *members], "soup")["path"] == Path("soup")


def test_soup_rule_falls_back_to_the_member_with_the_lowest_ratio_when_averaging_hurt() -> None:
    pick = _script().pick
    members = [_kd("m1", 0.012), _kd("m2", 0.010), _kd("m3", 0.020)]  # mean 0.014
    assert pick([_kd("soup", 0.014), *members], "soup")["path"] == Path("m2")
    assert pick([_kd("soup", 0.090), *members], "soup")["path"] == Path("m2")


def test_soup_rule_refuses_fewer_than_two_members() -> None:
    with pytest.raises(SystemExit, match="needs the soup and at least two of its members"):
        _script().pick([_kd("soup", 0.01), _kd("m1", 0.02)], "soup")
