"""Will a training run fit? A plain, early refusal when the disk or memory it needs is clearly not there.

``aed distill`` keeps two kinds of training data (:mod:`aedcli.training.run`):

- the **frame cache**: every training frame, prepared at the student's input size, as uint8 ``.npy`` files
  under ``OUT/cache/frames_HxWxC/``. Training memory-maps them, so they take disk, not memory;
- the **teachers' targets** of every training frame, read into memory as float32: ``1 + 4x4 + 16x16 = 273``
  values per frame and teacher, held about twice while they are assembled, plus one batch of input. Sped-up
  views add their frames' targets, not cache (they are read from the normal-speed cache); magnified views
  add both.
  Under ``torchrun`` every process on a host holds its own copy, so the memory is counted once per local
  process (``LOCAL_WORLD_SIZE``).

:func:`estimate_distill_budget` estimates both before the run writes anything, and
:func:`check_distill_budget` raises :class:`~aedcli.errors.AedError` with the numbers when an estimate
exceeds what is free. The estimates count
only that data (no model, optimiser or Python overhead), so a refusal means the run could not have finished;
a run that passes can still run short when the margin is thin. Cache files already complete from an earlier
run are not counted again. Memory is checked where the system says what is available (``MemAvailable`` of
``/proc/meminfo`` on Linux) and skipped elsewhere.

>>> need = estimate_distill_budget(dataset.train, InputSpec(160, 240, 1), 2, Path("runs/ped2"), batch=16)
>>> check_distill_budget(need)
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from aedcli.data.clips import Clip
from aedcli.errors import AedError
from aedcli.model.inputs import InputSpec

TARGET_VALUES_PER_FRAME = 1 + 4 * 4 + 16 * 16
"""Float32 target values per frame and teacher: the 1x1, 4x4 and 16x16 maps."""

TARGET_COPIES = 2
"""The targets are held about twice at their peak: per clip, then concatenated (``distill.read_targets``)."""

MEMINFO = Path("/proc/meminfo")


@dataclass(frozen=True)
class DistillBudget:
    """What a distillation run needs, in bytes, and where its frame cache goes."""

    frames: int
    cache_dir: Path
    cache_bytes: int  # frame cache still to be written (complete files from an earlier run excluded)
    memory_bytes: int  # targets of every training frame plus one batch of input
    size: str = ""  # the input size, HxW, and what the memory is for: for the messages
    teachers: int = 1
    batch: int = 1
    processes: int = 1


def frame_cache_dir(out_dir: Path, spec: InputSpec) -> Path:
    """``OUT/cache/frames_HxWxC``: where ``aed distill`` caches the prepared training frames for ``spec``."""
    return Path(out_dir) / "cache" / f"frames_{spec.height}x{spec.width}x{spec.channels}"


def estimate_distill_budget(
    clips: Sequence[Clip],
    spec: InputSpec,
    teachers: int,
    out_dir: Path,
    *,
    batch: int,
    extra: Sequence[Clip] = (),
    processes: int = 1,
) -> DistillBudget:
    """The disk and memory a distillation run over ``clips`` needs for its data (see the module docstring).

    ``extra``: views of the clips (pseudo-anomalies), which have targets and, when magnified, a cache of
    their own; ``processes``: training processes on this host, each holding the targets.
    """
    cache_dir = frame_cache_dir(out_dir, spec)
    frame_bytes = spec.height * spec.width * spec.channels  # uint8
    frames = sum(int(c.frame_count) for c in [*clips, *extra])
    cache = 0
    for clip in clips:
        data = int(clip.frame_count) * frame_bytes
        done = cache_dir / f"{clip.name}.npy"
        if not (done.is_file() and done.stat().st_size >= data):
            cache += data + 128  # an .npy header is 128 bytes for these shapes
    cache += sum(int(c.frame_count) * c.step * frame_bytes for c in extra if c.zoom != 1.0)
    targets = frames * max(teachers, 1) * TARGET_VALUES_PER_FRAME * 4 * TARGET_COPIES
    batch_input = batch * 3 * frame_bytes * (1 + 4)  # the uint8 stacks and their float32 tensor
    memory = (targets + batch_input) * max(processes, 1)
    size = f"{spec.height}x{spec.width}"
    return DistillBudget(frames, cache_dir, cache, memory, size, teachers, batch, max(processes, 1))


def free_disk_bytes(path: Path) -> int:
    """Free bytes on the file system that holds ``path`` (or would: its nearest existing parent)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def available_memory_bytes(meminfo: Path = MEMINFO) -> int | None:
    """Memory available to a new process (``MemAvailable``), or ``None`` where the system does not say."""
    try:
        text = meminfo.read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "MemAvailable":
            parts = value.split()
            if parts and parts[0].isdigit():
                unit = parts[1].lower() if len(parts) > 1 else "b"
                return int(parts[0]) * {"kb": 1024, "mb": 1024**2, "gb": 1024**3}.get(unit, 1)
    return None


def check_distill_budget(need: DistillBudget) -> DistillBudget:
    """Raise :class:`AedError` when the frame cache of ``need`` (:func:`estimate_distill_budget`) cannot fit
    on disk or its targets in memory; returns ``need`` when both fit (or memory is unknown).
    """
    free = free_disk_bytes(need.cache_dir)
    if need.cache_bytes > free:
        raise AedError(
            f"distillation needs about {format_bytes(need.cache_bytes)} of disk for its frame cache in "
            f"{need.cache_dir} ({need.frames:,} frames at {need.size}) but only {format_bytes(free)} is free "
            "there; lower --size, free some space or choose another --out."
        )
    available = available_memory_bytes()
    if available is not None and need.memory_bytes > available:
        hosts = f", for each of {need.processes} processes on this host" if need.processes > 1 else ""
        raise AedError(
            f"distillation needs about {format_bytes(need.memory_bytes)} of memory for the teachers' "
            f"targets of {need.frames:,} frames ({need.teachers} teacher(s)) and a batch of {need.batch} at "
            f"{need.size}{hosts}, but only {format_bytes(available)} is available; use fewer --teachers, "
            "--speedups or processes, or a smaller --batch, or free some memory."
        )
    return need


def format_bytes(n: int) -> str:
    """``3.2 GB``, ``450 MB``, ``12 kB`` (decimal units, as disk sizes are sold)."""
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= scale:
            value = n / scale
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{n} bytes"
