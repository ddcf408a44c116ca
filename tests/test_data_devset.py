"""The development set: held-out normal video, faster foreground pasted in, labelled by its mask."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from aedcli.data import Dataset, load_dataset
from aedcli.data.devset import PastedConfig, build_pasted, foreground, load_pasted, plan_events
from aedcli.data.synthetic import SyntheticConfig, load_synthetic
from aedcli.errors import DatasetError, UsageError

SOURCE = SyntheticConfig(seed=3, height=64, width=96, train_videos=4, test_videos=0, frames=48)
CONFIG = PastedConfig(held_out=2, events=2, speeds=(3,), glides=(4.0,), threshold=20.0)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    return load_synthetic(SOURCE, cache_dir=tmp_path_factory.mktemp("synthetic"))


@pytest.fixture(scope="module")
def pasted(source: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    return load_pasted(source, CONFIG, cache_dir=tmp_path_factory.mktemp("pasted"))


def test_last_training_videos_are_held_out_and_the_rest_still_train(source: Dataset, pasted: Dataset) -> None:
    assert [c.name for c in pasted.train] == [c.name for c in source.train[:2]]
    assert [c.name for c in pasted.test] == [f"{c.name}_pasted" for c in source.train[2:]]
    for kept, original in zip(pasted.train, source.train, strict=False):
        assert np.array_equal(np.stack(list(kept.frames())), np.stack(list(original.frames())))
    assert pasted.has_labels and pasted.has_masks and pasted.gray == source.gray


def test_pixels_change_only_under_the_mask_and_labels_follow_its_area(
    source: Dataset, pasted: Dataset
) -> None:
    for clip, original in zip(pasted.test, source.train[2:], strict=True):
        frames, before = np.stack(list(clip.frames())), np.stack(list(original.frames()))
        masks = np.stack(list(clip.masks()))  # type: ignore[arg-type]
        assert np.array_equal(frames[~masks], before[~masks])
        assert (frames[masks] != before[masks]).mean() > 0.3  # pasted people differ from what they cover
        area = masks.reshape(len(masks), -1).mean(axis=1)
        assert np.array_equal(clip.labels, (area >= CONFIG.min_area).astype(np.uint8))
        labels = clip.labels
        assert labels is not None and labels.any()
        assert not labels[0] and not labels[-1]  # normal frames before and after the events


def test_sped_up_event_shows_every_speed_th_source_frame(source: Dataset, pasted: Dataset) -> None:
    held = source.train[2:]
    plan = plan_events([c.frame_count for c in held], CONFIG)
    event = next(e for e in plan[0] if e.kind == "sped_up")
    clip_frames = np.stack(list(pasted.test[0].frames()))
    masks = np.stack(list(pasted.test[0].masks()))  # type: ignore[arg-type]
    source_frames = list(held[event.source].frames())
    source_masks = list(foreground(source_frames, CONFIG.threshold))
    for j in (0, event.length // 2, event.length - 1):
        s = event.source_start + 3 * j
        m = source_masks[s]
        assert np.array_equal(clip_frames[event.start + j][m], source_frames[s][m])
        assert (masks[event.start + j] >= m).all()


def test_single_mode_pastes_one_object_that_it_follows(source: Dataset, tmp_path: Path) -> None:
    single = load_pasted(source, replace(CONFIG, single=True), cache_dir=tmp_path)
    crowd = load_pasted(source, CONFIG, cache_dir=tmp_path)
    assert single.root != crowd.root
    for one, many in zip(single.test, crowd.test, strict=True):
        one_masks = np.stack(list(one.masks()))  # type: ignore[arg-type]
        many_masks = np.stack(list(many.masks()))  # type: ignore[arg-type]
        assert (many_masks >= one_masks).all()  # the object is part of the foreground
        assert one_masks.sum() < many_masks.sum()
        regions = [cv2.connectedComponents(m.astype(np.uint8))[0] - 1 for m in one_masks]
        assert max(regions) == 1 and sum(regions) > 0
        centres = [np.argwhere(m).mean(axis=0) for m in one_masks if m.any()]
        steps = np.linalg.norm(np.diff(centres, axis=0), axis=1)
        assert np.median(steps) < 0.25 * one_masks.shape[1]  # followed, not redrawn at every frame


def test_events_alternate_kinds_and_never_paste_a_video_into_itself() -> None:
    plan = plan_events([150, 150, 180, 120], PastedConfig())
    kinds = [e.kind for events in plan for e in events]
    assert kinds.count("sped_up") == kinds.count("gliding") == 4
    for i, events in enumerate(plan):
        assert all(e.source != i for e in events)
        assert events[0].start + events[0].length <= events[1].start  # events do not overlap
    assert plan == plan_events([150, 150, 180, 120], PastedConfig())
    assert plan != plan_events([150, 150, 180, 120], PastedConfig(seed=1))


def test_the_set_is_built_once_and_reused(source: Dataset, tmp_path: Path) -> None:
    first = build_pasted(source, CONFIG, cache_dir=tmp_path)
    stamp = (first / "config.json").stat().st_mtime_ns
    assert build_pasted(source, CONFIG, cache_dir=tmp_path) == first
    assert (first / "config.json").stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temporary folder left behind


def test_too_few_training_videos_are_refused_with_the_count(source: Dataset, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"has 4 training videos.*at least 5"):
        build_pasted(source, PastedConfig(held_out=4), cache_dir=tmp_path)


@pytest.mark.parametrize("name", ["devset:synthetic", "devset:", "devset:devset:ped2"])
def test_devset_of_a_dataset_without_training_videos_is_refused_naming_an_example(name: str) -> None:
    with pytest.raises(
        UsageError, match=r"needs the name of a dataset with training videos, such as devset:ped2"
    ):
        load_dataset(name)


def test_devset_of_a_folder_dataset_builds_from_its_training_videos(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tiny = SyntheticConfig(seed=5, height=48, width=64, train_videos=5, test_videos=0, frames=32)
    root = load_synthetic(tiny, cache_dir=tmp_path / "source").root
    monkeypatch.setenv("AED_CACHE", str(tmp_path / "cache"))
    made = load_dataset("devset:folder", root)
    assert [c.name for c in made.train] == ["train01"]
    assert [c.name for c in made.test] == [f"train{i:02d}_pasted" for i in range(2, 6)]
    assert made.has_labels and made.has_masks
    assert all(c.labels is not None and c.labels.any() for c in made.test)
    assert made.root.parent == tmp_path / "cache"  # built in the cache, not beside the source
    assert load_dataset("devset:folder", root).root == made.root  # and read from there the next time
