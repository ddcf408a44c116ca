"""Helpers of the robustness suite: tiny media and weights made on the fly, and `aed` run as a user runs it.

Every input is generated in the test's own folder (64x48, a dozen frames; 32x48 and 50 frames a clip for
training), so the suite needs no data and stays fast. :func:`assert_one_sentence` is the contract every
refusal is held to: the documented exit code, no traceback, and exactly one line on stderr that names the
file and says what to do.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from aedcli.cli.app import main
from aedcli.files import atomic_path
from aedcli.model.inputs import InputSpec
from aedcli.model.student import Student, student_config
from aedcli.model.weights import Domain, NormalRange, save_weights
from aedcli.scoring import Threshold

W, H = 64, 48
SHIPPED_WEIGHTS = Path(__file__).resolve().parent.parent / "weights" / "ped2.pt"


def frame(i: int, size: tuple[int, int] = (H, W)) -> np.ndarray:
    """Frame i (H, W, 3) BGR: colour noise and a bright square that moves 3 px per frame."""
    h, w = size
    picture = np.random.default_rng(i).integers(20, 90, (h, w, 3), dtype=np.uint8)
    side = max(1, min(h, w) // 4)
    x = (3 * i) % max(1, w - side)
    picture[h // 3 : h // 3 + side, x : x + side] = (230, 180, 120)
    return picture


def write_video(
    path: Path, n: int = 12, size: tuple[int, int] = (H, W), fourcc: str = "mp4v", fps: float = 25.0
) -> Path:
    """A colour video of ``n`` frames of :func:`frame`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (size[1], size[0]))
    assert writer.isOpened(), f"OpenCV cannot write {path}"
    for i in range(n):
        writer.write(frame(i, size))
    writer.release()
    return path


def write_frames(folder: Path, n: int = 12, size: tuple[int, int] = (H, W), *, gray: bool = True) -> Path:
    """A folder of PNG frames ``0001.png ...`` of :func:`frame`, gray or BGR (PNG is lossless)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        picture = frame(i, size)
        if gray:
            picture = cv2.cvtColor(picture, cv2.COLOR_BGR2GRAY)
        assert cv2.imwrite(str(folder / f"{i + 1:04d}.png"), picture)
    return folder


def faststart(mp4: Path, dst: Path) -> Path:
    """``mp4`` with its index (``moov``) moved before the frame data, as streaming tools write it.

    OpenCV writes the index last, so any cut removes it; with the index first, a cut keeps the frames before
    it decodable. The chunk offsets (``stco``) move by the size of the index.
    """
    data = mp4.read_bytes()
    boxes: list[tuple[bytes, bytes]] = []
    i = 0
    while i < len(data):
        size, kind = struct.unpack(">I4s", data[i : i + 8])
        boxes.append((kind, data[i : i + size]))
        i += size
    moov = bytearray(dict(boxes)[b"moov"])
    at = moov.find(b"stco")
    while at != -1:
        (count,) = struct.unpack(">I", moov[at + 8 : at + 12])
        for e in range(count):
            o = at + 12 + 4 * e
            moov[o : o + 4] = struct.pack(">I", struct.unpack(">I", moov[o : o + 4])[0] + len(moov))
        at = moov.find(b"stco", at + 4)
    assert boxes[0][0] == b"ftyp"
    dst.write_bytes(boxes[0][1] + bytes(moov) + b"".join(b for k, b in boxes[1:] if k != b"moov"))
    return dst


def tiny_weights(
    path: Path,
    *,
    channels: int = 1,
    size: tuple[int, int] = (H, W),
    threshold: float = 0.3,
    normal: NormalRange | None = None,
    domain: Domain | None = None,
) -> Path:
    """A random-init fastaed-xs student for ``channels`` (1 gray, 3 colour) frames, with a threshold (and,
    when given, the normal score range and footage it fits)."""
    torch.manual_seed(0)
    spec = InputSpec(height=size[0], width=size[1], channels=channels)
    model = Student(student_config("fastaed-xs", in_channels=spec.in_channels))
    thr = Threshold(value=threshold, sigma=2.0, percentile=99.0, source="test threshold")
    return save_weights(
        path, model, spec, sigma=2.0, threshold=thr, normal=normal, domain=domain, variant="fastaed-xs"
    )


def run_aed(args: list[str | Path], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run ``aed`` in this process as the console script does; returns (exit code, stdout, stderr)."""
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def aed_command(*args: str | Path) -> list[str]:
    """``python -m aedcli ARGS``: the command line a user types, for a separate process."""
    return [sys.executable, "-m", "aedcli", *(str(a) for a in args)]


def aed_env() -> dict[str, str]:
    """The environment of a separate ``aed`` process: a shell's, with one thread (the machine is small and
    shared). OpenCV settings that in-process runs of ``aed`` left in this process's environment are dropped,
    so the process quiets OpenCV itself, as it must from a user's shell."""
    shell = {k: v for k, v in os.environ.items() if not k.startswith("OPENCV_")}
    return shell | {"OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def run_aed_process(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``aed`` in a separate process, as from a shell; the output includes what OpenCV/FFmpeg print."""
    return subprocess.run(
        aed_command(*args), capture_output=True, text=True, timeout=timeout, env=aed_env(), check=False
    )


def assert_one_sentence(code: int, err: str, *, exit_code: int, names: str | Path) -> str:
    """The refusal contract: ``exit_code``, no traceback, one ``error:`` line naming ``names`` with a fix."""
    assert "Traceback" not in err, err
    assert code == exit_code, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    line = lines[0]
    assert line.startswith("error: "), line
    assert str(names) in line, f"{names} is not named in: {line}"
    # "<problem>; <what to do>." - or, for an option, "--x must be <what it accepts>, not <value>."
    problem, sep, fix = line.partition("; ")
    says_what_to_do = (sep and problem and fix) or " must be " in line
    assert says_what_to_do and line.rstrip().endswith("."), f"no fix in: {line}"
    return line


def files_in(folder: Path) -> list[Path]:
    """Every file under ``folder`` (hidden ones included), sorted."""
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def write_frame_dataset(
    root: Path, clips: int = 3, frames: int = 10, size: tuple[int, int] = (32, 48), seed: int = 0
) -> Path:
    """A gray folder dataset of ``clips`` training clips (PNG frame folders ``train/clip01/0001.png``...):
    a bright square moving over noise. Returns ``root``."""
    rng = np.random.default_rng(seed)
    h, w = size
    for c in range(clips):
        folder = root / "train" / f"clip{c + 1:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        x, y = int(rng.integers(0, w - 8)), int(rng.integers(0, h - 8))
        vx, vy = int(rng.integers(1, 4)), int(rng.integers(-1, 2))
        for t in range(frames):
            picture = rng.integers(40, 80, size=(h, w), dtype=np.uint8)
            px, py = (x + vx * t) % (w - 8), (y + vy * t) % (h - 8)
            picture[py : py + 8, px : px + 8] = 220
            assert cv2.imwrite(str(folder / f"{t + 1:04d}.png"), picture)
    return root


def write_training_dataset(
    root: Path, clips: int = 3, frames: int = 50, size: tuple[int, int] = (32, 48), seed: int = 0
) -> Path:
    """A gray folder dataset to train on (``train/clip01/0001.png``...): a square crossing a still textured
    background, a pixel a frame, so the teachers find one moving object. Returns ``root``."""
    rng = np.random.default_rng(seed)
    h, w = size
    background = cv2.GaussianBlur(rng.integers(40, 110, (h, w)).astype(np.uint8), (3, 3), 0)
    for c in range(clips):
        folder = root / "train" / f"clip{c + 1:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        y = int(rng.integers(4, h - 12))
        for t in range(frames):
            picture = background.copy()
            x = min(2 + c + t, w - 8)
            picture[y : y + 8, x : x + 8] = 200 + (t % 3) * 10
            assert cv2.imwrite(str(folder / f"{t + 1:04d}.png"), picture)
    return root


def write_settings(
    path: Path, *, size: tuple[int, int] = (32, 48), pretrain_epochs: int = 1, epochs: int = 1
) -> Path:
    """A settings file (``--config``) for seconds of training: the smallest student, a small batch."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"[training]\nvariant = 'fastaed-xxs'\nsize = [{size[0]}, {size[1]}]\nbatch = 4\nbn_batches = 2\n"
        f"pretrain_epochs = {pretrain_epochs}\nepochs = {epochs}\nepoch_steps = 4\n"
        "[teachers]\nheight_sample = 20\n",
        encoding="utf-8",
    )
    return path


def stale_temporary(final: Path, pid: int) -> Path:
    """Create the temporary file a writer process ``pid`` of ``final`` on this host leaves when it is killed
    (named as :func:`aedcli.files.atomic_path` names it, holding a partial write)."""
    with tempfile.TemporaryDirectory() as scratch, atomic_path(Path(scratch) / "probe") as probe:
        host = probe.name[len(".probe.") :].split("-", 1)[0]  # host names are kept alphanumeric
    path = final.parent / f".{final.name}.{host}-{pid}.k1ll3d.tmp{final.suffix}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"PK\x03\x04 partial")
    return path
