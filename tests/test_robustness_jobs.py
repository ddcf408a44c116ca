"""Interrupted and oversized jobs: kill -9 leaves only complete files, re-running resumes, and a run whose
data cannot fit is refused before it starts. Untrusted training files never run code.

The killed commands run as separate processes (`python -m aedcli ...`) and are killed with SIGKILL, which no
handler can intercept: only what was already renamed into place survives, so these tests pin that every file
is written to a temporary name first.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
from _distill_fixtures import DISTILL_SIZE, distill_write_dataset, distill_write_targets
from _robustness_fixtures import (
    aed_command,
    aed_env,
    assert_one_sentence,
    files_in,
    run_aed,
    run_aed_process,
    tiny_weights,
    write_video,
)

from aedcli import budget
from aedcli.budget import (
    available_memory_bytes,
    check_distill_budget,
    estimate_distill_budget,
    format_bytes,
    free_disk_bytes,
)
from aedcli.data.clips import Dataset, sped_up
from aedcli.errors import AedError
from aedcli.inputs import InputSpec
from aedcli.weights import load_weights

TEACHERS = ("a", "b")
SIZE_ARG = f"{DISTILL_SIZE[0]}x{DISTILL_SIZE[1]}"


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Dataset, Path]:
    """The distillation fixture dataset (3 gray clips of 10 frames, 32x48) and teacher targets for it."""
    root = tmp_path_factory.mktemp("robust-distill")
    dataset = distill_write_dataset(root / "data")
    distill_write_targets(dataset, root / "targets", TEACHERS)
    return dataset, root / "targets"


@pytest.fixture
def run_dir(prepared: tuple[Dataset, Path], tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(prepared[1], out / "targets")
    return out


def distill_args(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "distill",
        *("--dataset", "folder", "--root", str(data), "--out", str(out)),
        *("--variant", "fastaed-xs", "--size", SIZE_ARG, "--batch", "4", "--teachers", ",".join(TEACHERS)),
        *("--val-videos", "0", "-q"),
        *extra,
    ]


def kill_when(proc: subprocess.Popen[bytes], ready: Callable[[], bool], what: str, limit: float = 90) -> None:
    """SIGKILL ``proc`` as soon as ``ready()`` holds; fail (showing its stderr) if it ends or stalls first."""
    try:
        deadline = time.monotonic() + limit
        while not ready():
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                pytest.fail(f"the process ended (code {proc.returncode}) before {what}:\n{err[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} within {limit:.0f} s")
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL


def visible(paths: list[Path]) -> list[Path]:
    """The files at final names: temporary files are hidden (``.name.XXXX.tmp.ext``)."""
    return [p for p in paths if not p.name.startswith(".")]


def assert_npz_complete(path: Path) -> None:
    """Every array of the file reads back in full (a half-written zip fails here)."""
    with np.load(path, allow_pickle=False) as z:
        for name in z.files:
            np.asarray(z[name])


# ---------------------------------------------------------------------------------------------------------
# kill -9 of `aed detect` while it writes


def test_detect_killed_while_writing_leaves_no_file_at_a_final_name_and_the_same_command_reruns(
    tmp_path: Path,
) -> None:
    weights = tiny_weights(tmp_path / "tiny.pt")
    clip = write_video(tmp_path / "clip.mp4", n=400)
    out = tmp_path / "out"
    args = ["detect", clip, "--weights", weights, "--out", out, "--overlay", "--plot"]
    finals = [out / f"clip_{name}" for name in ("scores.csv", "summary.json", "overlay.mp4", "timeline.png")]

    def writing() -> bool:  # the overlay's temporary file has frames in it
        return any(p.name.startswith(".clip_overlay.mp4.") and p.stat().st_size > 0 for p in files_in(out))

    proc = subprocess.Popen(aed_command(*args), env=aed_env(), stderr=subprocess.PIPE)
    kill_when(proc, writing, "the overlay was being written")

    assert not any(p.exists() for p in finals), "a killed run left a file at a final name"
    assert visible(files_in(out)) == []  # only hidden temporary files, if anything

    result = run_aed_process(*args)
    assert result.returncode == 0, result.stderr
    assert files_in(out) == sorted(finals), "the rerun left the killed run's temporary files behind"
    with finals[0].open(encoding="utf-8") as fh:
        assert sum(1 for _ in fh) == 1 + 400
    assert json.loads(finals[1].read_text(encoding="utf-8"))["frames"] == 400
    cap = cv2.VideoCapture(str(finals[2]))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 400
    cap.release()
    assert finals[3].read_bytes()[:4] == b"\x89PNG"


# ---------------------------------------------------------------------------------------------------------
# kill -9 of `aed teach` while it caches scores


def _teach_table(stdout: str) -> dict[str, str]:
    """The teacher row of `aed teach`'s table: fit, clips scored/reused, targets written/reused."""
    row = next(line for line in stdout.splitlines() if line.strip().startswith("│ a "))
    cells = [c.strip() for c in row.strip().strip("│").split("│")]
    keys = ("teacher", "fit", "clips_scored", "clips_reused", "targets_written", "targets_reused", "fps")
    return dict(zip(keys, cells, strict=True))


def test_teach_killed_while_caching_keeps_only_complete_files_and_resumes_without_redoing_clips(
    tmp_path: Path,
) -> None:
    distill_write_dataset(tmp_path / "data", clips=6, frames=32, size=(72, 96))
    out = tmp_path / "targets"
    args = ["teach", "--dataset", "folder", "--root", tmp_path / "data", "--out", out]
    args += ["--teachers", "a", "--epochs", "1", "--quiet"]
    raw = out / "a" / "raw" / "train"

    proc = subprocess.Popen(aed_command(*args), env=aed_env(), stderr=subprocess.PIPE)
    kill_when(
        proc, lambda: raw.is_dir() and bool(visible(list(raw.glob("*.npz")))), "a scored clip was cached"
    )

    kept = visible(files_in(out))
    for path in kept:
        if path.suffix == ".npz":
            assert_npz_complete(path)
    torch.load(out / "a" / "teacher.pt", weights_only=True)  # complete and plain data
    boxes_done = len(visible(list((out / "boxes" / "train").glob("*.npz"))))
    scored_done = len(visible(list(raw.glob("*.npz"))))
    assert boxes_done == 6 and 1 <= scored_done <= 6

    result = subprocess.run(
        aed_command(*args), env=aed_env() | {"COLUMNS": "200"}, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "proposals 0 computed, 6 reused" in result.stdout
    row = _teach_table(result.stdout)
    assert row["fit"] == "reused"
    assert (int(row["clips_scored"]), int(row["clips_reused"])) == (6 - scored_done, scored_done)
    for c in range(6):
        assert_npz_complete(out / "a" / "train" / f"clip{c + 1:02d}.npz")
    assert [p for p in files_in(out) if p not in visible(files_in(out))] == []  # leftovers removed


# ---------------------------------------------------------------------------------------------------------
# kill -9 of `aed distill` during pre-training (the distillation phase: test_distill.py)


def test_distill_killed_during_pretraining_resumes_after_its_last_finished_epoch(
    prepared: tuple[Dataset, Path], run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = prepared[0].root
    checkpoint = run_dir / "checkpoints" / "pretrain.pt"
    proc = subprocess.Popen(
        aed_command(*distill_args(data, run_dir, "--pretrain-epochs", "500", "--epochs", "1")),
        env=aed_env(),
        stderr=subprocess.PIPE,
    )
    kill_when(proc, checkpoint.exists, "the first pre-training checkpoint")

    state = torch.load(checkpoint, weights_only=True)  # complete: written to a temporary name, then renamed
    done = int(state["epoch"])
    finished = state["history"]["pretrain"]
    assert done >= 1 and [r["epoch"] for r in finished] == list(range(1, done + 1))
    assert not (run_dir / "weights.pt").exists() and not (run_dir / "checkpoints" / "distill.pt").exists()
    for cache in visible(list((run_dir / "cache").rglob("*.npy"))):
        assert np.load(cache, mmap_mode="r").shape == (10, *DISTILL_SIZE)  # the frame cache is whole

    extra = ("--pretrain-epochs", str(done + 1), "--epochs", "1", "--resume")
    code, _, err = run_aed(distill_args(data, run_dir, *extra), capsys)

    assert code == 0, err
    history = json.loads((run_dir / "history.json").read_text())
    assert [r["epoch"] for r in history["pretrain"]] == list(range(1, done + 2))
    assert history["pretrain"][:done] == finished  # the finished epochs were kept, not trained again
    assert load_weights(run_dir / "weights.pt").provenance["epochs"] == {"pretrain": done + 1, "distill": 1}


# ---------------------------------------------------------------------------------------------------------
# Untrusted training files


class _Payload:
    """Unpickling this creates a marker file: proof that loading would have run code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


def test_distill_refuses_a_checkpoint_carrying_a_pickled_callable_without_running_it(
    prepared: tuple[Dataset, Path], run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = run_dir.parent / "code-ran.txt"
    checkpoint = run_dir / "checkpoints" / "pretrain.pt"
    checkpoint.parent.mkdir(parents=True)
    torch.save(
        {"format": "aed-distill-checkpoint", "version": 1, "epoch": 1, "x": _Payload(marker)}, checkpoint
    )

    code, _, err = run_aed(
        distill_args(prepared[0].root, run_dir, "--pretrain-epochs", "2", "--resume"), capsys
    )

    assert "is unreadable" in assert_one_sentence(code, err, exit_code=1, names=checkpoint)
    assert not marker.exists() and not (run_dir / "weights.pt").exists()


def test_distill_refuses_a_teacher_target_carrying_a_pickled_object_without_running_it(
    prepared: tuple[Dataset, Path], run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = run_dir.parent / "code-ran.txt"
    target = run_dir / "targets" / "a" / "train" / "clip01.npz"
    np.savez(target, s1=np.array([_Payload(marker)] * 10, dtype=object))

    code, _, err = run_aed(distill_args(prepared[0].root, run_dir, "--no-pretrain", "--epochs", "1"), capsys)

    assert "is unreadable" in assert_one_sentence(code, err, exit_code=1, names=target)
    assert not marker.exists() and not (run_dir / "weights.pt").exists()


def test_teach_rebuilds_a_box_cache_carrying_a_pickled_object_without_running_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    distill_write_dataset(tmp_path / "data", clips=2, frames=10)
    marker = tmp_path / "code-ran.txt"
    boxes = tmp_path / "targets" / "boxes" / "train" / "clip01.npz"
    boxes.parent.mkdir(parents=True)
    np.savez(boxes, version=np.array(_Payload(marker), dtype=object))
    args = ["teach", "--dataset", "folder", "--root", tmp_path / "data", "--out", tmp_path / "targets"]

    code, out, err = run_aed([*args, "--teachers", "a", "--epochs", "1", "--quiet"], capsys)

    assert code == 0, err
    assert "proposals 2 computed, 0 reused" in " ".join(out.split())
    assert not marker.exists()
    assert_npz_complete(boxes)  # rewritten as plain arrays


# ---------------------------------------------------------------------------------------------------------
# Disk and memory budget of `aed distill`


def test_budget_counts_the_frame_cache_on_disk_and_the_targets_in_memory(
    prepared: tuple[Dataset, Path], tmp_path: Path
) -> None:
    spec = InputSpec(*DISTILL_SIZE, channels=1)
    need = estimate_distill_budget(prepared[0].train, spec, 2, tmp_path / "out", batch=4)
    frame_bytes = DISTILL_SIZE[0] * DISTILL_SIZE[1]
    assert need.frames == 30
    assert need.cache_dir == tmp_path / "out" / "cache" / f"frames_{SIZE_ARG}x1"
    assert need.cache_bytes == 3 * (10 * frame_bytes + 128)
    assert need.memory_bytes == 30 * 2 * 273 * 4 * 2 + 4 * 3 * frame_bytes * 5

    # A clip whose cache file is complete from an earlier run needs no more disk.
    need.cache_dir.mkdir(parents=True)
    np.save(need.cache_dir / "clip01.npy", np.zeros((10, *DISTILL_SIZE), np.uint8))
    again = estimate_distill_budget(prepared[0].train, spec, 2, tmp_path / "out", batch=4)
    assert again.cache_bytes == 2 * (10 * frame_bytes + 128)


def test_budget_counts_sped_up_copies_in_memory_only_and_every_local_process(
    prepared: tuple[Dataset, Path], tmp_path: Path
) -> None:
    spec = InputSpec(*DISTILL_SIZE, channels=1)
    plain = estimate_distill_budget(prepared[0].train, spec, 2, tmp_path / "out", batch=4)
    fast = [sped_up(c, 2) for c in prepared[0].train]  # 3 clips of 5 frames
    more = estimate_distill_budget(prepared[0].train, spec, 2, tmp_path / "out", batch=4, extra=fast)
    assert more.frames == 30 + 15 and more.cache_bytes == plain.cache_bytes
    assert more.memory_bytes - plain.memory_bytes == 15 * 2 * 273 * 4 * 2
    four = estimate_distill_budget(prepared[0].train, spec, 2, tmp_path / "out", batch=4, processes=4)
    assert four.memory_bytes == 4 * plain.memory_bytes and four.cache_bytes == plain.cache_bytes


@pytest.mark.parametrize(
    ("patch", "says"),
    [
        ("free_disk_bytes", "needs about 46 kB of disk for its frame cache"),
        ("available_memory_bytes", "needs about 223 kB of memory for the teachers' targets of 30 frames"),
    ],
    ids=["disk", "memory"],
)
def test_distill_refuses_before_writing_anything_when_its_data_cannot_fit(
    patch: str,
    says: str,
    prepared: tuple[Dataset, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(budget, patch, lambda *args: 10_000)
    out = tmp_path / "run"

    code, _, err = run_aed(
        distill_args(prepared[0].root, out, "--epochs", "1", "--pretrain-epochs", "1"), capsys
    )

    line = assert_one_sentence(code, err, exit_code=1, names="10 kB")
    assert says in line
    if patch == "free_disk_bytes":
        assert str(out / "cache") in line and "lower --size" in line
    assert files_in(out) == []  # no targets, cache, checkpoint or weights


def test_distill_budget_passes_when_memory_is_unknown_and_disk_suffices(
    prepared: tuple[Dataset, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(budget, "available_memory_bytes", lambda *args: None)
    spec = InputSpec(*DISTILL_SIZE, channels=1)
    need = check_distill_budget(
        estimate_distill_budget(prepared[0].train, spec, 2, tmp_path / "not yet" / "out", batch=4)
    )
    assert need.cache_bytes > 0
    # Refused only when the need is above what is free: one byte short is enough to refuse.
    monkeypatch.setattr(budget, "free_disk_bytes", lambda *args: need.cache_bytes)
    check_distill_budget(estimate_distill_budget(prepared[0].train, spec, 2, tmp_path / "out", batch=4))
    monkeypatch.setattr(budget, "free_disk_bytes", lambda *args: need.cache_bytes - 1)
    with pytest.raises(AedError, match=r"needs about 46 kB of disk"):
        check_distill_budget(estimate_distill_budget(prepared[0].train, spec, 2, tmp_path / "out", batch=4))


def test_available_memory_is_read_from_meminfo_and_unknown_without_it(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       16384 kB\nMemFree:         1024 kB\nMemAvailable:    2048 kB\n")
    assert available_memory_bytes(meminfo) == 2048 * 1024
    meminfo.write_text("MemTotal:       16384 kB\n")  # kernels before 3.14 have no MemAvailable
    assert available_memory_bytes(meminfo) is None
    assert available_memory_bytes(tmp_path / "missing") is None
    if Path("/proc/meminfo").is_file():
        assert (available_memory_bytes() or 0) > 0


def test_free_disk_is_measured_on_the_nearest_existing_folder(tmp_path: Path) -> None:
    assert free_disk_bytes(tmp_path / "a" / "b" / "c") == shutil.disk_usage(tmp_path).free
    assert free_disk_bytes(tmp_path / "a" / "b" / "c") > 0


def test_sizes_are_printed_in_decimal_units() -> None:
    assert [format_bytes(n) for n in (512, 12_300, 450_000_000, 3_210_000_000, 42_000_000_000)] == [
        "512 bytes",
        "12 kB",
        "450 MB",
        "3.2 GB",
        "42 GB",
    ]


# ---------------------------------------------------------------------------------------------------------
# Numbers that would fail deep inside a run (or after hours of training): refused up front


@pytest.mark.parametrize(
    ("command", "option", "value", "exit_code"),
    [
        ("detect", "--timeout", "nan", 2),
        ("detect", "--timeout", "-1", 2),
        ("detect", "--batch", "100000000", 1),
        ("eval", "--sigma", "inf", 2),
        ("eval", "--sigma", "nan", 2),
        ("distill", "--sigma", "inf", 2),
        ("distill", "--percentile", "150", 2),
        ("distill", "--lr", "nan", 2),
        ("distill", "--lr-d", "-1", 2),
    ],
)
def test_impossible_numbers_are_refused_in_one_sentence_naming_the_option(
    command: str,
    option: str,
    value: str,
    exit_code: int,
    prepared: tuple[Dataset, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out"
    if command == "detect":
        clip = write_video(tmp_path / "clip.mp4", n=4)
        args: list[Any] = ["detect", clip, "--weights", tiny_weights(tmp_path / "w.pt"), "--out", out]
    elif command == "eval":
        args = ["eval", "--dataset", "folder", "--root", prepared[0].root, "--weights", tmp_path / "w.pt"]
        args += ["--json", out / "eval.json"]
        tiny_weights(tmp_path / "w.pt", size=DISTILL_SIZE)
    else:
        args = distill_args(prepared[0].root, out, "--epochs", "1", "--pretrain-epochs", "1")

    code, _, err = run_aed([*args, option, value], capsys)

    # a batch too large to allocate is a failure of this machine (exit 1), not a usage error
    names = "out of memory" if exit_code == 1 else option
    assert_one_sentence(code, err, exit_code=exit_code, names=names)
    assert not out.exists()
