"""Interrupted and oversized jobs: kill -9 leaves only complete files, re-running resumes, and a run whose
data cannot fit is refused before it starts. Untrusted training files never run code.

The killed commands run as separate processes (`python -m aedcli ...`) and are killed with SIGKILL, which no
handler can intercept: only what was already renamed into place survives, so these tests pin that every file
is written to a temporary name first.
"""

from __future__ import annotations

import importlib
import json
import os
import pickle
import shlex
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
from _robustness_fixtures import (
    aed_command,
    aed_env,
    assert_one_sentence,
    files_in,
    run_aed,
    run_aed_process,
    stale_temporary,
    tiny_weights,
    write_frame_dataset,
    write_settings,
    write_training_dataset,
    write_video,
)

from aedcli.cli.app import main
from aedcli.data.clips import Clip, Dataset, sped_up
from aedcli.data.folder import load_folder
from aedcli.errors import AedError
from aedcli.model.inputs import InputSpec
from aedcli.model.weights import load_weights
from aedcli.training import budget
from aedcli.training import run as training_run
from aedcli.training.budget import (
    DistillBudget,
    available_memory_bytes,
    check_distill_budget,
    estimate_distill_budget,
    format_bytes,
    free_disk_bytes,
)

teach_module = importlib.import_module("aedcli.teachers.teach")  # the package exports a `teach` function

SIZE = (32, 48)
"""Frame size (height, width) of the tiny training set."""
SIZE_ARG = f"{SIZE[0]}x{SIZE[1]}"


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """A folder dataset of 3 gray training clips of 10 frames, 32x48."""
    return load_folder(write_frame_dataset(tmp_path_factory.mktemp("robust-train") / "data", size=SIZE))


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


# ---------------------------------------------------------------------------------------------------------
# kill -9 of `aed detect` while it writes


def test_detect_killed_while_writing_leaves_no_file_at_a_final_name_and_the_same_command_reruns(
    tmp_path: Path,
) -> None:
    weights = tiny_weights(tmp_path / "tiny.pt")
    clip = write_video(tmp_path / "clip.mp4", n=400)
    out = tmp_path / "out"
    args = ["detect", clip, "--weights", weights, "--out", out, "--overlay", "--plot", "--runtime", "torch"]
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
# kill -9 of `aed teach` and `aed distill`; untrusted training files


class RunsCommand:
    """An object whose unpickling runs a shell command: it creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[[str], int], tuple[str]]:
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


@pytest.fixture
def payload(tmp_path: Path) -> tuple[RunsCommand, Path]:
    """A pickled-code payload and the file it creates if it ever runs; checked to be live first."""
    probe = tmp_path / "payload-is-live"
    pickle.loads(pickle.dumps(RunsCommand(probe)))
    assert probe.exists(), "the payload does not run its command when unpickled"
    marker = tmp_path / "code-ran"
    return RunsCommand(marker), marker


@pytest.fixture(scope="module")
def training_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder dataset of 3 gray training clips of 50 frames, 32x48."""
    return write_training_dataset(tmp_path_factory.mktemp("robust-training") / "data", size=SIZE)


@pytest.fixture(scope="module")
def taught_run(training_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder after `aed teach`: fitted teachers, analysis cache and targets (copy it before use)."""
    folder = tmp_path_factory.mktemp("robust-taught")
    run = folder / "run"
    main([str(a) for a in teach_args(training_root, run, write_settings(folder / "tiny.toml", size=SIZE))])
    return run


def teach_args(root: Path, run: Path, settings: Path) -> list[str | Path]:
    """`aed teach` on the folder dataset ``root`` into ``run``, quietly, in one process."""
    where: list[str | Path] = ["--dataset", "folder", "--root", root, "--out", run]
    return ["teach", *where, "--config", settings, "-q", "--workers", "1"]


def distill_args(root: Path, run: Path, settings: Path, *extra: str) -> list[str | Path]:
    return ["distill", *teach_args(root, run, settings)[1:], *extra]


def copy_run(taught: Path, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(taught, run)
    return run


def temporaries(folder: Path) -> list[Path]:
    """The temporary files of atomic writes under ``folder``."""
    return [p for p in files_in(folder) if p.name.startswith(".") and ".tmp" in p.name]


def assert_plain_npz(path: Path) -> None:
    """``path`` opens without unpickling anything and every array in it reads in full."""
    with np.load(path, allow_pickle=False) as z:
        assert z.files, f"{path} holds no arrays"
        for key in z.files:
            assert z[key].dtype != object, f"{path}:{key}"


def poison_npz(path: Path, key: str, obj: object) -> None:
    """Rewrite the .npz ``path`` with its array ``key`` replaced by an object array holding ``obj``."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    assert key in arrays
    arrays[key] = np.array([obj], dtype=object)
    with path.open("wb") as fh:
        np.savez(fh, **arrays)  # object arrays are pickled into the zip
    with np.load(path, allow_pickle=False) as z, pytest.raises(ValueError, match="allow_pickle"):
        z[key]


def test_teach_killed_while_caching_keeps_only_complete_files_and_resumes_without_redoing_clips(
    training_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`aed teach` killed after caching a clip's scores: every kept file is complete, and the rerun scores
    only the clips not cached yet and removes the killed run's temporary files."""
    run = tmp_path / "run"
    args = teach_args(training_root, run, write_settings(tmp_path / "tiny.toml", size=SIZE))
    cache = run / "teachers" / "cache"

    def cached() -> bool:
        return any(p.suffix == ".npz" for p in visible(files_in(cache) + files_in(run / "targets")))

    proc = subprocess.Popen(aed_command(*args), env=aed_env(), stderr=subprocess.PIPE)
    kill_when(proc, cached, "a clip's analysis was cached")

    kept = visible(files_in(run))
    assert kept and all(p.suffix == ".npz" and cache in p.parents for p in kept), kept
    for path in kept:
        assert_plain_npz(path)
    stamps = {p: p.stat().st_mtime_ns for p in kept}
    # What writes cut short by the kill leave, for files the rerun has still to write.
    finals = [cache / "train" / "clip03.npz", run / "targets" / "motion" / "train" / "clip03.npz"]
    planted = [stale_temporary(final, proc.pid) for final in finals if not final.exists()]
    assert planted

    analysed: list[str] = []
    analyse_clip = teach_module.analyse_clip

    def spy(clip: Clip, *rest: Any) -> Any:
        analysed.append(clip.name)
        return analyse_clip(clip, *rest)

    monkeypatch.setattr(teach_module, "analyse_clip", spy)
    code, _, err = run_aed(args, capsys)
    assert code == 0, err

    done = {p.stem for p in kept}
    cached_now = visible(files_in(cache))
    assert len(cached_now) == 15  # 3 videos and 12 sped-up and magnified views
    assert sorted(analysed) == sorted(p.stem for p in cached_now if p.stem not in done), "a clip was redone"
    assert {p: p.stat().st_mtime_ns for p in kept} == stamps, "a complete cache file was rewritten"
    assert len(visible(files_in(run / "targets"))) == 2 * 15
    assert all(final.is_file() for final in finals) and not any(p.exists() for p in planted)
    assert temporaries(run) == [], "the rerun left the killed run's temporary files behind"
    for path in files_in(run):
        if path.suffix == ".npz":
            assert_plain_npz(path)


def test_distill_killed_during_pretraining_resumes_after_its_last_finished_epoch(
    training_root: Path, taught_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`aed distill` killed after its first pre-training checkpoint: the checkpoint is complete, no weights
    exist, and `--resume` keeps the finished epochs and trains only the rest."""
    run = copy_run(taught_run, tmp_path)
    long = write_settings(tmp_path / "long.toml", size=SIZE, pretrain_epochs=500)
    checkpoint = run / "checkpoints" / "pretrain.pt"

    proc = subprocess.Popen(
        aed_command(*distill_args(training_root, run, long)), env=aed_env(), stderr=subprocess.PIPE
    )
    kill_when(proc, checkpoint.exists, "the first pre-training checkpoint", limit=150)

    state = torch.load(checkpoint, weights_only=True)
    done = int(state["epoch"])
    finished = state["history"]["pretrain"]
    assert done >= 1 and [r["epoch"] for r in finished] == list(range(1, done + 1))
    assert not (run / "weights.pt").exists() and not (run / "checkpoints" / "distill.pt").exists()
    assert visible(files_in(run / "checkpoints")) == [checkpoint]

    rest = write_settings(tmp_path / "rest.toml", size=SIZE, pretrain_epochs=done + 2)
    code, _, err = run_aed(distill_args(training_root, run, rest, "--resume"), capsys)
    assert code == 0, err

    history = json.loads((run / "history.json").read_text(encoding="utf-8"))
    assert [r["epoch"] for r in history["pretrain"]] == list(range(1, done + 3))
    assert history["pretrain"][:done] == finished, "the finished epochs were trained again"
    assert [r["epoch"] for r in history["distill"]] == [1]
    assert load_weights(run / "weights.pt").provenance["epochs"] == {"pretrain": done + 2, "distill": 1}
    assert temporaries(run) == []


@pytest.mark.parametrize(
    ("phase", "carries"),
    [("distill", "object"), ("distill", "function"), ("pretrain", "object")],
    ids=["distill-object", "distill-function", "pretrain-object"],
)
def test_distill_refuses_a_checkpoint_carrying_a_pickled_callable_without_running_it(
    phase: str,
    carries: str,
    payload: tuple[RunsCommand, Path],
    training_root: Path,
    taught_run: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A checkpoint holding a pickled callable is refused in one sentence naming it; the code never runs."""
    evil, marker = payload
    run = copy_run(taught_run, tmp_path)
    checkpoint = run / "checkpoints" / f"{phase}.pt"
    checkpoint.parent.mkdir()
    hook = evil if carries == "object" else os.system
    torch.save({"format": "aed-training-checkpoint", "version": 2, "epoch": 1, "hook": hook}, checkpoint)

    settings = write_settings(tmp_path / "tiny.toml", size=SIZE)
    code, _, err = run_aed(distill_args(training_root, run, settings, "--resume"), capsys)

    assert_one_sentence(code, err, exit_code=1, names=checkpoint)
    assert not marker.exists(), "the checkpoint's code ran"
    assert checkpoint.is_file() and not (run / "weights.pt").exists()


def test_distill_refuses_a_teacher_target_carrying_a_pickled_object_without_running_it(
    payload: tuple[RunsCommand, Path],
    training_root: Path,
    taught_run: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A teacher target (.npz) holding a pickled object is refused in one sentence naming it."""
    evil, marker = payload
    run = copy_run(taught_run, tmp_path)
    target = run / "targets" / "objects" / "train" / "clip02.npz"
    poison_npz(target, "meta", evil)

    settings = write_settings(tmp_path / "tiny.toml", size=SIZE)
    code, _, err = run_aed(distill_args(training_root, run, settings), capsys)

    line = assert_one_sentence(code, err, exit_code=1, names=target)
    assert "teacher target" in line
    assert not marker.exists(), "the target's code ran"
    assert not (run / "weights.pt").exists() and not (run / "checkpoints" / "distill.pt").exists()


def test_teach_rebuilds_an_analysis_cache_carrying_a_pickled_object_without_running_it(
    payload: tuple[RunsCommand, Path],
    training_root: Path,
    taught_run: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A cached analysis file holding a pickled object is rebuilt as plain arrays; the code never runs."""
    evil, marker = payload
    run = copy_run(taught_run, tmp_path)
    cached = run / "teachers" / "cache" / "train" / "clip02.npz"
    with np.load(cached, allow_pickle=False) as z:
        before = {k: z[k] for k in z.files}
    poison_npz(cached, "motion", evil)
    # The analysis is read again only for a video still to be painted.
    targets = [run / "targets" / name / "train" / "clip02.npz" for name in ("motion", "objects")]
    for target in targets:
        target.unlink()

    settings = write_settings(tmp_path / "tiny.toml", size=SIZE)
    code, _, err = run_aed(teach_args(training_root, run, settings), capsys)

    assert code == 0, err
    assert "1 video(s) painted" in " ".join(err.split())  # the log line may wrap
    assert not marker.exists(), "the cache's code ran"
    assert_plain_npz(cached)
    with np.load(cached, allow_pickle=False) as z:
        assert sorted(z.files) == sorted(before)
        for key, array in before.items():
            assert np.array_equal(z[key], array), key
    assert all(t.is_file() for t in targets) and temporaries(run) == []


@pytest.mark.parametrize("short", ["free_disk_bytes", "available_memory_bytes"], ids=["disk", "memory"])
def test_distill_refuses_before_writing_anything_when_its_data_cannot_fit(
    short: str,
    training_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`aed distill` whose frame cache cannot fit on disk (or targets in memory) is refused in one sentence
    with both sizes, before it writes any target, cache, checkpoint or weights."""
    monkeypatch.setattr(budget, short, lambda *args: 10_000)
    needs: list[DistillBudget] = []

    def check(need: DistillBudget) -> DistillBudget:
        needs.append(need)
        return check_distill_budget(need)

    monkeypatch.setattr(training_run, "check_distill_budget", check)
    run = tmp_path / "run"
    settings = write_settings(tmp_path / "tiny.toml", size=SIZE)
    code, _, err = run_aed(distill_args(training_root, run, settings), capsys)

    [need] = needs
    if short == "free_disk_bytes":
        line = assert_one_sentence(code, err, exit_code=1, names=run / "cache")
        assert f"needs about {format_bytes(need.cache_bytes)} of disk" in line
    else:
        line = assert_one_sentence(code, err, exit_code=1, names="of memory")
        assert f"needs about {format_bytes(need.memory_bytes)} of memory" in line
    assert "only 10 kB" in line
    assert not run.exists(), f"a refused run wrote {files_in(run)}"


# ---------------------------------------------------------------------------------------------------------
# Disk and memory budget of `aed distill`


def test_budget_counts_the_frame_cache_on_disk_and_the_targets_in_memory(
    dataset: Dataset, tmp_path: Path
) -> None:
    spec = InputSpec(*SIZE, channels=1)
    need = estimate_distill_budget(dataset.train, spec, 2, tmp_path / "out", batch=4)
    frame_bytes = SIZE[0] * SIZE[1]
    assert need.frames == 30
    assert need.cache_dir == tmp_path / "out" / "cache" / f"frames_{SIZE_ARG}x1"
    assert need.cache_bytes == 3 * (10 * frame_bytes + 128)
    assert need.memory_bytes == 30 * 2 * 273 * 4 * 2 + 4 * 3 * frame_bytes * 5

    # A clip whose cache file is complete from an earlier run needs no more disk.
    need.cache_dir.mkdir(parents=True)
    np.save(need.cache_dir / "clip01.npy", np.zeros((10, *SIZE), np.uint8))
    again = estimate_distill_budget(dataset.train, spec, 2, tmp_path / "out", batch=4)
    assert again.cache_bytes == 2 * (10 * frame_bytes + 128)


def test_budget_counts_sped_up_copies_in_memory_only_and_every_local_process(
    dataset: Dataset, tmp_path: Path
) -> None:
    spec = InputSpec(*SIZE, channels=1)
    plain = estimate_distill_budget(dataset.train, spec, 2, tmp_path / "out", batch=4)
    fast = [sped_up(c, 2) for c in dataset.train]  # 3 clips of 5 frames
    more = estimate_distill_budget(dataset.train, spec, 2, tmp_path / "out", batch=4, extra=fast)
    assert more.frames == 30 + 15 and more.cache_bytes == plain.cache_bytes
    assert more.memory_bytes - plain.memory_bytes == 15 * 2 * 273 * 4 * 2
    four = estimate_distill_budget(dataset.train, spec, 2, tmp_path / "out", batch=4, processes=4)
    assert four.memory_bytes == 4 * plain.memory_bytes and four.cache_bytes == plain.cache_bytes


@pytest.mark.parametrize(
    ("patch", "says"),
    [
        ("free_disk_bytes", "needs about 46 kB of disk for its frame cache"),
        ("available_memory_bytes", "needs about 223 kB of memory for the teachers' targets of 30 frames"),
    ],
    ids=["disk", "memory"],
)
def test_budget_check_refuses_data_that_cannot_fit_in_one_sentence_with_both_sizes(
    patch: str, says: str, dataset: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(budget, patch, lambda *args: 10_000)
    spec = InputSpec(*SIZE, channels=1)
    need = estimate_distill_budget(dataset.train, spec, 2, tmp_path / "out", batch=4)
    with pytest.raises(AedError) as refused:
        check_distill_budget(need)
    line = str(refused.value)
    assert says in line and "10 kB" in line and "; " in line and line.endswith(".")
    if patch == "free_disk_bytes":
        assert str(tmp_path / "out" / "cache") in line and "lower --size" in line
    assert not (tmp_path / "out").exists()


def test_distill_budget_passes_when_memory_is_unknown_and_disk_suffices(
    dataset: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(budget, "available_memory_bytes", lambda *args: None)
    spec = InputSpec(*SIZE, channels=1)
    need = check_distill_budget(
        estimate_distill_budget(dataset.train, spec, 2, tmp_path / "not yet" / "out", batch=4)
    )
    assert need.cache_bytes > 0
    # Refused only when the need is above what is free: one byte short is enough to refuse.
    monkeypatch.setattr(budget, "free_disk_bytes", lambda *args: need.cache_bytes)
    check_distill_budget(estimate_distill_budget(dataset.train, spec, 2, tmp_path / "out", batch=4))
    monkeypatch.setattr(budget, "free_disk_bytes", lambda *args: need.cache_bytes - 1)
    with pytest.raises(AedError, match=r"needs about 46 kB of disk"):
        check_distill_budget(estimate_distill_budget(dataset.train, spec, 2, tmp_path / "out", batch=4))


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
# Numbers that would fail deep inside a run: refused up front


@pytest.mark.parametrize(
    ("command", "option", "value", "exit_code"),
    [
        ("detect", "--timeout", "nan", 2),
        ("detect", "--timeout", "-1", 2),
        ("detect", "--sigma", "nan", 2),
        ("detect", "--batch", "100000000", 1),
        ("eval", "--sigma", "inf", 2),
        ("eval", "--sigma", "nan", 2),
    ],
)
def test_impossible_numbers_are_refused_in_one_sentence_naming_the_option(
    command: str,
    option: str,
    value: str,
    exit_code: int,
    dataset: Dataset,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out"
    args: list[Any]
    if command == "detect":
        clip = write_video(tmp_path / "clip.mp4", n=4)
        args = ["detect", clip, "--weights", tiny_weights(tmp_path / "w.pt"), "--out", out]
        args += ["--runtime", "torch"]
    else:
        args = ["eval", "--dataset", "folder", "--root", dataset.root, "--weights", tmp_path / "w.pt"]
        args += ["--json", out / "eval.json"]
        tiny_weights(tmp_path / "w.pt", size=SIZE)

    code, _, err = run_aed([*args, option, value], capsys)

    # a batch too large to allocate is a failure of this machine (exit 1), not a usage error
    names = "out of memory" if exit_code == 1 else option
    assert_one_sentence(code, err, exit_code=exit_code, names=names)
    assert not out.exists()
