"""A development run's choices, read back from its report, set the teachers' options."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from aedcli.errors import UsageError
from aedcli.teachers import choices as ch
from aedcli.teachers.pipeline import TeachConfig

ROOT = Path(__file__).resolve().parent.parent
REPORTS = ROOT / "docs" / "results" / "reports"

CHOSEN = {
    "teacher a weights": "all five, equal",
    "teacher a combination": "tail probabilities, largest",
    "velocity teacher": "floor + three-frame pairs + context",
    "teacher a frame calibration": "count-corrected",
    "velocity teacher frame calibration": "max of raw scores",
    "teacher b combination": "tail probabilities, summed",
    "teacher b seeds": "three seeds",
    "teacher b views": "also time-reversed",
    "teachers' mean, scaling": "train",
    "teachers' mean (train scaling), a and b combinations": "a linear, b z-sum",
}


def _report(tmp_path: Path, chosen: dict[str, str]) -> Path:
    path = tmp_path / "choices.json"
    path.write_text(json.dumps({"micro_auc": {}, "chosen": chosen}))
    return path


def test_every_chosen_group_sets_its_teacher_option(tmp_path) -> None:
    got = ch.load_choices(_report(tmp_path, CHOSEN))
    assert got.a_weights == dict.fromkeys(
        ("appearance_error", "motion_error", "appearance_class", "motion_class", "motion_speed"), 1.0
    )
    assert got.velocity == {"flag_slow": False, "context_neighbours": ch.CONTEXT}
    assert got.corrections == {"a": "count", "flow": "none"}
    assert got.b_seeds == 3 and got.normalisation == "train"
    # the teachers serve together: the pair chosen for their mean sets both combinations
    assert (got.a_combine, got.b_combine) == ("linear", "z-sum")
    cfg = TeachConfig.with_choices(got, max_train_objects=50)
    assert cfg.max_train_objects == 50 and cfg.b_seeds == 3 and cfg.a_combine == "linear"
    assert cfg.correction_for("a") == "count" and cfg.correction_for("b") == "none"
    assert got.b_views == "reversed" and cfg.b_views == "reversed"
    assert "b seeds 3" in got.describe() and "b views reversed" in got.describe()
    assert "a linear" in got.describe()


def test_the_pair_is_read_under_the_chosen_scaling_and_each_teachers_own_group_without_one(tmp_path) -> None:
    rarity = {
        **CHOSEN,
        "teachers' mean, scaling": "train-rarity",
        "teachers' mean (train-rarity scaling), a and b combinations": "a tail-sum, b tail-max",
    }
    got = ch.load_choices(_report(tmp_path, rarity))
    assert (got.a_combine, got.b_combine, got.normalisation) == ("tail-sum", "tail-max", "train-rarity")
    alone = {k: v for k, v in CHOSEN.items() if "a and b" not in k}
    got = ch.load_choices(_report(tmp_path, alone))
    assert (got.a_combine, got.b_combine) == ("tail-max", "tail-sum")
    partial = ch.load_choices(_report(tmp_path, {"teacher b seeds": "one seed"}))
    assert partial.b_seeds == 1 and partial.a_weights is None and partial.velocity is None
    assert partial.b_views is None and TeachConfig.with_choices(partial).b_views is None
    assert TeachConfig.with_choices(partial).a_combine is None  # unset groups keep the teachers' own
    assert TeachConfig.with_choices(partial).b_seeds == 1  # one seed chosen is one seed asked for
    assert TeachConfig.with_choices(ch.TeacherChoices()).b_seeds is None


def test_the_committed_development_reports_load_as_choices() -> None:
    for name in ("teacher_dev-round15-ped2-one.json", "teacher_dev-round15-decision.json"):
        got = ch.load_choices(REPORTS / name)
        assert got.a_weights is not None and got.velocity is not None and got.b_seeds in (1, 3)


def test_the_shipped_teacher_folder_carries_the_choices_its_targets_were_painted_with() -> None:
    folder = ROOT / "weights" / "ped2-teachers"
    assert ch.folder_choices(folder) == folder / ch.FOLDER_CHOICES
    shipped = ch.load_choices(folder / ch.FOLDER_CHOICES)
    chosen = ch.load_choices(REPORTS / "teacher_dev-round21-ped2-choices.json")
    assert shipped == chosen and shipped.normalisation == "train-size" and shipped.b_seeds == 3
    assert shipped.b_views == "reversed-mirrored"
    assert ch.folder_choices(REPORTS) is None
    # the student's targets were painted with the eighteenth round's choices, teacher b asked once
    student = ch.load_choices(folder / "choices-r19.json")
    eighteenth = ch.load_choices(REPORTS / "teacher_dev-round18-ped2-choices.json")
    assert student == replace(eighteenth, b_views="centre") == replace(shipped, b_views="centre")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        ("{not json", "is not readable JSON"),
        (json.dumps({"micro_auc": {}}), "has no 'chosen' options"),
        (json.dumps({"chosen": {"teacher b seeds": "seven seeds"}}), "'seven seeds'"),
        (json.dumps({"chosen": {**CHOSEN, "teachers' mean, scaling": "log"}}), "scaling 'log'"),
        (
            json.dumps(
                {"chosen": {"teachers' mean (train scaling), a and b combinations": "a max, b z-sum"}}
            ),
            "unknown combination",
        ),
    ],
)
def test_a_bad_choices_file_names_the_file_and_the_fix(tmp_path, content, message) -> None:
    path = tmp_path / "bad.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(UsageError, match=message) as err:
        ch.load_choices(path)
    assert str(path) in str(err.value) and "scripts/teacher_dev.py --json" in str(err.value)
