"""Print the figures ``examples/README.md`` quotes for the shipped student on the bundled clip.

    python scripts/example_figures.py --ped2 ~/.cache/aed/ped2 [--weights weights/ped2.pt] [--work DIR]

Runs ``aed detect`` on ``examples/ped2_test004.mp4`` and on the original ``.tif`` frames of ``Test004``;
encodes the held-out normal clips ``Train006`` and ``Train011`` as mp4 the way the example was encoded (mp4v,
10 fps) and runs ``aed calibrate`` and ``aed detect`` on them. Every figure comes from those commands'
CSV and JSON outputs; the cart enters ``Test004`` at 0-based frame 30 (the dataset's labels).
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "ped2_test004.mp4"
CART = 30  # first abnormal frame of Test004, 0-based
HELD_OUT = ("Train006", "Train011")


def aed(*args: str | Path) -> None:
    done = subprocess.run([sys.executable, "-m", "aedcli", *map(str, args)], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"aed {' '.join(map(str, args))} failed:\n{done.stderr}")


def detect(source: Path, out: Path, weights: Path) -> tuple[list[dict[str, float]], dict]:
    aed("detect", source, "--weights", weights, "--out", out, "--force")
    stem = source.stem if source.is_file() else source.name
    with open(out / f"{stem}_scores.csv", newline="") as f:
        rows = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
    return rows, json.loads((out / f"{stem}_summary.json").read_text())


def encode(frames: Path, path: Path) -> Path:
    from aedcli.video import VideoWriter

    files = sorted(frames.glob("*.tif"))
    first = cv2.imread(str(files[0]))
    with VideoWriter(path, fps=10, size=(first.shape[1], first.shape[0])) as out:
        for file in files:
            out.write(cv2.imread(str(file)))
    return path


def events(summary: dict) -> str:
    return ", ".join(f"frames {e['start_frame']}-{e['end_frame']}" for e in summary["events"]) or "none"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ped2", type=Path, required=True, help="folder holding UCSDped2/")
    parser.add_argument("--weights", type=Path, default=ROOT / "weights" / "ped2.pt")
    parser.add_argument("--work", type=Path, default=None, help="folder for the outputs (default: temporary)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="aed-example-"))
    ped2 = args.ped2 / "UCSDped2"

    rows, summary = detect(EXAMPLE, work / "mp4", args.weights)
    smooth = [r["score_smoothed"] for r in rows]
    before, after = smooth[:CART], smooth[CART:]
    peak = max(range(len(smooth)), key=smooth.__getitem__)
    mean_before, mean_after = sum(before) / len(before), sum(after) / len(after)
    raw_before = sum(r["score"] for r in rows[:CART]) / CART
    print(
        f"example mp4: threshold {summary['threshold']['value']:.4f}; smoothed score mean {mean_before:.3f}"
        f" before the cart (range {min(before):.3f}-{max(before):.3f}), {mean_after:.3f} after it, peak"
        f" {smooth[peak]:.3f} at frame {peak}; events: {events(summary)}; raw mean before the cart"
        f" {raw_before:.3f}; {summary['fps_end_to_end']} frames/s end to end"
    )

    tif_rows, tif_summary = detect(ped2 / "Test" / "Test004", work / "tif", args.weights)
    print(
        f"original frames: raw mean before the cart {sum(r['score'] for r in tif_rows[:CART]) / CART:.3f};"
        f" events: {events(tif_summary)}"
    )

    clips = [encode(ped2 / "Train" / name, work / "held-out" / f"{name}.mp4") for name in HELD_OUT]
    aed("calibrate", *clips, "--weights", args.weights, "--out", work / "calibrated.pt", "--force", "--quiet")
    from aedcli.weights import load_weights

    calibrated = load_weights(work / "calibrated.pt").threshold
    stored = load_weights(args.weights).threshold
    above = total = 0
    for clip in clips:
        clip_rows, _ = detect(clip, work / "held-out-scores", args.weights)
        above += sum(r["score_smoothed"] > stored.value for r in clip_rows)
        total += len(clip_rows)
    print(
        f"held-out normal clips as mp4: calibrated threshold {calibrated.value:.4f} against the stored"
        f" {stored.value:.4f}; {above} of {total} frames above the stored one"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
