"""Switch a weights file written before ``InputSpec.edges`` existed to held edges, with a new threshold.

Such files load with ``edges="repeat"``: a video's first and last ``offset`` frames are scored on stacks that
repeat frame t, which students score far above the rest of a normal video (a false alarm at every start).
This writes a copy with ``edges="hold"`` and recomputes its threshold the way ``aed distill`` does: the
same percentile of scores smoothed with the same sigma, on the same held-out normal training videos (named
in the file's provenance). The network is unchanged, and no test data is read.

    python scripts/hold_edges.py weights/ped2.pt --dataset ped2 --root ~/data/ped2 --out weights/ped2.pt
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from datetime import datetime, timezone
from pathlib import Path

from aedcli.data import load_dataset
from aedcli.inference import StudentRunner
from aedcli.scoring import Threshold, threshold_from_normal
from aedcli.weights import load_weights, save_weights


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", type=Path)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--root", type=Path, default=None)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    loaded = load_weights(args.weights)
    if loaded.threshold is None:
        print(f"{args.weights} has no threshold to recompute.", file=sys.stderr)
        return 1
    held_out = list(loaded.provenance.get("val_videos") or [])
    if not held_out:
        print(f"{args.weights} names no held-out videos in its provenance.", file=sys.stderr)
        return 1
    dataset = load_dataset(args.dataset, args.root)
    clips = {c.name: c for c in dataset.train}
    missing = [name for name in held_out if name not in clips]
    if missing:
        print(f"training videos {', '.join(missing)} are not in dataset {args.dataset}.", file=sys.stderr)
        return 1

    spec = dataclasses.replace(loaded.spec, edges="hold")
    runner = StudentRunner(dataclasses.replace(loaded, spec=spec), batch_size=16)
    gray = spec.channels == 1
    raw = {name: runner.score_clip(clips[name].frames(gray=gray))[0] for name in held_out}
    old = loaded.threshold
    thr = threshold_from_normal(raw, old.sigma, old.percentile)
    note = f"videos held out from training: {', '.join(held_out)}"
    threshold = Threshold(thr.value, thr.sigma, thr.percentile, f"{thr.source}; {note}")
    provenance = dict(loaded.provenance)
    provenance["edges"] = (
        f"re-saved {datetime.now(timezone.utc).isoformat(timespec='seconds')} with held edges by "
        f"scripts/hold_edges.py; threshold {old.value:.4f} with repeated edges -> {threshold.value:.4f}"
    )
    save_weights(
        args.out,
        loaded.model,
        spec,
        sigma=loaded.sigma,
        threshold=threshold,
        provenance=provenance,
        variant=loaded.variant,
    )
    print(f"{args.out}: edges hold, threshold {old.value:.4f} -> {threshold.value:.4f} ({threshold.source})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
