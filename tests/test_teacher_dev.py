"""scripts/teacher_dev.py: every option it compares is spelled out, so a changed default cannot blur it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from _scripts import load_script

from aedcli.teachers.appearance_motion import COMPONENTS
from aedcli.teachers.velocity import VelocityConfig

dev = load_script("teacher_dev")


def test_each_velocity_option_sets_every_switch_it_is_compared_on() -> None:
    for name, options in dev.VELOCITY_OPTIONS.items():
        assert {"flag_slow", "context_neighbours"} <= set(options), name
        config = dataclasses.replace(VelocityConfig(), **options)
        assert (config.context_neighbours > 0) == ("context" in name and "no context" not in name), name
        assert config.flag_slow == (not name.startswith("floor")), name


def test_teacher_a_weight_options_name_every_component() -> None:
    for name, weights in dev.WEIGHT_OPTIONS.items():
        assert set(weights) == set(COMPONENTS), name


def test_the_option_under_test_wins_ties_in_the_frame_calibration_groups() -> None:
    assert dev.CALIBRATION_OPTIONS[0] == "count-corrected"
    results = dict.fromkeys(dev.CALIBRATION_OPTIONS, 0.9)
    results["max of raw scores"] = 0.9 + dev.TIE / 2
    assert dev.choose(results) == "count-corrected"
    results["max of raw scores"] = 0.9 + 2 * dev.TIE
    assert dev.choose(results) == "max of raw scores"


def test_the_mean_combination_group_tries_every_pair_with_todays_defaults_first() -> None:
    from aedcli.teachers.appearance_motion import COMBINES as A_COMBINES
    from aedcli.teachers.appearance_motion import AppearanceMotionConfig
    from aedcli.teachers.multitask import COMBINES as B_COMBINES
    from aedcli.teachers.multitask import MultiTaskConfig

    pairs = dev.MEAN_COMBINE_PAIRS
    assert pairs[0] == (AppearanceMotionConfig().combine, MultiTaskConfig().combine)
    assert sorted(pairs) == sorted((a, b) for a in A_COMBINES for b in B_COMBINES)
    results = {f"a {a}, b {b}": 0.9 for a, b in pairs}
    results["a linear, b z-sum"] = 0.9 + dev.TIE / 2  # within the margin: today's defaults stay
    assert dev.choose(results) == "a tail-max, b tail-max"


def _table(scaling: dict[str, float], pairs: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    return {"teachers' mean, scaling": scaling, **{dev.pairs_group(k): v for k, v in pairs.items()}}


def test_decisions_over_two_development_sets_use_the_mean_auc(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:

    def pairs(today: float, other: float) -> dict[str, float]:
        return {"a tail-max, b tail-max": today, "a linear, b z-sum": other}

    synthetic = _table(
        {"train": 0.94, "train-rarity": 0.93},
        {"train": pairs(0.94, 0.90), "train-rarity": pairs(0.93, 0.80)},
    )
    pasted = _table(
        {"train": 0.80, "train-rarity": 0.90},
        {"train": pairs(0.80, 0.82), "train-rarity": pairs(0.90, 0.99)},
    )
    reports = []
    for name, table in (("synthetic", synthetic), ("pasted", pasted)):
        reports.append(tmp_path / f"{name}.json")
        reports[-1].write_text(json.dumps({"micro_auc": table}))
    out = tmp_path / "decision.json"
    assert dev.main(["--decide", *map(str, reports), "--json", str(out)]) == 0
    decision = json.loads(out.read_text())
    # Alone each set would keep its own favourite; the mean (0.87 vs 0.915) moves to rarity scaling, and the
    # pairs are then chosen among those measured with rarity scaling (0.915 vs 0.895), not linear scaling.
    assert decision["micro_auc"]["teachers' mean, scaling"] == pytest.approx(
        {"train": 0.87, "train-rarity": 0.915}
    )
    assert decision["chosen"]["teachers' mean, scaling"] == "train-rarity"
    assert decision["chosen"][dev.pairs_group("train-rarity")] == "a tail-max, b tail-max"
    assert dev.pairs_group("train") not in decision["chosen"]
    assert "not used: the scaling chosen is train-rarity" in capsys.readouterr().out


def test_groups_missing_from_one_report_are_left_out_of_the_mean() -> None:
    full = _table({"train": 0.9, "train-rarity": 0.8}, {"train": {"a tail-max, b tail-max": 0.9}})
    older = {"teachers' mean, scaling": {"train": 0.7, "train-rarity": 0.6}}
    mean = dev.mean_table([full, older])
    assert mean == {"teachers' mean, scaling": pytest.approx({"train": 0.8, "train-rarity": 0.7})}


def test_on_a_pasted_set_only_weight_options_keeping_appearance_can_be_chosen(capsys) -> None:
    report = json.loads(
        (
            Path(__file__).resolve().parent.parent / "docs/results/reports/teacher_dev-round15-ped2-one.json"
        ).read_text()
    )
    table = report["micro_auc"]
    assert dev.report(table, "any")["teacher a weights"] == "speed only"  # the best, when nothing is barred
    chosen = dev.report(table, "pasted", dev.APPEARANCE_CANDIDATES)
    assert chosen["teacher a weights"] == "all five, equal"  # within 0.005 of the best that keeps appearance
    assert "speed only  (not a candidate)" in capsys.readouterr().out
    assert set(dev.APPEARANCE_CANDIDATES["teacher a weights"]) == {
        "all five, equal",
        "without motion error",
        "appearance only",
    }


def test_a_folder_made_by_aed_devset_is_a_pasted_development_set(tmp_path: Path) -> None:
    from aedcli.data.pasted import PastedConfig, build_pasted
    from aedcli.data.synthetic import SyntheticConfig, load_synthetic

    source = load_synthetic(
        SyntheticConfig(seed=3, height=64, width=96, train_videos=4, test_videos=0, frames=48),
        cache_dir=tmp_path / "synthetic",
    )
    made = build_pasted(
        source, PastedConfig(held_out=2, events=2, speeds=(3,), glides=(4.0,), threshold=20.0), tmp_path
    )
    dataset, config, about = dev.load_dev_set("folder", made)
    assert len(dataset.train) == 2 and len(dataset.test) == 2 and str(made) in about
    assert config["pasted"] and config["source"] == "folder" and config["held_out"] == 2
    assert any(clip.labels.any() for clip in dataset.test)
