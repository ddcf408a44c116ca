"""Atomic file output: every file ``aed`` writes appears complete or not at all.

Writers get a temporary path beside the final one (same folder, so the rename is atomic on POSIX);
on success it is renamed over the final path, on any exception it is deleted. A process killed outright
(``kill -9``, power loss) cannot delete its temporary file: the name says which host and process wrote it
(``.NAME.HOST-PID.XXXX.tmp.EXT``), and the next successful write of the same final name removes those whose
process is gone.

>>> with atomic_path(Path("scores.csv")) as tmp:
...     tmp.write_text("frame,score\\n")
"""

from __future__ import annotations

import glob
import json
import os
import re
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np


@contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temporary path that becomes ``final`` when the block ends without an exception."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{final.name}.{_HOST}-{os.getpid()}."
    fd, tmp_name = tempfile.mkstemp(prefix=prefix, suffix=".tmp" + final.suffix, dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp creates 0600 files; give the result the permissions a plain open() would have.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    remove_stale_temporaries(final)


_HOST = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname()) or "host"


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # it exists but belongs to someone else
        return False
    return False


def remove_stale_temporaries(final: str | Path) -> list[Path]:
    """Delete the temporary files of ``final`` left by killed writers on this host; returns what went.

    Only files whose writer process no longer exists are touched, so a concurrent writer (another process
    on this host, or any process on another host sharing the folder) keeps its file.
    """
    final = Path(final)
    pattern = glob.escape(str(final.parent / f".{final.name}.")) + "*.tmp" + glob.escape(final.suffix)
    owner = re.compile(re.escape(f".{final.name}.{_HOST}-") + r"(\d+)\.")
    removed = []
    for name in glob.glob(pattern):
        match = owner.match(Path(name).name)
        if match and int(match.group(1)) != os.getpid() and _process_gone(int(match.group(1))):
            Path(name).unlink(missing_ok=True)
            removed.append(Path(name))
    return removed


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def save_npz_atomic(path: str | Path, **arrays: Any) -> None:
    """Save arrays to a compressed ``.npz`` atomically (``np.savez`` would append ``.npz`` to a temp name)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
