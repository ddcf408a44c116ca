"""The real UCSD Ped2 dataset reads with the official clip counts, frame counts and labels.

Root: ``$AED_PED2_ROOT``, default ``~/.cache/aed/ped2`` (the folder holding ``UCSDped2/``); skipped if absent.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest

from aedcli.data import Dataset, load_dataset
from aedcli.data.labels import labels_from_intervals, read_ucsd_m

pytestmark = pytest.mark.ped2

ROOT = Path(os.environ.get("AED_PED2_ROOT", "~/.cache/aed/ped2")).expanduser()
TRAIN_FRAMES = [120, 150, 150, 180, 180, 150, 150, 120, 180, 180, 180, 180, 180, 150, 150, 150]
TEST_FRAMES = [180, 180, 150, 180, 150, 180, 180, 180, 120, 150, 180, 180]


@pytest.fixture(scope="module")
def ped2() -> Dataset:
    if not any((p / "Train").is_dir() for p in (ROOT, ROOT / "UCSDped2")):
        pytest.skip(f"UCSD Ped2 not found at {ROOT}; set AED_PED2_ROOT to the folder holding UCSDped2/")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # masks and UCSDped2.m must agree: a mismatch warning fails here
        return load_dataset("ped2", ROOT)


def test_ped2_has_16_train_and_12_test_clips_with_official_frame_counts(ped2: Dataset) -> None:
    assert [c.name for c in ped2.train] == [f"Train{i:03d}" for i in range(1, 17)]
    assert [c.name for c in ped2.test] == [f"Test{i:03d}" for i in range(1, 13)]
    assert [c.frame_count for c in ped2.train] == TRAIN_FRAMES
    assert [c.frame_count for c in ped2.test] == TEST_FRAMES


def test_ped2_mask_labels_give_1648_abnormal_of_2010_frames(ped2: Dataset) -> None:
    labels = np.concatenate([c.labels for c in ped2.test if c.labels is not None])
    assert labels.size == 2010 and int(labels.sum()) == 1648
    assert ped2.has_masks and all(c.mask_kind == "folder" for c in ped2.test)


def test_ped2_mask_labels_agree_with_ucsdped2_m(ped2: Dataset) -> None:
    m_file = ped2.root / "Test" / "UCSDped2.m"
    intervals = read_ucsd_m(m_file)
    assert len(intervals) == 12
    for clip, events in zip(ped2.test, intervals, strict=True):
        from_m = labels_from_intervals(events, clip.frame_count, source=m_file, video=clip.name)
        assert clip.labels is not None and np.array_equal(clip.labels, from_m), clip.name


def test_ped2_clip_streams_240x360_gray_frames_with_matching_masks(ped2: Dataset) -> None:
    clip = ped2.test[0]
    masks = clip.masks()
    assert masks is not None
    frame, mask = next(clip.frames()), next(masks)
    assert frame.shape == (240, 360) and frame.dtype == np.uint8
    assert mask.shape == (240, 360) and mask.dtype == bool
    assert ped2.gray and ped2.fps == 10.0
