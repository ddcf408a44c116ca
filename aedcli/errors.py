"""Errors a user can act on.

An :class:`AedError` carries one sentence that names the file or option at fault and what to do about it.
The CLI prints that sentence and exits non-zero without a traceback (``--debug`` shows one). Anything else
that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations


class AedError(Exception):
    """A failure caused by input or environment, explained in one sentence; exit code 1."""

    exit_code = 1


class UsageError(AedError):
    """Options that do not fit together or name something that does not exist; exit code 2."""

    exit_code = 2


class VideoError(AedError):
    """A video, frame folder or stream that cannot be opened or breaks while being read."""


class DatasetError(AedError):
    """A dataset folder whose layout, frames or labels are missing or inconsistent."""


class WeightsError(AedError):
    """A weights file that is missing, corrupt, unsafe or of another architecture."""
