"""The weights file: a faithful round trip, and a clear refusal of every file it should not load."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from aedcli.errors import WeightsError
from aedcli.model.inputs import InputSpec
from aedcli.model.student import Student, student_config
from aedcli.model.weights import FORMAT_VERSION, Domain, NormalRange, load_weights, save_weights
from aedcli.runtime import StudentRunner
from aedcli.scoring import Threshold, frame_scores
from aedcli.video import frame_stacks

SPEC = InputSpec(height=32, width=48, channels=1)
THRESHOLD = Threshold(value=0.42, sigma=3.0, percentile=99.0, source="99th percentile of 2 normal videos")
NORMAL = NormalRange(median=0.11, p99=0.37, frames=300, source="2 held-out normal training videos")
DOMAIN = Domain(frame_size=(240, 360), channels=1, fps=10.0, dataset="ped2")
TEACHERS = ("motion", "objects")


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


def _trained_like_student() -> Student:
    """A student whose BatchNorm statistics moved away from their defaults."""
    model = Student(student_config("fastaed-xs", SPEC.in_channels, TEACHERS))
    with torch.no_grad():
        model.train()(torch.randn(4, 3, 32, 48))
    return model.eval()


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Student, Path]:
    model = _trained_like_student()
    path = save_weights(
        tmp_path / "weights.pt",
        model,
        SPEC,
        sigma=3.0,
        threshold=THRESHOLD,
        normal=NORMAL,
        domain=DOMAIN,
        provenance={"dataset": {"name": "synthetic"}, "epochs": {"distill": 2}},
        variant="fastaed-xs",
    )
    return model, path


def test_round_trip_restores_the_model_and_its_metadata(saved: tuple[Student, Path]) -> None:
    model, path = saved
    loaded = load_weights(path)
    assert not loaded.model.training
    assert loaded.config == model.config
    assert loaded.config.teachers == TEACHERS
    assert loaded.spec == SPEC
    assert loaded.sigma == 3.0
    assert loaded.threshold == THRESHOLD
    assert loaded.normal == NORMAL
    assert loaded.domain == DOMAIN
    assert loaded.path == path
    assert loaded.provenance["epochs"] == {"distill": 2}
    assert loaded.variant == "fastaed-xs"
    x = torch.randn(2, 3, 32, 48)
    with torch.no_grad():
        for a, b in zip(model(x), loaded.model(x), strict=True):
            assert torch.equal(a, b)


def test_file_holds_only_plain_data(saved: tuple[Student, Path]) -> None:
    _, path = saved
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == "aed-student" and payload["version"] == FORMAT_VERSION == 2
    assert set(payload) >= {
        "state_dict",
        "config",
        "input",
        "scoring",
        "threshold",
        "normal",
        "domain",
        "provenance",
    }
    assert payload["domain"] == {"frame_size": [240, 360], "channels": 1, "fps": 10.0, "dataset": "ped2"}


def test_weights_without_normal_range_or_domain_load_with_none(tmp_path: Path) -> None:
    path = save_weights(tmp_path / "bare.pt", _trained_like_student(), SPEC, sigma=0.0)
    loaded = load_weights(path)
    assert (loaded.threshold, loaded.normal, loaded.domain, loaded.variant) == (None, None, None, None)
    assert loaded.provenance == {}


def test_domain_of_frames_without_a_rate_keeps_fps_none() -> None:
    domain = Domain(frame_size=(120, 160), channels=3, fps=None, dataset="folder")
    assert Domain.from_dict(domain.to_dict()) == domain
    assert NormalRange.from_dict(NORMAL.to_dict()) == NORMAL


@pytest.mark.parametrize("version", [1, 0])
def test_weights_of_an_older_format_version_are_refused_in_one_sentence(
    saved: tuple[Student, Path], tmp_path: Path, version: int
) -> None:
    payload = torch.load(saved[1], weights_only=True)
    payload["version"] = version
    old = tmp_path / "old.pt"
    torch.save(payload, old)
    with pytest.raises(WeightsError) as refused:
        load_weights(old)
    message = str(refused.value)
    assert f"{old} was written by an aed before 0.2 (format version {version})" in message
    assert "aed distill" in message
    assert "\n" not in message and message.endswith(".") and message.count(". ") == 0  # one sentence


def test_missing_file_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "nothing.pt"
    with pytest.raises(WeightsError, match=r"nothing\.pt does not exist"):
        load_weights(path)


def test_truncated_file_is_refused(saved: tuple[Student, Path], tmp_path: Path) -> None:
    _, path = saved
    cut = tmp_path / "cut.pt"
    data = path.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match=r"cut\.pt is truncated or corrupt"):
        load_weights(cut)


@pytest.mark.parametrize("content", [b"", b"not a weights file at all\n", os.urandom(256)])
def test_empty_text_or_random_files_are_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "junk.pt"
    path.write_bytes(content)
    with pytest.raises(WeightsError, match=r"junk\.pt"):
        load_weights(path)


class _Payload:
    """Any class: unpickling it would import and run code."""


@pytest.mark.parametrize("evil", [_Payload(), os.system], ids=["object", "callable"])
def test_file_carrying_pickled_objects_is_refused(tmp_path: Path, evil: object) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"format": "aed-student", "version": 2, "state_dict": {}, "extra": evil}, path)
    with pytest.raises(WeightsError, match=r"evil\.pt holds pickled Python objects"):
        load_weights(path)


def test_plain_state_dict_without_format_tag_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save(Student(student_config("fastaed-xs", 3)).state_dict(), path)
    with pytest.raises(WeightsError, match=r"other\.pt is not an aed student weights file"):
        load_weights(path)


def test_parameters_of_another_architecture_are_refused(saved: tuple[Student, Path], tmp_path: Path) -> None:
    _, path = saved
    payload = torch.load(path, weights_only=True)
    payload["state_dict"] = Student(student_config("fastaed-s", 3, TEACHERS)).state_dict()
    wrong = tmp_path / "wrong.pt"
    torch.save(payload, wrong)
    with pytest.raises(WeightsError, match=r"wrong\.pt holds parameters that do not match"):
        load_weights(wrong)


def test_newer_format_version_asks_for_an_upgrade(saved: tuple[Student, Path], tmp_path: Path) -> None:
    _, path = saved
    payload = torch.load(path, weights_only=True)
    payload["version"] = 99
    newer = tmp_path / "newer.pt"
    torch.save(payload, newer)
    with pytest.raises(WeightsError, match="upgrade aed"):
        load_weights(newer)


def test_save_refuses_provenance_that_is_not_json(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        save_weights(tmp_path / "w.pt", _trained_like_student(), SPEC, sigma=3.0, provenance={"x": object()})
    assert not (tmp_path / "w.pt").exists()


def test_input_spec_for_frames_keeps_the_aspect_at_most_240_rows_in_multiples_of_8() -> None:
    assert InputSpec.for_frames(240, 360, 1) == InputSpec(240, 360, 1)
    assert InputSpec.for_frames(720, 1280, 3) == InputSpec(240, 424, 3)  # 426.7 -> 424
    small = InputSpec.for_frames(120, 161, 1, offset=2)  # not enlarged
    assert small == InputSpec(120, 160, 1, offset=2)
    assert InputSpec(240, 360, 3).in_channels == 9


def _frames(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.integers(0, 255, size=(64, 96), dtype=np.uint8) for _ in range(n)]


def _runner(path: Path, batch_size: int) -> StudentRunner:
    loaded = load_weights(path)
    return StudentRunner(loaded.model, loaded.spec, batch_size=batch_size)


def test_runner_streams_the_same_maps_as_one_big_batch(saved: tuple[Student, Path]) -> None:
    model, path = saved
    frames = _frames(11)
    batches = list(_runner(path, batch_size=4).run(iter(frames)))
    assert [len(b.s) for b in batches] == [4, 4, 3]
    assert batches[0].s.shape == (4, 2) and batches[0].l.shape == (4, 2, 16, 16)
    stacks = np.stack(list(frame_stacks([SPEC.prepare(f) for f in frames], offset=3)))
    with torch.no_grad():
        ref = model(SPEC.to_tensor(stacks))
    np.testing.assert_allclose(np.concatenate([b.l for b in batches]), ref.l.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.concatenate([b.s for b in batches]), ref.s.numpy(), rtol=1e-4, atol=1e-5)


def test_runner_gives_the_first_and_last_frames_the_nearest_full_stacks_score(
    saved: tuple[Student, Path],
) -> None:
    scores, _ = _runner(saved[1], batch_size=4).score_clip(iter(_frames(11)))
    np.testing.assert_array_equal(scores[:3], [scores[3]] * 3)  # frames 0-2: frame 3's full stack
    np.testing.assert_array_equal(scores[-3:], [scores[-4]] * 3)  # frames 8-10: frame 7's
    assert len(set(scores[3:8].tolist())) == 5


def test_runner_leaves_gradients_on_for_the_caller_between_batches(saved: tuple[Student, Path]) -> None:
    for _ in _runner(saved[1], batch_size=2).run(iter(_frames(5))):
        assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()


def test_score_clip_gives_one_score_and_map_per_frame(saved: tuple[Student, Path]) -> None:
    frames = _frames(7)
    raw, maps16 = _runner(saved[1], batch_size=3).score_clip(iter(frames))
    assert raw.shape == (7,) and maps16.shape == (7, 16, 16)
    maps = next(_runner(saved[1], batch_size=16).run(iter(frames)))
    np.testing.assert_allclose(raw, frame_scores(maps.s, maps.m, maps.l), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(raw, maps.scores, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(maps16, maps.l.max(axis=1), rtol=1e-4, atol=1e-5)  # finest: max over teachers


def test_score_clip_of_no_frames_is_empty(saved: tuple[Student, Path]) -> None:
    raw, maps16 = _runner(saved[1], batch_size=3).score_clip(iter([]))
    assert raw.shape == (0,) and maps16.shape == (0, 16, 16)
