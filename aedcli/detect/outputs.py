"""What ``aed detect`` writes per source: the score CSV, the summary JSON and the timeline plot.

:class:`ScoreCsv` is a sink (a context manager, like the video writer): rows stream in as frames are scored
and the file appears complete or not at all. Its columns: ``frame, time_s, score, score_smoothed,
abnormal, s_head, m_head_max, l_head_max`` (the head outputs of the teacher whose score is the frame's), and
``score_<teacher>`` for each teacher when the student learnt from several. Raw and smoothed scores are
written with ``repr`` (float64 round-trips), so the CSV holds the very numbers ``aed eval`` computes.

:func:`summary` builds the JSON record of a run; :data:`SCORE_MEANING` says in words what a score is,
scores above 1 included.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

import numpy as np

from aedcli.files import atomic_path
from aedcli.scoring import Event

CSV_COLUMNS = ("frame", "time_s", "score", "score_smoothed", "abnormal", "s_head", "m_head_max", "l_head_max")

SCORE_MEANING = (
    "A frame's score is the student's estimate of how far it is from the normal footage it learnt from: "
    "each teacher scales its maps so that a normal training frame's peak rarely passes 0.5 and the most "
    "unusual things it saw approach 1; the student's score is the largest over its teachers of "
    "(S + max M + max L) / 3. Scores are not probabilities. A score above 1 means the student found the "
    "frame more unusual than anything its teachers showed it during training (or that the footage is not "
    "like its training footage at all: see notes)."
)


@dataclass(frozen=True)
class ScoredFrame:
    """One frame's numbers as the CSV records them."""

    frame: int
    raw: float
    smoothed: float
    abnormal: bool
    heads: tuple[float, float, float]  # S, max M, max L of the teacher whose score is the frame's
    teachers: tuple[float, ...]  # each teacher's score (when there are several)


class ScoreCsv:
    """The score CSV of one source, written to a temporary file and renamed when the block succeeds."""

    def __init__(self, path: Path, fps: float, teachers: tuple[str, ...]) -> None:
        self.path = path
        self.fps = fps
        self.teachers = teachers if len(teachers) > 1 else ()
        self._atomic = atomic_path(path)
        self._file: TextIO | None = None
        self.temporary: Path | None = None

    def __enter__(self) -> ScoreCsv:
        self.temporary = self._atomic.__enter__()
        self._file = open(self.temporary, "w", encoding="utf-8", newline="")
        columns = [*CSV_COLUMNS, *(f"score_{t}" for t in self.teachers)]
        self._file.write(",".join(columns) + "\n")
        return self

    def write(self, rows: list[ScoredFrame]) -> None:
        assert self._file is not None
        lines = []
        for r in rows:
            extra = "".join(f",{v:.9g}" for v in r.teachers) if self.teachers else ""
            lines.append(
                f"{r.frame},{r.frame / self.fps:.4f},{r.raw!r},{r.smoothed!r},{int(r.abnormal)},"
                f"{r.heads[0]:.9g},{r.heads[1]:.9g},{r.heads[2]:.9g}{extra}\n"
            )
        self._file.writelines(lines)

    def finish(self) -> None:
        """Close the file (the rename happens at the end of the block)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.finish()
        self._atomic.__exit__(exc_type, exc, tb)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """``data`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def plot_timeline(
    csv_path: Path, png_path: Path, threshold: float, fps: float, events: list[Event], title: str
) -> None:
    """The whole score curve with events shaded and the threshold line, as a PNG (read back from the CSV).

    Titles may hold any script; matplotlib's bundled DejaVu Sans covers Latin, Greek and Cyrillic, and other
    characters are replaced rather than warned about."""
    import warnings

    from matplotlib.figure import Figure

    data = np.loadtxt(csv_path, delimiter=",", skiprows=1, usecols=(0, 2, 3), ndmin=2, encoding="utf-8")
    frames, raw, smoothed = data[:, 0], data[:, 1], data[:, 2]
    fig = Figure(figsize=(10, 3.2))
    ax = fig.add_subplot()
    for event in events:
        ax.axvspan(event.start_frame - 0.5, event.end_frame + 0.5, color="tab:red", alpha=0.18, linewidth=0)
    if events:
        ax.plot([], [], color="tab:red", alpha=0.35, linewidth=6, label=f"abnormal events ({len(events)})")
    ax.plot(frames, raw, color="0.6", linewidth=0.7, label="raw score")
    ax.plot(frames, smoothed, color="tab:blue", linewidth=1.5, label="smoothed score")
    ax.axhline(
        threshold, color="tab:orange", linestyle="--", linewidth=1.0, label=f"threshold {threshold:.3g}"
    )
    ax.set_xlim(-0.5, max(len(frames) - 0.5, 0.5))
    ax.set_xlabel("frame")
    ax.set_ylabel("anomaly score")
    top = ax.secondary_xaxis("top", functions=(lambda f: f / fps, lambda s: s * fps))
    top.set_xlabel("seconds")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="best", fontsize=7, framealpha=0.8)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        fig.tight_layout()
        with atomic_path(png_path) as tmp:
            fig.savefig(tmp, format="png", dpi=100)


def is_brief(value: Any, limit: int = 8) -> bool:
    """Whether a provenance value is short enough for the summary: a scalar, or a few scalars."""
    scalar = (str, int, float, bool, type(None))
    if isinstance(value, scalar):
        return True
    if isinstance(value, list):
        return len(value) <= limit and all(isinstance(v, scalar) for v in value)
    if isinstance(value, dict):
        return len(value) <= limit and all(isinstance(v, scalar) for v in value.values())
    return False
