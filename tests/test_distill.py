"""Two-phase distillation on a tiny dataset: outputs, losses, resuming, killing, the CLI and two processes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from _distill_fixtures import DISTILL_SIZE, distill_write_dataset, distill_write_targets, tiny_config

from aedcli.cli import main
from aedcli.data.clips import Dataset
from aedcli.data.folder import load_folder
from aedcli.distill import (
    DistillConfig,
    StackDataset,
    distill,
    distill_epoch,
    kd_loss,
    pretrain_epoch,
    split_validation,
    stack_indices,
)
from aedcli.errors import UsageError
from aedcli.inputs import InputSpec
from aedcli.student import Discriminator, PretrainNet, Student, StudentMaps, student_config
from aedcli.video import frame_stacks
from aedcli.weights import load_weights

TEACHERS = ("a", "b")
SIZE_ARG = f"{DISTILL_SIZE[0]}x{DISTILL_SIZE[1]}"


def tiny(**kw: object) -> DistillConfig:
    return tiny_config(**({"teachers": TEACHERS} | kw))  # type: ignore[arg-type]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Dataset, Path]:
    """The fixture dataset and a targets folder made once for the module."""
    root = tmp_path_factory.mktemp("distill-data")
    dataset = distill_write_dataset(root / "data")
    distill_write_targets(dataset, root / "targets", TEACHERS)
    return dataset, root / "targets"


@pytest.fixture
def run_dir(prepared: tuple[Dataset, Path], tmp_path: Path) -> Path:
    """A fresh output folder that already holds complete teacher targets."""
    out = tmp_path / "run"
    shutil.copytree(prepared[1], out / "targets")
    return out


def test_stack_indices_follow_the_frame_stacks_rule() -> None:
    frames = [np.full((2, 2), i, np.uint8) for i in range(8)]
    streamed = [s[:, 0, 0].tolist() for s in frame_stacks(frames, offset=3)]
    assert streamed == [list(stack_indices(t, 8, 3)) for t in range(8)]


def test_stack_dataset_pairs_each_frame_with_every_teachers_targets(tmp_path: Path) -> None:
    path = tmp_path / "clip.npy"
    np.save(path, np.arange(5, dtype=np.uint8)[:, None, None].repeat(4, 1).repeat(4, 2))
    targets = (
        np.arange(10, dtype=np.float32).reshape(5, 2),
        np.zeros((5, 2, 4, 4)),
        np.zeros((5, 2, 16, 16)),
    )
    data = StackDataset([path], offset=3, targets=targets)  # type: ignore[arg-type]
    stack, s, m, l = data[4]  # noqa: E741
    assert stack.shape == (3, 4, 4) and stack[:, 0, 0].tolist() == [4, 1, 4]
    assert s.tolist() == [8.0, 9.0] and m.shape == (2, 4, 4) and l.shape == (2, 16, 16)


def test_validation_videos_are_spread_over_the_training_set(prepared: tuple[Dataset, Path]) -> None:
    clips = prepared[0].train
    val, train = split_validation(clips, 1)
    assert [c.name for c in val] == ["clip02"] and len(train) == 2
    with pytest.raises(UsageError, match="--val-videos 3"):
        split_validation(clips, 3)


def test_kd_loss_sums_weighted_mse_over_teachers_and_chosen_heads() -> None:
    maps = StudentMaps(torch.zeros(2), torch.zeros(2, 4, 4), torch.zeros(2, 16, 16))
    s, m, l = torch.ones(2, 2), torch.full((2, 2, 4, 4), 2.0), torch.full((2, 2, 16, 16), 3.0)  # noqa: E741
    assert kd_loss(maps, s, m, l, [1.0, 1.0], "sml").item() == pytest.approx(2 * (1 + 4 + 9))
    assert kd_loss(maps, s, m, l, [1.0, 0.5], "l").item() == pytest.approx(1.5 * 9)


def test_student_step_leaves_the_discriminators_untouched(tmp_path: Path) -> None:
    torch.manual_seed(0)
    path = tmp_path / "clip.npy"
    np.save(path, np.random.default_rng(0).integers(0, 255, (6, 32, 32), dtype=np.uint8))
    targets = (
        np.full((6, 1), 0.5, np.float32),
        np.zeros((6, 1, 4, 4), np.float32),
        np.zeros((6, 1, 16, 16), np.float32),
    )
    loader = torch.utils.data.DataLoader(StackDataset([path], 3, targets), batch_size=3)
    student, d = Student(student_config("fastaed-xs", 3)), Discriminator()
    before = [p.clone() for p in d.parameters()]
    s_before = [p.clone() for p in student.parameters()]
    optimizer = torch.optim.Adam(student.parameters(), lr=1e-3)
    cfg = tiny(teachers=("a",))
    res = distill_epoch(
        student, [d], loader, InputSpec(32, 32, 1), optimizer, None, cfg, [1.0], torch.device("cpu")
    )
    assert res["frames"] == 6 and res["adv"] > 0
    assert all(torch.equal(a, b) for a, b in zip(before, d.parameters(), strict=True))
    assert all(p.grad is None for p in d.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(s_before, student.parameters(), strict=True))


def test_pretraining_reconstructs_colour_frames(tmp_path: Path) -> None:
    torch.manual_seed(0)
    path = tmp_path / "colour.npy"
    np.save(path, np.random.default_rng(0).integers(0, 255, (8, 32, 32, 3), dtype=np.uint8))
    loader = torch.utils.data.DataLoader(StackDataset([path], 3), batch_size=4)
    net = PretrainNet(Student(student_config("fastaed-xs", 9)))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    first = pretrain_epoch(net, loader, InputSpec(32, 32, 3), optimizer, torch.device("cpu"))
    second = pretrain_epoch(net, loader, InputSpec(32, 32, 3), optimizer, torch.device("cpu"))
    assert first["frames"] == 8 and second["loss"] < first["loss"]


def test_tiny_run_writes_loadable_weights_with_threshold_and_provenance(
    prepared: tuple[Dataset, Path], run_dir: Path
) -> None:
    result = distill(prepared[0], run_dir, tiny(), quiet=True, command="aed distill --test")
    assert result.stages_run == ["teachers", "pretrain", "distill"]
    assert result.weights == run_dir / "weights.pt"
    loaded = load_weights(result.weights)
    assert loaded.spec == InputSpec(*DISTILL_SIZE, channels=1)
    assert loaded.threshold is not None and loaded.threshold.percentile == 99.0
    assert "held out from training: clip02" in loaded.threshold.source
    prov = loaded.provenance
    assert prov["dataset"]["name"] == prepared[0].name and prov["command"] == "aed distill --test"
    assert prov["epochs"] == {"pretrain": 1, "distill": 1}
    assert "last epoch" in prov["selection"] and prov["val_videos"] == ["clip02"]
    assert prov["hardware"]["device"] == "cpu" and prov["training_seconds"] > 0
    history = json.loads((run_dir / "history.json").read_text())
    assert [r["epoch"] for r in history["distill"]] == [1]
    assert history["distill"][0]["frames"] == 20  # 2 training clips of 10 frames, one batch of 4 short
    assert {"kd", "adv", "d_loss", "val_kd"} <= set(history["distill"][0])
    assert "val_loss" in history["pretrain"][0]
    assert (run_dir / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert {p.name for p in (run_dir / "checkpoints").iterdir()} == {"pretrain.pt", "distill.pt"}


def test_batchnorm_recalibration_changes_only_the_statistics_not_the_training(
    prepared: tuple[Dataset, Path], tmp_path: Path
) -> None:
    runs = {}
    for n in (0, 3):
        out = tmp_path / f"bn{n}"
        shutil.copytree(prepared[1], out / "targets")
        distill(prepared[0], out, tiny(no_pretrain=True, epochs=2, bn_batches=n), quiet=True)
        runs[n] = load_weights(out / "weights.pt").model
    plain, recalibrated = (dict(runs[n].named_parameters()) for n in (0, 3))
    for name, value in plain.items():  # the same trajectory: every weight identical
        assert torch.equal(value, recalibrated[name]), name
    means = [
        (a.running_mean, b.running_mean)
        for a, b in zip(runs[0].modules(), runs[3].modules(), strict=True)
        if isinstance(a, torch.nn.BatchNorm2d)
    ]
    assert means and any(not torch.equal(a, b) for a, b in means)  # but other statistics


def test_resume_starts_at_the_epoch_after_the_last_checkpoint(
    prepared: tuple[Dataset, Path], run_dir: Path
) -> None:
    first = distill(prepared[0], run_dir, tiny(no_pretrain=True), quiet=True)
    again = distill(prepared[0], run_dir, tiny(no_pretrain=True, epochs=2), resume=True, quiet=True)
    assert [r["epoch"] for r in again.history["distill"]] == [1, 2]
    assert again.history["distill"][0] == first.history["distill"][0]  # epoch 1 was not trained again
    assert load_weights(run_dir / "weights.pt").provenance["epochs"]["distill"] == 2


def test_a_run_checkpointed_before_weights_carried_an_edge_rule_still_resumes(
    prepared: tuple[Dataset, Path], run_dir: Path
) -> None:
    distill(prepared[0], run_dir, tiny(no_pretrain=True), quiet=True)
    path = run_dir / "checkpoints" / "distill.pt"
    state = torch.load(path, weights_only=True)
    del state["input"]["edges"]  # as checkpoints were written before the rule existed
    torch.save(state, path)
    again = distill(prepared[0], run_dir, tiny(no_pretrain=True, epochs=2), resume=True, quiet=True)
    assert [r["epoch"] for r in again.history["distill"]] == [1, 2]
    assert load_weights(run_dir / "weights.pt").spec.edges == "hold"


def test_an_earlier_run_is_not_overwritten_without_resume(
    prepared: tuple[Dataset, Path], run_dir: Path
) -> None:
    distill(prepared[0], run_dir, tiny(no_pretrain=True), quiet=True)
    with pytest.raises(UsageError, match="pass --resume"):
        distill(prepared[0], run_dir, tiny(no_pretrain=True), quiet=True)
    with pytest.raises(UsageError, match="--variant differs from the distill checkpoint"):
        distill(prepared[0], run_dir, tiny(no_pretrain=True, variant="fastaed-s"), resume=True, quiet=True)


def test_distillation_options_may_change_after_pretraining(
    prepared: tuple[Dataset, Path], run_dir: Path
) -> None:
    distill(prepared[0], run_dir, tiny(), stage="pretrain", quiet=True)
    result = distill(prepared[0], run_dir, tiny(lr=1e-3, no_adversarial=True), stage="distill", quiet=True)
    assert [len(result.history[p]) for p in ("pretrain", "distill")] == [1, 1]
    with pytest.raises(UsageError, match="--size differs from the pretrain checkpoint"):
        distill(prepared[0], run_dir, tiny(size=(48, 64)), stage="pretrain", resume=True, quiet=True)


def test_distill_stage_needs_finished_pretraining(prepared: tuple[Dataset, Path], run_dir: Path) -> None:
    with pytest.raises(UsageError, match="finished 0 of 1 epochs"):
        distill(prepared[0], run_dir, tiny(), stage="distill", quiet=True)


def _cli_args(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "distill",
        *("--dataset", "folder", "--root", str(data), "--out", str(out)),
        *("--variant", "fastaed-xs", "--size", SIZE_ARG, "--batch", "4", "--teachers", ",".join(TEACHERS)),
        *extra,
    ]


def test_cli_plain_distillation_of_two_heads_without_validation_videos(
    prepared: tuple[Dataset, Path], run_dir: Path
) -> None:
    extra = ("--no-pretrain", "--no-adversarial", "--heads", "m,l", "--val-videos", "0", "-q")
    main(_cli_args(prepared[0].root, run_dir, *extra))
    loaded = load_weights(run_dir / "weights.pt")
    assert "no video was held out" in loaded.threshold.source  # type: ignore[union-attr]
    assert loaded.provenance["distill_config"]["heads"] == ["m", "l"]
    assert "adv" not in json.loads((run_dir / "history.json").read_text())["distill"][0]


def test_cli_refuses_a_malformed_size(prepared: tuple[Dataset, Path], run_dir: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main([*_cli_args(prepared[0].root, run_dir), "--size", "240by360"])
    assert exc.value.code == 2


def _env() -> dict[str, str]:
    return os.environ | {"OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def test_killed_run_resumes_from_its_last_checkpoint(prepared: tuple[Dataset, Path], run_dir: Path) -> None:
    args = _cli_args(prepared[0].root, run_dir, "--no-pretrain", "--epochs", "500", "--val-videos", "0", "-q")
    proc = subprocess.Popen([sys.executable, "-m", "aedcli", *args], env=_env(), stderr=subprocess.PIPE)
    checkpoint = run_dir / "checkpoints" / "distill.pt"
    try:
        deadline = time.monotonic() + 90
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
    assert not (run_dir / "weights.pt").exists()
    result = distill(
        prepared[0], run_dir, tiny(no_pretrain=True, epochs=done + 1, val_videos=0), resume=True, quiet=True
    )
    assert [r["epoch"] for r in result.history["distill"]] == list(range(1, done + 2))
    assert load_weights(run_dir / "weights.pt").provenance["epochs"]["distill"] == done + 1


def test_two_processes_train_data_parallel_with_gloo(prepared: tuple[Dataset, Path], run_dir: Path) -> None:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    args = _cli_args(
        prepared[0].root, run_dir, "--pretrain-epochs", "1", "--epochs", "1", "--val-videos", "1", "-q"
    )
    proc = subprocess.run(
        [*launcher, "-m", "aedcli", *args],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    loaded = load_weights(run_dir / "weights.pt")
    assert loaded.provenance["hardware"]["processes"] == 2
    history = json.loads((run_dir / "history.json").read_text())
    # 20 training frames: 10 per process, 2 full batches of 4 each (the incomplete third is dropped). One
    # process going through all 20 would have counted 20 (and 40 for two unsharded processes).
    assert history["distill"][0]["frames"] == 16 and history["pretrain"][0]["frames"] == 16
    assert loaded.threshold is not None


def test_dataset_written_by_the_fixture_reads_back(prepared: tuple[Dataset, Path]) -> None:
    again = load_folder(prepared[0].root)
    assert [c.frame_count for c in again.train] == [10, 10, 10] and again.gray


def test_spectral_discriminator_sends_a_bounded_gradient_however_large_its_weights_grow() -> None:
    torch.manual_seed(0)
    maps = [torch.rand(8, requires_grad=True), torch.rand(8, 4, 4), torch.rand(8, 16, 16)]

    def input_gradient(d: Discriminator) -> float:
        d.eval()
        maps[0].grad = None
        d(*maps).sum().backward()
        return float(maps[0].grad.abs().max())  # type: ignore[union-attr]

    for spectral in (True, False):
        d = Discriminator(spectral=spectral)
        d.train()
        for _ in range(20):  # let the power iteration settle
            d(*[m.detach() for m in maps])
        before = input_gradient(d)
        with torch.no_grad():
            for p in d.parameters():
                p.mul_(100.0)  # what an escalating adversarial game does to an unconstrained D
        d.train()
        for _ in range(20):
            d(*[m.detach() for m in maps])
        after = input_gradient(d)
        if spectral:
            assert after <= 1.0 + 1e-3 and before <= 1.0 + 1e-3
        else:
            assert after > 100 * before


def test_adversarial_warmup_trains_the_discriminator_but_not_the_student_through_it(tmp_path: Path) -> None:
    path = tmp_path / "clip.npy"
    np.save(path, np.random.default_rng(0).integers(0, 255, (6, 32, 32), dtype=np.uint8))
    targets = (
        np.full((6, 1), 0.5, np.float32),
        np.zeros((6, 1, 4, 4), np.float32),
        np.zeros((6, 1, 16, 16), np.float32),
    )
    loader = torch.utils.data.DataLoader(StackDataset([path], 3, targets), batch_size=3)
    cfg = tiny(teachers=("a",))
    spec, cpu = InputSpec(32, 32, 1), torch.device("cpu")
    students = []
    for with_d in (True, False):
        torch.manual_seed(0)
        student, d = Student(student_config("fastaed-xs", 3)), Discriminator()
        d_before = [p.clone() for p in d.parameters()]
        optimizer = torch.optim.Adam(student.parameters(), lr=1e-3)
        optimizer_d = torch.optim.Adam(d.parameters(), lr=1e-3)
        res = distill_epoch(
            student,
            [d] if with_d else [],
            loader,
            spec,
            optimizer,
            optimizer_d,
            cfg,
            [1.0],
            cpu,
            adv_weight=0.0,
        )
        students.append(student)
        if with_d:
            assert res["d"] > 0
            assert any(not torch.equal(a, b) for a, b in zip(d_before, d.parameters(), strict=True))
    for a, b in zip(students[0].state_dict().values(), students[1].state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("label", [0.5, 1.2])
def test_real_label_outside_half_to_one_is_a_usage_error(label: float) -> None:
    with pytest.raises(UsageError, match="--real-label"):
        tiny(real_label=label)


def test_constant_baseline_equals_the_kd_loss_of_a_student_answering_the_mean_training_maps() -> None:
    from aedcli.distill import constant_kd_loss

    rng = np.random.default_rng(0)

    def targets(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (
            rng.random((n, 2), dtype=np.float32),
            rng.random((n, 2, 4, 4), dtype=np.float32),
            rng.random((n, 2, 16, 16), dtype=np.float32),
        )

    train, val = targets(50), targets(20)
    weights = [1.0, 0.5]
    maps = StudentMaps(
        torch.full((20,), float(train[0].mean())),
        torch.from_numpy(train[1].mean(axis=(0, 1))).expand(20, 4, 4),
        torch.from_numpy(train[2].mean(axis=(0, 1))).expand(20, 16, 16),
    )
    expected = kd_loss(maps, *(torch.from_numpy(t) for t in val), weights, ("s", "m", "l"))
    assert constant_kd_loss(train, val, weights) == pytest.approx(float(expected), rel=1e-5)
    # a student that reproduces its teachers' mean beats it
    exact = StudentMaps(*(torch.from_numpy(t.mean(axis=1)) for t in val))
    assert float(kd_loss(exact, *(torch.from_numpy(t) for t in val), weights, ("s", "m", "l"))) < float(
        expected
    )
