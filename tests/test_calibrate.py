"""aed calibrate: a threshold measured on the user's normal clips, in a copy of the weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from _robustness_fixtures import SHIPPED_WEIGHTS, run_aed, write_frames, write_video

from aedcli.inference import StudentRunner
from aedcli.scoring import threshold_from_normal
from aedcli.video import iter_frames
from aedcli.weights import load_weights

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_calibrated_threshold_is_the_percentile_of_smoothed_scores_on_the_given_clips(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clips = [write_video(tmp_path / "monday.mp4", n=14), write_frames(tmp_path / "tuesday", n=10)]
    out = tmp_path / "camera.pt"
    code, _, err = run_aed(["calibrate", *clips, "--out", out, "-q"], capsys)
    assert code == 0, err
    shipped, calibrated = load_weights(SHIPPED_WEIGHTS), load_weights(out)
    runner = StudentRunner(shipped)
    raw = {c.name: runner.score_clip(iter_frames(c, gray=True))[0] for c in clips}
    expected = threshold_from_normal(raw, shipped.sigma, 99.0).value
    assert calibrated.threshold is not None and shipped.threshold is not None
    assert calibrated.threshold.value == pytest.approx(expected, rel=1e-6)
    assert calibrated.threshold.value != pytest.approx(shipped.threshold.value)
    assert "monday.mp4, tuesday" in calibrated.threshold.source
    assert calibrated.provenance["calibration"]["clips"] == {"monday.mp4": 14, "tuesday": 10}
    assert calibrated.provenance["calibration"]["previous_threshold"]["value"] == shipped.threshold.value
    assert calibrated.spec == shipped.spec and calibrated.sigma == shipped.sigma
    state = calibrated.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in shipped.model.state_dict().items())
    assert f"-> {calibrated.threshold.value:.4f}" in err


def test_a_lower_percentile_gives_a_lower_threshold(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clip = write_video(tmp_path / "normal.mp4", n=16)
    values = []
    for p in ("50", "99"):
        out = tmp_path / f"p{p}.pt"
        assert run_aed(["calibrate", clip, "--out", out, "--percentile", p, "-q"], capsys)[0] == 0
        threshold = load_weights(out).threshold
        assert threshold is not None and threshold.percentile == float(p)
        values.append(threshold.value)
    assert np.isfinite(values).all() and values[0] < values[1]


def test_calibrate_refuses_an_existing_out_a_missing_clip_and_a_bad_percentile_without_writing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clip = write_video(tmp_path / "normal.mp4")
    taken = tmp_path / "taken.pt"
    taken.write_bytes(b"keep me")
    code, _, err = run_aed(["calibrate", clip, "--out", taken], capsys)
    assert code == 2 and "already exists; pass --force" in err and taken.read_bytes() == b"keep me"
    missing = tmp_path / "nowhere.mp4"
    code, _, err = run_aed(["calibrate", missing, "--out", tmp_path / "new.pt"], capsys)
    assert code == 2 and str(missing) in err and not (tmp_path / "new.pt").exists()
    code, _, err = run_aed(["calibrate", clip, "--out", tmp_path / "new.pt", "--percentile", "0"], capsys)
    assert code == 2 and "--percentile must be in (0, 100]" in err and not (tmp_path / "new.pt").exists()


def test_a_folder_of_videos_calibrates_on_every_video_in_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "normal"
    write_video(folder / "a.mp4", n=9)
    write_video(folder / "b.avi", n=11, fourcc="MJPG")
    out = tmp_path / "camera.pt"
    code, _, err = run_aed(["calibrate", folder, "--out", out, "-q"], capsys)
    assert code == 0, err
    assert load_weights(out).provenance["calibration"]["clips"] == {"a.mp4": 9, "b.avi": 11}
