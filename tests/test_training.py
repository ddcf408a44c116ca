"""Training: settings, which footage trains and which validates, pseudo-anomalies, stacks, losses, runs."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from _robustness_fixtures import write_training_dataset

from aedcli.cli.app import main
from aedcli.data.clips import Clip, Dataset, sped_up, time_slice
from aedcli.data.folder import load_folder
from aedcli.errors import UsageError
from aedcli.model.inputs import InputSpec
from aedcli.model.student import Discriminator, Student, StudentMaps, student_config
from aedcli.model.weights import load_weights
from aedcli.teachers import TeachConfig
from aedcli.training.config import TrainConfig, load_settings
from aedcli.training.data import (
    EpochSampler,
    FrameCache,
    StackDataset,
    pseudo_anomaly_views,
    region_mix,
    split_validation,
)
from aedcli.training.losses import adversarial_loss, constant_kd_loss, discriminator_loss, kd_loss
from aedcli.training.run import distill
from aedcli.video import stack_indices

SIZE = (32, 48)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def write_dataset(root: Path, clips: int = 3, frames: int = 50, seed: int = 0) -> Dataset:
    """A gray folder dataset: a square crossing a textured background at a pixel a frame, left to right."""
    return load_folder(write_training_dataset(root, clips, frames, SIZE, seed))


def tiny(**kw: object) -> TrainConfig:
    """Seconds of training on the fixture dataset."""
    base = {
        "variant": "fastaed-xxs",
        "size": SIZE,
        "pretrain_epochs": 1,
        "epochs": 1,
        "epoch_steps": 8,
        "batch": 4,
        "bn_batches": 2,
    }
    return TrainConfig(**(base | kw))  # type: ignore[arg-type]


TEACH = TeachConfig(height_sample=20)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    return write_dataset(tmp_path_factory.mktemp("train-data"))


# ------------------------------------------------------------------------------------------------ settings


def test_the_default_settings_are_the_recipe_and_validate() -> None:
    cfg = TrainConfig()
    assert cfg.speedups and cfg.zooms and cfg.region_mix > 0 and cfg.validation == "auto"
    with pytest.raises(UsageError, match="region_mix"):
        TrainConfig(speedups=(), zooms=())
    with pytest.raises(UsageError, match="unknown training setting 'lr_d'"):
        TrainConfig.from_dict({"lr_d": 1e-3})
    with pytest.raises(UsageError, match="max_passes must be 0 or a positive number"):
        TrainConfig(max_passes=-1)


def test_a_settings_file_changes_only_what_it_names(tmp_path: Path) -> None:
    path = tmp_path / "study.toml"
    path.write_text(
        "[training]\nepochs = 3\nzooms = [1.5]\n\n[teachers]\nmotion = { body_fractions = [0.4] }\n"
    )
    teach, train = load_settings(path)
    assert train.epochs == 3 and train.zooms == (1.5,) and train.batch == TrainConfig().batch
    assert teach.motion.body_fractions == (0.4,) and teach.objects == TeachConfig().objects
    (tmp_path / "bad.json").write_text('{"extra": {}}')
    with pytest.raises(UsageError, match="only a \\[teachers\\] and a \\[training\\] section"):
        load_settings(tmp_path / "bad.json")


# ---------------------------------------------------------------------------------------------------- data


def test_validation_holds_out_whole_videos_when_there_are_many_and_time_slices_otherwise(
    tmp_path: Path,
) -> None:
    many = [Clip(f"v{i}", "train", tmp_path, 100) for i in range(16)]
    train, val = split_validation(many, "auto", 0.15)
    assert len(val) == 2 and len(train) == 14 and all(c.source is None for c in val)
    one = [Clip("long", "train", tmp_path, 1000)]
    train, val = split_validation(one, "auto", 0.15)
    assert [(c.start, c.frame_count) for c in train] == [(0, 850)]
    assert [(c.start, c.frame_count) for c in val] == [(850, 150)]
    assert all(c.recording == "long" for c in train + val)


def test_pseudo_anomalies_are_sped_up_and_magnified_views_of_each_part(tmp_path: Path) -> None:
    part = time_slice(Clip("v", "train", tmp_path, 100), 0, 80)
    views = pseudo_anomaly_views([part], speedups=(2, 3), zooms=(2.0,), seed=0)
    assert [(v.step, v.zoom, v.frame_count, v.recording) for v in views] == [
        (2, 1.0, 40, "v"),
        (3, 1.0, 27, "v"),
        (1, 2.0, 80, "v"),
    ]


def test_stacks_of_slices_and_views_follow_the_stacking_rule_within_each_clip(
    dataset: Dataset, tmp_path: Path
) -> None:
    spec = InputSpec(*SIZE)
    cache = FrameCache(tmp_path, spec)
    cache.build(dataset.train)
    clip = dataset.train[0]
    frames = np.load(cache.path(clip))
    part = time_slice(clip, 2, 11)
    fast = sped_up(part, 2)
    data = StackDataset([part, fast], cache, offset=3)
    assert len(data) == part.frame_count + fast.frame_count
    for i, (c, t) in enumerate(
        [(part, j) for j in range(part.frame_count)] + [(fast, j) for j in range(fast.frame_count)]
    ):
        expected = [frames[c.start + k * c.step] for k in stack_indices(t, c.frame_count, 3)]
        assert np.array_equal(data[i][0], np.stack(expected))


def test_region_mix_pastes_one_rectangle_of_pixels_and_the_same_cells_of_every_teachers_targets() -> None:
    rng = np.random.default_rng(3)
    stack, patch = np.zeros((3, 64, 64), np.uint8), np.full((3, 64, 64), 255, np.uint8)
    zero = (np.zeros(2, np.float32), np.zeros((2, 4, 4), np.float32), np.zeros((2, 16, 16), np.float32))
    one = (np.ones(2, np.float32), np.ones((2, 4, 4), np.float32), np.full((2, 16, 16), 0.8, np.float32))
    out, s, m, l = region_mix(stack, zero, patch, one, rng)  # noqa: E741
    pasted = out[0] == 255
    rows, cols = np.flatnonzero(pasted.any(1)), np.flatnonzero(pasted.any(0))
    cells = m[0] > 0
    assert pasted.sum() == (rows[-1] - rows[0] + 1) * (cols[-1] - cols[0] + 1)  # one rectangle
    assert cells.sum() * (64 // 4) ** 2 == pasted.sum()  # exactly the pixels of the cells that changed
    assert np.array_equal(m[0], m[1]) and (l[0] > 0).sum() == cells.sum() * 16
    assert s.tolist() == pytest.approx([0.8, 0.8])


# ---------------------------------------------------------------------------------------------------- losses


def test_kd_loss_is_zero_for_the_teachers_maps_and_sums_over_teachers_and_scales() -> None:
    s, m, l = torch.rand(3, 2), torch.rand(3, 2, 4, 4), torch.rand(3, 2, 16, 16)  # noqa: E741
    assert kd_loss(StudentMaps(s, m, l), s, m, l).item() == 0.0
    off = kd_loss(StudentMaps(s + 0.1, m, l), s, m, l).item()
    assert off == pytest.approx(2 * 0.01, rel=1e-4)  # two teachers' S off by 0.1


def test_constant_baseline_is_the_kd_loss_of_always_answering_the_mean_training_maps() -> None:
    rng = np.random.default_rng(0)
    train = [rng.random((20, 2, *shape)).astype(np.float32) for shape in ((), (4, 4), (16, 16))]
    val = [rng.random((7, 2, *shape)).astype(np.float32) for shape in ((), (4, 4), (16, 16))]
    means = [torch.from_numpy(t.mean(0)).expand(7, *t.shape[1:]) for t in train]
    expected = kd_loss(StudentMaps(*means), *[torch.from_numpy(v) for v in val]).item()
    assert constant_kd_loss(train, val) == pytest.approx(expected, rel=1e-5)


def test_the_students_adversarial_step_does_not_move_the_discriminators() -> None:
    torch.manual_seed(0)
    discriminators = [Discriminator(), Discriminator()]
    before = [{k: v.clone() for k, v in d.state_dict().items()} for d in discriminators]
    maps = StudentMaps(torch.rand(4, 2, requires_grad=True), torch.rand(4, 2, 4, 4), torch.rand(4, 2, 16, 16))
    adversarial_loss(maps, discriminators).backward()
    assert maps.s.grad is not None and maps.s.grad.abs().sum() > 0
    assert all(p.grad is None for d in discriminators for p in d.parameters())
    for d, state in zip(discriminators, before, strict=True):
        assert all(torch.equal(v, d.state_dict()[k]) for k, v in state.items() if "_u" not in k)
    targets = [torch.rand(4, 2), torch.rand(4, 2, 4, 4), torch.rand(4, 2, 16, 16)]
    discriminator_loss(maps, targets, discriminators).backward()
    assert all(p.grad is not None for d in discriminators for p in d.parameters())


# ---------------------------------------------------------------------------------------------------- runs


def test_a_run_on_one_short_video_trains_validates_on_its_last_slice_and_writes_usable_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    one = write_dataset(tmp_path / "one", clips=1, frames=60)
    result = distill(one, tmp_path / "run", tiny(), TEACH, quiet=True)
    # Nine held-out frames cannot carry a 99th percentile: the run says so and how to calibrate.
    err = " ".join(capsys.readouterr().err.split())
    assert "the threshold rests on 9 normal frames" in err
    assert f"aed calibrate NORMAL_CLIPS... --weights {result.weights}" in err
    loaded = load_weights(result.weights)
    assert loaded.config.teachers == ("motion", "objects")
    assert loaded.provenance["validation_parts"] == ["clip01_f51-60"]
    assert loaded.threshold is not None and "held out" in loaded.threshold.source
    assert loaded.normal is not None and loaded.normal.frames == 9
    assert loaded.domain is not None and loaded.domain.frame_size == SIZE and loaded.domain.channels == 1
    row = result.history["distill"][-1]
    assert row["frames"] == 8 * 4 and np.isfinite(row["val_kd"]) and row["val_kd_constant"] > 0


def test_an_earlier_run_is_kept_unless_resumed_and_resuming_continues_after_the_last_epoch(
    dataset: Dataset, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    distill(dataset, run, tiny(epochs=1), TEACH, quiet=True)
    with pytest.raises(UsageError, match="--resume"):
        distill(dataset, run, tiny(epochs=1), TEACH, quiet=True)
    result = distill(dataset, run, tiny(epochs=2), TEACH, quiet=True, resume=True)
    assert [r["epoch"] for r in result.history["distill"]] == [1, 2]
    with pytest.raises(UsageError, match="setting 'batch' differs"):
        distill(dataset, run, tiny(epochs=3, batch=2), TEACH, quiet=True, resume=True)


def test_the_adversarial_term_trains_one_discriminator_per_teacher(dataset: Dataset, tmp_path: Path) -> None:
    result = distill(dataset, tmp_path / "run", tiny(adversarial_weight=0.1), TEACH, quiet=True)
    state = torch.load(tmp_path / "run" / "checkpoints" / "distill.pt", weights_only=True)
    assert len(state["discriminators"]) == 2
    assert result.history["distill"][0]["d_loss"] > 0


def _env() -> dict[str, str]:
    return os.environ | {"OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def _cli_args(root: Path, out: Path, *extra: str) -> list[str]:
    settings = out.parent / "tiny.toml"
    settings.write_text(
        "[training]\nvariant = 'fastaed-xxs'\nsize = [32, 48]\nbatch = 4\nbn_batches = 2\n"
        "pretrain_epochs = 1\nepoch_steps = 4\n"
        "[teachers]\nheight_sample = 20\n"
    )
    return [
        "distill",
        "--dataset",
        "folder",
        "--root",
        str(root),
        "--out",
        str(out),
        "--config",
        str(settings),
        *extra,
    ]


def test_a_killed_run_resumes_from_its_last_checkpoint(dataset: Dataset, tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = _cli_args(dataset.root, run, "--epochs", "500", "-q")
    proc = subprocess.Popen([sys.executable, "-m", "aedcli", *args], env=_env(), stderr=subprocess.PIPE)
    checkpoint = run / "checkpoints" / "distill.pt"
    try:
        deadline = time.monotonic() + 150
        while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert checkpoint.exists(), (
            proc.stderr.read().decode() if proc.poll() is not None else "no checkpoint"
        )
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    done = int(torch.load(checkpoint, weights_only=True)["epoch"])
    assert not (run / "weights.pt").exists()
    main([*_cli_args(dataset.root, run, "--epochs", str(done + 1), "--resume", "-q")])
    assert load_weights(run / "weights.pt").provenance["epochs"]["distill"] == done + 1


def test_two_processes_train_data_parallel_with_gloo(dataset: Dataset, tmp_path: Path) -> None:
    run = tmp_path / "run"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    proc = subprocess.run(
        [*launcher, "-m", "aedcli", *_cli_args(dataset.root, run, "--epochs", "1", "-q")],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    loaded = load_weights(run / "weights.pt")
    assert loaded.provenance["hardware"]["processes"] == 2
    history = json.loads((run / "history.json").read_text())
    # Each process draws its own 4 batches of 4 frames an epoch; the epoch's figures add both.
    assert history["pretrain"][0]["frames"] == history["distill"][0]["frames"] == 2 * 4 * 4


def test_the_student_learns_its_teachers_better_than_a_constant_answer(
    dataset: Dataset, tmp_path: Path
) -> None:
    result = distill(
        dataset, tmp_path / "run", tiny(pretrain_epochs=2, epochs=3, epoch_steps=20), TEACH, quiet=True
    )
    row = result.history["distill"][-1]
    assert row["val_kd"] < row["val_kd_constant"]
    spec = InputSpec(*SIZE)
    student = Student(student_config("fastaed-xxs", spec.in_channels, ("motion", "objects")))
    assert (
        sum(p.numel() for p in student.parameters()) == load_weights(result.weights).provenance["parameters"]
    )


def test_on_short_footage_epochs_shrink_so_no_item_is_drawn_more_than_max_passes_times(
    dataset: Dataset, tmp_path: Path
) -> None:
    cfg = tiny(epoch_steps=50, max_passes=0.5)
    result = distill(dataset, tmp_path / "run", cfg, TEACH, quiet=True)
    provenance = load_weights(result.weights).provenance
    plain, views = provenance["train_frames"], provenance["pseudo_anomaly_frames"]
    pretrain, distilled = (result.history[p][0]["frames"] for p in ("pretrain", "distill"))
    assert pretrain == cfg.batch * math.ceil(0.5 * plain / cfg.batch)
    assert distilled == cfg.batch * math.ceil(0.5 * (plain + views) / cfg.batch)
    assert distilled < cfg.epoch_steps * cfg.batch  # the limit, not epoch_steps, set the epoch's length


def test_an_epoch_draws_the_same_number_of_items_from_short_and_long_data_and_shares_them_out() -> None:
    short = list(EpochSampler(10, 25, seed=1))
    assert len(short) == 25 and set(short) == set(range(10))  # several passes over short data
    long = list(EpochSampler(1000, 25, seed=1))
    assert len(long) == 25 and len(set(long)) == 25  # part of one pass over long data
    assert list(EpochSampler(1000, 25, seed=1)) == long  # the same draw for the same seed and epoch
    ranks = [list(EpochSampler(40, 6, seed=2, world=2, rank=r)) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 6 and not set(ranks[0]) & set(ranks[1])
    again = EpochSampler(1000, 25, seed=1)
    again.set_epoch(1)
    assert list(again) != long
