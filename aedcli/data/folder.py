"""A user's own footage, laid out as a folder.

::

    root/train/<video>.mp4  or  root/train/<video>/0001.png ...     normal footage (videos or frame folders)
    root/test/<video>.mp4   or  root/test/<video>/0001.png ...      footage to score
    root/labels/<video>.txt | .csv | .npy                           optional frame labels of a test video
    root/masks/<video>/0001.png ...  or  root/masks/<video>.npy     optional pixel masks of a test video

Label files hold one 0/1 per frame or ``start end`` intervals (1-based, inclusive); see
:func:`aedcli.data.labels.read_frame_label_file` for every accepted form. A test video without a label file
takes its labels from its masks (a frame is abnormal when any pixel is set) and is unlabelled when it has
neither: it can still be scored, and ``Dataset.has_labels`` is then false so evaluation can say what is
missing. A label or mask file whose name matches no test video is an error, since it is most likely a typo.
The synthetic dataset is written in this layout.
"""

from __future__ import annotations

from pathlib import Path

from aedcli.data.clips import Clip, Dataset
from aedcli.data.labels import (
    check_mask_count,
    labels_from_mask_folder,
    load_pixel_mask_npy,
    read_frame_label_file,
)
from aedcli.data.listing import (
    clip_name,
    count_frames,
    find_clip_sources,
    image_files,
    is_gray_source,
    is_visible,
    video_fps,
)
from aedcli.errors import DatasetError
from aedcli.video import DEFAULT_FPS

LAYOUT = (
    "train/ and test/ holding videos or frame folders, with optional labels/<video>.txt|.csv|.npy "
    "and masks/<video>/ or masks/<video>.npy"
)
LABEL_SUFFIXES = (".txt", ".csv", ".npy")


def load_folder(root: Path, *, name: str = "folder") -> Dataset:
    """Read a dataset laid out as described in the module docstring."""
    train_dir, test_dir = root / "train", root / "test"
    if not train_dir.is_dir() and not test_dir.is_dir():
        raise DatasetError(f"{root} has neither a train/ nor a test/ folder; expected {LAYOUT}.")
    train_sources = find_clip_sources(train_dir) if train_dir.is_dir() else []
    test_sources = find_clip_sources(test_dir) if test_dir.is_dir() else []
    if not train_sources and not test_sources:
        raise DatasetError(f"{root} holds no videos or frame folders in train/ or test/; expected {LAYOUT}.")
    for sources in (train_sources, test_sources):
        _check_unique_names(sources)

    test_names = [clip_name(s) for s in test_sources]
    label_files = _files_by_video(root / "labels", test_names, kind="label")
    mask_sources = _files_by_video(root / "masks", test_names, kind="mask")

    train = [
        Clip(name=clip_name(s), split="train", path=s, frame_count=count_frames(s)) for s in train_sources
    ]
    test = []
    for source, video in zip(test_sources, test_names, strict=True):
        n = count_frames(source)
        masks = mask_sources.get(video)
        mask_kind = None
        if masks is not None:
            mask_kind = "folder" if masks.is_dir() else "npy"
            found = (
                len(image_files(masks))
                if masks.is_dir()
                else load_pixel_mask_npy(masks, video=video).shape[0]
            )
            check_mask_count(found, n, source=masks, video=video)
        labels = None
        if video in label_files:
            labels = read_frame_label_file(label_files[video], n, video=video)
        elif masks is not None and masks.is_dir():
            labels = labels_from_mask_folder(masks, n, video=video)
        elif masks is not None:
            labels = read_frame_label_file(masks, n, video=video)  # an (N, H, W) .npy
        test.append(
            Clip(
                name=video,
                split="test",
                path=source,
                frame_count=n,
                labels=labels,
                masks_path=masks,
                mask_kind=mask_kind,
            )
        )
    first = (train_sources or test_sources)[0]
    fps = video_fps(first)
    return Dataset(
        name=name, root=root, train=train, test=test, gray=is_gray_source(first), fps=fps or DEFAULT_FPS
    )


def _check_unique_names(sources: list[Path]) -> None:
    seen: dict[str, Path] = {}
    for s in sources:
        other = seen.setdefault(clip_name(s), s)
        if other != s:
            raise DatasetError(
                f"{other} and {s} would both be video '{clip_name(s)}'; rename or remove one of them."
            )


def _files_by_video(folder: Path, videos: list[str], *, kind: str) -> dict[str, Path]:
    """Map each test video to its label (or mask) file in ``folder``; stray or duplicate files are errors."""
    if not folder.is_dir():
        return {}
    known = set(videos)
    found: dict[str, Path] = {}
    for path in sorted(p for p in folder.iterdir() if is_visible(p)):
        if kind == "label" and path.suffix.lower() not in LABEL_SUFFIXES:
            continue
        if kind == "mask" and not (path.is_dir() or path.suffix.lower() == ".npy"):
            continue
        video = path.name if path.is_dir() else path.stem
        if video not in known:
            raise DatasetError(
                f"the {kind} file {path} matches no test video (have: {_shown(videos)}); "
                "rename it after its test video or remove it."
            )
        if video in found:
            raise DatasetError(
                f"test video '{video}' has two {kind} files, {found[video]} and {path}; keep one of them."
            )
        found[video] = path
    return found


def _shown(names: list[str]) -> str:
    return ", ".join(names[:5]) + (", ..." if len(names) > 5 else "") if names else "none"
