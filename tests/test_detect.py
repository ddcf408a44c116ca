"""`aed detect`: outputs, thresholds, overwrite protection, user errors, sources, streaming and memory."""

from __future__ import annotations

import csv
import functools
import http.server
import json
import os
import signal
import socket
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from aedcli.cli import main
from aedcli.data.clips import Clip
from aedcli.detect import (
    CSV_COLUMNS,
    CentredSmoother,
    DetectOptions,
    EventTracker,
    OutputPaths,
    ThresholdChoice,
    detect,
    detect_stream,
)
from aedcli.errors import UsageError, VideoError, WeightsError
from aedcli.evaluate import evaluate_scores, student_source
from aedcli.inference import StudentRunner
from aedcli.inputs import InputSpec
from aedcli.scoring import StreamingSmoother, Threshold, smooth_scores
from aedcli.student import Student, student_config
from aedcli.video import VideoInfo, VideoSource, iter_frames
from aedcli.weights import load_weights, save_weights

W, H, N = 80, 60, 40  # test videos: 80x60, 40 frames, 25 fps
SIGMA = 2.0
STORED_THRESHOLD = 0.30


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


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-init student (fastaed-xs, 48x64 gray input) with a stored threshold."""
    torch.manual_seed(0)
    model = Student(student_config("fastaed-xs", in_channels=3))
    spec = InputSpec(height=48, width=64, channels=1)
    thr = Threshold(value=STORED_THRESHOLD, sigma=SIGMA, percentile=99.0, source="test threshold")
    path = tmp_path_factory.mktemp("weights") / "tiny.pt"
    save_weights(path, model, spec, sigma=SIGMA, threshold=thr, provenance={"dataset": "test"}, variant="xs")
    return path


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return write_mp4(tmp_path / "clip.mp4")


def read_csv(path: Path) -> tuple[list[str], dict[str, np.ndarray]]:
    with path.open(newline="") as fh:
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


def all_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Run `aed` in this process; returns (exit code, stderr)."""
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


def quantile_threshold(weights: Path, video: Path, q: float) -> float:
    """The q-quantile of the smoothed scores of `video` (tests only: a threshold that splits this clip)."""
    raw, _ = StudentRunner(load_weights(weights)).score_clip(iter_frames(video))
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
    (result,) = detect(clip, DetectOptions(weights=weights, overlay=True, plot=True, threshold=thr))

    out = clip.parent / "clip_aed"
    assert result.outputs.folder == out
    assert sorted(p.name for p in all_files(out)) == [
        "clip_overlay.mp4",
        "clip_scores.csv",
        "clip_summary.json",
        "clip_timeline.png",
    ]
    frames, shape = count_frames(out / "clip_overlay.mp4")
    assert (frames, shape) == (N, (H, W))

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
    assert summary["frames"] == N and summary["interrupted"] is False
    assert summary["threshold"] == {"value": thr, "source": "--threshold on the command line"}
    assert summary["smoothing"]["mode"] == "centred"
    assert summary["smoothing"]["lag_frames"] == 6  # ceil(3 * sigma)
    assert summary["video"]["fps"] == 25.0 and summary["fps_end_to_end"] > 0
    assert summary["weights"]["path"] == str(weights)
    assert summary["weights"]["provenance"] == {"dataset": "test"}
    events = summary["events"]
    assert events and events == [e.to_json() for e in result.events]
    flagged = {f for e in events for f in range(e["start_frame"], e["end_frame"] + 1)}
    assert flagged == set(np.flatnonzero(cols["abnormal"]).tolist())
    for e in events:
        assert e["start_frame"] <= e["peak_frame"] <= e["end_frame"]
        assert e["peak_score"] == cols["score_smoothed"][e["start_frame"] : e["end_frame"] + 1].max()
    assert cv2.imread(str(out / "clip_timeline.png")) is not None


def test_threshold_option_overrides_the_stored_threshold_and_changes_the_abnormal_column(
    weights: Path, clip: Path, tmp_path: Path
) -> None:
    (stored,) = detect(clip, DetectOptions(weights=weights, out_dir=tmp_path / "stored"))
    low = quantile_threshold(weights, clip, 0.25)
    (override,) = detect(clip, DetectOptions(weights=weights, out_dir=tmp_path / "low", threshold=low))

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
    assert run_cli(["detect", str(clip), "--weights", str(weights)], capsys)[0] == 0
    before = {p: p.read_bytes() for p in all_files(out)}
    (out / "clip_scores.csv").write_text("mine\n")

    code, err = run_cli(["detect", str(clip), "--weights", str(weights)], capsys)
    assert code != 0
    assert "clip_scores.csv already exists" in err and "--force" in err
    assert (out / "clip_scores.csv").read_text() == "mine\n"
    assert all_files(out) == sorted(before)

    code, _ = run_cli(["detect", str(clip), "--weights", str(weights), "--force"], capsys)
    assert code == 0
    assert (out / "clip_scores.csv").read_bytes() == before[out / "clip_scores.csv"]


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
    before = all_files(work)

    code, err = run_cli(["detect", source, *args, "--out", str(out), "--overlay", "--plot"], capsys)

    assert code != 0
    assert named in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert all_files(work) == before
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
        detect(avi, DetectOptions(weights=weights, out_dir=out, overlay=True, plot=True))
    assert not (tmp_path / "results").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["cut.avi"]


def test_missing_default_weights_say_to_pass_weights(clip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("aedcli.detect.default_weights_path", lambda: None)
    with pytest.raises(WeightsError, match="pass --weights"):
        detect(clip, DetectOptions())
    assert not (clip.parent / "clip_aed").exists()


def test_live_lag_beyond_the_kernel_radius_is_a_usage_error(weights: Path, tmp_path: Path) -> None:
    loaded = load_weights(weights)
    source = FakeSource(lambda i: scene(i)[:, :, 0], 10, live=True)
    outputs = OutputPaths.plan(tmp_path, "cam", overlay=False, plot=False)
    with pytest.raises(UsageError, match="--live-lag must be between 0 and 6"):
        detect_stream(source, loaded, outputs, ThresholdChoice(0.3, "test"), live_lag=7)
    assert all_files(tmp_path) == []


# ---------------------------------------------------------------------------------------------------------
# Sources


def test_frame_folder_source_writes_one_row_per_frame_next_to_the_folder(
    weights: Path, tmp_path: Path
) -> None:
    frames = tmp_path / "Test007"
    frames.mkdir()
    for i in range(12):
        cv2.imwrite(str(frames / f"{i + 1:03d}.tif"), scene(i)[:, :, 0])

    (result,) = detect(frames, DetectOptions(weights=weights, overlay=True))

    out = tmp_path / "Test007_aed"
    assert result.outputs.csv == out / "Test007_scores.csv"
    _, cols = read_csv(result.outputs.csv)
    assert cols["frame"].tolist() == list(range(12))
    assert count_frames(out / "Test007_overlay.mp4") == (12, (H, W))  # gray frames -> BGR video
    assert result.summary["video"]["fps_reported"] is False
    assert any("no frame rate" in note for note in result.summary["notes"])


def test_folder_of_two_videos_with_two_workers_matches_one_worker(weights: Path, tmp_path: Path) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    write_mp4(videos / "a.mp4", n=30)
    write_mp4(videos / "b.mp4", n=24)

    results = detect(videos, DetectOptions(weights=weights, workers=2))
    serial = detect(videos, DetectOptions(weights=weights, out_dir=tmp_path / "serial"))

    out = tmp_path / "videos_aed"
    assert [r.outputs.csv for r in results] == [out / "a_scores.csv", out / "b_scores.csv"]
    assert [r.frames for r in results] == [30, 24]
    for parallel, one in zip(results, serial, strict=True):
        _, p = read_csv(parallel.outputs.csv)
        _, s = read_csv(one.outputs.csv)
        np.testing.assert_allclose(p["score"], s["score"], rtol=1e-5)


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
            (result,) = detect(url, DetectOptions(weights=weights, out_dir=clip.parent / "live", live_lag=3))
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

    result = detect_stream(source, loaded, outputs, ThresholdChoice(0.3, "test"), live_lag=2)

    _, cols = read_csv(outputs.csv)
    smoother = StreamingSmoother(SIGMA, lag=2)
    expected = [v for x in cols["score"] for _, v in smoother.push(x)] + [v for _, v in smoother.flush()]
    np.testing.assert_array_equal(cols["score_smoothed"], expected)
    assert not np.allclose(cols["score_smoothed"], smooth_scores(cols["score"], SIGMA))  # not centred
    smoothing = result.summary["smoothing"]
    assert (smoothing["mode"], smoothing["lag_frames"], smoothing["lag_s"]) == ("fixed-lag", 2, 0.2)
    assert count_frames(outputs.overlay)[0] == 50


def eval_scores(weights: Path, name: str, path: Path, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Raw and smoothed scores of one clip as `aed eval` computes them (student_source + evaluate_scores)."""
    labels = (np.arange(frames) >= frames // 2).astype(np.uint8)  # any two-class labels: AUC needs both
    clip = Clip(name=name, split="test", path=path, frame_count=frames, labels=labels)
    dataset = SimpleNamespace(name="one clip", root=path.parent, test=[clip])
    source = student_source(dataset, weights, with_regions=False)  # type: ignore[arg-type]
    report = evaluate_scores(dataset, source.raw, sigma=SIGMA)
    return report.scores[name].raw, report.scores[name].evaluated


def test_file_scores_equal_the_eval_scoring_path_bit_for_bit(weights: Path, clip: Path) -> None:
    (result,) = detect(clip, DetectOptions(weights=weights))
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

    (result,) = detect(frames, DetectOptions(weights=weights, out_dir=tmp_path))
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

    result = detect_stream(source, loaded, outputs, ThresholdChoice(0.3, "test"), progress=press_ctrl_c)

    assert result.interrupted and result.summary["interrupted"] is True
    assert 32 <= result.frames < 10_000
    _, cols = read_csv(outputs.csv)
    assert cols["frame"].tolist() == list(range(result.frames))
    assert count_frames(outputs.overlay)[0] == result.frames
    assert outputs.timeline is not None and outputs.timeline.is_file()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored


def test_memory_stays_flat_over_a_long_stream(weights: Path, tmp_path: Path) -> None:
    loaded = load_weights(weights)
    tiny = np.random.default_rng(0).integers(0, 255, (48, 64), dtype=np.uint8)
    source = FakeSource(lambda i: np.roll(tiny, i, axis=1), 2000, live=False)
    outputs = OutputPaths.plan(tmp_path, "long", overlay=True, plot=False)
    grown: list[int] = []

    def sample(done: int, total: int | None) -> None:
        # Trace from frame 400 on (after warm-up), so only what the next 1,600 frames keep is counted.
        if done == 400:
            tracemalloc.start()
        elif done == 1984:
            grown.append(tracemalloc.get_traced_memory()[0])
            tracemalloc.stop()

    try:
        result = detect_stream(
            source, loaded, outputs, ThresholdChoice(0.3, "test"), batch_size=16, progress=sample
        )
    finally:
        tracemalloc.stop()

    assert result.frames == 2000
    # Keeping one 48x64 frame per frame would add 4.9 MB; what is in flight (the read-ahead queue, frames
    # waiting for their smoothed score, one batch) is about 0.2 MB whatever the length.
    assert grown and grown[0] < 1024 * 1024


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
    weights: Path, clip: Path, tmp_path: Path
) -> None:
    pytest.importorskip("onnxruntime")
    for runtime in ("torch", "onnx"):
        code = None
        try:
            out = tmp_path / runtime
            main(["detect", str(clip), "--weights", str(weights), "--out", str(out), "--runtime", runtime])
        except SystemExit as exc:
            code = exc.code
        assert code in (None, 0)
    _, torch_rows = read_csv(tmp_path / "torch" / "clip_scores.csv")
    _, onnx_rows = read_csv(tmp_path / "onnx" / "clip_scores.csv")
    assert len(torch_rows["score"]) == N
    np.testing.assert_allclose(onnx_rows["score"], torch_rows["score"], atol=1e-4)
    np.testing.assert_allclose(onnx_rows["score_smoothed"], torch_rows["score_smoothed"], atol=1e-4)


def test_unknown_runtime_is_a_usage_error(
    weights: Path, clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["detect", str(clip), "--weights", str(weights), "--out", str(tmp_path / "x"), "--runtime", "x"])
    assert exc.value.code == 2
    assert "--runtime" in capsys.readouterr().err
    assert not (tmp_path / "x" / "clip_scores.csv").exists()
