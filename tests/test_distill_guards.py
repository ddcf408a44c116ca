"""Guards against a late blow-up of distillation: gradient clipping and choosing the best validation epoch."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from _distill_fixtures import distill_write_dataset, distill_write_targets, tiny_config

from aedcli.data.clips import Dataset
from aedcli.distill import StackDataset, distill, distill_epoch
from aedcli.errors import UsageError
from aedcli.inputs import InputSpec
from aedcli.student import Student, student_config
from aedcli.weights import load_weights

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _step_size(tmp_path: Path, clip_grad: float) -> tuple[float, float]:
    """One SGD step (lr 1) of distillation: (L2 norm of the parameter change, gradient norm reported)."""
    torch.manual_seed(0)
    path = tmp_path / "clip.npy"
    np.save(path, np.random.default_rng(0).integers(0, 255, (4, 32, 32), dtype=np.uint8))
    targets = (
        np.ones((4, 1), np.float32),
        np.ones((4, 1, 4, 4), np.float32),
        np.ones((4, 1, 16, 16), np.float32),
    )
    loader = torch.utils.data.DataLoader(StackDataset([path], 3, targets), batch_size=4)
    student = Student(student_config("fastaed-xs", 3))
    before = torch.cat([p.detach().flatten().clone() for p in student.parameters()])
    optimizer = torch.optim.SGD(student.parameters(), lr=1.0)
    cfg = tiny_config(clip_grad=clip_grad, no_adversarial=True)
    res = distill_epoch(
        student, [], loader, InputSpec(32, 32, 1), optimizer, None, cfg, [1.0], torch.device("cpu")
    )
    after = torch.cat([p.detach().flatten() for p in student.parameters()])
    return float((after - before).norm()), res["grad_norm"] / res["frames"]


def test_gradient_clipping_bounds_the_students_step(tmp_path: Path) -> None:
    free, norm = _step_size(tmp_path, 0.0)
    clipped, norm_clipped = _step_size(tmp_path, 1e-3)
    assert norm == pytest.approx(norm_clipped) and norm > 1e-2  # the reported norm is the one before clipping
    assert free == pytest.approx(norm, rel=1e-3)
    assert clipped == pytest.approx(1e-3, rel=1e-2)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"clip_grad": -1.0}, "--clip-grad"),
        ({"clip_grad": float("nan")}, "--clip-grad"),
        ({"select": "best"}, "--select"),
        ({"select": "val", "val_videos": 0}, "--select val needs held-out videos"),
        ({"lr": float("nan")}, "--lr must be a positive number"),
        ({"lr_pretrain": 0.0}, "lr_pretrain must be a positive number"),
        ({"lr_d": -1.0}, "--lr-d must be a positive number"),
        ({"weight_decay": -1e-6}, "weight_decay must be 0 or a positive number"),
        ({"sigma": float("inf")}, "--sigma must be 0"),
        ({"percentile": 150.0}, "--percentile must be above 0"),
    ],
)
def test_bad_guard_options_are_usage_errors(kw: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        tiny_config(**kw)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Dataset, Path]:
    root = tmp_path_factory.mktemp("guards")
    dataset = distill_write_dataset(root / "data")
    distill_write_targets(dataset, root / "targets", ("a",))
    return dataset, root / "targets"


def test_select_val_writes_the_student_of_the_lowest_validation_loss(
    prepared: tuple[Dataset, Path], tmp_path: Path
) -> None:
    dataset, targets = prepared
    out = tmp_path / "run"
    shutil.copytree(targets, out / "targets")
    result = distill(dataset, out, tiny_config(epochs=4, lr=3e-3, select="val"), quiet=True)
    history = json.loads((out / "history.json").read_text())["distill"]
    losses = [row["val_kd"] for row in history]
    best = int(np.argmin(losses)) + 1
    assert all(row["grad_norm"] > 0 for row in history)
    saved = torch.load(out / "checkpoints" / "best.pt", weights_only=True)
    assert saved["epoch"] == best
    assert result.weights is not None
    loaded = load_weights(result.weights)
    assert f"epoch {best} of 4" in loaded.provenance["selection"]
    assert loaded.provenance["metrics"]["val_kd"] == pytest.approx(min(losses))
    state = loaded.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in saved["student"].items())
