"""Datasets: where the clips of a dataset live, how many frames they have, and which frames are abnormal.

One module per layout (``ucsd``, ``avenue``, ``shanghaitech``, ``folder``, ``synthetic``) plus ``labels`` for
the ground-truth formats; all return a :class:`Dataset` of :class:`Clip` objects. Loading is cheap: frames
are counted, not decoded, and only frame labels are read up front.

>>> ds = load_dataset("ped2", "~/data")           # the folder holding UCSDped2/, or UCSDped2/ itself
>>> clip = ds.test[0]
>>> clip.name, clip.frame_count, int(clip.labels.sum())
('Test001', 180, 120)
>>> for frame, mask in zip(clip.frames(), clip.masks()): ...   # (240, 360) uint8, (240, 360) bool
>>> load_dataset("synthetic")                      # generated on first use, no files needed
>>> load_dataset("devset:ped2", "~/data")          # a development set made from Ped2's training video

``root`` defaults to ``$AED_DATA/<name>``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from aedcli.data import avenue, folder, shanghaitech, ucsd
from aedcli.data.clips import Clip, Dataset, MaskKind, Split
from aedcli.data.synthetic import SyntheticConfig, load_synthetic
from aedcli.data.ucsd import LabelMismatchWarning
from aedcli.errors import DatasetError, UsageError

__all__ = [
    "DATASETS",
    "Clip",
    "Dataset",
    "LabelMismatchWarning",
    "MaskKind",
    "Split",
    "SyntheticConfig",
    "load_dataset",
    "load_synthetic",
]

DATASETS: dict[str, str] = {
    "ped2": "UCSD Pedestrian 2: 16 train / 12 test gray clips of a walkway, 240x360, pixel masks",
    "ped1": "UCSD Pedestrian 1: 34 train / 36 test gray clips of a walkway, 158x238",
    "avenue": "CUHK Avenue: 16 train / 21 test colour videos, 640x360, pixel masks",
    "shanghaitech": "ShanghaiTech Campus: 330 train videos / 107 test clips over 13 scenes, 856x480",
    "folder": "your own footage: train/ and test/ videos or frame folders, optional labels/ and masks/",
    "synthetic": "generated walkway scenes with injected anomalies; needs no files (tests, demos)",
    "devset:NAME": "a development set made from dataset NAME's normal training video alone (objects pasted "
    "into held-out videos, sped up or gliding), generated on first use",
}
"""Every dataset name :func:`load_dataset` accepts, with a one-line description."""

_LOADERS: dict[str, tuple[Callable[[Path], Dataset], str]] = {
    "ped2": (lambda root: ucsd.load_ucsd(root, number=2), ucsd.layout(2)),
    "ped1": (lambda root: ucsd.load_ucsd(root, number=1), ucsd.layout(1)),
    "avenue": (avenue.load_avenue, avenue.LAYOUT),
    "shanghaitech": (shanghaitech.load_shanghaitech, shanghaitech.LAYOUT),
    "folder": (folder.load_folder, folder.LAYOUT),
}


def load_dataset(name: str, root: str | Path | None = None) -> Dataset:
    """Load the dataset ``name`` (a key of :data:`DATASETS`) from ``root``, by default ``$AED_DATA/<name>``.

    For ``synthetic``, ``root`` is the cache folder to generate into (default ``$AED_CACHE``, else
    ``~/.cache/aed``) and ``AED_DATA`` is not used.
    """
    key = name.strip().lower()
    if key.startswith("devset:"):
        from aedcli.data.devset import ONE_OBJECT, load_pasted

        base = key.split(":", 1)[1]
        if base in ("", "synthetic") or base.startswith("devset"):
            raise UsageError(
                f"'{name}' needs the name of a dataset with training videos, such as devset:ped2."
            )
        return load_pasted(load_dataset(base, root), ONE_OBJECT)
    if key not in DATASETS:
        raise UsageError(f"unknown dataset '{name}'; choose one of {', '.join(DATASETS)}.")
    if key == "synthetic":
        return load_synthetic(cache_dir=Path(root).expanduser() if root is not None else None)
    loader, layout = _LOADERS[key]
    path = _resolve_root(key, root)
    if not path.is_dir():
        raise DatasetError(f"dataset folder {path} for '{key}' does not exist; expected {layout}.")
    return loader(path)


def _resolve_root(name: str, root: str | Path | None) -> Path:
    if root is not None:
        return Path(root).expanduser()
    data = os.environ.get("AED_DATA")
    if data:
        return Path(data).expanduser() / name
    raise DatasetError(
        f"no folder given for dataset '{name}'; pass its root folder "
        f"or set AED_DATA to a folder holding {name}/."
    )
