"""Print the Ped2 results tables of docs/results.md from the JSON reports of ``scripts/reproduce_ped2.sh``.

    python scripts/results_table.py runs/ped2/reports

Reads ``teacher-*.json``, ``teachers.json``, ``teachers-count.json``, ``flow-floor.json`` and
``student-*.json`` (written by ``aed eval --json``) and ``bench-*.json`` (``aed bench --json``); prints
Markdown tables with the protocol line the reports carry. Nothing here computes a metric: every number
comes from those files.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

TEACHER_ROWS = {
    "teacher-a": "teacher a (appearance-motion)",
    "teacher-b": "teacher b (multi-task 3D CNN)",
    "teacher-flow": "teacher flow (velocity density)",
    "teachers": "teachers a + b + flow (mean of scaled maps)",
    "flow-floor": "no-learning floor: 99th-percentile optical flow",
    "teacher-a-count": "teacher a, count-corrected (--frame-correction count)",
    "teacher-b-count": "teacher b, count-corrected",
    "teacher-flow-count": "teacher flow, count-corrected",
    "teachers-count": "teachers a + b + flow, count-corrected",
    "seed1-teacher-a": "teacher a, seed 1",
    "seed2-teacher-a": "teacher a, seed 2",
    "seed1-teacher-b": "teacher b, seed 1",
    "seed2-teacher-b": "teacher b, seed 2",
    "b-seeds3-teacher-b": "teacher b, mean of seeds 0-2 (--b-seeds 3)",
    "b-seeds3-teachers": "teachers a + b (--b-seeds 3) + flow",
    "teacher-a-a-tail-sum": "teacher a, rarities summed (--a-combine tail-sum)",
    "teacher-a-a-tail-max": "teacher a, largest rarity (--a-combine tail-max)",
    "teachers-a-tail-sum": "teachers a (tail-sum) + b + flow",
    "teachers-a-tail-max": "teachers a (tail-max) + b + flow",
    "teacher-a-new": "teacher a trained with today's defaults (tail-max)",
    "teachers-a-new": "teachers a (today's defaults) + b + flow",
    "teacher-a-rarity": "teacher a, rarity-scaled maps (--normalisation train-rarity)",
    "teacher-b-rarity": "teacher b, rarity-scaled maps",
    "teacher-flow-rarity": "teacher flow, rarity-scaled maps",
    "teachers-rarity": "teachers a + b + flow, rarity-scaled maps",
    "teacher-a-new-rarity": "teacher a trained with today's defaults, rarity-scaled",
    "teachers-a-new-rarity": "teachers a (today's defaults) + b + flow, rarity-scaled",
    "teacher-b-defaults-b3": "teacher b, mean of seeds 0-2 (--b-seeds 3), rarity-scaled",
    "teachers-defaults-b3": "teachers a (today's defaults) + b (--b-seeds 3) + flow, rarity-scaled",
    "teacher-b-b-tail-max": "teacher b, largest rarity (--b-combine tail-max), rarity-scaled",
    "teacher-b-b-tail-sum": "teacher b, rarities summed (--b-combine tail-sum), rarity-scaled",
    "teachers-b-tail-max": "teachers a (today's defaults) + b (tail-max) + flow, rarity-scaled",
    "teachers-b-tail-sum": "teachers a (today's defaults) + b (tail-sum) + flow, rarity-scaled",
    "teacher-b-b3-tail-max": "teacher b (--b-seeds 3), largest rarity, rarity-scaled",
    "teachers-b3-tail-max": "teachers a (today's defaults) + b (--b-seeds 3, tail-max) + flow, rarity-scaled",
    "teacher-a-b-tail-max-linear": "teacher a (today's defaults, trained afresh), scaled linearly",
    "teacher-b-b-tail-max-linear": "teacher b (earlier shipped network, tail-max), scaled linearly",
    "teacher-flow-b-tail-max-linear": "teacher flow (earlier shipped file), scaled linearly",
    "teachers-b-tail-max-linear": "teachers a + b + flow: today's defaults (b's earlier shipped network)",
    "teacher-b-today": "teacher b trained afresh with today's defaults",
    "teachers-today": "teachers a + b (afresh) + flow, today's defaults",
    "teacher-a-ped2-choices": "teacher a with Ped2's own choices (all five weights, count-corrected)",
    "teacher-b-ped2-choices": "teacher b with Ped2's own choices (--b-seeds 3, tail-max)",
    "teacher-flow-ped2-choices": "teacher flow with Ped2's own choices (context, count-corrected)",
    "teachers-ped2-choices": "teachers a + b + flow with Ped2's own choices (aed teach --choices)",
    "teacher-a-ped2-choices-r17": "teacher a with Ped2's choices over three draws (as the sixteenth round's)",
    "teacher-b-ped2-choices-r17": "teacher b with Ped2's choices over three draws (as the sixteenth round's)",
    "teacher-flow-ped2-choices-r17": "teacher flow with Ped2's choices over three draws (three-frame, count)",
    "teachers-ped2-choices-r17": "teachers a + b + flow with Ped2's choices over three draws",
    "teacher-a-ped2-choices-r18": "teacher a, Ped2's choices, scaled among objects of its size (train-size)",
    "teacher-b-ped2-choices-r18": "teacher b, Ped2's choices, scaled among objects of its size (train-size)",
    "teacher-flow-ped2-choices-r18": "teacher flow, Ped2's choices, scaled among objects of its size",
    "teachers-ped2-choices-r18": "teachers a + b + flow, Ped2's choices, scaled among objects of their size",
    "teacher-a-ped2-choices-r21": "teacher a, Ped2's choices with b's views (twenty-first round)",
    "teacher-b-ped2-choices-r21": "teacher b, Ped2's choices, time-reversed and mirrored views (--b-views)",
    "teacher-flow-ped2-choices-r21": "teacher flow, Ped2's choices with b's views (twenty-first round)",
    "teachers-ped2-choices-r21": "teachers a + b + flow, Ped2's choices with b's views (twenty-first round)",
    "teacher-a-shipped": "teacher a, shipped file and choices (weights/ped2-teachers)",
    "teacher-b-shipped": "teacher b, shipped file and choices (weights/ped2-teachers)",
    "teacher-flow-shipped": "teacher flow, shipped file and choices (weights/ped2-teachers)",
    "teachers-shipped": "teachers a + b + flow, shipped files and choices (weights/ped2-teachers)",
}


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def metric_row(name: str, report: dict[str, Any]) -> str:
    cells = [
        _pct(report.get("micro_auc")),
        _pct(report.get("macro_auc")),
        _pct(report.get("macro_auc_padded")),
        _pct(report.get("rbdc")),
        _pct(report.get("tbdc")),
    ]
    return f"| {name} | " + " | ".join(cells) + " |"


def metric_table(rows: list[tuple[str, dict[str, Any]]]) -> list[str]:
    out = [
        "| model | micro AUC | macro AUC (1-class = 1) | macro AUC (padded) | RBDC | TBDC |",
        "|---|---|---|---|---|---|",
    ]
    out += [metric_row(name, report) for name, report in rows]
    return out


def load(folder: Path, stem: str) -> dict[str, Any] | None:
    path = folder / f"{stem}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    folder = Path(argv[0])
    if not folder.is_dir():
        print(f"{folder} is not a folder of reports; run scripts/reproduce_ped2.sh first.", file=sys.stderr)
        return 1
    teachers = [(label, r) for stem, label in TEACHER_ROWS.items() if (r := load(folder, stem))]
    students = [
        (f"student `{p.stem.removeprefix('student-')}`", json.loads(p.read_text()))
        for p in sorted(folder.glob("student-*.json"))
    ]
    protocols = {r.get("protocol") for _, r in [*teachers, *students] if r.get("protocol")}
    if teachers:
        print("### Teachers\n")
        print("\n".join(metric_table(teachers)) + "\n")
    if students:
        print("### Students\n")
        print("\n".join(metric_table(students)) + "\n")
    for protocol in sorted(protocols):
        print(f"Protocol: {protocol}\n")
    benches = sorted(folder.glob("bench-*.json"))
    if benches:
        print("### Speed\n")
        print("| run | device | precision | batch | model-only fps | end-to-end fps |")
        print("|---|---|---|---|---|---|")
        for path in benches:
            b = json.loads(path.read_text())
            for batch, fps in b.get("fps_model", {}).items():
                e2e = b.get("fps_end_to_end")
                run = path.stem.removeprefix("bench-")
                print(
                    f"| {run} | {b.get('device')} | {b.get('precision')} | {batch} "
                    f"| {fps:,.1f} | {'-' if e2e is None else f'{e2e:,.1f}'} |"
                )
            if b.get("teachers_fps") is not None:
                print(
                    f"| {path.stem} teachers | cpu | - | - | {b['teachers_fps']:,.1f} (teachers) | "
                    f"speed-up {b.get('speedup_vs_teachers')} |"
                )
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
