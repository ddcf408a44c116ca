"""`aed detect`: outputs, thresholds, overwrite protection, user errors, sources, streaming and memory."""

from __future__ import annotations

import csv
import functools
import http.server
import json
import os
import signal
import socket
import sys
import threading
import tracemalloc
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import av
import cv2
import numpy as np
import pytest
import torch
from _robustness_fixtures import files_in, run_aed
from _students import random_student

from aedcli.data.clips import Clip
from aedcli.detect import DetectOptions, detect
from aedcli.detect.domain import SHORT_CLIP_FRAMES
from aedcli.detect.outputs import CSV_COLUMNS, SCORE_MEANING
from aedcli.detect.overlay import overlay_size
from aedcli.detect.pipeline import ThresholdChoice, detect_stream
from aedcli.detect.sources import OutputPaths
from aedcli.errors import UsageError, VideoError, WeightsError
from aedcli.evaluation.evaluate import evaluate_scores
from aedcli.evaluation.sources import student_source
from aedcli.model.inputs import InputSpec
from aedcli.model.weights import LoadedWeights, load_weights, save_weights
from aedcli.runtime import StudentRunner, make_runner
from aedcli.scoring import CentredSmoother, EventTracker, StreamingSmoother, Threshold, smooth_scores
from aedcli.video import VideoInfo, VideoSource, iter_frames

W, H, N = 80, 60, 40  # test videos: 80x60, 40 frames, 25 fps
SIGMA = 2.0
STORED_THRESHOLD = 0.30
OVERLAY_W, OVERLAY_H = overlay_size(W, H)


def scene(i: int, size: tuple[int, int] = (H, W)) -> np.ndarray:
    """Frame i (H, W, 3): noise, a square sliding right and, from frame 20 on, a second fast square."""
    h, w = size
    frame = np.random.default_rng(i).integers(30, 70, (h, w, 3), dtype=np.uint8)
    x = (2 * i) % (w - 12)
    frame[h // 4 : h // 4 + 12, x : x + 12] = 220
    if i >= 20:
        x2 = (7 * i) % (w - 16)
        frame[h // 2 : h // 2 + 16, x2 : x2 + 16] = 255
    return frame


def write_mp4(path: Path, n: int = N, size: tuple[int, int] = (H, W)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (size[1], size[0]))
    assert writer.isOpened()
    for i in range(n):
        writer.write(scene(i, size))
    writer.release()
    return path


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Iterator[None]:
    """The tiny test student runs fastest on one thread (OpenMP threads wait on each other on a busy CPU)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def save_tiny(path: Path, loaded: LoadedWeights) -> Path:
    thr = Threshold(value=STORED_THRESHOLD, sigma=SIGMA, percentile=99.0, source="test threshold")
    return save_weights(
        path,
        loaded.model,
        loaded.spec,
        sigma=SIGMA,
        threshold=thr,
        provenance={"dataset": "test"},
        variant=loaded.variant,
    )


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random student (fastaed-xs, 48x64 gray input, one head set) with a stored threshold."""
    loaded = random_student(InputSpec(height=48, width=64, channels=1), teachers=("teachers",))
    return save_tiny(tmp_path_factory.mktemp("weights") / "tiny.pt", loaded)


@pytest.fixture(scope="module")
def two_teacher_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same kind of student with one head set per teacher (motion, objects)."""
    loaded = random_student(InputSpec(height=48, width=64, channels=1), teachers=("motion", "objects"))
    return save_tiny(tmp_path_factory.mktemp("weights") / "two.pt", loaded)


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return write_mp4(tmp_path / "clip.mp4")


def options(weights: Path, **changes: object) -> DetectOptions:
    """Detection with the PyTorch runtime (no ONNX export per test); ``changes`` as DetectOptions fields."""
    return DetectOptions(weights=weights, runtime="torch", **changes)  # type: ignore[arg-type]


def torch_runner(loaded: LoadedWeights, batch_size: int = 16) -> StudentRunner:
    return make_runner(loaded, runtime="torch", batch_size=batch_size)[0]


def stream(
    source: VideoSource, loaded: LoadedWeights, outputs: OutputPaths, batch_size: int = 16, **kw: object
) -> object:
    """detect_stream with a PyTorch runner and a test threshold."""
    runner, info = make_runner(loaded, runtime="torch", batch_size=batch_size)
    return detect_stream(source, loaded, runner, info, outputs, ThresholdChoice(0.3, "test"), **kw)  # type: ignore[arg-type]


def read_csv(path: Path) -> tuple[list[str], dict[str, np.ndarray]]:
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    columns = {name: np.array([float(r[i]) for r in body]) for i, name in enumerate(header)}
    return header, columns


def count_frames(path: Path) -> tuple[int, tuple[int, int]]:
    cap = cv2.VideoCapture(str(path))
    n, shape = 0, (0, 0)
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        n, shape = n + 1, frame.shape[:2]
    cap.release()
    return n, shape


def quantile_threshold(weights: Path, video: Path, q: float) -> float:
    """The q-quantile of the smoothed scores of `video` (tests only: a threshold that splits this clip)."""
    raw, _ = torch_runner(load_weights(weights)).score_clip(iter_frames(video))
    return float(np.quantile(smooth_scores(raw, SIGMA), q))


class FakeSource(VideoSource):
    """Frames from a function, never stored; `live` makes it look like a camera."""

    def __init__(self, make: Callable[[int], np.ndarray], n: int, live: bool, fps: float = 25.0) -> None:
        first = make(0)
        info = VideoInfo(
            source="fake-camera" if live else "fake.mp4",
            width=first.shape[1],
            height=first.shape[0],
            fps=fps,
            frame_count=None if live else n,
            channels=1 if first.ndim == 2 else 3,
            is_live=live,
            fps_reported=True,
        )
        super().__init__(info, first, "raise")
        self._make, self._n, self._next = make, n, 1

    def _read_next(self) -> np.ndarray | None:
        if self._next >= self._n:
            return None
        self._next += 1
        return self._make(self._next - 1)


# ---------------------------------------------------------------------------------------------------------
# Outputs


def test_detect_on_mp4_writes_playable_overlay_csv_with_all_frames_and_summary_with_events(
    weights: Path, clip: Path
) -> None:
    thr = quantile_threshold(weights, clip, 0.5)  # half the frames above: there must be events
    (result,) = detect(clip, options(weights, overlay=True, plot=True, threshold=thr))

    out = clip.parent / "clip_aed"
    assert result.outputs.folder == out
    assert sorted(p.name for p in files_in(out)) == [
        "clip_overlay.mp4",
        "clip_scores.csv",
        "clip_summary.json",
        "clip_timeline.png",
    ]
    frames, shape = count_frames(out / "clip_overlay.mp4")
    assert (frames, shape) == (N, (OVERLAY_H, OVERLAY_W))

    header, cols = read_csv(out / "clip_scores.csv")
    assert tuple(header) == CSV_COLUMNS
    assert cols["frame"].tolist() == list(range(N))
    np.testing.assert_allclose(cols["time_s"], np.arange(N) / 25.0, atol=1e-4)
    assert set(cols["abnormal"].tolist()) == {0.0, 1.0}
    np.testing.assert_array_equal(cols["abnormal"], (cols["score_smoothed"] > thr).astype(float))
    # The raw score is the mean of the three heads' S, max M and max L (method.md section 5).
    heads = (cols["s_head"] + cols["m_head_max"] + cols["l_head_max"]) / 3
    np.testing.assert_allclose(cols["score"], heads, rtol=1e-6)

    summary = json.loads((out / "clip_summary.json").read_text())
    assert summary == result.summary
    assert summary["frames"] == N and summary["interrupted"] is False
    assert summary["threshold"] == {"value": thr, "source": "--threshold on the command line"}
    assert summary["smoothing"]["mode"] == "centred"
    assert summary["smoothing"]["lag_frames"] == 6  # ceil(3 * sigma)
    assert summary["video"]["fps"] == 25.0 and summary["fps_end_to_end"] > 0
    assert summary["weights"]["path"] == str(weights)
    assert summary["weights"]["provenance"] == {"dataset": "test"}
    assert summary["runtime"] == "torch"
    assert summary["score_meaning"] == SCORE_MEANING
    assert summary["outputs"] == {
        "scores_csv": "clip_scores.csv",
        "overlay": "clip_overlay.mp4",
        "overlay_codec": "h264",
        "timeline": "clip_timeline.png",
    }
    assert summary["notes"] == result.notes
    events = summary["events"]
    assert events and events == [e.to_json() for e in result.events]
    flagged = {f for e in events for f in range(e["start_frame"], e["end_frame"] + 1)}
    assert flagged == set(np.flatnonzero(cols["abnormal"]).tolist())
    for e in events:
        assert e["start_frame"] <= e["peak_frame"] <= e["end_frame"]
        assert e["peak_score"] == cols["score_smoothed"][e["start_frame"] : e["end_frame"] + 1].max()
    assert cv2.imread(str(out / "clip_timeline.png")) is not None


def test_overlay_video_is_h264_yuv420p_and_taller_than_the_input_by_the_score_strip(
    weights: Path, clip: Path, tmp_path: Path
) -> None:
    (result,) = detect(clip, options(weights, overlay=True, out_dir=tmp_path / "out"))
    assert result.outputs.overlay is not None
    with av.open(str(result.outputs.overlay)) as container:
        video = container.streams.video[0]
        assert video.codec_context.name == "h264"
        assert video.codec_context.pix_fmt == "yuv420p"
        assert (video.codec_context.width, video.codec_context.height) == (W, OVERLAY_H)
        frames = sum(1 for _ in container.decode(video))
    assert frames == N
    assert OVERLAY_H > H  # the strip is added below the picture, not drawn over it
    assert result.summary["outputs"]["overlay_codec"] == "h264"
    assert not any("mp4v" in note for note in result.notes)


def test_a_student_with_several_head_sets_adds_one_score_column_per_teacher(
    two_teacher_weights: Path, clip: Path, tmp_path: Path
) -> None:
    (result,) = detect(clip, options(two_teacher_weights, out_dir=tmp_path / "out"))
    header, cols = read_csv(result.outputs.csv)
    assert tuple(header) == (*CSV_COLUMNS, "score_motion", "score_objects")
    # The frame's score is that of the teacher that scores it highest.
    per_teacher = np.stack([cols["score_motion"], cols["score_objects"]], axis=1)
    np.testing.assert_allclose(cols["score"], per_teacher.max(axis=1), rtol=1e-6)
    assert result.summary["weights"]["teachers"] == ["motion", "objects"]


def test_threshold_option_overrides_the_stored_threshold_and_changes_the_abnormal_column(
    weights: Path, clip: Path, tmp_path: Path
) -> None:
    (stored,) = detect(clip, options(weights, out_dir=tmp_path / "stored"))
    low = quantile_threshold(weights, clip, 0.25)
    (override,) = detect(clip, options(weights, out_dir=tmp_path / "low", threshold=low))

    _, a = read_csv(stored.outputs.csv)
    _, b = read_csv(override.outputs.csv)
    assert stored.summary["threshold"]["value"] == STORED_THRESHOLD
    assert stored.summary["threshold"]["source"] == "weights file: test threshold"
    np.testing.assert_array_equal(a["score_smoothed"], b["score_smoothed"])  # same scores, other decisions
    np.testing.assert_array_equal(b["abnormal"], (b["score_smoothed"] > low).astype(float))
    assert not np.array_equal(a["abnormal"], b["abnormal"])


def test_existing_outputs_are_kept_without_force_and_replaced_with_it(
    weights: Path, clip: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = clip.parent / "clip_aed"
    args = ["detect", clip, "--weights", weights, "--runtime", "torch"]
    assert run_aed(args, capsys)[0] == 0
    before = {p: p.read_bytes() for p in files_in(out)}
    (out / "clip_scores.csv").write_text("mine\n")

    code, _, err = run_aed(args, capsys)
    assert code != 0
    assert "clip_scores.csv already exists" in err and "--force" in err
    assert (out / "clip_scores.csv").read_text() == "mine\n"
    assert files_in(out) == sorted(before)

    code, _, _ = run_aed([*args, "--force"], capsys)
    assert code == 0
    assert (out / "clip_scores.csv").read_bytes() == before[out / "clip_scores.csv"]


def test_json_dash_prints_the_summaries_as_json_alone_on_stdout(
    weights: Path, clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code, stdout, err = run_aed(
        ["detect", clip, "--weights", weights, "--runtime", "torch", "--out", out, "--json", "-"], capsys
    )
    assert code == 0, err
    data = json.loads(stdout)  # nothing but the JSON
    assert [r["frames"] for r in data["results"]] == [N]
    assert data["results"][0] == json.loads((out / "clip_summary.json").read_text())
    assert "wrote" in err  # what is normally printed goes to stderr


# ---------------------------------------------------------------------------------------------------------
# User errors: one sentence, non-zero exit, nothing left behind


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    "case",
    [
        "missing video",
        "random bytes",
        "dead stream",
        "out under a file",
        "random torch weights",
        "text weights",
    ],
)
def test_bad_input_is_one_clear_sentence_with_nonzero_exit_and_no_files(
    case: str, weights: Path, clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    source, args, named = str(clip), ["--weights", str(weights)], ""
    out = work / "out"
    if case == "missing video":
        source = named = str(work / "nope.mp4")
    elif case == "random bytes":
        bad = work / "noise.mp4"
        bad.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
        source = named = str(bad)
    elif case == "dead stream":
        source = named = f"rtsp://127.0.0.1:{closed_port()}/live"
        args += ["--timeout", "2"]
    elif case == "out under a file":
        (work / "afile").write_text("x")
        out = work / "afile" / "out"
        named = str(out)
    elif case == "random torch weights":
        torch.save({"w": torch.randn(3)}, work / "random.pt")
        args, named = ["--weights", str(work / "random.pt")], str(work / "random.pt")
    elif case == "text weights":
        (work / "notes.pt").write_text("these are not weights\n")
        args, named = ["--weights", str(work / "notes.pt")], str(work / "notes.pt")
    before = files_in(work)

    code, _, err = run_aed(
        ["detect", source, *args, "--runtime", "torch", "--out", str(out), "--overlay", "--plot"], capsys
    )

    assert code != 0
    assert named in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert files_in(work) == before
    assert not out.exists()


def test_video_breaking_midway_leaves_no_partial_files_and_removes_the_folder_it_created(
    weights: Path, tmp_path: Path
) -> None:
    avi = tmp_path / "cut.avi"
    writer = cv2.VideoWriter(str(avi), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (W, H))
    for i in range(60):
        writer.write(scene(i))
    writer.release()
    data = avi.read_bytes()
    avi.write_bytes(data[: len(data) // 2])  # the header still promises 60 frames
    out = tmp_path / "results" / "cut"

    with pytest.raises(VideoError, match="breaks after frame"):
        detect(avi, options(weights, out_dir=out, overlay=True, plot=True))
    assert not (tmp_path / "results").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["cut.avi"]


def test_missing_default_weights_say_to_pass_weights(clip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("aedcli.resources.shipped", lambda name: None)
    with pytest.raises(WeightsError, match="pass --weights"):
        detect(clip, DetectOptions())
    assert not (clip.parent / "clip_aed").exists()


def test_live_lag_beyond_the_kernel_radius_is_a_usage_error(weights: Path, tmp_path: Path) -> None:
    loaded = load_weights(weights)
    source = FakeSource(lambda i: scene(i)[:, :, 0], 10, live=True)
    outputs = OutputPaths.plan(tmp_path, "cam", overlay=False, plot=False)
    with pytest.raises(UsageError, match="--live-lag must be between 0 and 6"):
        stream(source, loaded, outputs, live_lag=7)
    assert files_in(tmp_path) == []


def test_unknown_runtime_is_a_usage_error_before_anything_is_written(
    weights: Path, clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_aed(
        ["detect", clip, "--weights", weights, "--out", tmp_path / "x", "--runtime", "x"], capsys
    )
    assert code == 2
    assert "--runtime" in err
    assert not (tmp_path / "x").exists()


# ---------------------------------------------------------------------------------------------------------
# Sources


def test_frame_folder_source_writes_one_row_per_frame_next_to_the_folder(
    weights: Path, tmp_path: Path
) -> None:
    frames = tmp_path / "Test007"
    frames.mkdir()
    for i in range(12):
        cv2.imwrite(str(frames / f"{i + 1:03d}.tif"), scene(i)[:, :, 0])

    (result,) = detect(frames, options(weights, overlay=True))

    out = tmp_path / "Test007_aed"
    assert result.outputs.csv == out / "Test007_scores.csv"
    _, cols = read_csv(result.outputs.csv)
    assert cols["frame"].tolist() == list(range(12))
    assert count_frames(out / "Test007_overlay.mp4") == (12, (OVERLAY_H, OVERLAY_W))  # gray -> BGR video
    assert result.summary["video"]["fps_reported"] is False
    assert any("no frame rate" in note for note in result.summary["notes"])
    assert result.notes == result.summary["notes"]


def test_folder_of_two_videos_with_two_workers_matches_one_worker(weights: Path, tmp_path: Path) -> None:
    videos = tmp_path / "videos"
    write_mp4(videos / "a.mp4", n=30)
    write_mp4(videos / "b.mp4", n=24)

    results = detect(videos, options(weights, workers=2))
    serial = detect(videos, options(weights, out_dir=tmp_path / "serial"))

    out = tmp_path / "videos_aed"
    assert [r.outputs.csv for r in results] == [out / "a_scores.csv", out / "b_scores.csv"]
    assert [r.frames for r in results] == [30, 24]
    for parallel, one in zip(results, serial, strict=True):
        _, p = read_csv(parallel.outputs.csv)
        _, s = read_csv(one.outputs.csv)
        np.testing.assert_allclose(p["score"], s["score"], rtol=1e-5)


def test_folder_mixing_a_png_with_an_mp4_is_refused_naming_both_and_writes_nothing(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "mixed"
    write_mp4(folder / "walk.mp4", n=8)
    cv2.imwrite(str(folder / "still.png"), scene(0))
    before = files_in(tmp_path)

    code, _, err = run_aed(["detect", folder, "--weights", weights, "--runtime", "torch"], capsys)

    assert code != 0
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err
    assert "still.png" in lines[0] and "walk.mp4" in lines[0] and str(folder) in lines[0]
    assert files_in(tmp_path) == before
    assert not (tmp_path / "mixed_aed").exists()


def test_folder_with_two_broken_videos_names_both_in_one_error_and_still_writes_the_good_one(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "videos"
    write_mp4(folder / "good.mp4", n=12)
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "noise.mp4").write_bytes(np.random.default_rng(1).integers(0, 256, 4096, np.uint8).tobytes())
    out = tmp_path / "out"

    code, _, err = run_aed(
        ["detect", folder, "--weights", weights, "--runtime", "torch", "--out", out], capsys
    )

    assert code == 1 and "Traceback" not in err
    error = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(error) == 1
    assert "2 of 3 videos failed" in error[0]
    assert "empty.mp4" in error[0] and "noise.mp4" in error[0] and "good.mp4" not in error[0]
    assert sorted(p.name for p in files_in(out)) == ["good_scores.csv", "good_summary.json"]
    _, cols = read_csv(out / "good_scores.csv")
    assert len(cols["frame"]) == 12


def test_http_url_is_read_as_a_live_stream_with_fixed_lag_smoothing(weights: Path, clip: Path) -> None:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(clip.parent))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{server.server_address[1]}/clip.mp4"
        try:
            (result,) = detect(url, options(weights, out_dir=clip.parent / "live", live_lag=3))
        finally:
            server.shutdown()

    assert result.outputs.csv == clip.parent / "live" / "127.0.0.1_clip_scores.csv"
    assert result.frames == N and result.summary["live"] is True
    assert result.summary["smoothing"]["mode"] == "fixed-lag"
    assert result.summary["smoothing"]["lag_frames"] == 3


def test_live_source_is_smoothed_with_fixed_lag_like_streaming_smoother(
    weights: Path, tmp_path: Path
) -> None:
    loaded = load_weights(weights)
    source = FakeSource(lambda i: scene(i)[:, :, 0], 50, live=True, fps=10.0)
    outputs = OutputPaths.plan(tmp_path, "cam", overlay=True, plot=False)

    result = stream(source, loaded, outputs, live_lag=2)

    _, cols = read_csv(outputs.csv)
    smoother = StreamingSmoother(SIGMA, lag=2)
    expected = [v for x in cols["score"] for _, v in smoother.push(x)] + [v for _, v in smoother.flush()]
    np.testing.assert_array_equal(cols["score_smoothed"], expected)
    assert not np.allclose(cols["score_smoothed"], smooth_scores(cols["score"], SIGMA))  # not centred
    smoothing = result.summary["smoothing"]  # type: ignore[attr-defined]
    assert (smoothing["mode"], smoothing["lag_frames"], smoothing["lag_s"]) == ("fixed-lag", 2, 0.2)
    assert outputs.overlay is not None and count_frames(outputs.overlay)[0] == 50


@pytest.mark.parametrize("frames", [1, 5])
def test_a_clip_shorter_than_the_frame_stack_gets_the_short_clip_note(
    frames: int, weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clip = write_mp4(tmp_path / "short.mp4", n=frames)
    out = tmp_path / "out"

    code, _, err = run_aed(["detect", clip, "--weights", weights, "--runtime", "torch", "--out", out], capsys)

    assert code == 0, err
    summary = json.loads((out / "short_summary.json").read_text())
    assert summary["frames"] == frames
    short = [n for n in summary["notes"] if f"only {frames} frame(s)" in n]
    assert len(short) == 1 and f"fewer than the {SHORT_CLIP_FRAMES}" in short[0]
    assert f"only {frames} frame(s)" in err


def test_a_clip_as_long_as_the_frame_stack_gets_no_short_clip_note(weights: Path, tmp_path: Path) -> None:
    clip = write_mp4(tmp_path / "seven.mp4", n=SHORT_CLIP_FRAMES)
    (result,) = detect(clip, options(weights, out_dir=tmp_path / "out"))
    assert result.frames == SHORT_CLIP_FRAMES
    assert not any("frame(s), fewer than" in n for n in result.notes)


def test_non_ascii_names_keep_their_letters_and_plot_without_glyph_warnings(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clip = write_mp4(tmp_path / "café_日本.mp4", n=10)
    out = tmp_path / "out"

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, _, err = run_aed(
            ["detect", clip, "--weights", weights, "--runtime", "torch", "--out", out, "--plot"], capsys
        )

    assert code == 0, err
    assert sorted(p.name for p in files_in(out)) == [
        "café_日本_scores.csv",
        "café_日本_summary.json",
        "café_日本_timeline.png",
    ]
    glyphs = [str(w.message) for w in caught if "Glyph" in str(w.message)]
    assert glyphs == []
    assert "Glyph" not in err
    summary = json.loads((out / "café_日本_summary.json").read_text(encoding="utf-8"))
    assert summary["source"] == str(clip)


def eval_scores(weights: Path, name: str, path: Path, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Raw and smoothed scores of one clip as `aed eval` computes them (student_source + evaluate_scores)."""
    labels = (np.arange(frames) >= frames // 2).astype(np.uint8)  # any two-class labels: AUC needs both
    clip = Clip(name=name, split="test", path=path, frame_count=frames, labels=labels)
    dataset = SimpleNamespace(name="one clip", root=path.parent, test=[clip])
    source = student_source(dataset, weights, runtime="torch", with_regions=False)  # type: ignore[arg-type]
    report = evaluate_scores(dataset, source.raw, sigma=SIGMA)  # type: ignore[arg-type]
    return report.scores[name].raw, report.scores[name].evaluated


def test_file_scores_equal_the_eval_scoring_path_bit_for_bit(weights: Path, clip: Path) -> None:
    (result,) = detect(clip, options(weights))
    _, cols = read_csv(result.outputs.csv)

    raw, smoothed = eval_scores(weights, "clip", clip, N)
    np.testing.assert_array_equal(cols["score"], raw)
    np.testing.assert_array_equal(cols["score_smoothed"], smoothed)


@pytest.mark.ped2
def test_ped2_test_clip_scores_equal_the_eval_scoring_path(weights: Path, tmp_path: Path) -> None:
    root = Path(os.environ.get("AED_PED2_ROOT", "~/.cache/aed/ped2")).expanduser()
    frames = root / "UCSDped2" / "Test" / "Test001"
    if not frames.is_dir():
        pytest.skip(f"UCSD Ped2 not found at {root}; set AED_PED2_ROOT to the folder holding UCSDped2/")

    (result,) = detect(frames, options(weights, out_dir=tmp_path))
    _, cols = read_csv(result.outputs.csv)

    raw, smoothed = eval_scores(weights, "Test001", frames, 180)
    np.testing.assert_array_equal(cols["score"], raw)
    np.testing.assert_array_equal(cols["score_smoothed"], smoothed)


# ---------------------------------------------------------------------------------------------------------
# Streaming: interruption, memory, smoothing pieces


def test_ctrl_c_stops_reading_and_completes_every_output_for_the_frames_scored(
    weights: Path, tmp_path: Path
) -> None:
    # As in a terminal: a job started in the background by a non-interactive shell inherits SIGINT ignored,
    # and detection then rightly leaves SIGINT alone.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _ctrl_c_completes_outputs(weights, tmp_path)
    finally:
        signal.signal(signal.SIGINT, previous)


def _ctrl_c_completes_outputs(weights: Path, tmp_path: Path) -> None:
    loaded = load_weights(weights)
    source = FakeSource(lambda i: scene(i)[:, :, 0], 10_000, live=False)
    outputs = OutputPaths.plan(tmp_path, "long", overlay=True, plot=True)

    def press_ctrl_c(done: int, total: int | None) -> None:
        if done >= 32:
            os.kill(os.getpid(), signal.SIGINT)

    result = stream(source, loaded, outputs, progress=press_ctrl_c)

    assert result.interrupted and result.summary["interrupted"] is True  # type: ignore[attr-defined]
    assert 32 <= result.frames < 10_000  # type: ignore[attr-defined]
    _, cols = read_csv(outputs.csv)
    assert cols["frame"].tolist() == list(range(result.frames))  # type: ignore[attr-defined]
    assert outputs.overlay is not None
    assert count_frames(outputs.overlay)[0] == result.frames  # type: ignore[attr-defined]
    assert outputs.timeline is not None and outputs.timeline.is_file()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored


def test_memory_stays_flat_over_a_long_stream(weights: Path, tmp_path: Path) -> None:
    loaded = load_weights(weights)
    tiny = np.random.default_rng(0).integers(0, 255, (48, 64), dtype=np.uint8)
    source = FakeSource(lambda i: np.roll(tiny, i, axis=1), 1200, live=False)
    outputs = OutputPaths.plan(tmp_path, "long", overlay=True, plot=False)
    grown: list[int] = []

    def sample(done: int, total: int | None) -> None:
        # Trace from frame 400 on (after warm-up), so only what the next 784 frames keep is counted.
        if done == 400:
            tracemalloc.start()
        elif done == 1184:
            grown.append(tracemalloc.get_traced_memory()[0])
            tracemalloc.stop()

    try:
        result = stream(source, loaded, outputs, batch_size=4, progress=sample)
    finally:
        tracemalloc.stop()

    assert result.frames == 1200  # type: ignore[attr-defined]
    # Keeping one 48x64 frame per frame would add 2.4 MB; what is in flight (two queued batches of float32
    # stacks, one being built, one in the network, frames waiting for their smoothed score, the writer's
    # queue) is under 1 MB whatever the length.
    assert grown and grown[0] < 1536 * 1024


def test_centred_smoother_equals_smooth_scores_bit_for_bit_in_any_batching() -> None:
    rng = np.random.default_rng(1)
    scores = rng.random(500)
    for sigma in (0.0, 1.0, 3.0, 21.0):
        smoother = CentredSmoother(sigma)
        out: list[tuple[int, float]] = []
        i = 0
        while i < scores.size:
            n = int(rng.integers(1, 40))
            out += smoother.push_many(scores[i : i + n])
            i += n
        out += smoother.flush()
        assert [f for f, _ in out] == list(range(500))
        np.testing.assert_array_equal([v for _, v in out], smooth_scores(scores, sigma))


def test_event_tracker_reports_runs_of_abnormal_frames_with_their_peak() -> None:
    smoothed = [0.1, 0.5, 0.7, 0.6, 0.1, 0.1, 0.9, 0.95]
    tracker = EventTracker(fps=2.0)
    for i, value in enumerate(smoothed):
        tracker.update(i, value, value > 0.4)
    events = tracker.finish()
    assert [(e.start_frame, e.end_frame, e.peak_frame, e.peak_score) for e in events] == [
        (1, 3, 2, 0.7),
        (6, 7, 7, 0.95),
    ]
    assert (events[0].start_s, events[0].end_s, events[0].frames) == (0.5, 1.5, 3)
    assert tracker.abnormal_frames == 5


def test_onnx_runtime_writes_the_same_scores_as_the_torch_runtime(
    weights: Path, clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("onnxruntime")
    for runtime in ("torch", "onnx"):
        out = tmp_path / runtime
        code, _, err = run_aed(
            ["detect", clip, "--weights", weights, "--out", out, "--runtime", runtime], capsys
        )
        assert code == 0, err
    _, torch_rows = read_csv(tmp_path / "torch" / "clip_scores.csv")
    _, onnx_rows = read_csv(tmp_path / "onnx" / "clip_scores.csv")
    assert len(torch_rows["score"]) == N
    np.testing.assert_allclose(onnx_rows["score"], torch_rows["score"], atol=1e-4)
    np.testing.assert_allclose(onnx_rows["score_smoothed"], torch_rows["score_smoothed"], atol=1e-4)
    summary = json.loads((tmp_path / "onnx" / "clip_summary.json").read_text())
    assert summary["runtime"] == "onnx"


def test_auto_runtime_takes_onnx_runtime_on_the_cpu(weights: Path, clip: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    (result,) = detect(clip, DetectOptions(weights=weights, out_dir=tmp_path / "out"))
    assert result.summary["runtime"] == "onnx"


def test_without_onnxruntime_auto_runs_pytorch_and_onnx_says_how_to_install_it(
    weights: Path,
    clip: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now fails
    (result,) = detect(clip, DetectOptions(weights=weights, out_dir=tmp_path / "auto"))
    assert result.summary["runtime"] == "torch"

    code, _, err = run_aed(
        ["detect", clip, "--weights", weights, "--out", tmp_path / "onnx", "--runtime", "onnx"], capsys
    )
    assert code == 1
    assert "pip install onnxruntime" in err and "--runtime torch" in err
    assert not (tmp_path / "onnx").exists()
