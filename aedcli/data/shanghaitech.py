"""ShanghaiTech Campus (Luo et al., ICCV 2017).

Layout (method.md section 7)::

    training/videos/01_001.avi ...                 normal training videos (or training/frames/01_001/*.jpg)
    testing/frames/01_0014/000.jpg ...             test clips as frame folders (or testing/videos/*.avi)
    testing/test_frame_mask/01_0014.npy            0/1 per frame
    testing/test_pixel_mask/01_0014.npy            (N, H, W) pixel masks

Frame folders are preferred over videos when both exist: the training AVIs use codecs some OpenCV builds
cannot decode (anchors.md section 3.3). The root may also be the folder holding ``shanghaitech/``.
"""

from __future__ import annotations

from pathlib import Path

from aedcli.data.clips import Clip, Dataset
from aedcli.data.labels import check_mask_count, load_pixel_mask_npy, read_frame_label_file
from aedcli.data.listing import clip_name, count_frames, find_clip_sources, video_fps
from aedcli.errors import DatasetError

# Used only when no training video reports a frame rate (frame folders carry none).
SHANGHAITECH_FPS = 24.0

LAYOUT = (
    "training/videos/*.avi (or training/frames/<video>/), testing/frames/<scene>_<video>/NNN.jpg, "
    "testing/test_frame_mask/<video>.npy and testing/test_pixel_mask/<video>.npy"
)


def find_shanghaitech_root(root: Path) -> Path:
    """The folder holding ``training/`` and ``testing/``, given it or its parent."""
    for candidate in (root, root / "shanghaitech", root / "ShanghaiTech"):
        if (candidate / "training").is_dir() and (candidate / "testing").is_dir():
            return candidate
    raise DatasetError(
        f"{root} does not hold ShanghaiTech Campus; point the root at the folder with {LAYOUT}."
    )


def load_shanghaitech(root: Path) -> Dataset:
    """Read ShanghaiTech Campus from ``root``."""
    base = find_shanghaitech_root(root)
    train_sources = _clip_sources(base / "training")
    test_sources = _clip_sources(base / "testing")
    train = [
        Clip(name=clip_name(s), split="train", path=s, frame_count=count_frames(s)) for s in train_sources
    ]

    frame_masks = base / "testing" / "test_frame_mask"
    pixel_masks = base / "testing" / "test_pixel_mask"
    test = []
    for source in test_sources:
        name = clip_name(source)
        n = count_frames(source)
        label_file = frame_masks / f"{name}.npy"
        labels = read_frame_label_file(label_file, n, video=name) if label_file.is_file() else None
        pixel_file = pixel_masks / f"{name}.npy"
        has_pixels = pixel_file.is_file()
        if has_pixels:
            check_mask_count(
                load_pixel_mask_npy(pixel_file, video=name).shape[0], n, source=pixel_file, video=name
            )
        test.append(
            Clip(
                name=name,
                split="test",
                path=source,
                frame_count=n,
                labels=labels,
                masks_path=pixel_file if has_pixels else None,
                mask_kind="npy" if has_pixels else None,
            )
        )
    fps = video_fps(train_sources[0])
    return Dataset(
        name="shanghaitech", root=base, train=train, test=test, gray=False, fps=fps or SHANGHAITECH_FPS
    )


def _clip_sources(split_dir: Path) -> list[Path]:
    """Frame folders under ``frames/`` if there are any, else videos under ``videos/``."""
    for sub in ("frames", "videos"):
        folder = split_dir / sub
        if folder.is_dir():
            sources = find_clip_sources(folder)
            if sources:
                return sources
    raise DatasetError(
        f"{split_dir} holds neither frames/<video>/ folders nor videos/*.avi; expected {LAYOUT}."
    )
