"""The synthetic dataset: deterministic, cached, read as a folder dataset, with the anomalies it promises."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aedcli.data import Dataset, load_dataset
from aedcli.data.synthetic import ANOMALY_KINDS, SyntheticConfig, generate_synthetic, load_synthetic

SMALL = SyntheticConfig(height=48, width=64, train_videos=1, test_videos=2, frames=16)


@pytest.fixture(scope="module")
def default_dataset(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    return load_synthetic(cache_dir=tmp_path_factory.mktemp("cache"))


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _centroids(masks: list[np.ndarray]) -> np.ndarray:
    return np.array([np.argwhere(m).mean(axis=0) for m in masks])  # (T, 2) rows (y, x)


def _abnormal_masks(ds: Dataset, kind: str) -> list[np.ndarray]:
    clip = next(c for c in ds.test if c.name.endswith(kind))
    masks = clip.masks()
    assert masks is not None and clip.labels is not None
    return [m for m, a in zip(masks, clip.labels, strict=True) if a]


def test_same_seed_gives_identical_files(tmp_path: Path) -> None:
    a = generate_synthetic(SMALL, tmp_path / "a")
    b = generate_synthetic(SMALL, tmp_path / "b")
    assert a.name == b.name
    files_a, files_b = _tree_bytes(a), _tree_bytes(b)
    assert len(files_a) == 1 + 16 + 2 * (16 + 16 + 1)  # config, train frames, test frames + masks + labels
    assert files_a == files_b


def test_different_seed_gives_different_frames(tmp_path: Path) -> None:
    a = load_synthetic(SMALL, tmp_path)
    b = load_synthetic(SyntheticConfig(**{**SMALL.__dict__, "seed": 1}), tmp_path)
    assert a.root != b.root
    assert not np.array_equal(next(a.train[0].frames()), next(b.train[0].frames()))


def test_default_dataset_is_small_gray_and_fully_labelled(default_dataset: Dataset) -> None:
    ds = default_dataset
    assert ds.name == "synthetic" and ds.gray
    assert [c.name for c in ds.train] == ["train01", "train02", "train03", "train04"]
    assert [c.name for c in ds.test] == [f"test{i + 1:02d}_{k}" for i, k in enumerate(ANOMALY_KINDS)]
    assert all(c.frame_count == 64 for c in (*ds.train, *ds.test))
    assert ds.has_labels and ds.has_masks and all(c.labels is None for c in ds.train)
    frame = next(ds.test[0].frames())
    assert frame.shape == (120, 160) and frame.dtype == np.uint8


def test_masks_are_non_empty_exactly_on_abnormal_frames(default_dataset: Dataset) -> None:
    for clip in default_dataset.test:
        masks = clip.masks()
        assert masks is not None and clip.labels is not None
        assert [bool(m.any()) for m in masks] == clip.labels.astype(bool).tolist(), clip.name


def test_every_test_video_has_normal_frames_before_and_after_its_event(default_dataset: Dataset) -> None:
    for clip in default_dataset.test:
        assert clip.labels is not None
        abnormal = np.flatnonzero(clip.labels)
        assert abnormal.size >= 8, clip.name
        assert abnormal[0] >= 8 and abnormal[-1] <= clip.frame_count - 8, clip.name


def test_fast_mover_crosses_at_least_three_times_walking_speed(default_dataset: Dataset) -> None:
    # Whole-frame steps only: at the borders the footprint is clipped and its centroid lags.
    masks = [
        m for m in _abnormal_masks(default_dataset, "fast_mover") if not (m[:, 0].any() or m[:, -1].any())
    ]
    steps = np.diff(_centroids(masks), axis=0)
    assert np.median(np.abs(steps[:, 1])) >= 3 * SyntheticConfig().walk_speed[0]


def test_wrong_direction_figure_moves_vertically(default_dataset: Dataset) -> None:
    c = _centroids(_abnormal_masks(default_dataset, "wrong_direction"))
    dy, dx = np.abs(c[-1] - c[0])
    assert dy >= 10 and dx < 1


def test_large_object_is_wider_than_tall_and_wider_than_any_pedestrian(default_dataset: Dataset) -> None:
    masks = _abnormal_masks(default_dataset, "large_object")
    widths = [np.ptp(np.argwhere(m)[:, 1]) + 1 for m in masks]
    heights = [np.ptp(np.argwhere(m)[:, 0]) + 1 for m in masks]
    assert max(widths) > max(heights) and max(widths) >= 18  # pedestrians are at most 9 px wide


def test_sudden_appearance_pops_up_inside_the_frame_and_stays_put(default_dataset: Dataset) -> None:
    masks = _abnormal_masks(default_dataset, "sudden_appearance")
    first = masks[0]
    assert not (first[0].any() or first[-1].any() or first[:, 0].any() or first[:, -1].any())
    assert all(np.array_equal(m, first) for m in masks)


def test_load_dataset_synthetic_needs_no_files_and_reuses_its_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AED_CACHE", str(tmp_path))
    monkeypatch.delenv("AED_DATA", raising=False)
    first = load_dataset("synthetic")
    stamp = (first.root / "config.json").stat().st_mtime_ns
    second = load_dataset("synthetic")
    assert first.root == second.root == tmp_path / f"synthetic-{SyntheticConfig().cache_key()}"
    assert (second.root / "config.json").stat().st_mtime_ns == stamp  # not generated again
    assert [p.name for p in tmp_path.iterdir()] == [first.root.name]  # no temporary folder left behind


def test_cache_key_changes_with_every_parameter() -> None:
    base = SyntheticConfig()
    variants = [SyntheticConfig(seed=1), SyntheticConfig(frames=65), SyntheticConfig(noise_sigma=3.0)]
    assert len({base.cache_key(), *(v.cache_key() for v in variants)}) == 4


def test_config_rejects_videos_too_short_for_normal_and_abnormal_parts() -> None:
    with pytest.raises(ValueError, match="at least 16 frames"):
        SyntheticConfig(frames=8)
    with pytest.raises(ValueError, match="anomalies"):
        SyntheticConfig(anomalies=("meteor",))
