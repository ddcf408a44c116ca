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
    assert "| student `cpu-flow-mix-240` | 91.2 | 96.4 | 96.7 | 67.5 | 89.9 |" in out
    assert "| 91.2 | 96.4 / 96.7 | 67.5 | 89.9 |" in readme
    assert "| student `cpu-abf-kd-240` | 90.4 | 98.3 | 98.4 | 60.0 | 93.6 |" in out
    assert "| 90.4 | 98.3 / 98.4 | 60.0 | 93.6 |" in readme
    assert "| student `cpu-abf-mix-240` | 93.6 | 98.8 | 98.8 | 74.1 | 98.4 |" in out
    assert "| 93.6 | 98.8 / 98.8 | 74.1 | 98.4 |" in readme
    assert "| student `cpu-flow-kd-240-v1` | 88.6 | 94.5 | 95.2 | 54.9 | 83.6 |" in out
    assert "| 88.6 | 94.5 / 95.2 | 54.9 | 83.6 |" in readme
    assert "| teacher flow (velocity density) | 95.1 | 97.7 / 97.7 | 77.4 | 98.7 |" in readme
    assert "| teacher flow (velocity density) | 95.1 | 97.7 | 97.7 | 77.4 | 98.7 |" in out
    assert "| teachers a + b + flow (mean) | 93.2 | 97.2 / 97.3 | 73.3 | 96.0 |" in readme
    assert "| teachers a + b + flow (mean of scaled maps) | 93.2 | 97.2 | 97.3 | 73.3 | 96.0 |" in out
    assert "Protocol: ped2 test, all 2,010 frames" in out


def test_results_table_explains_a_missing_folder(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "results_table.py"), str(tmp_path / "none")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1 and "reproduce_ped2.sh" in result.stderr
