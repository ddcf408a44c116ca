"""The teacher stage end to end on the synthetic dataset: target files, resuming, edge cases, reading back."""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from aedcli.data import load_dataset
from aedcli.data.clips import Clip, Dataset
from aedcli.errors import AedError, UsageError
from aedcli.teachers import parse_teachers, teacher_class
from aedcli.teachers import pipeline as pl
from aedcli.teachers.appearance_motion import AppearanceMotionTeacher
from aedcli.teachers.maps import ScoreScaler, box_heights, load_targets
from aedcli.teachers.pipeline import (
    TEACHERS,
    TargetPaths,
    TeachConfig,
    ensure_targets,
    stored_scaling,
    teacher_regions,
    teacher_scores,
)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny networks gain nothing from threads; on a busy machine extra threads only spin."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


EPOCHS = 2
CONFIG = TeachConfig(max_train_objects=400)


@pytest.fixture(scope="module")
def synthetic() -> Dataset:
    return load_dataset("synthetic")


@pytest.fixture(scope="module")
def taught(tmp_path_factory, synthetic) -> tuple[Path, pl.TeachReport]:
    out = tmp_path_factory.mktemp("targets")
    report = ensure_targets(synthetic, out, ["a"], progress=False, epochs=EPOCHS, config=CONFIG)
    return out, report


def _copy_teacher(src: Path, dst: Path) -> None:
    """Start a new targets folder from a trained teacher and cached boxes (skips the slow fit)."""
    shutil.copytree(src / "boxes", dst / "boxes")
    (dst / "a").mkdir(parents=True)
    shutil.copy(src / "a" / "teacher.pt", dst / "a" / "teacher.pt")


def _all(ds: Dataset) -> list[Clip]:
    return [*ds.train, *ds.test]


def test_every_clip_gets_a_target_file_with_the_contract_arrays(taught, synthetic) -> None:
    out, report = taught
    assert report.teachers["a"].fitted and report.train_objects > 100
    assert report.teachers["a"].clips_scored == len(_all(synthetic))
    for clip in _all(synthetic):
        t = load_targets(TargetPaths(out).targets("a", clip.split, clip.name))
        n = clip.frame_count
        assert t.s1.shape == (n,) and t.m4.shape == (n, 4, 4) and t.l16.shape == (n, 16, 16)
        assert t.lowres.shape == (n, 15, 20) and t.lowres.dtype == np.float16
        assert t.boxes.shape[1] == 6 and len(t.boxes) == len(t.raw) > 0
        assert t.s1.min() >= 0.0 and t.s1.max() <= 1.0
        assert t.meta["teacher"] == "a" and t.meta["normalisation"] == "train"
        assert t.meta["source"] == {"dataset": "synthetic", "split": clip.split, "clip": clip.name}
        # the 1x1 target is the max of the painted map in every frame
        np.testing.assert_allclose(t.s1, t.lowres.astype(np.float32).reshape(n, -1).max(1), atol=1e-3)
    assert (out / "a" / "teacher.pt").exists() and (out / "a" / "scaler.json").exists()


def test_training_objects_mostly_score_below_the_scaling_ceiling(taught, synthetic) -> None:
    out, _ = taught
    scaled = np.concatenate(
        [load_targets(TargetPaths(out).targets("a", "train", c.name)).boxes[:, 5] for c in synthetic.train]
    )
    # lo/hi are the min/max of the training objects' scores: they span [0, 1] and only the maximum reaches 1
    assert scaled.min() == pytest.approx(0.0) and scaled.max() == pytest.approx(1.0)
    assert np.mean(scaled >= 1.0) <= 0.01
    assert np.median(scaled) < 0.6


def test_a_second_run_reuses_every_finished_step(taught, synthetic) -> None:
    out, _ = taught
    report = ensure_targets(synthetic, out, ["a"], progress=False, epochs=EPOCHS, config=CONFIG)
    n = len(_all(synthetic))
    tr = report.teachers["a"]
    assert report.proposals_cached == n and report.proposals_computed == 0
    assert not tr.fitted and tr.clips_cached == n and tr.clips_scored == 0
    assert tr.targets_cached == n and tr.targets_written == 0


def test_a_killed_run_resumes_without_redoing_finished_clips(
    taught, synthetic, tmp_path, monkeypatch
) -> None:
    src, _ = taught
    _copy_teacher(src, tmp_path)
    real = pl._score_clip
    scored: list[str] = []

    def dying(teacher, clip, *args, **kwargs):
        if len(scored) == 3:
            raise KeyboardInterrupt  # the run is killed while scoring the fourth clip
        scored.append(clip.name)
        return real(teacher, clip, *args, **kwargs)

    monkeypatch.setattr(pl, "_score_clip", dying)
    with pytest.raises(KeyboardInterrupt):
        ensure_targets(synthetic, tmp_path, ["a"], progress=False, config=CONFIG)
    assert len(list((tmp_path / "a" / "raw").rglob("*.npz"))) == 3
    assert not list(tmp_path.rglob("*.tmp*"))  # nothing half-written

    scored.clear()
    monkeypatch.setattr(
        pl,
        "_score_clip",
        lambda teacher, clip, *a, **k: (scored.append(clip.name), real(teacher, clip, *a, **k))[1],
    )
    report = ensure_targets(synthetic, tmp_path, ["a"], progress=False, config=CONFIG)
    n = len(_all(synthetic))
    assert len(scored) == n - 3 and report.teachers["a"].clips_cached == 3
    assert not report.teachers["a"].fitted
    # the resumed run gives the same targets as the uninterrupted one
    for clip in _all(synthetic):
        a = load_targets(TargetPaths(src).targets("a", clip.split, clip.name))
        b = load_targets(TargetPaths(tmp_path).targets("a", clip.split, clip.name))
        np.testing.assert_allclose(a.l16, b.l16, atol=1e-5)


def test_parallel_workers_write_the_same_scores(taught, synthetic, tmp_path) -> None:
    src, _ = taught
    _copy_teacher(src, tmp_path)
    report = ensure_targets(synthetic, tmp_path, ["a"], progress=False, workers=2, config=CONFIG)
    assert report.teachers["a"].clips_scored == len(_all(synthetic))
    for clip in synthetic.test:
        a = load_targets(TargetPaths(src).targets("a", clip.split, clip.name))
        b = load_targets(TargetPaths(tmp_path).targets("a", clip.split, clip.name))
        np.testing.assert_allclose(a.raw, b.raw, rtol=1e-4, atol=1e-4)


def test_a_corrupt_target_file_is_reported_and_written_again(taught, synthetic, tmp_path, caplog) -> None:
    src, _ = taught
    shutil.copytree(src, tmp_path / "t")
    clip = synthetic.test[1]
    path = TargetPaths(tmp_path / "t").targets("a", "test", clip.name)
    path.write_bytes(path.read_bytes()[:100])
    with caplog.at_level(logging.WARNING, logger="aedcli"):
        report = ensure_targets(synthetic, tmp_path / "t", ["a"], progress=False, config=CONFIG)
    assert report.teachers["a"].targets_written == 1
    assert any(str(path) in r.getMessage() and "corrupt" in r.getMessage() for r in caplog.records)
    assert len(load_targets(path)) == clip.frame_count


def _still_clip(folder: Path, n: int = 16) -> Clip:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    scene = cv2.GaussianBlur(rng.integers(0, 255, (120, 160), dtype=np.uint8), (9, 9), 0)
    for i in range(n):
        cv2.imwrite(str(folder / f"{i:03d}.png"), scene)
    return Clip(name="still", split="test", path=folder, frame_count=n, labels=np.zeros(n, np.uint8))


def test_a_video_with_nothing_moving_gets_all_zero_maps(taught, synthetic, tmp_path) -> None:
    src, _ = taught
    _copy_teacher(src, tmp_path / "t")
    still = _still_clip(tmp_path / "still")
    ds = Dataset("mixed", tmp_path, train=list(synthetic.train), test=[still], gray=True, fps=25.0)
    ensure_targets(ds, tmp_path / "t", ["a"], progress=False, config=CONFIG)
    t = load_targets(TargetPaths(tmp_path / "t").targets("a", "test", "still"))
    assert len(t) == 16 and len(t.boxes) == 0
    assert not t.s1.any() and not t.m4.any() and not t.l16.any() and not t.lowres.any()
    np.testing.assert_array_equal(teacher_scores(ds, tmp_path / "t", "a")["still"], np.zeros(16))


def test_a_video_replaced_under_the_same_name_gets_new_boxes_scores_and_targets(
    taught, synthetic, tmp_path, caplog
) -> None:
    src, _ = taught
    _copy_teacher(src, tmp_path / "t")
    moving = synthetic.test[0]
    folder = tmp_path / "clip"
    folder.mkdir()
    for i, frame in enumerate(moving.frames(gray=True)):
        cv2.imwrite(str(folder / f"{i:03d}.png"), frame)
    clip = Clip(name="swapped", split="test", path=folder, frame_count=moving.frame_count)
    ds = Dataset("mixed", tmp_path, train=list(synthetic.train), test=[clip], gray=True, fps=25.0)
    ensure_targets(ds, tmp_path / "t", ["a"], progress=False, config=CONFIG)
    path = TargetPaths(tmp_path / "t").targets("a", "test", "swapped")
    assert len(load_targets(path).boxes) > 0

    shutil.rmtree(folder)
    _still_clip(folder, moving.frame_count)  # the same name and frame count, nothing moving
    with caplog.at_level(logging.INFO, logger="aedcli"):
        again = ensure_targets(ds, tmp_path / "t", ["a"], progress=False, config=CONFIG)
    assert again.proposals_computed == 1 and again.proposals_cached == len(synthetic.train)
    assert again.teachers["a"].clips_scored == 1 and again.teachers["a"].targets_written == 1
    assert "made from another version of its video" in caplog.text
    replaced = load_targets(path)
    assert len(replaced.boxes) == 0 and not replaced.l16.any()


def test_teacher_scores_are_the_maximum_of_each_frames_map(taught, synthetic) -> None:
    out, _ = taught
    scores = teacher_scores(synthetic, out, "a")
    regions = teacher_regions(synthetic, out, "a")
    assert set(scores) == set(regions) == {c.name for c in synthetic.test}
    for clip in synthetic.test:
        t = load_targets(TargetPaths(out).targets("a", "test", clip.name))
        assert scores[clip.name].shape == (clip.frame_count,)
        np.testing.assert_allclose(scores[clip.name], t.lowres.astype(np.float32).reshape(len(t), -1).max(1))
        np.testing.assert_array_equal(regions[clip.name], t.boxes)


def test_combined_teachers_average_the_teachers_maps(taught, synthetic, tmp_path) -> None:
    src, _ = taught
    shutil.copytree(src, tmp_path / "t")
    # a second teacher whose maps are exactly half of teacher a's
    for clip in synthetic.test:
        t = load_targets(TargetPaths(src).targets("a", "test", clip.name))
        t.lowres = (t.lowres.astype(np.float32) * 0.5).astype(np.float16)
        t.boxes[:, 5] *= 0.5
        t.meta["teacher"] = "flow"
        pl.save_targets(TargetPaths(tmp_path / "t").targets("flow", "test", clip.name), t)
    a = teacher_scores(synthetic, src, "a")
    both = teacher_scores(synthetic, tmp_path / "t", "teachers")
    regions = teacher_regions(synthetic, tmp_path / "t", "teachers")
    for clip in synthetic.test:
        np.testing.assert_allclose(both[clip.name], 0.75 * a[clip.name], atol=2e-3)
        ra = teacher_regions(synthetic, src, "a")[clip.name]
        np.testing.assert_allclose(regions[clip.name][:, 5], 0.75 * ra[:, 5], atol=1e-6)


def test_missing_targets_name_the_file_and_the_command_to_run(taught, synthetic) -> None:
    out, _ = taught
    with pytest.raises(AedError, match=r"b/test/.*\.npz does not exist; run 'aed teach'"):
        teacher_scores(synthetic, out, "b")
    with pytest.raises(UsageError, match="unknown"):
        teacher_scores(synthetic, out, "zzz")


def test_registry_looks_teachers_up_lazily_and_explains_missing_ones(monkeypatch) -> None:
    assert TEACHERS["a"] is AppearanceMotionTeacher
    assert list(TEACHERS) == ["a", "b", "flow"]
    assert parse_teachers("a, flow,a") == ["a", "flow"]
    with pytest.raises(UsageError, match="--teachers names unknown teacher 'c'"):
        parse_teachers("a,c")
    monkeypatch.setitem(pl.TEACHER_CLASSES, "b", ("aedcli.teachers.not_installed_here", "MultiTaskTeacher"))
    with pytest.raises(UsageError, match="teacher 'b' is not available"):
        teacher_class("b")


def test_teach_command_runs_the_stage_and_prints_a_summary(taught, synthetic, tmp_path) -> None:
    from aedcli.commands.teach import teach

    src, _ = taught
    shutil.copytree(src, tmp_path / "t")
    app = typer.Typer()
    app.command()(teach)
    app.command("noop")(lambda: None)  # two commands: the subcommand name is then required
    result = CliRunner().invoke(
        app, ["teach", "--dataset", "synthetic", "--out", str(tmp_path / "t"), "--teachers", "a", "--quiet"]
    )
    assert result.exit_code == 0, result.output
    assert "synthetic" in result.output and "reused" in result.output
    bad = CliRunner().invoke(
        app,
        ["teach", "--dataset", "synthetic", "--out", str(tmp_path), "--normalisation", "zscore", "--quiet"],
    )
    assert bad.exit_code != 0 and isinstance(bad.exception, UsageError)
    bad = CliRunner().invoke(
        app,
        ["teach", "--dataset", "synthetic", "--out", str(tmp_path), "--frame-correction", "max", "--quiet"],
    )
    assert bad.exit_code != 0 and "--frame-correction 'max' is unknown" in str(bad.exception)
    assert not (tmp_path / "boxes").exists()  # refused before any work


def test_teachers_from_a_folder_of_files_are_used_instead_of_training(taught, synthetic, tmp_path) -> None:
    src, _ = taught
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    shutil.copy(src / "a" / "teacher.pt", shipped / "a.pt")
    out = tmp_path / "t"
    assert pl.install_teacher_files(shipped, out, ["a"]) == ["a"]
    report = ensure_targets(synthetic, out, ["a"], progress=False, epochs=EPOCHS, config=CONFIG)
    assert not report.teachers["a"].fitted  # scored with the shipped file, not trained again
    clip = synthetic.test[0]
    ours = load_targets(out / "a" / "test" / f"{clip.name}.npz")
    theirs = load_targets(src / "a" / "test" / f"{clip.name}.npz")
    np.testing.assert_allclose(ours.s1, theirs.s1, atol=1e-5)
    # a teacher already in the targets folder is kept
    assert pl.install_teacher_files(shipped, out, ["a"]) == []


def test_teachers_from_refuses_missing_and_pickled_files(tmp_path) -> None:
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    with pytest.raises(UsageError, match=r"a\.pt does not exist"):
        pl.install_teacher_files(shipped, tmp_path / "t", ["a"])
    marker = tmp_path / "ran"
    torch.save({"x": _Payload(str(marker))}, shipped / "a.pt")
    with pytest.raises(Exception, match="cannot be used"):
        pl.install_teacher_files(shipped, tmp_path / "t", ["a"])
    assert not marker.exists() and not (tmp_path / "t" / "a" / "teacher.pt").exists()
    with pytest.raises(UsageError, match="not a folder"):
        pl.install_teacher_files(tmp_path / "nowhere", tmp_path / "t", ["a"])


class _Payload:
    """Unpickling this would create a file: a weights-only loader must refuse it."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.path, "w"))


def test_the_frame_correction_is_stored_and_switching_it_repaints_without_rescoring(
    taught, synthetic, tmp_path
) -> None:
    src, _ = taught
    assert "frame_correction" not in json.loads((src / "a" / "scaler.json").read_text())  # off by default
    assert stored_scaling(src, "a")[1].frame_correction == "none"

    shutil.copytree(src, tmp_path / "t")
    counting = TeachConfig(max_train_objects=400, frame_correction="count")
    report = ensure_targets(synthetic, tmp_path / "t", ["a"], progress=False, config=counting)
    tr, n = report.teachers["a"], len(_all(synthetic))
    assert tr.clips_cached == n and tr.clips_scored == 0 and tr.targets_written == n
    stored = json.loads((tmp_path / "t" / "a" / "scaler.json").read_text())
    assert stored["frame_correction"] == "count" and len(stored["count_correction"]["quantiles"]) > 100
    assert stored_scaling(tmp_path / "t", "a")[1].frame_correction == "count"
    for clip in synthetic.test:
        raw = load_targets(TargetPaths(src).targets("a", "test", clip.name))
        counted = load_targets(TargetPaths(tmp_path / "t").targets("a", "test", clip.name))
        np.testing.assert_array_equal(counted.raw, raw.raw)  # same teacher scores, painted differently
        assert counted.meta["frame_correction"] == "count" and "frame_correction" not in raw.meta
    with pytest.raises(UsageError, match="--frame-correction 'max' is unknown"):
        TeachConfig(frame_correction="max")


def test_the_training_seed_is_repeatable_and_changes_the_teacher(taught, synthetic, tmp_path) -> None:
    src, _ = taught

    def scores(seed: int, folder: str) -> np.ndarray:
        out = tmp_path / folder
        shutil.copytree(src / "boxes", out / "boxes")
        cfg = TeachConfig(max_train_objects=400, seed=seed)
        ensure_targets(synthetic, out, ["a"], progress=False, epochs=1, config=cfg)
        return np.concatenate(
            [load_targets(TargetPaths(out).targets("a", "test", c.name)).raw for c in synthetic.test]
        )

    first, again, other = scores(0, "s0"), scores(0, "s0-again"), scores(1, "s1")
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


def test_b_seeds_combine_and_views_train_several_networks_and_measure_them_on_their_held_out_objects(
    taught, synthetic, tmp_path
) -> None:
    from aedcli.teachers.multitask import MultiTaskTeacher

    src, _ = taught
    shutil.copytree(src / "boxes", tmp_path / "t" / "boxes")
    cfg = TeachConfig(max_train_objects=300, seed=3, b_seeds=2)
    first = ensure_targets(synthetic, tmp_path / "t", ["b"], progress=False, epochs=1, config=cfg)
    assert first.teachers["b"].fitted
    path = TargetPaths(tmp_path / "t").teacher_file("b")
    fitted = MultiTaskTeacher.load(path)
    assert fitted.config.seeds == 2 and len(fitted.members) == 2
    assert fitted.config.combine == "tail-max" and fitted.seed == 3  # the default, and the seed that split
    clip = synthetic.test[0]
    before = load_targets(TargetPaths(tmp_path / "t").targets("b", "test", clip.name)).raw

    z_sum = replace(cfg, b_combine="z-sum")
    report = ensure_targets(synthetic, tmp_path / "t", ["b"], progress=False, epochs=1, config=z_sum)
    tr = report.teachers["b"]
    assert not tr.fitted and tr.fit_stats["combine"] == "z-sum"
    assert tr.clips_scored == len(_all(synthetic))  # a changed file is scored again
    again = MultiTaskTeacher.load(path)
    assert again.config.combine == "z-sum"
    # the same objects and the same held-out splits as the fit: the statistics, measured again, match
    for member, before_fit in zip(again.members, fitted.members, strict=True):
        torch.testing.assert_close(member.error_mean, before_fit.error_mean)
        assert member.tails == before_fit.tails
    after = load_targets(TargetPaths(tmp_path / "t").targets("b", "test", clip.name)).raw
    assert len(after) == len(before) and before.min() >= 0.0 and not np.allclose(after, before)
    # unset, the seed count is what the file holds; asked for fewer, the extra networks are dropped and
    # for more, only the missing ones are trained: the first networks are kept as they were
    kept = ensure_targets(
        synthetic, tmp_path / "t", ["b"], progress=False, epochs=1, config=replace(z_sum, b_seeds=None)
    )
    assert not kept.teachers["b"].fitted and len(MultiTaskTeacher.load(path).members) == 2
    one = ensure_targets(
        synthetic, tmp_path / "t", ["b"], progress=False, epochs=1, config=replace(z_sum, b_seeds=1)
    )
    assert not one.teachers["b"].fitted and one.teachers["b"].clips_scored == len(_all(synthetic))
    assert len(MultiTaskTeacher.load(path).members) == 1
    three = ensure_targets(
        synthetic, tmp_path / "t", ["b"], progress=False, epochs=1, config=replace(z_sum, b_seeds=3)
    )
    grown, added = MultiTaskTeacher.load(path), three.teachers["b"].fit_stats["members"]
    assert three.teachers["b"].fitted and [m["seed"] for m in added] == [4, 5]
    assert grown.config.seeds == 3 and len(grown.members) == 3
    kept_net = grown.members[0].net.state_dict()
    for name, tensor in again.members[0].net.state_dict().items():
        torch.testing.assert_close(kept_net[name], tensor)
    # other views keep the networks, measure their statistics again and score every clip again
    views = ensure_targets(
        synthetic, tmp_path / "t", ["b"], progress=False, epochs=1, config=replace(z_sum, b_views="reversed")
    )
    assert not views.teachers["b"].fitted and views.teachers["b"].fit_stats["views"] == "reversed"
    assert views.teachers["b"].clips_scored == len(_all(synthetic))
    viewed = MultiTaskTeacher.load(path)
    assert viewed.config.views == "reversed" and len(viewed.members) == 2  # z_sum asks for two
    assert not torch.allclose(viewed.members[0].error_mean, grown.members[0].error_mean)
    with pytest.raises(UsageError, match="--b-views 'sideways' is unknown"):
        TeachConfig(b_views="sideways")
    with pytest.raises(UsageError, match="--b-combine 'median' is unknown"):
        TeachConfig(b_combine="median")
    with pytest.raises(UsageError, match="--b-seeds must be 1 or more"):
        TeachConfig(b_seeds=0)


def test_a_combine_recalibrates_a_reused_teacher_a_and_scores_it_again(taught, synthetic, tmp_path) -> None:
    from aedcli.teachers.appearance_motion import AppearanceMotionTeacher

    src, _ = taught
    _copy_teacher(src, tmp_path / "t")
    cfg = TeachConfig(max_train_objects=400, a_combine="tail-sum")
    report = ensure_targets(synthetic, tmp_path / "t", ["a"], progress=False, epochs=EPOCHS, config=cfg)
    tr = report.teachers["a"]
    assert not tr.fitted and tr.fit_stats["combine"] == "tail-sum"  # same networks, measured again
    assert tr.clips_scored == len(_all(synthetic))  # a changed file is scored again, never reused
    before = AppearanceMotionTeacher.load(src / "a" / "teacher.pt")
    after = AppearanceMotionTeacher.load(tmp_path / "t" / "a" / "teacher.pt")
    assert before.config.combine == "tail-max" and after.config.combine == "tail-sum"
    for k, v in before.appearance.state_dict().items():
        assert torch.equal(v, after.appearance.state_dict()[k])
    clip = synthetic.test[0]
    old = load_targets(TargetPaths(src).targets("a", "test", clip.name))
    new = load_targets(TargetPaths(tmp_path / "t").targets("a", "test", clip.name))
    assert len(new.raw) == len(old.raw) and not np.allclose(new.raw, old.raw)
    assert new.raw.min() >= 0.0 and old.raw.min() >= 0.0  # rarities, summed or their largest
    # asking again for what the file now holds does nothing more
    again = ensure_targets(synthetic, tmp_path / "t", ["a"], progress=False, epochs=EPOCHS, config=cfg)
    assert again.teachers["a"].clips_scored == 0 and "combine" not in again.teachers["a"].fit_stats
    with pytest.raises(UsageError, match="--a-combine 'median' is unknown"):
        TeachConfig(a_combine="median")


def _repainted(src: Path, synthetic, out: Path, normalisation: str) -> dict:
    """Teacher a's targets of ``src`` copied to ``out`` and painted again with ``normalisation``: every clip
    repainted, none scored again; returns the new ``scaler.json``."""
    shutil.copytree(src, out)
    report = ensure_targets(synthetic, out, ["a"], progress=False, normalisation=normalisation, config=CONFIG)
    tr, n = report.teachers["a"], len(_all(synthetic))
    assert tr.clips_cached == n and tr.clips_scored == 0 and tr.targets_written == n
    return json.loads((out / "a" / "scaler.json").read_text())


def test_linear_scaling_is_the_default_and_switching_to_rarity_repaints_without_rescoring(
    taught, synthetic, tmp_path
) -> None:
    src, _ = taught
    stored = json.loads((src / "a" / "scaler.json").read_text())
    assert stored["kind"] == "train" and "tail" not in stored
    kind, cfg = stored_scaling(src, "a")
    assert kind == "train" and (cfg.lo_percentile, cfg.hi_percentile) == (50.0, 100.0)

    rarity = _repainted(src, synthetic, tmp_path / "t", "train-rarity")
    assert rarity["kind"] == "train-rarity" and len(rarity["tail"]["quantiles"]) > 100
    assert stored_scaling(tmp_path / "t", "a")[0] == "train-rarity"
    for clip in synthetic.test:
        linear = load_targets(TargetPaths(src).targets("a", "test", clip.name))
        rare = load_targets(TargetPaths(tmp_path / "t").targets("a", "test", clip.name))
        np.testing.assert_array_equal(rare.raw, linear.raw)  # the same scores, painted differently
        assert rare.meta["normalisation"] == "train-rarity" and "tail" not in linear.meta["stats"]
        # the same objects in the same order: both scalings are monotone
        order = np.argsort(linear.raw, kind="stable")
        assert np.all(np.diff(rare.boxes[order, 5]) >= -1e-6)
        assert np.all(np.diff(linear.boxes[order, 5]) >= -1e-6)
    assert not np.allclose(rare.boxes[:, 5], linear.boxes[:, 5])


def test_size_scaling_repaints_without_rescoring_and_scales_each_box_with_its_heights_anchors(
    taught, synthetic, tmp_path
) -> None:
    stored = _repainted(taught[0], synthetic, tmp_path / "t", "train-size")
    assert stored["kind"] == "train-size" and stored_scaling(tmp_path / "t", "a")[0] == "train-size"
    scaler = ScoreScaler.from_dict(stored)
    assert len(stored["size_lo"]) == len(stored["size_edges"]) + 1 >= 2
    for clip in synthetic.test:
        t = load_targets(TargetPaths(tmp_path / "t").targets("a", "test", clip.name))
        assert t.meta["normalisation"] == "train-size"
        heights = box_heights(t.boxes[:, :5], t.meta["frame_size"])
        np.testing.assert_allclose(t.boxes[:, 5], scaler.apply(t.raw, heights), atol=1e-6)
        assert not np.allclose(t.boxes[:, 5], ScoreScaler.from_dict({**stored, "kind": "train"}).apply(t.raw))


def test_distill_adds_targets_painted_the_way_the_folder_was(taught, synthetic, tmp_path) -> None:
    from aedcli.data.clips import sped_up_clips
    from aedcli.distill import ensure_teacher_targets

    src, _ = taught
    shutil.copytree(src, tmp_path / "t")
    ensure_targets(synthetic, tmp_path / "t", ["a"], progress=False, normalisation="train", config=CONFIG)
    paths = TargetPaths(tmp_path / "t")
    first = synthetic.train[0]
    before = paths.targets("a", "train", first.name).stat().st_mtime_ns
    fast = sped_up_clips(synthetic.train[:1], (2,))
    ensure_teacher_targets(synthetic, tmp_path / "t", ["a"], progress=False, extra=fast)
    added = load_targets(paths.targets("a", fast[0].split, fast[0].name))
    assert added.meta["normalisation"] == "train"  # not the default
    assert paths.targets("a", "train", first.name).stat().st_mtime_ns == before  # nothing repainted


def test_chosen_options_reweight_a_reused_teacher_a_and_correct_only_the_teachers_named(
    taught, synthetic, tmp_path
) -> None:
    from aedcli.teachers.choices import A_WEIGHTS, TeacherChoices

    src, _ = taught
    _copy_teacher(src, tmp_path / "t")
    chosen = TeacherChoices(a_weights=A_WEIGHTS["all five, equal"], corrections={"a": "count"})
    cfg = TeachConfig.with_choices(chosen, max_train_objects=400)
    report = ensure_targets(synthetic, tmp_path / "t", ["a"], progress=False, epochs=EPOCHS, config=cfg)
    tr = report.teachers["a"]
    assert not tr.fitted and tr.fit_stats["weights"] == A_WEIGHTS["all five, equal"]  # same networks
    before = AppearanceMotionTeacher.load(src / "a" / "teacher.pt")
    after = AppearanceMotionTeacher.load(tmp_path / "t" / "a" / "teacher.pt")
    assert before.config.weights["motion_error"] == 0.0 and after.config.weights["motion_error"] == 1.0
    assert stored_scaling(tmp_path / "t", "a")[1].frame_correction == "count"
    clip = synthetic.test[0]
    old = load_targets(TargetPaths(src).targets("a", "test", clip.name)).raw
    new = load_targets(TargetPaths(tmp_path / "t").targets("a", "test", clip.name)).raw
    assert len(new) == len(old) and not np.allclose(new, old)  # the motion error now counts
    assert cfg.correction_for("b") == "none"


def test_chosen_velocity_switches_train_the_flow_teacher_and_a_file_with_others_is_trained_again(
    taught, synthetic, tmp_path, caplog
) -> None:
    from aedcli.teachers.velocity import VelocityTeacher

    src, _ = taught
    shutil.copytree(src / "boxes", tmp_path / "t" / "boxes")
    floor = TeachConfig(max_train_objects=300, velocity={"flag_slow": False, "context_neighbours": 16})
    first = ensure_targets(synthetic, tmp_path / "t", ["flow"], progress=False, config=floor)
    path = TargetPaths(tmp_path / "t").teacher_file("flow")
    assert first.teachers["flow"].fitted
    fitted = VelocityTeacher.load(path)
    assert not fitted.config.flag_slow and fitted.config.context_neighbours == 16
    same = ensure_targets(synthetic, tmp_path / "t", ["flow"], progress=False, config=floor)
    assert not same.teachers["flow"].fitted and same.teachers["flow"].clips_scored == 0
    flag = replace(floor, velocity={"flag_slow": True, "context_neighbours": 0})
    with caplog.at_level(logging.WARNING, logger="aedcli"):
        again = ensure_targets(synthetic, tmp_path / "t", ["flow"], progress=False, config=flag)
    assert again.teachers["flow"].fitted and "trained with other context_neighbours, flag_slow" in caplog.text
    refit = VelocityTeacher.load(path)
    assert refit.config.flag_slow and refit.config.context_neighbours == 0


def test_teach_choices_applies_a_report_and_refuses_the_options_it_replaces(taught, tmp_path) -> None:
    from aedcli.commands.teach import teach

    src, _ = taught
    shutil.copytree(src, tmp_path / "t")
    report = tmp_path / "choices.json"
    report.write_text(
        json.dumps(
            {
                "chosen": {
                    "teacher a weights": "all five, equal",
                    "teacher a frame calibration": "count-corrected",
                }
            }
        )
    )
    app = typer.Typer()
    app.command()(teach)
    app.command("noop")(lambda: None)
    args = ["teach", "--dataset", "synthetic", "--out", str(tmp_path / "t"), "--teachers", "a", "--quiet"]
    result = CliRunner().invoke(app, [*args, "--choices", str(report)])
    assert result.exit_code == 0, result.output
    assert f"options from {report}: a weights" in " ".join(result.output.split())
    assert (
        AppearanceMotionTeacher.load(tmp_path / "t" / "a" / "teacher.pt").config.weights["motion_error"]
        == 1.0
    )
    assert stored_scaling(tmp_path / "t", "a")[1].frame_correction == "count"
    bad = CliRunner().invoke(
        app, [*args, "--choices", str(report), "--b-seeds", "2", "--a-combine", "linear"]
    )
    assert isinstance(bad.exception, UsageError) and "drop --a-combine and --b-seeds" in str(bad.exception)
    # an option typed at its default value is still an option given: the choices would override it
    typed = CliRunner().invoke(app, [*args, "--choices", str(report), "--frame-correction", "none"])
    assert isinstance(typed.exception, UsageError) and "drop --frame-correction" in str(typed.exception)
    views = CliRunner().invoke(app, [*args, "--choices", str(report), "--b-views", "reversed"])
    assert isinstance(views.exception, UsageError) and "drop --b-views" in str(views.exception)
    unknown = CliRunner().invoke(app, [*args, "--b-views", "sideways"])
    assert isinstance(unknown.exception, UsageError) and "--b-views 'sideways'" in str(unknown.exception)
    missing = CliRunner().invoke(app, [*args, "--choices", str(tmp_path / "none.json")])
    assert isinstance(missing.exception, UsageError) and "none.json does not exist" in str(missing.exception)


def test_distill_choices_set_the_teachers_it_trains_and_painted_teachers_keep_their_own(
    taught, synthetic, tmp_path
) -> None:
    from aedcli.commands.distill import distill
    from aedcli.teachers.velocity import VelocityTeacher

    src, _ = taught
    shutil.copytree(src / "boxes", tmp_path / "run" / "targets" / "boxes")
    report = tmp_path / "choices.json"
    chosen = {"velocity teacher": "floor slow at the median", "teachers' mean, scaling": "train-rarity"}
    report.write_text(json.dumps({"chosen": chosen}))
    app = typer.Typer()
    app.command()(distill)
    app.command("noop")(lambda: None)
    args = ["distill", "--dataset", "synthetic", "--out", str(tmp_path / "run"), "--teachers", "flow"]
    args += ["--stage", "teachers", "--quiet"]
    result = CliRunner().invoke(app, [*args, "--choices", str(report)])
    assert result.exit_code == 0, result.output
    assert "options from" in result.output and "flag_slow=False" in " ".join(result.output.split())
    targets = tmp_path / "run" / "targets"
    assert not VelocityTeacher.load(TargetPaths(targets).teacher_file("flow")).config.flag_slow
    assert stored_scaling(targets, "flow")[0] == "train-rarity"

    # Targets added later (sped-up copies) are painted the way the folder was, whatever else is asked.
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"chosen": {"velocity teacher": "three-frame pairs"}}))
    again = CliRunner().invoke(app, [*args, "--speedups", "2", "--choices", str(other)])
    assert again.exit_code == 0, again.output
    assert not VelocityTeacher.load(TargetPaths(targets).teacher_file("flow")).config.flag_slow
    assert stored_scaling(targets, "flow")[0] == "train-rarity"
    assert TargetPaths(targets).targets("flow", "train", f"{synthetic.train[0].name}_x2").is_file()


def test_a_teacher_trained_on_other_training_video_is_trained_again(synthetic, tmp_path, caplog) -> None:
    import os

    train = []
    for clip in synthetic.train:
        folder = tmp_path / "train" / clip.name
        folder.mkdir(parents=True)
        for i, frame in enumerate(clip.frames(gray=True)):
            cv2.imwrite(str(folder / f"{i:03d}.png"), frame)
        train.append(replace(clip, path=folder))
    ds = Dataset("copied", tmp_path, train=train, test=[], gray=True, fps=25.0)
    cfg = TeachConfig(max_train_objects=300)
    first = ensure_targets(ds, tmp_path / "t", ["flow"], progress=False, config=cfg)
    stamp = TargetPaths(tmp_path / "t").teacher_file("flow").with_name("teacher.json")
    assert first.teachers["flow"].fitted and stamp.is_file()
    same = ensure_targets(ds, tmp_path / "t", ["flow"], progress=False, config=cfg)
    assert not same.teachers["flow"].fitted

    frame = next(iter(sorted((tmp_path / "train" / train[0].name).iterdir())))
    os.utime(frame, ns=(frame.stat().st_atime_ns, frame.stat().st_mtime_ns + 10**9))  # the video replaced
    with caplog.at_level(logging.WARNING, logger="aedcli"):
        again = ensure_targets(ds, tmp_path / "t", ["flow"], progress=False, config=cfg)
    assert again.teachers["flow"].fitted and "trained on other training video" in caplog.text
    stamp.unlink()  # a file without a stamp (installed, or older) is reused as it is
    os.utime(frame, ns=(frame.stat().st_atime_ns, frame.stat().st_mtime_ns + 10**9))
    kept = ensure_targets(ds, tmp_path / "t", ["flow"], progress=False, config=cfg)
    assert not kept.teachers["flow"].fitted
