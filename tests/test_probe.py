"""The pseudo-anomaly probe: held-out frames as they are, and with a sped-up rectangle around a box."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _distill_fixtures import distill_write_dataset, distill_write_targets, tiny_config
from torch import nn

from aedcli.data.clips import Dataset, sped_up
from aedcli.distill import StackDataset, distill
from aedcli.errors import AedError, UsageError
from aedcli.inputs import InputSpec
from aedcli.probe import PseudoAnomalyProbe, box_fractions, cell_rect, probe_auc, rect_around
from aedcli.student import StudentMaps
from aedcli.weights import load_weights

pytestmark = pytest.mark.usefixtures("one_torch_thread")

H, W = 32, 48


def _moving_square(path: Path, n: int = 24, speed: int = 1) -> Path:
    """A bright 6x6 square crossing a dark frame ``speed`` pixels per frame, saved as a frame cache."""
    frames = np.full((n, H, W), 30, np.uint8)
    for t in range(n):
        x = (2 + speed * t) % (W - 6)
        frames[t, 13:19, x : x + 6] = 220
    np.save(path, frames)
    return path


def _probe(path: Path, fast_boxes: np.ndarray, region: str = "cells") -> PseudoAnomalyProbe:
    empty = np.zeros((0, 6), np.float32)
    return PseudoAnomalyProbe(
        [path, path], [1, 2], [empty, fast_boxes], [(H, W), (H, W)], offset=3, region=region
    )


def test_rect_around_always_holds_the_cell_of_the_point() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        cy, cx = rng.random(2)
        rows, cols, r0, c0 = rect_around(cy, cx, rng)
        assert 1 <= rows <= 2 and 1 <= cols <= 2 and 0 <= r0 <= 4 - rows and 0 <= c0 <= 4 - cols
        assert r0 <= int(cy * 4) < r0 + rows and c0 <= int(cx * 4) < c0 + cols


def test_probe_pairs_each_normal_frame_with_a_sped_up_rectangle_around_a_box(tmp_path: Path) -> None:
    path = _moving_square(tmp_path / "clip.npy")
    # every sped-up frame has a box in the bottom-right cell of the 4x4 grid
    boxes = np.array([[f, 40, 26, 46, 30, 0.5] for f in range(12)], np.float32)
    probe = _probe(path, boxes)
    plain = StackDataset([path, path], 3, None, [1, 2])
    assert len(probe) == 48 and probe.labels().tolist() == [0] * 24 + [1] * 24
    for k in range(24):
        normal, label = probe[k]
        assert label == 0 and np.array_equal(normal, plain[k][0])
        pasted, label = probe[24 + k]
        j, rows, cols, r0, c0 = probe.pastes[k]
        assert label == 1 and j >= 24  # a sped-up item
        y0, y1, x0, x1 = cell_rect(rows, cols, r0, c0, H, W)
        assert y0 <= 28 < y1 and x0 <= 43 < x1  # the box centre is inside
        assert np.array_equal(pasted[:, y0:y1, x0:x1], plain[j][0][:, y0:y1, x0:x1])
        outside = np.ones((H, W), bool)
        outside[y0:y1, x0:x1] = False
        assert np.array_equal(pasted[:, outside], normal[:, outside])


def test_box_probe_pastes_the_sped_up_box_widened_by_a_quarter_and_nothing_else(tmp_path: Path) -> None:
    path = _moving_square(tmp_path / "clip.npy")
    boxes = np.array([[f, 20, 8, 28, 16, 0.5] for f in range(12)], np.float32)  # 8x8 box at (8..16, 20..28)
    probe = _probe(path, boxes, region="box")
    plain = StackDataset([path, path], 3, None, [1, 2])
    assert len(probe) == 48 and probe.labels().tolist() == [0] * 24 + [1] * 24
    for k in range(24):
        normal, _ = probe[k]
        pasted, label = probe[24 + k]
        (y0, y1, x0, x1), j = probe.rect(k, H, W)
        assert label == 1 and j >= 24 and (y0, y1, x0, x1) == (6, 18, 18, 30)  # 2 px more on each side
        assert np.array_equal(pasted[:, y0:y1, x0:x1], plain[j][0][:, y0:y1, x0:x1])
        outside = np.ones((H, W), bool)
        outside[y0:y1, x0:x1] = False
        assert np.array_equal(pasted[:, outside], normal[:, outside])


def test_box_and_cell_probes_draw_the_same_source_frames(tmp_path: Path) -> None:
    path = _moving_square(tmp_path / "clip.npy")
    boxes = np.array([[f, 2 + 3 * f, 13, 8 + 3 * f, 19, 0.5] for f in range(12)], np.float32)
    cells, box = _probe(path, boxes), _probe(path, boxes, region="box")
    assert [p[0] for p in cells.pastes] == [b[0] for b in box.boxes]


def test_box_fractions_clip_the_widened_box_to_the_frame() -> None:
    row = np.array([0, 0, 10, 40, 30, 1.0])  # x 0..40, y 10..30 in a 40x80 frame
    np.testing.assert_allclose(box_fractions(row, 40, 80), [5 / 40, 35 / 40, 0.0, 50 / 80])


def test_probe_rejects_an_unknown_region(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="region must be one of cells, box"):
        _probe(_moving_square(tmp_path / "clip.npy"), np.zeros((0, 6), np.float32), region="ring")


def test_probe_leaves_out_videos_whose_sped_up_copies_have_no_box(tmp_path: Path) -> None:
    assert len(_probe(_moving_square(tmp_path / "clip.npy"), np.zeros((0, 6), np.float32))) == 0


class _MotionNet(nn.Module):
    """Scores frames by how much of them changed between t-3 and t (times ``sign``): a student that sees
    motion."""

    def __init__(self, sign: float = 1.0) -> None:
        super().__init__()
        self.sign = sign

    def forward(self, x: torch.Tensor) -> StudentMaps:
        motion = self.sign * (x[:, 0] - x[:, 1]).abs()[:, None]  # (B, 1, H, W)
        l = F.adaptive_avg_pool2d(motion, 16)[:, 0]  # noqa: E741
        m = F.adaptive_max_pool2d(l[:, None], 4)[:, 0]
        return StudentMaps(motion.mean(dim=(1, 2, 3)), m, l)


def test_probe_auc_is_high_for_a_student_that_sees_fast_motion_and_low_for_its_opposite(
    tmp_path: Path,
) -> None:
    path = _moving_square(tmp_path / "clip.npy", n=36)
    # the sped-up square moves 6 px between t and t-3k, against 3 px in the normal frames
    boxes = np.array([[f, 2 + 2 * f, 13, 8 + 2 * f, 19, 0.5] for f in range(18)], np.float32)
    probe = _probe(path, boxes)
    spec, cpu = InputSpec(H, W, 1), torch.device("cpu")
    assert probe_auc(_MotionNet(), probe, spec, cpu) > 0.8
    assert probe_auc(_MotionNet(-1.0), probe, spec, cpu) < 0.2
    boxed = _probe(path, boxes, region="box")
    assert probe_auc(_MotionNet(), boxed, spec, cpu) > 0.8
    assert probe_auc(_MotionNet(-1.0), boxed, spec, cpu) < 0.2
    assert np.isnan(probe_auc(_MotionNet(), _probe(path, np.zeros((0, 6), np.float32)), spec, cpu))


def _with_fast_targets(tmp_path: Path, boxes: bool) -> tuple[Dataset, Path]:
    dataset = distill_write_dataset(tmp_path / "data", frames=16)
    out = tmp_path / "run"
    fast = Dataset(
        dataset.name, dataset.root, [sped_up(c, 2) for c in dataset.train], [], dataset.gray, dataset.fps
    )
    for part in (dataset, fast):
        distill_write_targets(part, out / "targets", ("a",), boxes=boxes)
    return dataset, out


def test_select_val_auc_writes_the_epoch_that_best_separates_the_probe(tmp_path: Path) -> None:
    dataset, out = _with_fast_targets(tmp_path, boxes=True)
    result = distill(dataset, out, tiny_config(epochs=3, speedups=(2,), select="val-auc"), quiet=True)
    history = json.loads((out / "history.json").read_text())["distill"]
    assert all(0.0 <= row["val_auc"] <= 1.0 for row in history)
    best = min(range(3), key=lambda e: (-history[e]["val_auc"], history[e]["val_kd"])) + 1
    assert result.weights is not None
    loaded = load_weights(result.weights)
    assert f"epoch {best} of 3" in loaded.provenance["selection"]
    assert "pseudo-anomaly AUC" in loaded.provenance["selection"]
    assert loaded.provenance["metrics"]["val_auc"] == history[best - 1]["val_auc"]
    saved = torch.load(out / "checkpoints" / "best.pt", weights_only=True)
    assert saved["epoch"] == best


def test_select_val_auc_box_writes_the_epoch_that_best_separates_the_box_probe(tmp_path: Path) -> None:
    dataset, out = _with_fast_targets(tmp_path, boxes=True)
    result = distill(dataset, out, tiny_config(epochs=3, speedups=(2,), select="val-auc-box"), quiet=True)
    history = json.loads((out / "history.json").read_text())["distill"]
    assert all(0.0 <= row["val_auc_box"] <= 1.0 and 0.0 <= row["val_auc"] <= 1.0 for row in history)
    best = min(range(3), key=lambda e: (-history[e]["val_auc_box"], history[e]["val_kd"])) + 1
    assert result.weights is not None
    loaded = load_weights(result.weights)
    assert f"epoch {best} of 3" in loaded.provenance["selection"]
    assert "sped-up object boxes" in loaded.provenance["selection"]
    metrics = loaded.provenance["metrics"]
    assert metrics["val_auc_box"] == history[best - 1]["val_auc_box"]
    assert metrics["val_auc"] == history[best - 1]["val_auc"]


def test_select_val_auc_says_so_when_the_held_out_copies_have_no_boxes(tmp_path: Path) -> None:
    dataset, out = _with_fast_targets(tmp_path, boxes=False)
    with pytest.raises(AedError, match="found no proposal box in the sped-up copies"):
        distill(dataset, out, tiny_config(speedups=(2,), select="val-auc"), quiet=True)


def test_select_val_auc_needs_speedups_and_held_out_video() -> None:
    with pytest.raises(UsageError, match="pass --speedups"):
        tiny_config(select="val-auc")
    with pytest.raises(UsageError, match="needs held-out videos"):
        tiny_config(select="val-auc", speedups=(2,), val_videos=0)


def test_two_gloo_processes_measure_the_probe_alike_and_write_the_same_epoch(tmp_path: Path) -> None:
    dataset, out = _with_fast_targets(tmp_path, boxes=True)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    args = [
        *("distill", "--dataset", "folder", "--root", str(dataset.root), "--out", str(out)),
        *("--variant", "fastaed-xs", "--size", "32x48", "--batch", "4", "--teachers", "a"),
        *("--pretrain-epochs", "1", "--epochs", "2", "--val-videos", "1", "--speedups", "2"),
        *("--select", "val-auc", "--no-adversarial", "-q"),
    ]
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [*launcher, "-m", "aedcli", *args], env=env, capture_output=True, text=True, timeout=240, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    history = json.loads((out / "history.json").read_text())["distill"]
    best = min(range(2), key=lambda e: (-history[e]["val_auc"], history[e]["val_kd"])) + 1
    loaded = load_weights(out / "weights.pt")
    assert loaded.provenance["hardware"]["processes"] == 2
    assert f"epoch {best} of 2" in loaded.provenance["selection"]
