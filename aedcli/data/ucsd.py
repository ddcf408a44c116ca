"""UCSD Pedestrian 1 and 2 (Mahadevan et al., CVPR 2010).

Layout (method.md section 7)::

    UCSDped2/Train/Train001/001.tif ...        normal training clips, gray .tif frames
    UCSDped2/Test/Test001/001.tif ...          test clips
    UCSDped2/Test/Test001_gt/001.bmp ...       pixel masks (all Ped2 clips, 10 of the 36 Ped1 clips)
    UCSDped2/Test/UCSDped2.m                   frame-level intervals for every test clip

The root may be the folder holding ``UCSDped2/`` (or the archive's ``UCSD_Anomaly_Dataset.v1p2/``) or
``UCSDped2/`` itself. Frame labels come from the masks where a clip has them (a frame is abnormal when any
pixel is set) and from the ``.m`` intervals otherwise. Where both exist they are compared: on Ped2 they agree
exactly (1,648 abnormal of 2,010 frames); a disagreement is reported with a :class:`LabelMismatchWarning`
and the masks are used.

>>> ds = load_ucsd(Path("~/data/ped2").expanduser(), number=2)
>>> len(ds.train), len(ds.test), int(sum(c.labels.sum() for c in ds.test))
(16, 12, 1648)
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np

from aedcli.data.clips import Clip, Dataset
from aedcli.data.labels import labels_from_intervals, labels_from_mask_folder, read_ucsd_m
from aedcli.data.listing import count_frames, natural_sorted
from aedcli.errors import DatasetError

# The UCSD paper gives the recording rate; the .tif frames carry none.
UCSD_FPS = 10.0


class LabelMismatchWarning(UserWarning):
    """Two ground-truth sources of the same clip disagree on which frames are abnormal."""


def layout(number: int) -> str:
    """The expected layout in words, for error messages."""
    return (
        f"UCSDped{number}/Train/TrainNNN/*.tif and UCSDped{number}/Test/TestNNN/*.tif "
        f"(masks in TestNNN_gt/, intervals in Test/UCSDped{number}.m)"
    )


def find_ucsd_root(root: Path, number: int) -> Path:
    """The ``UCSDpedN`` folder itself, given it or a folder above it; a :class:`DatasetError` otherwise."""
    name = f"UCSDped{number}"
    for candidate in (root, root / name, root / "UCSD_Anomaly_Dataset.v1p2" / name):
        if (candidate / "Train").is_dir() and (candidate / "Test").is_dir():
            return candidate
    raise DatasetError(
        f"{root} does not hold UCSD Ped{number}; point the root at the folder containing {name}/ "
        f"(or at {name}/ itself) laid out as {layout(number)}."
    )


def load_ucsd(root: Path, *, number: int) -> Dataset:
    """Read UCSD Ped1 (``number=1``) or Ped2 (``number=2``) from ``root``."""
    base = find_ucsd_root(root, number)
    train = [
        Clip(name=d.name, split="train", path=d, frame_count=count_frames(d))
        for d in _numbered_dirs(base / "Train", "Train")
    ]
    test_dirs = _numbered_dirs(base / "Test", "Test")
    if not train or not test_dirs:
        empty = base / ("Train" if not train else "Test")
        raise DatasetError(f"{empty} holds no clip folders; expected {layout(number)}.")

    m_file = _find_m_file(base, number)
    intervals = read_ucsd_m(m_file) if m_file is not None else None
    if intervals is not None and len(intervals) != len(test_dirs):
        raise DatasetError(
            f"{m_file} lists {len(intervals)} test clips but {base / 'Test'} holds {len(test_dirs)}; "
            "use the .m file that came with these clips."
        )

    test = []
    for i, d in enumerate(test_dirs):
        n = count_frames(d)
        gt_dir = d.parent / f"{d.name}_gt"
        has_masks = gt_dir.is_dir()
        from_m = None
        if intervals is not None and m_file is not None:
            from_m = labels_from_intervals(intervals[i], n, source=m_file, video=d.name)
        labels = labels_from_mask_folder(gt_dir, n, video=d.name) if has_masks else from_m
        if (
            labels is not None
            and from_m is not None
            and m_file is not None
            and not np.array_equal(labels, from_m)
        ):
            _warn_mismatch(d.name, gt_dir, m_file, labels, from_m)
        test.append(
            Clip(
                name=d.name,
                split="test",
                path=d,
                frame_count=n,
                labels=labels,
                masks_path=gt_dir if has_masks else None,
                mask_kind="folder" if has_masks else None,
            )
        )
    return Dataset(name=f"ped{number}", root=base, train=train, test=test, gray=True, fps=UCSD_FPS)


def _numbered_dirs(folder: Path, prefix: str) -> list[Path]:
    """``TrainNNN`` / ``TestNNN`` folders (not ``TestNNN_gt``), in natural order."""
    pattern = re.compile(rf"{prefix}\d+")
    names = [p.name for p in folder.iterdir() if p.is_dir() and pattern.fullmatch(p.name)]
    return [folder / n for n in natural_sorted(names)]


def _find_m_file(base: Path, number: int) -> Path | None:
    # Exact names only: archives also carry editor backups such as ``UCSDped2.m~`` with other numbers.
    for candidate in (base / "Test" / f"UCSDped{number}.m", base / f"UCSDped{number}.m"):
        if candidate.is_file():
            return candidate
    return None


def _warn_mismatch(video: str, gt_dir: Path, m_file: Path, masks: np.ndarray, m: np.ndarray) -> None:
    differ = np.flatnonzero(masks != m) + 1
    warnings.warn(
        f"the masks in {gt_dir} and the intervals in {m_file} disagree on {len(differ)} of {len(m)} frames "
        f"of '{video}' (first: frame {differ[0]}); the masks are used.",
        LabelMismatchWarning,
        stacklevel=3,
    )
