"""Object proposals: every moving object gets a box; boxes are cached; a local detector can replace them."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest
import torch

from aedcli.data import load_dataset
from aedcli.errors import UsageError, WeightsError
from aedcli.teachers.proposals import (
    LocalDetector,
    ProposalConfig,
    boxes_to_rows,
    load_boxes,
    load_or_propose,
    propose_clip,
    rows_to_boxes,
)


@pytest.fixture(scope="module")
def synthetic():
    return load_dataset("synthetic")


def _covered_fraction(mask: np.ndarray, boxes: np.ndarray) -> float:
    """Fraction of the mask's pixels that lie inside at least one proposal."""
    inside = np.zeros_like(mask, dtype=bool)
    for x0, y0, x1, y1 in boxes.astype(int):
        inside[y0:y1, x0:x1] = True
    return float((mask & inside).sum() / max(1, mask.sum()))


def test_every_anomalous_object_gets_a_box(synthetic) -> None:
    method = "median"
    cfg = ProposalConfig(method=method)
    hits = total = 0
    for clip in synthetic.test:
        boxes = propose_clip(lambda clip=clip: clip.frames(gray=True), cfg)
        assert len(boxes) == clip.frame_count
        for t, mask in enumerate(clip.masks()):
            if mask.sum() < 20:  # nothing, or a sliver entering at the frame border
                continue
            total += 1
            hits += _covered_fraction(mask, boxes[t]) >= 0.5
    assert total > 50
    assert hits / total >= 0.9, f"{method}: anomalous objects were boxed in only {hits}/{total} frames"


def test_walking_pedestrians_of_training_video_get_boxes(synthetic) -> None:
    clip = synthetic.train[0]
    boxes = propose_clip(lambda: clip.frames(gray=True), ProposalConfig())
    counts = np.array([len(b) for b in boxes])
    assert np.median(counts) >= 2  # several figures walk through every frame
    for b in boxes:
        assert (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()
        assert (b[:, :2] >= 0).all() and (b[:, 2] <= 160).all() and (b[:, 3] <= 120).all()


def _still_video(n: int = 20, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    scene = cv2.GaussianBlur(rng.integers(0, 255, (96, 128), dtype=np.uint8), (9, 9), 0)
    return [np.clip(scene + rng.normal(0, 2, scene.shape), 0, 255).astype(np.uint8) for _ in range(n)]


def test_a_video_where_nothing_moves_has_no_boxes() -> None:
    frames = _still_video()
    for method in ("median", "mog2", "knn"):
        boxes = propose_clip(lambda: iter(frames), ProposalConfig(method=method))
        assert len(boxes) == len(frames)
        assert sum(len(b) for b in boxes) == 0, method


def _moving_square_video() -> list[np.ndarray]:
    frames = _still_video(24)
    for t, f in enumerate(frames):
        cv2.rectangle(f, (10 + 4 * t, 40), (18 + 4 * t, 60), 250, -1)
    return frames


@pytest.mark.parametrize("method", ["mog2", "knn"])
def test_adaptive_subtractors_box_the_moving_object_in_most_frames(method) -> None:
    frames = _moving_square_video()
    boxes = propose_clip(lambda: iter(frames), ProposalConfig(method=method))
    inside = [
        any(b[0] <= 14 + 4 * t <= b[2] and b[1] <= 50 <= b[3] for b in fb) for t, fb in enumerate(boxes)
    ]
    assert np.mean(inside) >= 0.8
    assert max(len(fb) for fb in boxes) <= 2


def test_a_small_object_moving_across_a_still_scene_is_boxed_tightly_in_every_frame() -> None:
    frames = _moving_square_video()
    boxes = propose_clip(lambda: iter(frames), ProposalConfig())
    for t, b in enumerate(boxes):
        assert len(b) == 1, t
        x0, y0, _, y1 = b[0]
        assert abs(x0 - (10 + 4 * t)) <= 3 and abs(y0 - 40) <= 3 and abs(y1 - 61) <= 3


def test_box_rows_round_trip() -> None:
    per_frame = [np.zeros((0, 4), np.float32), np.array([[1, 2, 3, 4], [5, 6, 7, 8]], np.float32)]
    back = rows_to_boxes(boxes_to_rows(per_frame), 3)
    assert len(back) == 3 and len(back[0]) == 0 and len(back[2]) == 0
    np.testing.assert_array_equal(back[1], per_frame[1])


def test_box_cache_is_reused_then_a_corrupt_one_is_reported_and_rebuilt(tmp_path, caplog) -> None:
    frames = _still_video(12)
    for t, f in enumerate(frames):
        cv2.circle(f, (20 + 5 * t, 50), 6, 255, -1)
    calls = []

    def open_frames():
        calls.append(1)
        return iter(frames)

    cfg = ProposalConfig()
    path = tmp_path / "boxes" / "train" / "clip.npz"
    first, cached = load_or_propose(path, open_frames, cfg)
    assert not cached and path.exists() and len(calls) == 2  # background pass + detection pass
    again, cached = load_or_propose(path, open_frames, cfg)
    assert cached and len(calls) == 2
    assert again.frame_size == (96, 128) and again.frame_count == 12
    for a, b in zip(first.boxes, again.boxes, strict=True):
        np.testing.assert_array_equal(a, b)

    path.write_bytes(b"not a zip file at all")
    with caplog.at_level(logging.WARNING, logger="aedcli"):
        _, cached = load_or_propose(path, open_frames, cfg)
    assert not cached and len(calls) == 4
    assert any("corrupt" in r.getMessage() and str(path) in r.getMessage() for r in caplog.records)
    assert load_boxes(path, cfg) is not None  # the rebuilt cache is valid again


def test_box_cache_made_with_other_settings_is_not_used(tmp_path) -> None:
    frames = _still_video(6)
    path = tmp_path / "c.npz"
    load_or_propose(path, lambda: iter(frames), ProposalConfig())
    assert load_boxes(path, ProposalConfig()) is not None
    assert load_boxes(path, ProposalConfig(diff_threshold=40.0)) is None


def test_box_cache_of_another_version_of_the_video_is_not_used_and_one_without_a_stamp_is(tmp_path) -> None:
    frames = _still_video(6)
    path = tmp_path / "c.npz"
    load_or_propose(path, lambda: iter(frames), ProposalConfig(), stamp="video v1")
    assert load_boxes(path, ProposalConfig(), "video v1") is not None
    assert load_boxes(path, ProposalConfig(), "video v2") is None
    assert load_boxes(path, ProposalConfig()) is not None  # a reader that does not ask
    legacy = tmp_path / "legacy.npz"
    load_or_propose(legacy, lambda: iter(frames), ProposalConfig())  # no stamp: as written before stamps
    assert load_boxes(legacy, ProposalConfig(), "video v2") is not None


class _FixedDetector(torch.nn.Module):
    """A stand-in detector: two boxes with scores 0.9 and 0.2 whatever the frame."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[1] == 3
        return torch.tensor([[4.0, 5.0, 20.0, 30.0, 0.9, 0.0], [40.0, 5.0, 60.0, 30.0, 0.2, 1.0]])


def test_local_torchscript_detector_boxes_are_filtered_by_score(tmp_path) -> None:
    path = tmp_path / "det.pt"
    torch.jit.script(_FixedDetector()).save(str(path))
    cfg = ProposalConfig(method="detector", detector=str(path), detector_threshold=0.5)
    frames = _still_video(3)
    boxes = propose_clip(lambda: iter(frames), cfg)
    assert len(boxes) == 3
    np.testing.assert_array_equal(boxes[0], [[4, 5, 20, 30]])
    low = LocalDetector(path, threshold=0.1, classes=(1,))
    np.testing.assert_array_equal(low(frames[0]), [[40, 5, 60, 30]])


def test_detector_file_errors_name_the_file(tmp_path) -> None:
    with pytest.raises(UsageError, match="detector"):
        ProposalConfig(method="detector")
    with pytest.raises(WeightsError, match="does not exist"):
        LocalDetector(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"junk")
    with pytest.raises(WeightsError, match=str(bad)):
        LocalDetector(bad)


def test_local_onnx_detector_runs_with_onnxruntime(tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    path = tmp_path / "det.onnx"

    class Det(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            # one box whose score depends on the input, so the graph keeps its input
            s = x.mean().reshape(1, 1) * 0 + 0.8
            return torch.cat([torch.tensor([[2.0, 3.0, 12.0, 13.0]]), s], dim=1)

    torch.onnx.export(Det(), (torch.zeros(1, 3, 96, 128),), str(path), input_names=["x"], dynamo=False)
    det = LocalDetector(path, threshold=0.5)
    np.testing.assert_array_equal(det(_still_video(1)[0]), [[2, 3, 12, 13]])
