"""Bad and unusual inputs: `aed` refuses them in one sentence (no traceback, nothing half-written) or copes.

Damaged media, extreme frame sizes, colour modes the weights were not trained on, sources without a frame
rate, streams that never answer, untrusted weights and label files, and paths with spaces, accents and
brackets. Cases already pinned elsewhere are listed in docs/robustness.md with the test that pins them.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import socket
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
from _robustness_fixtures import (
    SHIPPED_WEIGHTS,
    H,
    W,
    assert_one_sentence,
    faststart,
    files_in,
    run_aed,
    run_aed_process,
    tiny_weights,
    write_frames,
    write_video,
)

from aedcli.detect import pipeline as pipeline_module
from aedcli.detect.pipeline import (
    READ_AHEAD_BYTES,
    DetectResult,
    ThresholdChoice,
    detect_stream,
    read_ahead_depth,
)
from aedcli.detect.sources import OutputPaths
from aedcli.model.weights import LoadedWeights, load_weights
from aedcli.runtime import StudentRunner, make_runner
from aedcli.video import VideoInfo, VideoSource, iter_frames

TORCH = ("--runtime", "torch")
"""The PyTorch runtime: no ONNX export in every run (the ONNX path has tests of its own)."""


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def gray_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_weights(tmp_path_factory.mktemp("weights") / "gray.pt", channels=1)


@pytest.fixture(scope="module")
def colour_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_weights(tmp_path_factory.mktemp("weights") / "colour.pt", channels=3)


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def column(path: Path, name: str) -> np.ndarray:
    return np.array([float(row[name]) for row in read_rows(path)])


def stream(source: VideoSource, loaded: LoadedWeights, outputs: OutputPaths) -> DetectResult:
    """``detect_stream`` with a PyTorch runner and a threshold of 0.5."""
    runner, info = make_runner(loaded, runtime="torch")
    return detect_stream(source, loaded, runner, info, outputs, ThresholdChoice(0.5, "t"))


def strict_json(path: Path) -> Any:
    """JSON that any parser reads: NaN or Infinity (which Python writes by default) fail here."""

    def refuse(token: str) -> None:
        raise AssertionError(f"{path} holds {token}, which is not JSON")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


# ---------------------------------------------------------------------------------------------------------
# Damaged media: refused in one sentence, nothing written


def _cut(src: Path, dst: Path, n: int) -> Path:
    dst.write_bytes(src.read_bytes()[:n])
    return dst


def _damaged(case: str, work: Path) -> tuple[Path, list[str], int, str]:
    """(source, extra options, exit code, text the sentence must hold) for one kind of damage."""
    work.mkdir(parents=True, exist_ok=True)
    if case == "zero-byte mp4":
        (work / "empty.mp4").write_bytes(b"")
        return work / "empty.mp4", [], 1, "is empty (0 bytes)"
    if case.startswith("mp4 cut at"):
        clip = write_video(work / "clip.mp4")
        size = clip.stat().st_size
        n = {"16 bytes": 16, "10%": size // 10, "50%": size // 2, "the start of its index": 0}[case[11:]]
        if n == 0:
            n = clip.read_bytes().index(b"moov") + 4
        return _cut(clip, work / "cut.mp4", n), [], 1, "cut short loses its index"
    if case == "streamable mp4 cut at 50%":
        fast = faststart(write_video(work / "clip.mp4"), work / "fast.mp4")
        return _cut(fast, work / "cut.mp4", fast.stat().st_size // 2), [], 1, "breaks after frame"
    if case == "unreadable png in a frame folder":
        folder = write_frames(work / "frames", n=6)
        (folder / "0003.png").write_bytes(b"not a png at all")
        return folder, [], 1, "0003.png is not a readable image"
    if case == "frame folder of mixed sizes":
        folder = write_frames(work / "frames", n=6)
        cv2.imwrite(str(folder / "0004.png"), np.zeros((H + 2, W), np.uint8))
        return folder, [], 1, f"0004.png is {W}x{H + 2}"
    if case == "1x1 frames with --overlay":
        folder = write_frames(work / "frames", n=4, size=(1, 1))
        return folder, ["--overlay"], 2, "drop --overlay"
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case",
    [
        "zero-byte mp4",
        "mp4 cut at 16 bytes",
        "mp4 cut at 10%",
        "mp4 cut at 50%",
        "mp4 cut at the start of its index",
        "streamable mp4 cut at 50%",
        "unreadable png in a frame folder",
        "frame folder of mixed sizes",
        "1x1 frames with --overlay",
    ],
)
def test_detect_on_damaged_media_exits_non_zero_naming_the_file_and_writes_nothing(
    case: str, gray_weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, extra, exit_code, says = _damaged(case, tmp_path / "in")
    out = tmp_path / "out"

    code, _, err = run_aed(
        ["detect", source, "--weights", gray_weights, "--out", out, "--plot", *TORCH, *extra], capsys
    )

    line = assert_one_sentence(code, err, exit_code=exit_code, names=source)
    assert says in line
    assert not out.exists()  # no partial CSV, JSON or PNG, and not even the folder


def test_errors_from_a_shell_are_one_line_without_opencv_or_ffmpeg_chatter(tmp_path: Path) -> None:
    # FFmpeg prints "moov atom not found" and OpenCV a backend warning for a cut mp4, around aed's sentence.
    clip = write_video(tmp_path / "clip.mp4")
    cut = _cut(clip, tmp_path / "cut clip.mp4", clip.stat().st_size // 2)
    result = run_aed_process("detect", cut, "--out", tmp_path / "out")
    assert_one_sentence(result.returncode, result.stderr, exit_code=1, names=cut)
    assert result.stdout == ""


def test_mp4_cut_inside_its_trailing_metadata_still_scores_every_frame(
    gray_weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clip = write_video(tmp_path / "clip.mp4", n=12)
    data = clip.read_bytes()
    udta = data.rfind(b"udta")  # the encoder tag OpenCV's muxer writes at the very end of the index
    if udta < data.rfind(b"moov"):
        pytest.skip("this OpenCV build writes no trailing metadata box")
    cut = _cut(clip, tmp_path / "cut.mp4", udta + 8)

    code, _, err = run_aed(
        ["detect", cut, "--weights", gray_weights, "--out", tmp_path / "out", *TORCH], capsys
    )

    assert code == 0, err
    assert len(read_rows(tmp_path / "out" / "cut_scores.csv")) == 12


# ---------------------------------------------------------------------------------------------------------
# Unusual but valid sources: scored


def test_frame_folder_with_non_image_files_scores_only_the_frames(
    gray_weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_frames(tmp_path / "frames", n=8)
    (folder / "notes.txt").write_text("camera 3, morning")
    (folder / "Thumbs.db").write_bytes(bytes(64))
    (folder / ".0001.png").write_bytes(b"a hidden resource fork")

    code, _, err = run_aed(
        ["detect", folder, "--weights", gray_weights, "--out", tmp_path / "out", *TORCH], capsys
    )

    assert code == 0, err
    assert [r["frame"] for r in read_rows(tmp_path / "out" / "frames_scores.csv")] == [
        str(i) for i in range(8)
    ]


def test_frame_folder_with_a_gap_in_its_numbering_is_scored_and_the_gap_is_noted(
    gray_weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_frames(tmp_path / "frames", n=10)
    for missing in (4, 5, 6):
        (folder / f"{missing:04d}.png").unlink()

    code, _, err = run_aed(
        ["detect", folder, "--weights", gray_weights, "--out", tmp_path / "out", *TORCH], capsys
    )

    assert code == 0, err
    assert len(read_rows(tmp_path / "out" / "frames_scores.csv")) == 7
    notes = strict_json(tmp_path / "out" / "frames_summary.json")["notes"]
    assert any("skips 3 frame number(s) (4, 5, 6)" in note for note in notes), notes
    assert "skips 3 frame number(s)" in err  # and the user is told


def test_1x1_frames_are_scored_through_the_shipped_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_frames(tmp_path / "dot", n=5, size=(1, 1))

    code, _, err = run_aed(["detect", folder, "--out", tmp_path / "out", "--plot", *TORCH], capsys)

    assert code == 0, err
    scores = column(tmp_path / "out" / "dot_scores.csv", "score")
    assert scores.shape == (5,) and np.isfinite(scores).all()
    summary = strict_json(tmp_path / "out" / "dot_summary.json")
    assert (summary["video"]["width"], summary["video"]["height"]) == (1, 1)
    assert summary["weights"]["path"] == str(SHIPPED_WEIGHTS)


def test_single_4k_frame_video_is_scored_through_the_shipped_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clip = write_video(tmp_path / "uhd.mp4", n=1, size=(2160, 3840))

    code, _, err = run_aed(["detect", clip, "--out", tmp_path / "out", *TORCH], capsys)

    assert code == 0, err
    assert len(read_rows(tmp_path / "out" / "uhd_scores.csv")) == 1
    summary = strict_json(tmp_path / "out" / "uhd_summary.json")
    assert (summary["video"]["width"], summary["video"]["height"]) == (3840, 2160)
    assert summary["weights"]["input"]["height"] == load_weights(SHIPPED_WEIGHTS).spec.height  # its own size


class _GeneratedSource(VideoSource):
    """``n`` frames made on demand by ``make`` (none stored), like a file with a known count."""

    def __init__(self, make: Callable[[int], np.ndarray], n: int, fps: float = 25.0) -> None:
        first = make(0)
        info = VideoInfo("generated.mp4", first.shape[1], first.shape[0], fps, n, 3, False, True)
        super().__init__(info, first, "raise")
        self._make, self._n, self._next = make, n, 1

    def _read_next(self) -> np.ndarray | None:
        if self._next >= self._n:
            return None
        self._next += 1
        return self._make(self._next - 1)


def test_4k_frames_are_resized_before_the_network_so_memory_stays_at_a_few_frames(tmp_path: Path) -> None:
    loaded = load_weights(SHIPPED_WEIGHTS)
    uhd = np.random.default_rng(0).integers(0, 255, (2160, 3840, 3), dtype=np.uint8)
    one_frame = uhd.nbytes  # 24.9 MB
    outputs = OutputPaths.plan(tmp_path, "uhd", overlay=False, plot=False)
    tracemalloc.start()
    try:
        result = stream(_GeneratedSource(lambda i: np.roll(uhd, i, axis=1), 8), loaded, outputs)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.frames == 8
    # A batch of 8 stacks of 4K frames as float32 would take 2.4 GB, and queued 4K frames 25 MB each; the
    # reader resizes every frame to the student's 160x240 first, so about two 4K frames are alive at once.
    assert peak < 4 * one_frame, f"peak {peak / 1e6:.0f} MB"


def test_read_ahead_holds_two_batches_unless_full_size_overlay_frames_would_pass_the_byte_budget() -> None:
    uhd = 3840 * 2160 * 3
    assert read_ahead_depth(16) == 2 and read_ahead_depth(16, 360 * 240 * 3) == 2
    assert 2 * 16 * uhd > READ_AHEAD_BYTES and read_ahead_depth(16, uhd) == 1
    assert read_ahead_depth(1, 10**10) == 1


def test_4k_overlay_runs_with_the_shorter_read_ahead(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    depths: list[int] = []
    real = pipeline_module.FramePrefetcher

    def recording(frames: Iterator[Any], maxsize: int = 32, stop: threading.Event | None = None) -> Any:
        depths.append(maxsize)
        return real(frames, maxsize=maxsize, stop=stop)

    monkeypatch.setattr(pipeline_module, "FramePrefetcher", recording)
    uhd = np.random.default_rng(0).integers(0, 255, (2160, 3840, 3), dtype=np.uint8)
    outputs = OutputPaths.plan(tmp_path, "uhd", overlay=True, plot=False)
    source = _GeneratedSource(lambda i: np.roll(uhd, i, axis=1), 3)
    result = stream(source, load_weights(SHIPPED_WEIGHTS), outputs)
    assert result.frames == 3 and depths == [1]
    assert outputs.overlay is not None and len(list(iter_frames(outputs.overlay))) == 3


@pytest.mark.parametrize(("size", "threads"), [((120, 160), 1), ((1080, 1920), 2)])
def test_opencv_runs_on_the_pipeline_threads_only_for_small_pictures_and_is_restored_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: tuple[int, int], threads: int
) -> None:
    seen: list[int] = []
    real = pipeline_module.annotate_frame

    def recording(*args: Any) -> np.ndarray:
        seen.append(cv2.getNumThreads())  # a process-wide setting, read from the writer thread
        return real(*args)

    monkeypatch.setattr(pipeline_module, "annotate_frame", recording)
    before = cv2.getNumThreads()
    cv2.setNumThreads(2)
    try:
        frame = np.random.default_rng(0).integers(0, 255, (*size, 3), dtype=np.uint8)
        outputs = OutputPaths.plan(tmp_path, "clip", overlay=True, plot=False)
        stream(
            _GeneratedSource(lambda i: np.roll(frame, i, axis=1), 4), load_weights(SHIPPED_WEIGHTS), outputs
        )
        assert seen == [threads] * 4
        assert cv2.getNumThreads() == 2
    finally:
        cv2.setNumThreads(before)


# ---------------------------------------------------------------------------------------------------------
# Colour modes the weights were not trained on: converted, with the scores of a converted copy


def test_colour_video_through_gray_weights_scores_like_its_gray_frames(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clip = write_video(tmp_path / "colour.mp4", n=10)
    gray = tmp_path / "gray"
    gray.mkdir()
    for i, picture in enumerate(iter_frames(clip, gray=True)):
        cv2.imwrite(str(gray / f"{i + 1:04d}.png"), picture)

    for source in (clip, gray):
        code, _, err = run_aed(["detect", source, "--out", tmp_path / "out", *TORCH], capsys)  # ped2.pt: gray
        assert code == 0, err

    colour_scores = column(tmp_path / "out" / "colour_scores.csv", "score")
    np.testing.assert_array_equal(colour_scores, column(tmp_path / "out" / "gray_scores.csv", "score"))


def test_gray_frames_through_colour_weights_score_like_their_colour_copy(
    colour_weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gray = write_frames(tmp_path / "gray", n=10, gray=True)
    colour = tmp_path / "bgr"
    colour.mkdir()
    for path in sorted(gray.iterdir()):
        cv2.imwrite(str(colour / path.name), cv2.cvtColor(cv2.imread(str(path), 0), cv2.COLOR_GRAY2BGR))

    for source in (gray, colour):
        code, _, err = run_aed(
            ["detect", source, "--weights", colour_weights, "--out", tmp_path / "out", *TORCH], capsys
        )
        assert code == 0, err

    gray_scores = column(tmp_path / "out" / "gray_scores.csv", "score")
    np.testing.assert_array_equal(gray_scores, column(tmp_path / "out" / "bgr_scores.csv", "score"))
    assert load_weights(colour_weights).spec.channels == 3


# ---------------------------------------------------------------------------------------------------------
# No frame rate


@pytest.mark.parametrize("reported", [0.0, math.nan], ids=["zero", "nan"])
def test_video_reporting_no_frame_rate_gets_25_fps_times_and_says_so(
    reported: float,
    gray_weights: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    clip = write_video(tmp_path / "clip.mp4", n=10, fps=10.0)

    real = cv2.VideoCapture

    class NoRate:  # what OpenCV returns for a container that states no rate (a wrapper: cv2's class
        # does not survive being subclassed in Python)
        def __init__(self, *args: Any) -> None:
            self._cap = real(*args)

        def get(self, prop: int) -> float:
            return reported if prop == cv2.CAP_PROP_FPS else self._cap.get(prop)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._cap, name)

    monkeypatch.setattr(cv2, "VideoCapture", NoRate)
    code, _, err = run_aed(
        ["detect", clip, "--weights", gray_weights, "--out", tmp_path / "out", *TORCH], capsys
    )

    assert code == 0, err
    np.testing.assert_allclose(column(tmp_path / "out" / "clip_scores.csv", "time_s"), np.arange(10) / 25.0)
    summary = strict_json(tmp_path / "out" / "clip_summary.json")
    assert summary["video"]["fps"] == 25.0 and summary["video"]["fps_reported"] is False
    assert summary["smoothing"]["lag_s"] == round(summary["smoothing"]["lag_frames"] / 25.0, 4)
    assert all(math.isfinite(e["end_s"]) for e in summary["events"])
    assert any("reports no frame rate; times assume 25 fps" in note for note in summary["notes"])


# ---------------------------------------------------------------------------------------------------------
# A stream that never answers


def test_stream_that_accepts_but_never_sends_ends_within_seconds_with_one_sentence(tmp_path: Path) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        held: list[socket.socket] = []

        def accept() -> None:  # take the connection and keep it open, silent
            with contextlib.suppress(OSError):
                held.append(server.accept()[0])

        threading.Thread(target=accept, daemon=True).start()
        url = f"http://127.0.0.1:{server.getsockname()[1]}/live.mp4"
        started = time.monotonic()
        result = run_aed_process("detect", url, "--timeout", "1", "--out", tmp_path / "out", timeout=60)
        elapsed = time.monotonic() - started
        for conn in held:
            conn.close()

    assert_one_sentence(result.returncode, result.stderr, exit_code=1, names=url)
    assert "within 1 s" in result.stderr
    assert elapsed < 15, f"took {elapsed:.1f} s with --timeout 1"
    assert held, "the test server never saw a connection"
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------------------
# Untrusted weights


class _Payload:
    """Unpickling this opens (creates) a marker file: proof that loading would have run code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("command", ["detect", "eval", "export"])
def test_weights_carrying_a_pickled_callable_are_refused_without_running_it(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "code-ran.txt"
    evil = tmp_path / "evil.pt"
    payload = torch.load(SHIPPED_WEIGHTS, weights_only=True)
    payload["provenance"] = {"note": _Payload(marker)}
    torch.save(payload, evil)
    clip = write_video(tmp_path / "clip.mp4", n=4)
    args = {
        "detect": ["detect", clip, "--weights", evil, "--out", tmp_path / "out"],
        "eval": ["eval", "--dataset", "synthetic", "--root", tmp_path / "cache", "--weights", evil],
        "export": ["export", "--weights", evil, "--onnx", tmp_path / "student.onnx"],
    }[command]

    code, _, err = run_aed(args, capsys)

    line = assert_one_sentence(code, err, exit_code=1, names=evil)
    assert "pickled Python objects" in line
    assert not marker.exists()
    assert not (tmp_path / "out").exists() and not (tmp_path / "student.onnx").exists()
    torch.load(evil, weights_only=False)  # the payload is live: an unsafe load does create the marker
    assert marker.exists()


def _state(mutate: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    return lambda payload: mutate(payload["state_dict"])


def _first_float(state: dict[str, Any]) -> str:
    return next(k for k, v in state.items() if v.is_floating_point())


WEIGHTS_DAMAGE: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "a tensor of the wrong shape": (
        _state(lambda s: s.__setitem__(_first_float(s), torch.zeros(3, 3))),
        "do not match its student config",
    ),
    "a missing tensor": (_state(lambda s: s.pop(_first_float(s))), "do not match its student config"),
    "NaN parameters": (_state(lambda s: s[_first_float(s)].fill_(math.nan)), "NaN or infinite values"),
    "a NaN threshold": (lambda p: p["threshold"].__setitem__("value", math.nan), "threshold nan"),
    "a NaN smoothing sigma": (lambda p: p["scoring"].__setitem__("sigma", math.nan), "sigma nan"),
    "a negative smoothing sigma": (lambda p: p["scoring"].__setitem__("sigma", -1.0), "sigma -1"),
    "a negative stack offset": (lambda p: p["input"].__setitem__("offset", -3), "offset must be 0 or more"),
    "a threshold that is text": (lambda p: p.__setitem__("threshold", "high"), "unreadable"),
}


@pytest.mark.parametrize("damage", list(WEIGHTS_DAMAGE))
def test_weights_with_damaged_contents_are_refused_naming_the_file(
    damage: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mutate, says = WEIGHTS_DAMAGE[damage]
    payload = torch.load(SHIPPED_WEIGHTS, weights_only=True)
    mutate(payload)
    bad = tmp_path / "bad weights.pt"
    torch.save(payload, bad)
    clip = write_video(tmp_path / "clip.mp4", n=4)

    code, _, err = run_aed(["detect", clip, "--weights", bad, "--out", tmp_path / "out"], capsys)

    line = assert_one_sentence(code, err, exit_code=1, names=bad)
    assert says in line
    assert not (tmp_path / "out").exists()


def test_truncated_weights_are_refused_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = SHIPPED_WEIGHTS.read_bytes()
    clip = write_video(tmp_path / "clip.mp4", n=4)
    for n in (len(data) // 10, len(data) // 2, len(data) - 100):
        cut = tmp_path / f"cut{n}.pt"
        cut.write_bytes(data[:n])
        code, _, err = run_aed(["detect", clip, "--weights", cut, "--out", tmp_path / "out"], capsys)
        assert "truncated or corrupt" in assert_one_sentence(code, err, exit_code=1, names=cut)
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------------------
# Untrusted label files


def _folder_dataset(root: Path, video: str = "test01", frames: int = 12) -> Path:
    write_video(root / "train" / "train01.mp4", n=frames)
    write_video(root / "test" / f"{video}.mp4", n=frames)
    (root / "labels").mkdir(parents=True)
    return root / "labels"


@pytest.mark.parametrize(
    ("name", "content", "says"),
    [
        ("test01.txt", "0\n" * 6 + "1\n" * 3, "has 9 labels but video 'test01' has 12 frames"),
        ("test01.txt", "0\n" * 6 + "2\n" * 6, "holds the label value 2"),
        ("test01.txt", "0\n" * 6 + "-1\n" * 6, "holds the label value -1"),
        ("test01.txt", "0\n" * 6 + "0.5\n" * 6, "0.5"),
        ("test01.npy", "pickled", "cannot be read as a .npy file"),
    ],
    ids=["too-short", "value-2", "value-minus-1", "fraction", "pickled-npy"],
)
def test_label_file_of_wrong_length_or_values_is_refused_naming_it(
    name: str,
    content: str,
    says: str,
    gray_weights: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    labels = _folder_dataset(tmp_path / "data")
    marker = tmp_path / "code-ran.txt"
    path = labels / name
    if content == "pickled":
        np.save(path, np.array([_Payload(marker)] * 12, dtype=object), allow_pickle=True)
    else:
        path.write_text(content)
    json_out = tmp_path / "eval.json"

    code, _, err = run_aed(
        [
            "eval",
            "--dataset",
            "folder",
            "--root",
            tmp_path / "data",
            "--weights",
            gray_weights,
            "--json",
            json_out,
        ],
        capsys,
    )

    line = assert_one_sentence(code, err, exit_code=1, names=path)
    assert says in line
    assert not json_out.exists() and not marker.exists()


# ---------------------------------------------------------------------------------------------------------
# Paths with spaces, accents and brackets


def test_detect_reads_and_writes_paths_with_spaces_and_accents(
    gray_weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clip = write_video(tmp_path / "vidéo clip ü.mp4", n=10)
    out = tmp_path / "out dir ñ"

    code, stdout, err = run_aed(
        ["detect", clip, "--weights", gray_weights, "--out", out, "--overlay", "--plot", *TORCH], capsys
    )

    assert code == 0, err
    # Output names keep letters (of any script), digits and ._- and replace the rest with '_'.
    assert sorted(p.name for p in files_in(out)) == [
        "vidéo_clip_ü_overlay.mp4",
        "vidéo_clip_ü_scores.csv",
        "vidéo_clip_ü_summary.json",
        "vidéo_clip_ü_timeline.png",
    ]
    assert len(read_rows(out / "vidéo_clip_ü_scores.csv")) == 10
    assert strict_json(out / "vidéo_clip_ü_summary.json")["source"] == str(clip)
    assert str(out) in stdout


def test_eval_reads_a_dataset_and_writes_json_under_paths_with_spaces_and_accents(
    gray_weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "data sét ñ"
    labels = _folder_dataset(root, video="tést ü")
    (labels / "tést ü.txt").write_text("0\n" * 6 + "1\n" * 6)
    json_out = tmp_path / "résults ü" / "eval out.json"

    code, _, err = run_aed(
        [
            "eval",
            "--dataset",
            "folder",
            "--root",
            root,
            "--weights",
            gray_weights,
            "--json",
            json_out,
            *TORCH,
        ],
        capsys,
    )

    assert code == 0, err
    report = strict_json(json_out)
    assert report["frames"] == 12 and 0.0 <= report["micro_auc"] <= 1.0
    assert str(json_out) in err.replace("\n", "")  # the console wraps long lines


def test_paths_with_brackets_are_printed_as_written_not_taken_for_console_markup(
    gray_weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "runs [old] [/]"
    clip = write_video(folder / "clip [bold].mp4", n=6)
    out = folder / "out [red]"

    code, stdout, err = run_aed(["detect", clip, "--weights", gray_weights, "--out", out, *TORCH], capsys)
    assert code == 0, err
    assert str(clip) in stdout and str(out) in stdout

    missing = folder / "gone [/].mp4"
    code, _, err = run_aed(["detect", missing, "--weights", gray_weights], capsys)
    assert_one_sentence(code, err, exit_code=1, names=missing)


def test_videos_whose_names_differ_only_in_replaced_characters_get_separate_outputs(
    gray_weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    videos = tmp_path / "videos"
    write_video(videos / "a b.mp4", n=6)
    write_video(videos / "a_b.mp4", n=9)  # both names become a_b

    code, _, err = run_aed(
        ["detect", videos, "--weights", gray_weights, "--out", tmp_path / "out", *TORCH], capsys
    )

    assert code == 0, err
    counts = sorted(len(read_rows(p)) for p in (tmp_path / "out").glob("*_scores.csv"))
    assert counts == [6, 9]  # neither overwrote the other


# ---------------------------------------------------------------------------------------------------------
# Memory does not grow with the length of what `aed eval` scores


def _peak_while_scoring(runner: StudentRunner, n: int) -> int:
    base = np.random.default_rng(1).integers(0, 255, (120, 160), dtype=np.uint8)
    frames = (np.roll(base, i, axis=1) for i in range(n))  # generated: no clip is held in memory
    tracemalloc.start()
    try:
        scores, maps = runner.score_clip(frames)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert scores.shape == (n,) and maps.shape == (n, 16, 16)
    return peak


def test_eval_scoring_memory_grows_only_by_the_scores_kept_per_frame(gray_weights: Path) -> None:
    runner, _ = make_runner(load_weights(gray_weights), runtime="torch", batch_size=8)
    _peak_while_scoring(runner, 16)  # warm-up: first-call allocations of the runtime
    n = 96
    short, long = _peak_while_scoring(runner, n), _peak_while_scoring(runner, 4 * n)
    # What eval keeps per frame: a float64 score and the 16x16 float32 map (for RBDC), about 1 KB. Keeping
    # the 120x160 source frames would add 19 KB per frame, 5.5 MB over these 288 extra frames.
    kept_per_frame = 8 + 16 * 16 * 4
    assert long - short < 3 * n * kept_per_frame * 2 + 256 * 1024, f"grew {(long - short) / 1e6:.2f} MB"
