"""Evaluate an output ensemble: the mean of several students' raw frame scores on a dataset's test videos.

    python scripts/ensemble_eval.py runs/ped2/s4/weights.pt runs/ped2/s5/weights.pt \\
        --dataset ped2 --root ~/data/ped2 --sigma 3 --json runs/ped2/reports/ensemble.json

A reference for a weight soup (``aed soup``): an ensemble runs every member on every frame, so it costs N
students' time where a soup costs one. Each member scores every frame as ``aed eval --weights`` does; the
ensemble's raw frame score is the members' mean, then smoothed and evaluated under the same protocol
(RBDC/TBDC are not computed: the members' maps are not combined). Nothing is chosen here; the figures are
only reported.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from aedcli.data import load_dataset
from aedcli.evaluate import evaluate_scores, student_source
from aedcli.files import write_json_atomic


def mean_scores(members: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The per-video mean of the members' raw frame scores (every member must score the same frames)."""
    if not members:
        raise SystemExit("an ensemble needs at least one member.")
    out = {}
    for video, first in members[0].items():
        lengths = {len(m.get(video, ())) for m in members}
        if lengths != {len(first)}:
            raise SystemExit(f"the members scored different frame counts of {video}: {sorted(lengths)}.")
        out[video] = np.mean([np.asarray(m[video], dtype=np.float64) for m in members], axis=0)
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", nargs="+", type=Path, help="the members' weights files")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--root", type=Path)
    parser.add_argument("--sigma", type=float, default=3.0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, help="write the report here")
    args = parser.parse_args(argv)
    dataset = load_dataset(args.dataset, args.root)
    members = [student_source(dataset, w, device=args.device, with_regions=False).raw for w in args.weights]
    report = evaluate_scores(dataset, mean_scores(members), sigma=args.sigma)
    print(
        f"ensemble of {len(members)}: micro AUC {report.micro_auc:.4f}, macro AUC {report.macro_auc:.4f} "
        f"(padded {report.macro_auc_padded:.4f})"
    )
    print(f"protocol: {report.protocol}")
    if args.json is not None:
        payload = {"source": f"ensemble of {len(members)}", "members": [str(w) for w in args.weights]}
        write_json_atomic(args.json, payload | report.to_json())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
