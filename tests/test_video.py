"""Reading files, frame folders and streams; frame stacks; the atomic video writer."""

from __future__ import annotations

import itertools
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from aedcli.errors import VideoError
from aedcli.video import (
    VideoInfo,
    VideoWriter,
    batched,
    frame_stacks,
    h264_available,
    iter_frames,
    natural_key,
    open_video,
    stack_indices,
)

W, H, N = 64, 48, 24


def pattern(i: int, noisy: bool = False) -> np.ndarray:
    """Frame i of the test clip (H, W, 3): a white square that moves 2 px right per frame."""
    if noisy:  # noise makes every frame a similar, sizeable chunk of the file
        frame = np.random.default_rng(i).integers(0, 200, (H, W, 3), dtype=np.uint8)
    else:
        frame = np.full((H, W, 3), 40, np.uint8)
    frame[14:30, 2 * i : 2 * i + 16] = 255
    return frame


def write_clip(path: Path, fourcc: str, n: int = N, fps: float = 25.0, noisy: bool = False) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (W, H))
    assert writer.isOpened(), f"OpenCV cannot write {path.suffix} with {fourcc}"
    for i in range(n):
        writer.write(pattern(i, noisy))
    writer.release()
    return path


def nearest_pattern(frame: np.ndarray, n: int = N) -> int:
    """Index of the test frame closest to a decoded (lossy) frame."""
    gray = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    diffs = [np.abs(gray.astype(int) - cv2.cvtColor(pattern(i), cv2.COLOR_BGR2GRAY)).mean() for i in range(n)]
    return int(np.argmin(diffs))


def write_folder(folder: Path, names: list[str], values: list[int], gray: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, value in zip(names, values, strict=True):
        shape = (H, W) if gray else (H, W, 3)
        cv2.imwrite(str(folder / name), np.full(shape, value, np.uint8))
    return folder


def cut(src: Path, dst: Path, n_bytes: int) -> Path:
    dst.write_bytes(src.read_bytes()[:n_bytes])
    return dst


def read_all(source: object) -> tuple[list[np.ndarray], object]:
    with open_video(source) as video:  # type: ignore[arg-type]
        return list(video.frames()), video


# --- video files ---


@pytest.mark.parametrize(
    ("suffix", "fourcc"), [(".mp4", "mp4v"), (".avi", "MJPG"), (".mkv", "mp4v"), (".mov", "mp4v")]
)
def test_video_file_round_trip_keeps_count_size_and_order(tmp_path: Path, suffix: str, fourcc: str) -> None:
    path = write_clip(tmp_path / f"clip{suffix}", fourcc)
    frames, video = read_all(path)
    assert video.info == VideoInfo(str(path), W, H, 25.0, N, 3, is_live=False, fps_reported=True)
    assert len(frames) == N
    assert all(f.shape == (H, W, 3) and f.dtype == np.uint8 for f in frames)
    assert [nearest_pattern(f) for f in frames] == list(range(N))


def test_video_file_reports_its_own_frame_rate(tmp_path: Path) -> None:
    with open_video(write_clip(tmp_path / "slow.mp4", "mp4v", fps=10)) as video:
        assert video.info.fps == pytest.approx(10.0)
        assert video.info.fps_reported


def test_video_file_decodes_bgr_and_converts_to_gray_on_request(tmp_path: Path) -> None:
    path = write_clip(tmp_path / "clip.avi", "MJPG")
    with open_video(path, gray=True) as video:
        frames = list(video.frames())
        assert video.info.channels == 1
    assert all(f.shape == (H, W) for f in frames)
    assert [nearest_pattern(f) for f in frames] == list(range(N))
    with open_video(path, gray=False) as video:
        assert next(video.frames()).shape == (H, W, 3)


def test_iter_frames_yields_the_frames_of_open_video(tmp_path: Path) -> None:
    path = write_clip(tmp_path / "clip.avi", "MJPG")
    expected, _ = read_all(path)
    got = list(iter_frames(path, gray=None))
    assert len(got) == N
    assert all(np.array_equal(a, b) for a, b in zip(got, expected, strict=True))


def test_frames_of_a_source_can_be_read_only_once(tmp_path: Path) -> None:
    with open_video(write_clip(tmp_path / "clip.avi", "MJPG")) as video:
        list(video.frames())
        with pytest.raises(RuntimeError, match="already read"):
            next(video.frames())


def test_on_error_accepts_only_raise_or_stop(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="on_error"):
        open_video(write_clip(tmp_path / "clip.avi", "MJPG"), on_error="skip")  # type: ignore[arg-type]


# --- frame folders ---


def test_frame_folder_is_read_in_natural_numeric_order(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "frames", ["10.png", "2.png", "1.png"], [100, 20, 10])
    frames, video = read_all(folder)
    assert [int(f[0, 0]) for f in frames] == [10, 20, 100]  # 1, 2, 10 rather than 1, 10, 2
    assert video.info.frame_count == 3
    assert (video.info.fps, video.info.fps_reported) == (25.0, False)


def test_gray_tif_folder_stays_gray(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "tif", ["001.tif", "002.tif"], [7, 9], gray=True)
    frames, video = read_all(folder)
    assert video.info.channels == 1
    assert [f.shape for f in frames] == [(H, W), (H, W)]
    assert [int(f[0, 0]) for f in frames] == [7, 9]


def test_colour_folder_is_bgr_and_converts_both_ways(tmp_path: Path) -> None:
    colour = write_folder(tmp_path / "colour", ["1.png"], [50], gray=False)
    gray = write_folder(tmp_path / "gray", ["1.bmp"], [50], gray=True)
    assert next(iter_frames(colour)).shape == (H, W, 3)
    assert next(iter_frames(colour, gray=True)).shape == (H, W)
    as_bgr = next(iter_frames(gray, gray=False))
    assert as_bgr.shape == (H, W, 3)
    assert (as_bgr == 50).all()


def test_frame_folder_ignores_non_image_and_hidden_files(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "frames", ["1.jpg", "2.JPEG"], [30, 60])
    (folder / "notes.txt").write_text("not a frame")
    (folder / "Thumbs.db").write_bytes(b"\x00" * 16)
    (folder / "._1.jpg").write_bytes(b"resource fork")
    (folder / "sub").mkdir()
    frames, _ = read_all(folder)
    assert len(frames) == 2


def test_frame_folder_lists_gaps_in_its_numbering(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "frames", ["f001.png", "f002.png", "f005.png"], [1, 2, 5])
    frames, video = read_all(folder)
    assert len(frames) == 3
    assert video.missing_frames == (3, 4)


def test_frame_of_another_size_raises_naming_that_file(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "frames", ["1.png", "2.png", "3.png"], [1, 2, 3])
    cv2.imwrite(str(folder / "2.png"), np.zeros((H + 2, W), np.uint8))
    with open_video(folder) as video, pytest.raises(VideoError, match=r"2\.png is 64x50"):
        list(video.frames())


def test_frame_of_another_size_ends_quietly_with_on_error_stop(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "frames", ["1.png", "2.png", "3.png"], [1, 2, 3])
    cv2.imwrite(str(folder / "3.png"), np.zeros((H, W + 2), np.uint8))
    with open_video(folder, on_error="stop") as video:
        assert len(list(video.frames())) == 2
        assert (video.frames_read, video.truncated) == (2, True)
        assert "3.png" in (video.stop_reason or "")


def test_unreadable_image_in_folder_raises_naming_it(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "frames", ["1.png", "2.png"], [1, 2])
    (folder / "2.png").write_bytes(b"this is not a png")
    with open_video(folder) as video, pytest.raises(VideoError, match=r"2\.png is not a readable image"):
        list(video.frames())


def test_folder_without_frames_raises(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoError, match="holds no frames"):
        open_video(tmp_path / "empty")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.txt").write_text("hello")
    with pytest.raises(VideoError, match="holds no frames"):
        open_video(tmp_path / "docs")


# --- paths that are not videos ---


def test_missing_path_raises_naming_it(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match=r"nowhere\.mp4 does not exist"):
        open_video(tmp_path / "nowhere.mp4")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("random.mp4", np.random.default_rng(0).bytes(4096), "neither a video"),
        ("empty.mp4", b"", "is empty"),
        ("notes.txt", b"plain words in a text file\n" * 40, "is a text file"),
        ("notes.mp4", b"plain words in a text file\n" * 40, "neither a video"),
    ],
)
def test_file_that_is_not_a_video_raises(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    (tmp_path / name).write_bytes(content)
    with pytest.raises(VideoError, match=message) as err:
        open_video(tmp_path / name)
    assert name in str(err.value)


def test_video_that_decodes_no_frame_raises_on_open(tmp_path: Path) -> None:
    # Headers plus a few bytes of the first frame: FFmpeg opens the file but has nothing to decode.
    clip = write_clip(tmp_path / "clip.mkv", "mp4v", noisy=True)
    first_cluster = clip.read_bytes().index(bytes.fromhex("1f43b675"))  # Matroska Cluster element ID
    with pytest.raises(VideoError, match="decodes no frames"):
        open_video(cut(clip, tmp_path / "header.mkv", first_cluster + 50), on_error="stop")


# --- damaged files ---


def damaged(tmp_path: Path, kind: str) -> Path:
    """A 24-frame clip that breaks halfway: cut .avi/.mkv, or an .mp4 with zeroed data but intact index."""
    if kind == "mp4-zeroed":
        data = bytearray(write_clip(tmp_path / "clip.mp4", "mp4v", noisy=True).read_bytes())
        mdat, moov = data.index(b"mdat"), data.index(b"moov")
        start = (mdat + moov) // 2
        data[start : moov - 4] = bytes(moov - 4 - start)
        (tmp_path / "zeroed.mp4").write_bytes(data)
        return tmp_path / "zeroed.mp4"
    fourcc = {"avi": "MJPG", "mkv": "mp4v"}[kind]
    clip = write_clip(tmp_path / f"clip.{kind}", fourcc, noisy=True)
    return cut(clip, tmp_path / f"cut.{kind}", clip.stat().st_size // 2)


@pytest.mark.parametrize("kind", ["avi", "mkv", "mp4-zeroed"])
def test_video_that_breaks_midway_raises_with_frames_read_of_total(tmp_path: Path, kind: str) -> None:
    with open_video(damaged(tmp_path, kind)) as video:
        assert video.info.frame_count == N  # the header still promises every frame
        with pytest.raises(VideoError, match=rf"breaks after frame \d+ of {N}"):
            for _ in video.frames():
                pass
        assert 0 < video.frames_read < N // 2 + 4
        assert f"after frame {video.frames_read} of {N}" in (video.stop_reason or "")
        assert video.truncated


@pytest.mark.parametrize("kind", ["avi", "mkv", "mp4-zeroed"])
def test_video_that_breaks_midway_ends_quietly_and_repeatably_with_on_error_stop(
    tmp_path: Path, kind: str
) -> None:
    path = damaged(tmp_path, kind)
    counts = []
    for _ in range(2):
        with open_video(path, on_error="stop") as video:
            frames = list(video.frames())
            assert video.truncated
            assert video.frames_read == len(frames)
            counts.append(len(frames))
    assert counts[0] == counts[1]
    assert 0 < counts[0] < N


def test_complete_video_is_not_marked_truncated(tmp_path: Path) -> None:
    with open_video(write_clip(tmp_path / "clip.mkv", "mp4v", noisy=True), on_error="stop") as video:
        assert len(list(video.frames())) == N
        assert not video.truncated
        assert video.stop_reason is None


def test_mp4_cut_short_cannot_be_opened(tmp_path: Path) -> None:
    # OpenCV writes the mp4 index at the end of the file, so any cut removes it.
    clip = write_clip(tmp_path / "clip.mp4", "mp4v", noisy=True)
    with pytest.raises(VideoError, match="cut short"):
        open_video(cut(clip, tmp_path / "cut.mp4", clip.stat().st_size * 9 // 10))


# --- cameras and streams ---


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_stream_raises_video_error(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match="cannot be opened within 1 s"):
        open_video(f"rtsp://127.0.0.1:{free_port()}/x", timeout_s=1.0)


@pytest.mark.parametrize("scheme", ["rtsp", "http"])
def test_stream_server_that_never_answers_fails_after_the_timeout(scheme: str) -> None:
    with socket.socket() as server:  # accepts connections (via the backlog) and never replies
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        url = f"{scheme}://127.0.0.1:{server.getsockname()[1]}/live"
        errors: list[Exception] = []

        def try_open() -> None:
            try:
                open_video(url, timeout_s=0.5)
            except Exception as exc:
                errors.append(exc)

        # A thread keeps a regression from hanging the suite; 10 s is a bound, not a measurement.
        opener = threading.Thread(target=try_open, daemon=True)
        opener.start()
        opener.join(timeout=10)
        assert not opener.is_alive(), f"open_video({url!r}, timeout_s=0.5) still waits after 10 s"
    assert len(errors) == 1
    assert isinstance(errors[0], VideoError)
    assert "within 0.5 s" in str(errors[0])


def test_stream_errors_mask_the_password() -> None:
    with pytest.raises(VideoError) as err:
        open_video(f"rtsp://admin:hunter2@127.0.0.1:{free_port()}/x", timeout_s=1.0)
    assert "hunter2" not in str(err.value)
    assert "admin:***@127.0.0.1" in str(err.value)


def test_unsupported_url_scheme_raises() -> None:
    with pytest.raises(VideoError, match="unsupported scheme 'ftp://'"):
        open_video("ftp://example.org/clip.mp4")


@pytest.mark.parametrize("index", [57, "57"])
def test_camera_that_does_not_exist_raises(index: int | str) -> None:
    with pytest.raises(VideoError, match="Camera 57 cannot be opened"):
        open_video(index)


# --- frame stacks and batches ---


def numbered(n: int, channels: int = 1) -> list[np.ndarray]:
    shape = (2, 3) if channels == 1 else (2, 3, channels)
    return [np.full(shape, i, np.uint8) for i in range(n)]


def stack_ids(stacks: Iterator[np.ndarray]) -> list[list[int]]:
    return [[int(s[k].flat[0]) for k in range(3)] for s in stacks]


def test_frame_stacks_give_the_first_and_last_frames_the_nearest_full_stack() -> None:
    ids = stack_ids(frame_stacks(numbered(10), offset=3))
    assert len(ids) == 10
    assert ids[:4] == [[3, 0, 6]] * 4  # frames 0-2 take frame 3's stack
    assert ids[4:7] == [[4, 1, 7], [5, 2, 8], [6, 3, 9]]
    assert ids[7:] == [[6, 3, 9]] * 3  # frames 7-9 take frame 6's stack


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (0, []),
        (1, [[0, 0, 0]]),
        (2, [[0, 0, 0], [1, 1, 1]]),
        (4, [[0, 0, 3], [1, 1, 1], [2, 2, 2], [3, 0, 3]]),
        (6, [[0, 0, 3], [1, 1, 4], [2, 2, 5], [3, 0, 3], [4, 1, 4], [5, 2, 5]]),
    ],
)
def test_videos_without_a_full_stack_repeat_frame_t_for_a_missing_neighbour(
    n: int, expected: list[list[int]]
) -> None:
    assert stack_ids(frame_stacks(numbered(n), offset=3)) == expected


def test_stack_indices_hold_the_nearest_full_stack_at_both_ends() -> None:
    assert [stack_indices(t, 10, 3) for t in range(10)] == (
        [(3, 0, 6)] * 4 + [(4, 1, 7), (5, 2, 8)] + [(6, 3, 9)] * 4
    )
    assert stack_indices(0, 7, 3) == stack_indices(6, 7, 3) == (3, 0, 6)  # one full stack: all take it
    assert stack_indices(0, 6, 3) == (0, 0, 3)  # no full stack: frame t stands in for the missing one
    with pytest.raises(IndexError, match="outside"):
        stack_indices(10, 10, 3)


@pytest.mark.parametrize("offset", [0, 1, 3])
def test_stack_indices_and_frame_stacks_agree_for_every_frame(offset: int) -> None:
    for n in [*range(0, 2 * offset + 3), 15]:  # shorter than, equal to and longer than a full stack
        expected = [list(stack_indices(t, n, offset)) for t in range(n)]
        assert stack_ids(frame_stacks(numbered(n), offset=offset)) == expected, f"n={n}"


def test_frame_stacks_shapes_for_gray_and_colour() -> None:
    assert next(frame_stacks(numbered(5))).shape == (3, 2, 3)
    assert next(frame_stacks(numbered(5, channels=3))).shape == (3, 2, 3, 3)


def test_frame_stacks_with_offset_zero_repeat_each_frame() -> None:
    assert stack_ids(frame_stacks(numbered(3), offset=0)) == [[0, 0, 0], [1, 1, 1], [2, 2, 2]]


class Endless:
    """Numbered 2x2 frames without end, counting how many were taken."""

    def __init__(self) -> None:
        self.taken = 0

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in itertools.count():
            self.taken += 1
            yield np.full((2, 2), i % 256, np.uint8)


def test_frame_stacks_read_only_offset_frames_ahead_of_an_endless_input() -> None:
    endless = Endless()
    stacks = frame_stacks(iter(endless), offset=3)
    assert stack_ids(iter([next(stacks)])) == [[3, 0, 6]]
    assert endless.taken == 7  # frame 0's stack is frame 3's, which needs frame 6
    rest = list(itertools.islice(stacks, 9))
    assert stack_ids(iter(rest))[-1] == [9, 6, 12]
    assert endless.taken == 13  # then offset frames ahead


def test_frame_stacks_reject_a_negative_offset() -> None:
    with pytest.raises(ValueError, match="offset"):
        list(frame_stacks(numbered(3), offset=-1))


def test_batched_groups_items_and_keeps_the_short_tail() -> None:
    assert list(batched(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(batched([], 3)) == []
    assert next(batched(itertools.count(), 4)) == [0, 1, 2, 3]  # lazy on endless input
    with pytest.raises(ValueError, match="batch size"):
        next(batched(range(3), 0))


# --- writing ---


def test_video_writer_produces_a_decodable_file_with_every_frame(tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    with VideoWriter(out, fps=10, size=(W, H)) as writer:
        for i in range(N):
            frame = pattern(i)
            writer.write(frame if i % 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))  # gray or BGR
    assert writer.frames_written == N
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]  # no temporary file left behind
    frames, video = read_all(out)
    assert (video.info.width, video.info.height, video.info.fps) == (W, H, 10.0)
    assert [nearest_pattern(f) for f in frames] == list(range(N))


def test_video_writer_leaves_nothing_when_the_block_raises(tmp_path: Path) -> None:
    with pytest.raises(KeyError), VideoWriter(tmp_path / "out.mp4", fps=25, size=(W, H)) as writer:
        writer.write(pattern(0))
        raise KeyError("stop")
    assert list(tmp_path.iterdir()) == []


def test_video_writer_keeps_an_existing_file_when_the_block_raises(tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    out.write_bytes(b"previous result")
    with pytest.raises(KeyError), VideoWriter(out, fps=25, size=(W, H)) as writer:
        writer.write(pattern(0))
        raise KeyError("stop")
    assert out.read_bytes() == b"previous result"


def test_video_writer_rejects_frames_of_another_size(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="64x48"), VideoWriter(tmp_path / "o.mp4", 25, (W, H)) as writer:
        writer.write(np.zeros((H, W + 1, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_video_writer_creates_missing_folders_and_uses_25_fps_for_invalid_rates(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b" / "out.mp4"
    with VideoWriter(out, fps=0, size=(W, H)) as writer:
        writer.write(pattern(0))
    with open_video(out) as video:
        assert video.info.fps == 25.0


def test_video_writer_below_a_regular_file_raises_naming_the_folder(tmp_path: Path) -> None:
    (tmp_path / "report").write_text("a file, not a folder")
    with pytest.raises(VideoError, match=r"folder .*report cannot be created"):
        VideoWriter(tmp_path / "report" / "out.mp4", fps=25, size=(W, H)).__enter__()


def test_video_writer_that_opencv_cannot_open_raises_and_cleans_up(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match="cannot write"):
        VideoWriter(tmp_path / "out.unknownformat", fps=25, size=(W, H), codec="mp4v").__enter__()
    assert list(tmp_path.iterdir()) == []


def test_video_writer_without_frames_leaves_no_file(tmp_path: Path) -> None:
    with VideoWriter(tmp_path / "out.mp4", fps=25, size=(W, H)):
        pass
    assert list(tmp_path.iterdir()) == []


def stream_of(path: Path) -> tuple[str, str, int, int]:
    """(codec, pixel format, width, height) of a file's video stream, as PyAV reads it."""
    av = pytest.importorskip("av")
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return stream.codec_context.name, stream.codec_context.pix_fmt, stream.width, stream.height


def test_video_writer_writes_h264_yuv420p_by_default(tmp_path: Path) -> None:
    if not h264_available():
        pytest.skip("PyAV is not installed")
    with VideoWriter(tmp_path / "out.mp4", fps=25, size=(W, H)) as writer:
        for i in range(3):
            writer.write(pattern(i))
    assert writer.codec == "h264"
    assert stream_of(tmp_path / "out.mp4") == ("h264", "yuv420p", W, H)


def test_video_writer_writes_mp4v_when_asked(tmp_path: Path) -> None:
    with VideoWriter(tmp_path / "out.mp4", fps=25, size=(W, H), codec="mp4v") as writer:
        for i in range(3):
            writer.write(pattern(i))
    assert writer.codec == "mp4v"
    assert stream_of(tmp_path / "out.mp4")[0] == "mpeg4"
    frames, _ = read_all(tmp_path / "out.mp4")
    assert [nearest_pattern(f) for f in frames] == [0, 1, 2]


def test_video_writer_falls_back_to_mp4v_without_pyav(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("aedcli.video.writer.h264_available", lambda: False)
    with VideoWriter(tmp_path / "out.mp4", fps=25, size=(W, H)) as writer:
        writer.write(pattern(0))
    assert writer.codec == "mp4v"
    assert len(read_all(tmp_path / "out.mp4")[0]) == 1


def test_video_writer_rejects_an_unknown_codec(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="codec"):
        VideoWriter(tmp_path / "out.mp4", fps=25, size=(W, H), codec="MJPG")


@pytest.mark.parametrize("codec", ["h264", "mp4v"])
def test_video_writer_keeps_colours(tmp_path: Path, codec: str) -> None:
    if codec == "h264" and not h264_available():
        pytest.skip("PyAV is not installed")
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (0, 220, 255), (128, 128, 128)]  # BGR
    frame = np.zeros((H, W, 3), np.uint8)
    band = W // len(colours)
    for i, colour in enumerate(colours):
        frame[:, i * band : (i + 1) * band] = colour
    with VideoWriter(tmp_path / "colours.mp4", fps=25, size=(W, H), codec=codec) as writer:
        for _ in range(3):
            writer.write(frame)
    decoded = read_all(tmp_path / "colours.mp4")[0][0].astype(int)
    for i, colour in enumerate(colours):  # the middle of each band, away from chroma edges
        got = decoded[H // 2, i * band + band // 2]
        assert np.abs(got - np.array(colour)).max() <= 12, (colour, got.tolist())


@pytest.mark.parametrize("codec", ["h264", "mp4v"])
def test_video_writer_pads_odd_frame_sizes_by_one_pixel(tmp_path: Path, codec: str) -> None:
    if codec == "h264" and not h264_available():
        pytest.skip("PyAV is not installed")
    frame = np.zeros((H - 1, W - 1, 3), np.uint8)
    frame[:, -8:] = 255  # the last columns and rows are bright: padding copies them, cropping would lose them
    frame[-8:, :] = 255
    with VideoWriter(tmp_path / "odd.mp4", fps=25, size=(W - 1, H - 1), codec=codec) as writer:
        for _ in range(3):
            writer.write(frame)
    frames, video = read_all(tmp_path / "odd.mp4")
    assert (video.info.width, video.info.height) == (W, H)
    assert len(frames) == 3
    gray = cv2.cvtColor(frames[0], cv2.COLOR_BGR2GRAY)
    assert gray[-1, :].mean() > 200 and gray[:, -1].mean() > 200
    assert gray[: H - 16, : W - 16].mean() < 30


def test_natural_key_orders_numbers_by_value_and_ignores_case() -> None:
    names = ["frame10.png", "Frame9.png", "frame100.png", "frame009b.png"]
    assert sorted(names, key=natural_key) == ["Frame9.png", "frame009b.png", "frame10.png", "frame100.png"]


@pytest.mark.ped2
def test_ped2_test_folder_reads_as_gray_360x240(ped2_root: Path) -> None:
    folder = (
        next(p for p in (ped2_root, ped2_root / "UCSDped2") if (p / "Test").is_dir()) / "Test" / "Test001"
    )
    with open_video(folder) as video:
        assert (video.info.width, video.info.height, video.info.channels) == (360, 240, 1)
        assert sum(1 for _ in video.frames()) == video.info.frame_count == 180
        assert video.missing_frames == ()
