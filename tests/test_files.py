"""Atomic output: a file appears whole or not at all, and killed writers' leftovers are cleaned up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from aedcli.files import atomic_path, remove_stale_temporaries, write_text_atomic


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def _dead_pid() -> int:
    """The PID of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_failed_write_leaves_neither_the_final_file_nor_a_temporary(tmp_path: Path) -> None:
    final = tmp_path / "scores.csv"
    with pytest.raises(RuntimeError), atomic_path(final) as tmp:
        tmp.write_text("frame,score\n")
        raise RuntimeError("interrupted")
    assert not final.exists() and _hidden(tmp_path) == []


def test_temporary_files_name_the_process_that_writes_them(tmp_path: Path) -> None:
    with atomic_path(tmp_path / "out [1].json") as tmp:
        assert tmp.name.startswith(".out [1].json.") and f"-{os.getpid()}." in tmp.name
        assert tmp.name.endswith(".tmp.json") and tmp.parent == tmp_path


def test_the_next_write_removes_what_a_killed_writer_left_but_not_a_live_writers_file(tmp_path: Path) -> None:
    final = tmp_path / "clip [a] é.npz"
    with atomic_path(final) as tmp:  # learn this host's naming from a real temporary file
        host = tmp.name[len(f".{final.name}.") :].split("-")[0]
    dead = tmp_path / f".{final.name}.{host}-{_dead_pid()}.abc123.tmp.npz"
    live = tmp_path / f".{final.name}.{host}-{os.getppid()}.def456.tmp.npz"  # a process that is running
    other_host = tmp_path / f".{final.name}.elsewhere{host}-{_dead_pid()}.ghi789.tmp.npz"
    other_file = tmp_path / f".other.npz.{host}-{_dead_pid()}.jkl012.tmp.npz"
    for path in (dead, live, other_host, other_file):
        path.write_bytes(b"partial")

    write_text_atomic(final, "done")

    assert final.read_text() == "done"
    assert not dead.exists()
    assert live.exists() and other_host.exists() and other_file.exists()
    assert remove_stale_temporaries(final) == []  # nothing more to remove
