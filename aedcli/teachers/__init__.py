"""Object-centric teachers: they find objects, score them, and paint the maps the student learns from.

The registry maps the names used on the command line (``--teachers a,b,flow``) to teacher classes. Classes
are imported only when looked up, so a missing optional teacher fails only when it is asked for.

=======  ====================================================  ==========================================
name     class                                                 what it models
=======  ====================================================  ==========================================
``a``    ``appearance_motion.AppearanceMotionTeacher``         appearance + motion auto-encoders and
                                                               classifiers against pseudo-anomalies
``b``    ``multitask.MultiTaskTeacher``                        self-supervised multi-task 3D CNN
``flow`` ``velocity.VelocityTeacher``                          optical-flow velocity density
=======  ====================================================  ==========================================
"""

from __future__ import annotations

import importlib
from typing import Any

from aedcli.errors import UsageError

TEACHER_CLASSES: dict[str, tuple[str, str]] = {
    "a": ("aedcli.teachers.appearance_motion", "AppearanceMotionTeacher"),
    "b": ("aedcli.teachers.multitask", "MultiTaskTeacher"),
    "flow": ("aedcli.teachers.velocity", "VelocityTeacher"),
}

COMBINED = "teachers"
"""Pseudo-teacher name for the combination of all teachers' maps (their mean), for evaluation."""


def teacher_class(name: str) -> Any:
    """The class registered under ``name``; a clear :class:`UsageError` when unknown or not installed."""
    if name not in TEACHER_CLASSES:
        raise UsageError(
            f"--teachers names unknown teacher '{name}'; choose from {', '.join(TEACHER_CLASSES)}."
        )
    module_name, class_name = TEACHER_CLASSES[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise UsageError(
            f"teacher '{name}' is not available in this installation ({module_name} is missing); "
            f"drop it from --teachers."
        ) from exc
    cls = getattr(module, class_name, None)
    if cls is None:
        raise UsageError(f"teacher '{name}': {module_name} defines no {class_name}; drop it from --teachers.")
    return cls


def parse_teachers(spec: str | list[str]) -> list[str]:
    """``"a,b,flow"`` or a list -> validated, de-duplicated names in the given order."""
    names = [n.strip() for n in (spec.split(",") if isinstance(spec, str) else spec) if n and n.strip()]
    if not names:
        raise UsageError("--teachers is empty; name at least one teacher, for example --teachers a.")
    out: list[str] = []
    for n in names:
        if n not in TEACHER_CLASSES:
            raise UsageError(
                f"--teachers names unknown teacher '{n}'; choose from {', '.join(TEACHER_CLASSES)}."
            )
        if n not in out:
            out.append(n)
    return out
