"""CUHK Avenue (Lu et al., ICCV 2013).

Layout (method.md section 7)::

    training_videos/01.avi ... 16.avi                              normal training videos, 640x360 colour
    testing_videos/01.avi ... 21.avi                               test videos
    ground_truth_demo/testing_label_mask/1_label.mat ...           ``volLabel``: one HxW mask per frame
                                                                   (file number without the leading zero)

Instead of the masks, an interval file ``avenue.mat`` (``gt``: ``[start; end]`` columns per test video,
1-based) is accepted at the root or in ``ground_truth_demo/``. The masks win when both exist: the interval
file differs from them on clip 18 because it derives from another annotation (anchors.md section 3.3).
The root may also be the folder holding ``Avenue Dataset/`` (the name the official archive unpacks to).
"""

from __future__ import annotations

from pathlib import Path

from aedcli.data.clips import Clip, Dataset
from aedcli.data.labels import (
    labels_from_intervals,
    labels_from_volume_label_mat,
    read_interval_mat,
)
from aedcli.data.listing import clip_name, count_frames, is_video_file, natural_sorted, video_fps
from aedcli.errors import DatasetError

# Used only when the videos report no frame rate of their own.
AVENUE_FPS = 25.0

LAYOUT = (
    "training_videos/NN.avi, testing_videos/NN.avi and ground_truth_demo/testing_label_mask/<n>_label.mat "
    "(or an interval file avenue.mat)"
)


def find_avenue_root(root: Path) -> Path:
    """The folder holding ``training_videos/`` and ``testing_videos/``, given it or its parent."""
    for candidate in (root, root / "Avenue Dataset", root / "Avenue_Dataset", root / "avenue"):
        if (candidate / "training_videos").is_dir() and (candidate / "testing_videos").is_dir():
            return candidate
    raise DatasetError(f"{root} does not hold CUHK Avenue; point the root at the folder with {LAYOUT}.")


def load_avenue(root: Path) -> Dataset:
    """Read CUHK Avenue from ``root``."""
    base = find_avenue_root(root)
    train_videos = _videos(base / "training_videos")
    test_videos = _videos(base / "testing_videos")
    train = [
        Clip(name=clip_name(v), split="train", path=v, frame_count=count_frames(v)) for v in train_videos
    ]

    mask_dir = _first_dir(
        base / "ground_truth_demo" / "testing_label_mask", root / "ground_truth_demo" / "testing_label_mask"
    )
    interval_file = _first_file(
        base / "avenue.mat", base / "ground_truth_demo" / "avenue.mat", root / "avenue.mat"
    )
    intervals = read_interval_mat(interval_file) if interval_file is not None and mask_dir is None else None
    if intervals is not None and len(intervals) != len(test_videos):
        raise DatasetError(
            f"{interval_file} lists {len(intervals)} test videos but {base / 'testing_videos'} holds "
            f"{len(test_videos)}; use the interval file made for these videos."
        )

    test = []
    for i, video in enumerate(test_videos):
        name = clip_name(video)
        n = count_frames(video)
        labels = None
        mask_file = None
        if mask_dir is not None:
            mask_file = mask_dir / f"{_mask_number(name)}_label.mat"
            if not mask_file.is_file():
                raise DatasetError(
                    f"{mask_file} for test video '{name}' does not exist; "
                    "restore it from the Avenue ground_truth_demo archive."
                )
            labels = labels_from_volume_label_mat(mask_file, n, video=name)
        elif intervals is not None and interval_file is not None:
            labels = labels_from_intervals(intervals[i], n, source=interval_file, video=name)
        test.append(
            Clip(
                name=name,
                split="test",
                path=video,
                frame_count=n,
                labels=labels,
                masks_path=mask_file,
                mask_kind="mat" if mask_file is not None else None,
            )
        )
    fps = video_fps(train_videos[0]) if train_videos else None
    return Dataset(name="avenue", root=base, train=train, test=test, gray=False, fps=fps or AVENUE_FPS)


def _videos(folder: Path) -> list[Path]:
    videos = [folder / n for n in natural_sorted(p.name for p in folder.iterdir() if is_video_file(p))]
    if not videos:
        raise DatasetError(f"{folder} holds no videos; expected {LAYOUT}.")
    return videos


def _mask_number(name: str) -> str:
    """``01`` -> ``1``: the mask files are numbered without the leading zero."""
    return str(int(name)) if name.isdigit() else name


def _first_dir(*candidates: Path) -> Path | None:
    return next((c for c in candidates if c.is_dir()), None)


def _first_file(*candidates: Path) -> Path | None:
    return next((c for c in candidates if c.is_file()), None)
