"""Apply a shipping rule to finished student runs, from what their weights record (never from test data).

Each candidate is a weights file written by ``aed distill`` with held-out videos. Its provenance holds the
validation figures of the written epoch: ``val_auc`` and ``val_auc_box`` (the pseudo-anomaly probe with
grid-cell and with object-box pastes, :mod:`aedcli.probe`), ``val_kd`` and ``val_kd_constant``. The rules:

- ``val-auc-box``: the highest ``val_auc_box`` rounded to 3 decimals; a tie goes to the higher ``val_auc``
  (3 decimals), then to the lower L_KD ratio.
- ``val-auc``: the highest ``val_auc`` rounded to 3 decimals; a tie goes to the lower L_KD ratio.
- ``val-kd``: the lowest validation L_KD / constant answer (the rule of the earlier CPU runs).
- ``soup``: the first file is a soup of the others (``aed soup``, their weights averaged). It wins when its
  validation L_KD is below the mean of theirs, i.e. averaging did not land between the members' minima;
  otherwise the member with the lowest L_KD ratio wins.

    python scripts/pick_student.py --rule val-auc-box runs/ped2/cpu-*-s2/weights.pt
    python scripts/pick_student.py --rule soup runs/ped2/soup/weights.pt runs/ped2/member-*/weights.pt

prints one row per candidate and the winner's path on the last line, so a script can copy it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from aedcli.weights import load_weights

RULES = ("val-auc-box", "val-auc", "val-kd", "soup")


def candidate(path: Path) -> dict[str, Any]:
    """The figures the rules read, from one weights file's provenance."""
    metrics = load_weights(path).provenance.get("metrics", {})
    if "val_kd" not in metrics or "val_kd_constant" not in metrics:
        raise SystemExit(f"{path} records no validation L_KD; it was trained without held-out videos.")
    return {
        "path": path,
        "val_auc": metrics.get("val_auc"),
        "val_auc_box": metrics.get("val_auc_box"),
        "val_kd": metrics["val_kd"],
        "ratio": metrics["val_kd"] / metrics["val_kd_constant"],
    }


def pick(candidates: list[dict[str, Any]], rule: str) -> dict[str, Any]:
    """The winner of ``rule`` among ``candidates`` (dicts with ``val_auc``, ``val_auc_box``, ``val_kd`` and
    ``ratio``); with ``soup`` the first candidate is the soup and the rest its members."""
    if rule == "soup":
        if len(candidates) < 3:
            raise SystemExit("--rule soup needs the soup and at least two of its members.")
        soup, members = candidates[0], candidates[1:]
        mean = sum(c["val_kd"] for c in members) / len(members)
        return soup if soup["val_kd"] < mean else min(members, key=lambda c: c["ratio"])
    if rule == "val-kd":
        return min(candidates, key=lambda c: c["ratio"])
    keys = ("val_auc_box", "val_auc") if rule == "val-auc-box" else ("val_auc",)
    missing = [str(c["path"]) for c in candidates for k in keys if c[k] is None]
    if missing:
        raise SystemExit(
            f"{missing[0]} records no {keys[0]}; it was trained without --speedups or before that "
            "probe existed."
        )
    return min(candidates, key=lambda c: (*(-round(c[k], 3) for k in keys), c["ratio"]))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", nargs="+", type=Path, help="the candidates' weights files")
    parser.add_argument("--rule", choices=RULES, default="val-auc")
    args = parser.parse_args(argv)
    candidates = [candidate(p) for p in args.weights]
    winner = pick(candidates, args.rule)
    for c in candidates:
        aucs = "  ".join(
            f"{k} " + ("-" if c[k] is None else f"{c[k]:.4f}") for k in ("val_auc_box", "val_auc")
        )
        mark = "  <- chosen" if c is winner else ""
        print(f"{c['path']}  {aucs}  val L_KD / constant {c['ratio']:.4f}{mark}")
    print(winner["path"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
