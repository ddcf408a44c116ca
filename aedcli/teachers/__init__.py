"""The teachers: slow, careful judges of normal footage whose maps the student learns to reproduce.

- :mod:`~aedcli.teachers.flow`: dense optical flow, what the teachers see of motion;
- :mod:`~aedcli.teachers.motion`: the motion teacher (speed of areas and of solid bodies, at objects' size);
- :mod:`~aedcli.teachers.objects`: the object teacher (each moving object against normal objects);
- :mod:`~aedcli.teachers.maps`: one scale for every teacher, the fine grid, the targets and where they live;
- :mod:`~aedcli.teachers.files`: teacher files;
- :mod:`~aedcli.teachers.teach`: the stage that fits them and paints every clip's targets.
"""

from aedcli.teachers.teach import TEACHERS, TeachConfig, find_teachers, load_teachers, read_targets, teach

__all__ = ["TEACHERS", "TeachConfig", "find_teachers", "load_teachers", "read_targets", "teach"]
