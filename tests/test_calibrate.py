"""aed calibrate: a threshold and normal range measured on a user's normal clips, in a copy of the weights."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from _robustness_fixtures import (
    assert_one_sentence,
    files_in,
    run_aed,
    tiny_weights,
    write_frames,
    write_video,
)

from aedcli.calibrate import MIN_FRAMES, calibrate, count_frames
from aedcli.errors import UsageError
from aedcli.model.weights import Domain, NormalRange, load_weights
from aedcli.runtime import make_runner
from aedcli.scoring import threshold_from_normal
from aedcli.video import iter_frames

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TORCH = ("--runtime", "torch", "-q")
"""The PyTorch runtime (no ONNX export per run) and no progress bars."""
DETECT_TORCH = ("--runtime", "torch")


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny gray student (48x64) with a stored threshold of 0.3."""
    return tiny_weights(tmp_path_factory.mktemp("weights") / "tiny.pt")


@pytest.fixture(scope="module")
def normal_clips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two clips of normal footage, 220 frames together: a video and a gray frame folder."""
    folder = tmp_path_factory.mktemp("normal")
    return [write_video(folder / "monday.mp4", n=120), write_frames(folder / "tuesday", n=100)]


def test_calibrated_threshold_is_the_percentile_of_smoothed_scores_on_the_given_clips(
    weights: Path, normal_clips: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "camera.pt"
    code, _, err = run_aed(["calibrate", *normal_clips, "--weights", weights, "--out", out, *TORCH], capsys)
    assert code == 0, err
    original, calibrated = load_weights(weights), load_weights(out)
    runner, _ = make_runner(original, runtime="torch")
    raw = {c.name: runner.score_clip(iter_frames(c))[0] for c in normal_clips}
    expected = threshold_from_normal(raw, original.sigma, 99.0).value
    assert calibrated.threshold is not None and original.threshold is not None
    assert calibrated.threshold.value == pytest.approx(expected, rel=1e-6)
    assert calibrated.threshold.value != pytest.approx(original.threshold.value)
    assert "monday.mp4, tuesday" in calibrated.threshold.source
    record = calibrated.provenance["calibration"]
    assert record["clips"] == {"monday.mp4": 120, "tuesday": 100}
    assert record["previous_threshold"]["value"] == original.threshold.value
    assert calibrated.spec == original.spec and calibrated.sigma == original.sigma
    state = calibrated.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in original.model.state_dict().items())
    # The normal range and the footage the weights now fit are stored too.
    scores = np.concatenate(list(raw.values()))
    assert calibrated.normal is not None and calibrated.normal.frames == 220
    assert calibrated.normal.median == pytest.approx(float(np.median(scores)), rel=1e-6)
    assert calibrated.normal.p99 == pytest.approx(float(np.percentile(scores, 99)), rel=1e-6)
    assert calibrated.domain is not None
    assert calibrated.domain.frame_size == (48, 64) and calibrated.domain.channels == 3
    assert calibrated.domain.fps == 25.0


def test_calibrate_reports_the_old_and_new_threshold_and_the_leave_one_out_range(
    weights: Path, normal_clips: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "camera.pt"
    code, stdout, err = run_aed(
        [
            "calibrate",
            *normal_clips,
            "--weights",
            weights,
            "--out",
            out,
            *TORCH,
            "--json",
            tmp_path / "c.json",
        ],
        capsys,
    )
    assert code == 0, err
    new = load_weights(out).threshold
    assert new is not None
    assert f"threshold 0.3 -> {new.value:.4g}" in stdout
    report = json.loads((tmp_path / "c.json").read_text())
    assert report["previous_threshold"]["value"] == 0.3
    assert report["threshold"]["value"] == new.value
    # Leaving out each clip in turn: one threshold without each.
    left_out = report["leave_one_out"]
    assert set(left_out) == {"monday.mp4", "tuesday"}
    low, high = min(left_out.values()), max(left_out.values())
    assert f"ranges {low:.4g} - {high:.4g}" in stdout
    assert report["normal_range"]["frames"] == 220


def test_a_single_clip_is_left_out_by_quarters_and_noted(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clip = write_video(tmp_path / "only.mp4", n=MIN_FRAMES)
    out = tmp_path / "camera.pt"
    code, stdout, err = run_aed(["calibrate", clip, "--weights", weights, "--out", out, *TORCH], capsys)
    assert code == 0, err
    left_out = load_weights(out).provenance["calibration"]["leave_one_out"]
    assert sorted(left_out) == [f"only.mp4 quarter {i}" for i in range(1, 5)]
    assert "one clip only" in err and "ranges" in stdout
    assert "a minute or more" in err  # 8 s of footage


def test_a_lower_percentile_gives_a_lower_threshold(
    weights: Path, normal_clips: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    values = []
    for p in ("50", "99"):
        out = tmp_path / f"p{p}.pt"
        args = ["calibrate", *normal_clips, "--weights", weights, "--out", out, "--percentile", p, *TORCH]
        assert run_aed(args, capsys)[0] == 0
        threshold = load_weights(out).threshold
        assert threshold is not None and threshold.percentile == float(p)
        values.append(threshold.value)
    assert np.isfinite(values).all() and values[0] < values[1]


def test_calibrate_refuses_an_existing_out_a_missing_clip_and_a_bad_percentile_without_writing(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clip = write_video(tmp_path / "normal.mp4", n=4)
    taken = tmp_path / "taken.pt"
    taken.write_bytes(b"keep me")
    code, _, err = run_aed(["calibrate", clip, "--weights", weights, "--out", taken], capsys)
    assert code == 2 and "already exists; pass --force" in err and taken.read_bytes() == b"keep me"
    missing = tmp_path / "nowhere.mp4"
    code, _, err = run_aed(["calibrate", missing, "--weights", weights, "--out", tmp_path / "new.pt"], capsys)
    assert code == 2 and str(missing) in err and not (tmp_path / "new.pt").exists()
    code, _, err = run_aed(
        ["calibrate", clip, "--weights", weights, "--out", tmp_path / "new.pt", "--percentile", "0"], capsys
    )
    assert code == 2 and "--percentile must be in (0, 100]" in err and not (tmp_path / "new.pt").exists()


def _refuse_scoring(monkeypatch: pytest.MonkeyPatch) -> None:
    def scoring(*args: object, **kwargs: object) -> None:
        raise AssertionError("calibration scored clips although it had to refuse")

    monkeypatch.setattr("aedcli.cli.calibrate.run_calibration", scoring)
    monkeypatch.setattr("aedcli.cli.calibrate.make_runner", scoring)


def test_fewer_than_the_minimum_frames_are_refused_before_scoring_saying_how_many_are_needed(
    weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clips = [write_video(tmp_path / "a.mp4", n=30), write_frames(tmp_path / "b", n=20)]
    out = tmp_path / "camera.pt"
    _refuse_scoring(monkeypatch)  # both clips say how many frames they hold

    code, _, err = run_aed(["calibrate", *clips, "--weights", weights, "--out", out, *TORCH], capsys)

    line = assert_one_sentence(code, err, exit_code=2, names="50 frame(s)")
    assert f"at least {MIN_FRAMES} frames" in line
    assert not out.exists()


def test_calibration_counts_the_frames_it_scored_and_refuses_too_few(weights: Path, tmp_path: Path) -> None:
    loaded = load_weights(weights)
    runner, _ = make_runner(loaded, runtime="torch")
    clip = write_video(tmp_path / "a.mp4", n=MIN_FRAMES - 1)
    with pytest.raises(UsageError, match=f"has {MIN_FRAMES - 1} frame\\(s\\).*at least {MIN_FRAMES} frames"):
        calibrate(loaded, runner, [clip])


def test_out_in_a_read_only_folder_fails_in_one_sentence_before_any_scoring(
    weights: Path,
    normal_clips: list[Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("this user can write into a folder of mode 555 (root)")
        _refuse_scoring(monkeypatch)
        out = locked / "camera.pt"
        code, _, err = run_aed(["calibrate", *normal_clips, "--weights", weights, "--out", out], capsys)
        line = assert_one_sentence(code, err, exit_code=1, names=out)
        assert "not writable" in line and str(locked) in line
        assert files_in(locked) == []
    finally:
        locked.chmod(0o755)


def test_out_in_a_folder_that_cannot_be_written_is_refused_before_any_scoring(
    weights: Path,
    normal_clips: list[Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The same refusal for any user (root may write anywhere): the folder reports itself not writable.
    locked = tmp_path / "locked"
    locked.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == locked else real(p, mode))
    _refuse_scoring(monkeypatch)
    out = locked / "sub" / "camera.pt"

    code, _, err = run_aed(["calibrate", *normal_clips, "--weights", weights, "--out", out], capsys)

    line = assert_one_sentence(code, err, exit_code=1, names=out)
    assert f"folder {locked} is not writable" in line and "choose another --out" in line
    assert files_in(locked) == []


def test_a_folder_of_videos_calibrates_on_every_video_in_it(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "normal"
    write_video(folder / "a.mp4", n=100)
    write_video(folder / "b.avi", n=110, fourcc="MJPG")
    out = tmp_path / "camera.pt"
    code, _, err = run_aed(["calibrate", folder, "--weights", weights, "--out", out, *TORCH], capsys)
    assert code == 0, err
    assert load_weights(out).provenance["calibration"]["clips"] == {"a.mp4": 100, "b.avi": 110}


def test_progress_total_is_known_for_video_files_and_frame_folders(tmp_path: Path) -> None:
    assert count_frames(write_video(tmp_path / "clip.mp4", n=17)) == 17
    assert count_frames(write_frames(tmp_path / "frames", n=9)) == 9


def test_detect_notes_footage_unlike_the_weights_and_calibration_on_that_footage_silences_the_notes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Weights trained on 360x240 gray footage at 10 fps, whose normal scores sit far below these.
    trained = tiny_weights(
        tmp_path / "trained.pt",
        normal=NormalRange(median=1e-4, p99=2e-4, frames=330, source="held-out normal footage"),
        domain=Domain((240, 360), 1, 10.0, "ped2"),
    )
    clip = write_video(tmp_path / "camera" / "today.mp4", n=30)  # 64x48 colour at 25 fps

    code, _, err = run_aed(
        ["detect", clip, "--weights", trained, "--out", tmp_path / "before", *DETECT_TORCH], capsys
    )

    assert code == 0, err
    notes = json.loads((tmp_path / "before" / "today_summary.json").read_text())["notes"]
    domain = [n for n in notes if n.startswith("this footage differs")]
    assert len(domain) == 1
    for difference in ("64x48 frames instead of 360x240", "colour instead of gray", "25 fps instead of 10"):
        assert difference in domain[0]
    level = [n for n in notes if "above the 99th percentile" in n]
    assert len(level) == 1
    assert all("aed calibrate" in n and str(trained) in n for n in (*domain, level[0]))
    flat = " ".join(err.split())
    assert "this footage differs" in flat and "above the 99th percentile" in flat and "aed calibrate" in flat

    normal = [write_video(tmp_path / "normal" / f"day{i}.mp4", n=110) for i in (1, 2)]
    mine = tmp_path / "my_camera.pt"
    code, _, err = run_aed(["calibrate", *normal, "--weights", trained, "--out", mine, *TORCH], capsys)
    assert code == 0, err

    code, _, err = run_aed(
        ["detect", clip, "--weights", mine, "--out", tmp_path / "after", *DETECT_TORCH], capsys
    )

    assert code == 0, err
    notes = json.loads((tmp_path / "after" / "today_summary.json").read_text())["notes"]
    assert not [n for n in notes if "above the 99th percentile" in n or n.startswith("this footage differs")]
    assert "aed calibrate" not in err
    assert not re.search(r"note:.*(differs|99th percentile)", err)
