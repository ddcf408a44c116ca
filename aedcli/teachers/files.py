"""Teacher files: a fitted teacher with the options it scores with, in a file that cannot run code.

``torch.save`` of ``{"format": "aed-teacher", "version": 1, "name": ..., "state": ...}`` where the state holds
tensors and plain values only, so it loads with ``torch.load(weights_only=True)``.

>>> save_teacher(path, teacher)
>>> teacher = load_teacher(path)          # a MotionTeacher or an ObjectTeacher
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from aedcli.errors import WeightsError
from aedcli.files import atomic_path
from aedcli.teachers.motion import MotionTeacher
from aedcli.teachers.objects import ObjectTeacher

FORMAT = "aed-teacher"
VERSION = 1

Teacher = MotionTeacher | ObjectTeacher
TEACHER_CLASSES: dict[str, type[MotionTeacher] | type[ObjectTeacher]] = {
    MotionTeacher.name: MotionTeacher,
    ObjectTeacher.name: ObjectTeacher,
}


def save_teacher(path: Path, teacher: Teacher) -> None:
    """Write ``teacher`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        torch.save(
            {"format": FORMAT, "version": VERSION, "name": teacher.name, "state": teacher.state()}, tmp
        )


def load_teacher(path: Path) -> Teacher:
    """Read a teacher file; :class:`WeightsError` (one sentence naming the file) when it cannot be used."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"teacher file {path} does not exist; train the teachers with 'aed teach'.")
    try:
        payload: Any = torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as exc:
        # weights_only refuses a class or function reference as "GLOBAL ..."; garbage bytes fail otherwise.
        if "global" not in str(exc).lower():
            raise WeightsError(
                f"teacher file {path} is truncated or corrupt; train the teachers again."
            ) from None
        raise WeightsError(
            f"teacher file {path} holds pickled Python objects that could run code, so it was not loaded; "
            "train the teachers again with 'aed teach'."
        ) from None
    except Exception:
        raise WeightsError(
            f"teacher file {path} is truncated or corrupt; train the teachers again."
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or payload.get("version") != VERSION:
        raise WeightsError(
            f"teacher file {path} is not a teacher file of this aed version; train the teachers again with "
            "'aed teach'."
        )
    cls = TEACHER_CLASSES.get(str(payload.get("name")))
    if cls is None:
        raise WeightsError(f"teacher file {path} holds an unknown teacher '{payload.get('name')}'.")
    try:
        return cls.from_state(payload["state"])
    except (KeyError, TypeError, ValueError, AttributeError):
        raise WeightsError(
            f"teacher file {path} is damaged (its state cannot be read); train it again."
        ) from None
