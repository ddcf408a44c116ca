"""`aed detect` (not implemented yet)."""

from __future__ import annotations

from aedcli.errors import AedError


def detect() -> None:
    """Not implemented yet in this version: exits with status 1."""
    raise AedError("'aed detect' is not implemented yet in this version; see the README for what works today.")
