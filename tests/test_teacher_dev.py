"""scripts/teacher_dev.py: every option it compares is spelled out, so a changed default cannot blur it."""

from __future__ import annotations

import dataclasses

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
