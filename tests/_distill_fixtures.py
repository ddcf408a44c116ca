"""Small on-disk datasets and teacher targets for the student and distillation tests.

The dataset uses the folder layout (``train/<clip>/0001.png``); the targets follow the teacher target
format of :mod:`aedcli.teachers.maps`, made from frame-difference motion maps so they need no teacher.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from aedcli.data.clips import Clip, Dataset
from aedcli.data.folder import load_folder
from aedcli.distill import DistillConfig
from aedcli.teachers.maps import TARGETS_FORMAT, TARGETS_VERSION, Targets, pool_targets, save_targets

DISTILL_SIZE = (32, 48)
"""Frame size (height, width) of the fixture dataset."""


def tiny_config(teachers: Sequence[str] = ("a",), **kw: object) -> DistillConfig:
    """A run of seconds on the fixture dataset: fastaed-xs, 1 + 1 epochs, batch 4, 1 video held out."""
    base: dict[str, object] = {
        "variant": "fastaed-xs",
        "size": DISTILL_SIZE,
        "epochs_pretrain": 1,
        "epochs": 1,
        "batch": 4,
        "teachers": tuple(teachers),
        "val_videos": 1,
    }
    return DistillConfig(**(base | kw))  # type: ignore[arg-type]


def distill_write_dataset(
    root: Path, clips: int = 3, frames: int = 10, size: tuple[int, int] = DISTILL_SIZE, seed: int = 0
) -> Dataset:
    """A gray folder dataset of ``clips`` training clips: a bright square moving over noise."""
    rng = np.random.default_rng(seed)
    h, w = size
    for c in range(clips):
        folder = root / "train" / f"clip{c + 1:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        x, y = int(rng.integers(0, w - 8)), int(rng.integers(0, h - 8))
        vx, vy = int(rng.integers(1, 4)), int(rng.integers(-1, 2))
        for t in range(frames):
            frame = rng.integers(40, 80, size=(h, w), dtype=np.uint8)
            px, py = (x + vx * t) % (w - 8), (y + vy * t) % (h - 8)
            frame[py : py + 8, px : px + 8] = 220
            cv2.imwrite(str(folder / f"{t + 1:04d}.png"), frame)
    return load_folder(root)


def distill_motion_maps(clip: Clip, offset: int = 3) -> np.ndarray:
    """|frame t - frame t-3| of a clip, area-pooled to an (N, 8, 12) grid, in grey levels / 255.

    The offset matches the student's stack, so the target is computable from its input (on Ped2 a one-frame
    difference is mostly sensor noise the stack cannot see).
    """
    frames = np.stack(list(clip.frames(gray=True))).astype(np.float32)  # (N, H, W)
    before = np.concatenate([frames[:offset], frames[:-offset]])  # frame t-3, or t itself near the start
    diff = np.abs(frames - before) / 255.0
    motion = cv2.resize(diff.transpose(1, 2, 0), (12, 8), interpolation=cv2.INTER_AREA)
    return motion.reshape(8, 12, -1).transpose(2, 0, 1)  # (N, 8, 12)


def distill_write_targets(
    dataset: Dataset, targets_dir: Path, teachers: Sequence[str], boxes: bool = False
) -> None:
    """Target files for every clip and teacher from motion maps, scaled to [0, 1] over the training set.

    Like a teacher's scaling: divide by the 99.5th percentile of all training cells, clip at 1; teacher k
    gets the maps times ``1 - 0.3 k`` so teachers differ. ``boxes`` adds one box per frame, the cell of
    most motion, and the frame size to the metadata (as proposals would).
    """
    maps = {clip: distill_motion_maps(clip) for clip in (*dataset.train, *dataset.test)}
    high = float(np.percentile(np.concatenate([maps[c].ravel() for c in dataset.train]), 99.5)) or 1.0
    for k, teacher in enumerate(teachers):
        for clip, motion in maps.items():
            lowres = np.clip(motion / high, 0.0, 1.0) * (1.0 - 0.3 * k)  # (N, 8, 12)
            s1, m4, l16 = pool_targets(lowres)
            meta: dict[str, object] = {
                "format": TARGETS_FORMAT,
                "version": TARGETS_VERSION,
                "teacher": teacher,
            }
            rows = np.zeros((0, 6), np.float32)
            if boxes:
                meta["frame_size"] = list(DISTILL_SIZE)
                ch, cw = DISTILL_SIZE[0] // motion.shape[1], DISTILL_SIZE[1] // motion.shape[2]
                r, c = np.unravel_index(motion.reshape(len(motion), -1).argmax(axis=1), motion.shape[1:])
                t = np.arange(len(motion))
                rows = np.stack([t, c * cw, r * ch, (c + 1) * cw, (r + 1) * ch, t * 0], 1).astype(np.float32)
            targets = Targets(
                s1, m4, l16, lowres.astype(np.float16), rows, np.zeros(len(rows), np.float32), meta
            )
            save_targets(targets_dir / teacher / clip.split / f"{clip.name}.npz", targets)
