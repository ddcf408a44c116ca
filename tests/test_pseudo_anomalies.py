"""Sped-up training video as pseudo-anomalies: the clips, their teacher targets, and distillation on them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _distill_fixtures import distill_write_dataset, distill_write_targets, tiny_config

from aedcli.cli import main
from aedcli.data import load_dataset
from aedcli.data.clips import Dataset, sped_up
from aedcli.distill import DistillConfig, StackDataset, distill
from aedcli.errors import UsageError
from aedcli.teachers.maps import load_targets
from aedcli.teachers.pipeline import TargetPaths, ensure_targets
from aedcli.weights import load_weights

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Dataset, Path]:
    root = tmp_path_factory.mktemp("speedup-data")
    dataset = distill_write_dataset(root / "data")
    return dataset, root


def test_a_sped_up_clip_streams_every_kth_frame_under_its_own_name(tiny_data: tuple[Dataset, Path]) -> None:
    clip = tiny_data[0].train[0]
    fast = sped_up(clip, 3)
    assert (fast.name, fast.frame_count, fast.step, fast.source) == (f"{clip.name}_x3", 4, 3, clip.name)
    frames = list(clip.frames(gray=True))
    got = list(fast.frames(gray=True))
    assert len(got) == fast.frame_count
    for j, frame in enumerate(got):
        np.testing.assert_array_equal(frame, frames[3 * j])


def test_speeding_up_needs_a_factor_of_two_or_more_and_a_normal_speed_clip(
    tiny_data: tuple[Dataset, Path],
) -> None:
    clip = tiny_data[0].train[0]
    with pytest.raises(ValueError, match="step 2 or more"):
        sped_up(clip, 1)
    with pytest.raises(ValueError, match="already sped up"):
        sped_up(sped_up(clip, 2), 2)


def test_stack_dataset_reads_a_sped_up_clip_from_the_normal_speed_cache(tmp_path: Path) -> None:
    path = tmp_path / "clip.npy"
    np.save(path, np.arange(20, dtype=np.uint8)[:, None, None].repeat(2, 1).repeat(2, 2))
    data = StackDataset([path, path], offset=3, steps=[1, 2])
    assert len(data) == 20 + 10
    # item 20 + j is frame 2j of the sped-up clip, stacked with frames 2j - 6 and 2j + 6
    assert data[20 + 4][0][:, 0, 0].tolist() == [8, 2, 14]
    assert data[20 + 1][0][:, 0, 0].tolist() == [2, 2, 8]  # 2 - 6 < 0: frame t repeats
    assert data[5][0][:, 0, 0].tolist() == [5, 2, 8]


@pytest.mark.parametrize("speedups", [(1,), (2, 2)])
def test_speedups_must_be_distinct_factors_of_two_or_more(speedups: tuple[int, ...]) -> None:
    with pytest.raises(UsageError, match="--speedups"):
        DistillConfig(speedups=speedups)


def test_flow_teacher_scores_sped_up_training_video_above_normal_speed(tmp_path: Path) -> None:
    # Real teacher pipeline on the synthetic walkway: the sped-up copies get boxes, scores and targets, they
    # do not move the scaling (a run without them writes the same scaler), and walkers at 3x speed score
    # higher than at normal speed.
    synthetic = load_dataset("synthetic")
    fast = [sped_up(c, 3) for c in synthetic.train]
    ensure_targets(synthetic, tmp_path / "plain", ["flow"], progress=False)
    ensure_targets(synthetic, tmp_path / "fast", ["flow"], progress=False, extra=fast)
    plain, paths = TargetPaths(tmp_path / "plain"), TargetPaths(tmp_path / "fast")
    assert json.loads(plain.scaler("flow").read_text()) == json.loads(paths.scaler("flow").read_text())
    normal = np.concatenate(
        [load_targets(paths.targets("flow", "train", c.name)).s1 for c in synthetic.train]
    )
    quick = []
    for clip in fast:
        targets = load_targets(paths.targets("flow", "train", clip.name))
        assert len(targets) == clip.frame_count
        quick.append(targets.s1)
    assert float(np.concatenate(quick).mean()) > 2 * float(normal.mean())


def _fast_targets(dataset: Dataset, targets_dir: Path, steps: tuple[int, ...]) -> None:
    fast = [sped_up(c, k) for k in steps for c in dataset.train]
    view = Dataset(dataset.name, dataset.root, fast, [], dataset.gray, dataset.fps)
    distill_write_targets(view, targets_dir, ("a",))


def test_distillation_learns_from_sped_up_clips_and_records_them(
    tiny_data: tuple[Dataset, Path], tmp_path: Path
) -> None:
    dataset, _ = tiny_data
    out = tmp_path / "run"
    distill_write_targets(dataset, out / "targets", ("a",))
    _fast_targets(dataset, out / "targets", (2,))
    cfg = tiny_config(speedups=(2,), select="val")
    result = distill(dataset, out, cfg, quiet=True)
    history = json.loads((out / "history.json").read_text())
    assert history["distill"][0]["frames"] == 28  # 2 clips x (10 frames + 5 sped up), last batch of 2 dropped
    assert history["pretrain"][0]["frames"] == 20  # pre-training sees normal speed only
    assert result.weights is not None
    prov = load_weights(result.weights).provenance
    assert prov["pseudo_anomaly_frames"] == 10 and prov["distill_config"]["speedups"] == [2]
    assert "held-out training videos and their sped-up copies" in prov["selection"]


def test_cli_passes_speedups_and_refuses_words(
    tiny_data: tuple[Dataset, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset, root = tiny_data
    out = tmp_path / "run"
    distill_write_targets(dataset, out / "targets", ("a",))
    base = ["distill", "--dataset", "folder", "--root", str(root / "data"), "--out", str(out), "--quiet"]
    base += ["--variant", "fastaed-xs", "--size", "32x48", "--teachers", "a", "--batch", "4"]
    with pytest.raises(SystemExit) as exc:
        main([*base, "--speedups", "two"])
    assert exc.value.code == 2 and "--speedups takes whole numbers" in capsys.readouterr().err
    _fast_targets(dataset, out / "targets", (3,))
    main([*base, "--speedups", "3", "--pretrain-epochs", "1", "--epochs", "1", "--val-videos", "0"])
    prov = load_weights(out / "weights.pt").provenance
    assert prov["distill_config"]["speedups"] == [3] and prov["pseudo_anomaly_frames"] == 3 * 4


def test_teach_command_scores_sped_up_copies_of_every_training_video(tmp_path: Path) -> None:
    synthetic = load_dataset("synthetic")
    main(
        ["teach", "--dataset", "synthetic", "--out", str(tmp_path), "--teachers", "flow", "--speedups", "2,3"]
    )
    paths = TargetPaths(tmp_path)
    for clip in synthetic.train:
        for k in (2, 3):
            fast = sped_up(clip, k)
            assert len(load_targets(paths.targets("flow", "train", fast.name))) == fast.frame_count
