"""The teachers' design options, by name, and the choices a development run made among them.

Each option group is what ``scripts/teacher_dev.py`` measures on a development set with known labels (the
synthetic set, or one made from a camera's own normal video by ``aed devset``): teacher a's component
weights and combination, the velocity teacher's switches, each teacher's frame calibration, teacher b's
combination and seed count, and how the teachers' scores are scaled before their mean. The script writes
the option it chose in every group to the ``chosen`` mapping of its JSON report; :func:`load_choices` reads
that mapping back as :class:`TeacherChoices`, which ``aed teach --choices REPORT`` applies, so a camera's
teachers are trained with what that camera's own development set chose.

Options are listed in order of simplicity: on a tie the script keeps the earlier one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aedcli.errors import UsageError
from aedcli.teachers.appearance_motion import COMPONENTS
from aedcli.teachers.base import TUBE_RADIUS

A_WEIGHTS: dict[str, dict[str, float]] = {
    "all five, equal": dict.fromkeys(COMPONENTS, 1.0),
    "without motion error": {**dict.fromkeys(COMPONENTS, 1.0), "motion_error": 0.0},
    "speed only": {**dict.fromkeys(COMPONENTS, 0.0), "motion_speed": 1.0},
    "appearance only": {
        **dict.fromkeys(COMPONENTS, 0.0),
        "appearance_error": 1.0,
        "appearance_class": 1.0,
    },
    "motion only (no speed)": {**dict.fromkeys(COMPONENTS, 0.0), "motion_error": 1.0, "motion_class": 1.0},
}

CONTEXT = 256  # peers nearest in box height and position when perspective conditioning is on
NEIGHBOURING = [[TUBE_RADIUS - 1, TUBE_RADIUS], [TUBE_RADIUS, TUBE_RADIUS + 1]]
VELOCITY: dict[str, dict[str, Any]] = {
    "plain: flag slow, neighbouring pairs, no context": {
        "flag_slow": True,
        "pairs": NEIGHBOURING,
        "context_neighbours": 0,
    },
    "floor slow at the median": {"flag_slow": False, "pairs": NEIGHBOURING, "context_neighbours": 0},
    "three-frame pairs": {"flag_slow": True, "context_neighbours": 0},
    "perspective context": {"flag_slow": True, "pairs": NEIGHBOURING, "context_neighbours": CONTEXT},
    "floor + three-frame pairs": {"flag_slow": False, "context_neighbours": 0},
    "floor + three-frame pairs + context": {"flag_slow": False, "context_neighbours": CONTEXT},
}

A_COMBINES = {
    "linear sum (median 0, 99th percentile 1)": "linear",
    "tail probabilities, summed": "tail-sum",
    "tail probabilities, largest": "tail-max",
}
B_COMBINES = {
    "standardised errors, summed": "z-sum",
    "tail probabilities, summed": "tail-sum",
    "tail probabilities, largest": "tail-max",
}
CALIBRATIONS = {"count-corrected": "count", "max of raw scores": "none"}
B_SEED_COUNTS = {"one seed": 1, "three seeds": 3, "five seeds": 5}
B_VIEWS = {
    "centre clip": "centre",
    "also time-reversed": "reversed",
    "also time-reversed and mirrored": "reversed-mirrored",
}
SCALINGS = ("train", "train-rarity", "train-size")
FOLDER_CHOICES = "choices.json"  # beside <teacher>.pt files: the options those teachers score with


def pairs_group(scaling: str) -> str:
    """The report group of teacher a's and b's combination pairs measured under ``scaling``."""
    return f"teachers' mean ({scaling} scaling), a and b combinations"


@dataclass(frozen=True)
class TeacherChoices:
    """Teacher options chosen on a development set (``None``: that group was not in the report)."""

    a_weights: dict[str, float] | None = None
    a_combine: str | None = None
    b_combine: str | None = None
    b_seeds: int | None = None
    b_views: str | None = None
    velocity: dict[str, Any] | None = None
    corrections: dict[str, str] = field(default_factory=dict)  # teacher -> "count" | "none"
    normalisation: str | None = None

    def describe(self) -> str:
        """One line for the console: what these choices set."""
        parts = []
        if self.a_weights is not None:
            kept = [k for k, w in self.a_weights.items() if w]
            parts.append(f"a weights {'+'.join(kept) or 'none'}")
        for label, value in (("a", self.a_combine), ("b", self.b_combine)):
            if value is not None:
                parts.append(f"{label} {value}")
        if self.b_seeds is not None:
            parts.append(f"b seeds {self.b_seeds}")
        if self.b_views is not None:
            parts.append(f"b views {self.b_views}")
        if self.velocity is not None:
            parts.append("flow " + ", ".join(f"{k}={v}" for k, v in self.velocity.items()))
        parts += [f"{t} frame correction {c}" for t, c in self.corrections.items()]
        if self.normalisation is not None:
            parts.append(f"scaling {self.normalisation}")
        return "; ".join(parts) or "nothing"


def choices_from(chosen: dict[str, str]) -> TeacherChoices:
    """:class:`TeacherChoices` from a report's ``chosen`` mapping (group -> option name).

    Raises ``KeyError`` or ``ValueError`` naming the group when an option is unknown. Teacher a's and b's
    combinations come from the pair chosen under the chosen scaling when the report has it (the teachers
    serve together), else from each teacher's own combination group.
    """

    def pick(group: str, options: dict[str, Any]) -> Any:
        if group not in chosen:
            return None
        name = chosen[group]
        if name not in options:
            raise ValueError(f"group '{group}' chose '{name}', which is not one of {', '.join(options)}")
        return options[name]

    normalisation = chosen.get("teachers' mean, scaling")
    if normalisation is not None and normalisation not in SCALINGS:
        raise ValueError(f"scaling '{normalisation}' is not one of {', '.join(SCALINGS)}")
    a_combine = pick("teacher a combination", A_COMBINES)
    b_combine = pick("teacher b combination", B_COMBINES)
    pair = chosen.get(pairs_group(normalisation or SCALINGS[0]))
    if pair is not None:
        try:
            a_part, b_part = (p.strip() for p in pair.split(","))
            a_combine, b_combine = a_part.removeprefix("a "), b_part.removeprefix("b ")
        except ValueError:
            raise ValueError(f"the combination pair '{pair}' is not of the form 'a X, b Y'") from None
        if a_combine not in A_COMBINES.values() or b_combine not in B_COMBINES.values():
            raise ValueError(f"the combination pair '{pair}' names an unknown combination")
    corrections = {}
    for teacher, label in (("a", "teacher a"), ("flow", "velocity teacher")):
        correction = pick(f"{label} frame calibration", CALIBRATIONS)
        if correction is not None:
            corrections[teacher] = correction
    weights = pick("teacher a weights", A_WEIGHTS)
    velocity = pick("velocity teacher", VELOCITY)
    return TeacherChoices(
        a_weights=dict(weights) if weights is not None else None,
        a_combine=a_combine,
        b_combine=b_combine,
        b_seeds=pick("teacher b seeds", B_SEED_COUNTS),
        b_views=pick("teacher b views", B_VIEWS),
        velocity=dict(velocity) if velocity is not None else None,
        corrections=corrections,
        normalisation=normalisation,
    )


def load_choices(path: str | Path) -> TeacherChoices:
    """The choices of a ``scripts/teacher_dev.py --json`` report; a :class:`UsageError` naming the file
    and the fix when it cannot be read or holds no choices."""
    path = Path(path)
    fix = "give a report written by scripts/teacher_dev.py --json"
    try:
        report = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"choices file {path} does not exist; {fix}.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"choices file {path} is not readable JSON ({exc}); {fix}.") from None
    chosen = report.get("chosen") if isinstance(report, dict) else None
    if not isinstance(chosen, dict) or not chosen:
        raise UsageError(f"choices file {path} has no 'chosen' options; {fix}.")
    try:
        return choices_from(chosen)
    except (KeyError, ValueError, AttributeError) as exc:
        raise UsageError(
            f"choices file {path} cannot be used: {exc}; write it again with scripts/teacher_dev.py --json."
        ) from None


def folder_choices(folder: str | Path) -> Path | None:
    """``folder/choices.json`` when a folder of teacher files has one (how those teachers score), else None.

    ``aed teach --teachers-from`` and ``aed eval --teachers-from`` apply it unless told otherwise, so shipped
    teachers score as they did when their rows were measured.
    """
    path = Path(folder) / FOLDER_CHOICES
    return path if path.is_file() else None
