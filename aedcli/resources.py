"""Files shipped with ``aed``: the weights in the repository's ``weights/`` folder.

``weights/`` is installed with the package as ``aedcli.shipped`` (``pyproject.toml`` maps it), so it is
found through :mod:`importlib.resources` in a checkout, an editable install and an installed wheel alike.

>>> default_weights()            # .../weights/ped2.pt
>>> shipped("ped2-teachers")     # the folder of the teachers ped2.pt learnt from
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

from aedcli.errors import WeightsError

DEFAULT_WEIGHTS = "ped2.pt"
SHIPPED_PACKAGE = "aedcli.shipped"


def shipped(name: str) -> Path | None:
    """The shipped file or folder ``name``, or ``None`` when it is not installed."""
    try:
        root = importlib.resources.files(SHIPPED_PACKAGE)
    except ModuleNotFoundError:
        return None
    path = Path(str(root)) / name
    return path if path.exists() else None


def default_weights() -> Path:
    """The shipped default weights; :class:`WeightsError` (pass ``--weights``) when they are not installed."""
    found = shipped(DEFAULT_WEIGHTS)
    if found is None or not found.is_file():
        raise WeightsError(
            f"no default weights ({DEFAULT_WEIGHTS}) are installed with aed; pass --weights with a "
            "weights.pt written by 'aed distill'."
        )
    return found


def resolve_weights(path: str | Path | None) -> Path:
    """``path`` when given, else the shipped default weights."""
    return Path(path).expanduser() if path is not None else default_weights()
