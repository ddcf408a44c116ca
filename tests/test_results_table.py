"""The results tables are printed from the committed JSON reports, not typed by hand."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_results_table_reprints_the_readme_rows_from_the_committed_reports() -> None:
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "results_table.py"),
            str(ROOT / "docs" / "results" / "reports"),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    readme = (ROOT / "README.md").read_text()
    assert "| student `main` | 63.4 | 89.3 | 89.6 | 12.3 | 41.5 |" in out
    assert "| student `cpu-flow-kd-240` | 82.6 | 92.0 | 92.5 | 46.0 | 66.3 |" in out
    assert "| 82.6 | 92.0 / 92.5 | 46.0 | 66.3 |" in readme
    assert "| student `cpu-flow-mix-240-s1` | 91.5 | 97.0 | 97.2 | 69.2 | 90.1 |" in out
    assert "| 91.5 | 97.0 / 97.2 | 69.2 | 90.1 |" in readme
    assert "| student `cpu-abf-mix-240-s1` | 94.8 | 99.8 | 99.8 | 75.2 | 98.1 |" in out
    assert "| student `cpu-flow-mix-240-s2` | 90.0 | 97.5 | 97.6 | 66.6 | 80.9 |" in out
    assert "| 90.0 | 97.5 / 97.6 | 66.6 | 80.9 |" in readme
    assert "| student `cpu-abf-mix-240-s3` | 93.5 | 99.1 | 99.1 | 75.6 | 92.9 |" in out
    assert "| student `cpu-abf-mix-240-s4` | 93.1 | 99.5 | 99.5 | 74.0 | 93.5 |" in out
    assert "| 93.1 | 99.5 / 99.5 | 74.0 | 93.5 |" in readme
    assert "| student `cpu-abf-mix-240-s4-e35` | 92.6 | 98.8 | 98.9 | 73.4 | 97.3 |" in out
    assert "(`cpu-abf-mix-240-s4-e35`: fastaed-xs" in readme
    assert "| student `cpu-abf-r19-mix-240-s4-35` | 95.3 | 99.1 | 99.2 | 79.1 | 95.0 |" in out
    assert "(`cpu-abf-r19-mix-240-s4-35`: fastaed-xs" in readme
    assert "| **95.3** | **99.1 / 99.2** | 79.1 | 95.0 |" in readme
    shipped = "| teachers a + b + flow, shipped files and choices (weights/ped2-teachers) |"
    assert f"{shipped} 95.9 | 97.8 | 97.9 | 77.8 | 97.8 |" in out
    assert "| teacher b, shipped file and choices (weights/ped2-teachers) | 91.3 | 95.0 | 95.2 |" in out
    assert "| teacher b, Ped2's choices, scaled among objects of its size (train-size) | 88.8 | 93.2 |" in out
    views = "| teacher b, Ped2's choices, time-reversed and mirrored views (--b-views) |"
    assert f"{views} 91.3 | 95.0 | 95.2 | 54.0 | 90.1 |" in out
    assert (
        "| 90.5 / **91.3** / 95.6 | 93.2 / 95.0 / 97.3 (1-class) | 65.6 / 54.0 / 79.1 | 84.1 / 90.1 / 99.1 |"
        in readme
    )
    assert "| 92.6 | 98.8 / 98.9 | 73.4 | 97.3 |" in readme
    assert "| student `cpu-abf-mix-240-soup` | 91.2 | 98.4 | 98.4 | 58.9 | 86.6 |" in out
    assert "| 91.2 | 98.4 / 98.4 | 58.9 | 86.6 |" in readme
    assert "| 94.8 | 99.8 / 99.8 | 75.2 | 98.1 |" in readme
    assert "| student `cpu-abf-r16-mix-240-s4` | 92.8 | 99.6 | 99.6 | 73.7 | 90.1 |" in out
    assert "| 92.8 | 99.6 / 99.6 | 73.7 | 90.1 |" in readme
    own = "| teachers a + b + flow with Ped2's own choices (aed teach --choices) |"
    assert f"{own} 93.7 | 97.6 | 97.7 | 73.9 | 95.5 |" in out
    assert "| teachers a + b + flow with Ped2's own choices | 93.7 | 97.6 / 97.7 | 73.9 | 95.5 |" in readme
    three = "| teachers a + b + flow with Ped2's choices over three draws |"
    assert f"{three} 93.6 | 97.5 | 97.5 | 73.7 | 94.8 |" in out
    assert f"{three} 93.6 | 97.5 / 97.5 | 73.7 | 94.8 |" in readme
    assert "| teacher flow with Ped2's choices over three draws (three-frame, count) | 95.4 | 97.5 |" in out
    sized = "| teachers a + b + flow, Ped2's choices, scaled among objects of their size |"
    assert f"{sized} 95.8 | 97.8 | 97.9 | 76.9 | 97.9 |" in out
    assert (
        "| teachers a + b + flow with those choices, size-scaled | 95.8 | 97.8 / 97.9 | 76.9 | 97.9 |"
        in readme
    )
    assert (
        "| 90.5 / 88.8 / 95.6 | 93.2 / 93.2 / 97.3 (1-class) | 65.6 / 50.6 / 79.1 | 84.1 / 92.3 / 99.1 |"
        in readme
    )
    assert "| student `cpu-abf-r17-mix-240-s4` | 92.9 | 99.3 | 99.4 | 74.5 | 94.1 |" in out
    assert "| student `cpu-abf-r18-mix-240-s4` | 95.4 | 98.7 | 98.8 | 80.4 | 94.7 |" in out
    assert "| 95.4 | 98.7 / 98.8 | 80.4 | 94.7 |" in readme
    assert "| 92.9 | 99.3 / 99.4 | 74.5 | 94.1 |" in readme
    assert "| student `cpu-abf-mix-240` | 93.6 | 98.8 | 98.8 | 74.1 | 98.4 |" in out
    assert "| teachers a + b + flow, count-corrected | 92.7 | 96.9 | 97.0 | 73.6 | 95.7 |" in out
    assert "| 92.7 | 96.9 / 97.0 | 73.6 | 95.7 |" in readme
    assert "| teacher b, mean of seeds 0-2 (--b-seeds 3) | 91.4 | 98.1 | 98.1 | 60.7 | 91.1 |" in out
    assert "| 91.4 | 98.1 / 98.1 | 60.7 | 91.1 |" in readme
    assert "| teachers a + b (--b-seeds 3) + flow | 94.4 | 97.8 | 97.9 | 75.8 | 96.8 |" in out
    assert "| 94.4 | 97.8 / 97.9 | 75.8 | 96.8 |" in readme
    assert "| student `cpu-abf3-mix-240-s4` | 92.6 | 99.7 | 99.7 | 74.0 | 94.0 |" in out
    assert "| teacher a, largest rarity (--a-combine tail-max) | 86.5 | 90.7 | 91.0 | 63.2 | 82.3 |" in out
    assert "| 86.5 | 90.7 / 91.0 | 63.2 | 82.3 |" in readme
    assert "| teachers a (tail-sum) + b + flow | 93.4 | 97.3 | 97.4 | 73.2 | 95.6 |" in out
    assert "| teacher a trained with today's defaults (tail-max) | 88.9 | 93.2 | 93.4 | 64.5 | 84.0 |" in out
    assert "| 88.9 | 93.2 / 93.4 | 64.5 | 84.0 |" in readme
    assert "| teachers a + b + flow, rarity-scaled maps | 94.1 | 97.7 | 97.7 | 76.0 | 96.9 |" in out
    assert "| 94.1 | 97.7 / 97.7 | 76.0 | 96.9 |" in readme
    assert "| teachers a (today's defaults) + b + flow, rarity-scaled | 94.2 | 97.9 | 97.9 |" in out
    assert "| 94.2 | 97.9 / 97.9 | 76.4 | 96.1 |" in readme
    assert "| student `cpu-abf-defaults-mix-240-s4` | 92.4 | 99.8 | 99.8 | 72.6 | 92.7 |" in out
    assert "| 92.4 | 99.8 / 99.8 | 72.6 | 92.7 |" in readme
    assert "| 95.2 | 98.2 / 98.3 | 78.0 | 96.7 |" in readme
    assert "| teacher b, largest rarity (--b-combine tail-max), rarity-scaled | 88.7 | 93.8 | 94.0 |" in out
    assert "| 88.7 | 93.8 / 94.0 | 49.6 | 86.5 |" in readme
    assert "| teachers a (today's defaults) + b (tail-max) + flow, rarity-scaled | 91.4 | 97.0 |" in out
    assert "| 91.4 | 97.0 / 97.1 | 65.2 | 90.7 |" in readme
    assert "| teachers a + b + flow: today's defaults (b's earlier shipped network) | 93.3 | 97.4 |" in out
    assert "| 93.3 | 97.4 / 97.5 | 72.3 | 94.4 |" in readme
    assert "| teachers a + b (afresh) + flow, today's defaults | 93.1 | 97.3 | 97.4 | 72.2 | 94.5 |" in out
    assert "| 92.6 | 99.7 / 99.7 | 74.0 | 94.0 |" in readme
