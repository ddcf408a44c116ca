"""scripts/teacher_dev.py: every option it compares is spelled out, so a changed default cannot blur it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from _scripts import load_script

from aedcli.teachers.appearance_motion import COMPONENTS
from aedcli.teachers.multitask import VIEWS
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


def test_with_three_scalings_only_the_chosen_scalings_pairs_count(capsys) -> None:
    def pairs(today: float, other: float) -> dict[str, float]:
        return {"a tail-max, b tail-max": today, "a linear, b z-sum": other}

    table = _table(
        {"train": 0.90, "train-rarity": 0.903, "train-size": 0.95},
        {"train": pairs(0.90, 0.99), "train-rarity": pairs(0.903, 0.99), "train-size": pairs(0.95, 0.93)},
    )
    chosen = dev.report(table, "three scalings")
    assert chosen["teachers' mean, scaling"] == "train-size"
    assert chosen[dev.pairs_group("train-size")] == "a tail-max, b tail-max"
    assert dev.pairs_group("train") not in chosen and dev.pairs_group("train-rarity") not in chosen
    # within the margin the earlier scaling wins
    table["teachers' mean, scaling"]["train-size"] = 0.904
    assert dev.report(table, "close")["teachers' mean, scaling"] == "train"


def test_teacher_b_seeds_are_decided_on_scores_scaled_as_chosen_and_fewer_networks_win_ties(capsys) -> None:
    def seeds(one: float, three: float, five: float) -> dict[str, float]:
        return {"seed 0": one, "one seed": one, "three seeds": three, "five seeds": five}

    table = {
        "teachers' mean, scaling": {"train": 0.90, "train-size": 0.95},
        "teacher b seeds": seeds(0.80, 0.80, 0.99),  # raw scores: reported, not used
        dev.seeds_group("train"): seeds(0.80, 0.90, 0.99),  # not the scaling chosen
        dev.seeds_group("train-size"): seeds(0.80, 0.85, 0.854),
    }
    assert dev.report(table, "five seeds within the margin")["teacher b seeds"] == "three seeds"
    assert "not used: 'teacher b seeds (train-size scaling)' decides" in capsys.readouterr().out
    table[dev.seeds_group("train-size")]["five seeds"] = 0.856
    assert dev.report(table, "five seeds beyond it")["teacher b seeds"] == "five seeds"
    # a report from before the scaled groups and five seeds decides on its raw group, by its old names
    old = {
        "teachers' mean, scaling": {"train": 0.90},
        "teacher b seeds": {"mean of the single-seed AUCs": 0.8, "three seeds (mean of their scores)": 0.81},
    }
    assert dev.report(old, "old")["teacher b seeds"] == "three seeds"


def test_teacher_b_views_are_decided_under_the_scaling_given_when_no_mean_is_measured(capsys) -> None:
    def views(centre: float, reversed_: float, mirrored: float) -> dict[str, float]:
        return dict(zip(dev.B_VIEWS_OPTIONS, (centre, reversed_, mirrored), strict=True))

    table = {
        "teacher b views": views(0.80, 0.99, 0.99),  # raw scores: reported, not used
        dev.scaled_group("teacher b views", "train"): views(0.80, 0.90, 0.99),
        dev.scaled_group("teacher b views", "train-size"): views(0.90, 0.904, 0.903),
    }
    with pytest.raises(ValueError, match="give the scaling"):
        dev.report(table, "no scaling")
    assert dev.report(table, "views", scaling="train-size") == {"teacher b views": "centre clip"}
    assert "within 0.005 fewer views" in capsys.readouterr().out
    table[dev.scaled_group("teacher b views", "train-size")]["also time-reversed and mirrored"] = 0.911
    chosen = dev.report(table, "views", scaling="train-size")
    assert chosen == {"teacher b views": "also time-reversed and mirrored"}
    assert dev.report(table, "views", scaling="train")["teacher b views"] == "also time-reversed and mirrored"
    # with a teachers' mean in the table, the scaling it chooses decides
    table["teachers' mean, scaling"] = {"train": 0.9, "train-size": 0.8}
    assert (
        dev.report(table, "mean", scaling="train-size")["teacher b views"]
        == "also time-reversed and mirrored"
    )
    table[dev.scaled_group("teacher b views", "train")]["also time-reversed and mirrored"] = 0.90
    assert dev.report(table, "mean", scaling="train-size")["teacher b views"] == "also time-reversed"
    assert set(dev.B_VIEWS_OPTIONS.values()) == set(VIEWS)


def test_only_b_views_needs_a_scaling(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        dev.main(["--dev-set", "ped2-one", "--only", "b-views"])
    assert "give --scaling too" in capsys.readouterr().err


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


def _tubes(count: int, seed: int) -> list:
    from aedcli.teachers.base import ObjectBatch

    rng = np.random.default_rng(seed)
    return [
        ObjectBatch(
            tubes=rng.integers(0, 255, (count, 7, 16, 16), dtype=np.uint8),
            boxes=np.tile(np.float32([10, 10, 26, 26]), (count, 1)),
            frame_size=(64, 96),
            frames=np.arange(count, dtype=np.int64),
        )
    ]


def test_teacher_b_networks_are_trained_once_per_working_folder_and_again_for_other_objects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aedcli.teachers.multitask import MultiTaskConfig, MultiTaskTeacher

    small = {"size": 16, "channels": [4, 8, 8], "epochs": 1, "batch_size": 32}
    monkeypatch.setattr(dev, "MultiTaskConfig", lambda **kw: MultiTaskConfig(**small, **kw))
    fits = []
    real_fit = MultiTaskTeacher.fit
    monkeypatch.setattr(
        MultiTaskTeacher, "fit", lambda self, *a, **kw: fits.append(1) or real_fit(self, *a, **kw)
    )

    objects = _tubes(80, seed=0)
    first = dev.fitted_b(objects, 1, tmp_path)
    again = dev.fitted_b(objects, 1, tmp_path)  # a second draw: same training objects, same seed
    assert len(fits) == 1 and len(list(tmp_path.glob("teacher-b-seed1-*.pt"))) == 1
    np.testing.assert_array_equal(first.score(objects[0]), again.score(objects[0]))
    dev.fitted_b(objects, 2, tmp_path)  # another seed
    dev.fitted_b(_tubes(80, seed=1), 1, tmp_path)  # other training objects
    assert len(fits) == 3 and len(list(tmp_path.glob("teacher-b-*.pt"))) == 3

    # views change only how a network is asked: the same file serves them all, and each one's errors of
    # the same objects are measured once
    monkeypatch.setattr(dev, "MultiTaskConfig", lambda **kw: MultiTaskConfig(**small, **kw, views="reversed"))
    viewed = dev.fitted_b(objects, 1, tmp_path)
    assert len(fits) == 3
    viewed.config = dataclasses.replace(viewed.config, views="reversed")
    trained_on = dev.objects_key(objects)
    asked = []
    real_errors = MultiTaskTeacher.raw_errors
    monkeypatch.setattr(
        MultiTaskTeacher, "raw_errors", lambda self, b: asked.append(1) or real_errors(self, b)
    )
    first_errors = dev.b_errors(viewed, trained_on, objects[0])
    assert dev.b_errors(viewed, trained_on, objects[0]) is first_errors and len(asked) == 1
    viewed.config = dataclasses.replace(viewed.config, views="centre")
    dev.b_errors(viewed, trained_on, objects[0])
    assert len(asked) == 2


def _draw_table(weights: dict[str, float], velocity: dict[str, float]) -> dict[str, dict[str, float]]:
    scaling = {"train": 0.9, "train-rarity": 0.9}
    return {"teacher a weights": weights, "velocity teacher": velocity, "teachers' mean, scaling": scaling}


def test_several_draws_are_decided_on_their_mean_and_each_draw_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Draw 2 alone would take "three-frame pairs", draw 3 alone "perspective context"; their mean decides.
    draws = {
        2: _draw_table(
            {"all five, equal": 0.91, "speed only": 0.99, "without motion error": 0.92},
            {"three-frame pairs": 0.95, "perspective context": 0.93},
        ),
        3: _draw_table(
            {"all five, equal": 0.92, "speed only": 0.99, "without motion error": 0.915},
            {"three-frame pairs": 0.90, "perspective context": 0.94},
        ),
    }
    measured = []

    def fake_measure(dataset: object, work: Path, **_: object) -> dict[str, dict[str, float]]:
        measured.append(work)
        return draws[dataset.seed]  # type: ignore[attr-defined]

    monkeypatch.setattr(dev, "measure", fake_measure)
    monkeypatch.setattr(
        dev,
        "load_dev_set",
        lambda name, root, seed: (
            SimpleNamespace(seed=seed, test=[]),
            {"source": "ped2", "seed": seed},
            f"ped2 set (x, seed {seed})",
        ),
    )
    out = tmp_path / "three.json"
    argv = ["--dev-set", "ped2-one", "--seed", "2", "3", "--work", str(tmp_path), "--json", str(out)]
    assert dev.main(argv) == 0
    summary = json.loads(out.read_text())
    assert measured == [tmp_path, tmp_path]  # every draw shares the working folder (and its networks)
    assert summary["draws"] == {"2": draws[2], "3": draws[3]}
    assert summary["dev_set"]["seed"] == [2, 3]
    assert summary["micro_auc"]["velocity teacher"] == pytest.approx(
        {"three-frame pairs": 0.925, "perspective context": 0.935}
    )
    assert summary["chosen"]["velocity teacher"] == "perspective context"
    # the draws are pasted sets: speed alone (0.99) is not a candidate; all five (0.915) ties 0.9175
    assert summary["chosen"]["teacher a weights"] == "all five, equal"


def test_several_seeds_are_refused_for_a_set_with_one_draw(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        dev.main(["--dev-set", "synthetic", "--seed", "1", "2"])
    assert "has one draw" in capsys.readouterr().err


def test_deciding_over_pasted_reports_keeps_the_appearance_candidates(tmp_path: Path) -> None:
    table = _draw_table({"all five, equal": 0.90, "speed only": 0.99}, {"three-frame pairs": 0.9})
    paths = []
    for name, dev_set in (("one", {"source": "ped2"}), ("folder", {"source": "folder", "pasted": True})):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps({"dev_set": dev_set, "micro_auc": table}))
    synthetic = tmp_path / "synthetic.json"
    synthetic.write_text(json.dumps({"dev_set": {"seed": 7}, "micro_auc": table}))
    out = tmp_path / "decision.json"
    assert dev.main(["--decide", *map(str, paths), "--json", str(out)]) == 0
    assert json.loads(out.read_text())["chosen"]["teacher a weights"] == "all five, equal"
    again = tmp_path / "again.json"  # a decision decided on again is still one over pasted sets
    assert dev.main(["--decide", str(out), str(paths[0]), "--json", str(again)]) == 0
    assert json.loads(again.read_text())["chosen"]["teacher a weights"] == "all five, equal"
    assert dev.main(["--decide", str(paths[0]), str(synthetic), "--json", str(out)]) == 0
    assert json.loads(out.read_text())["chosen"]["teacher a weights"] == "speed only"


def test_velocity_options_measured_once_score_exactly_as_the_teacher_does() -> None:
    from aedcli.teachers.velocity import VelocityConfig, VelocityTeacher

    train = [dataclasses.replace(b, video=i) for i, b in enumerate(_tubes(60, seed=2) + _tubes(60, seed=3))]
    test = _tubes(30, seed=4)[0]
    for options in dev.VELOCITY_OPTIONS.values():
        config = dataclasses.replace(VelocityConfig(k=3), **options)
        direct, shared = VelocityTeacher(config), VelocityTeacher(config)
        direct.fit(train)
        dev.fit_velocity(shared, train)
        np.testing.assert_array_equal(direct.score(test), dev.score_velocity(shared, test))
        np.testing.assert_array_equal(direct.score(train[1]), dev.score_velocity(shared, train[1]))
    settings = {json.loads(k[0])["pairs"].__repr__() for k in dev._FEATURES}
    assert len(settings) == 2  # six options, two ways of measuring the flow
