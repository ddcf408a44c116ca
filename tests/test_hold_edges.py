"""scripts/hold_edges.py: an old weights file gets held edges and a threshold measured with them."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from _distill_fixtures import DISTILL_SIZE, distill_write_dataset

from aedcli.inference import StudentRunner
from aedcli.inputs import InputSpec
from aedcli.scoring import Threshold, threshold_from_normal
from aedcli.student import Student, student_config
from aedcli.weights import load_weights, save_weights

ROOT = Path(__file__).resolve().parent.parent


def test_hold_edges_rewrites_the_rule_and_the_threshold_and_keeps_the_network(tmp_path: Path) -> None:
    dataset = distill_write_dataset(tmp_path / "data", clips=3, frames=12)
    torch.manual_seed(0)
    spec = InputSpec(*DISTILL_SIZE, channels=1, edges="repeat")
    model = Student(student_config("fastaed-xs", in_channels=spec.in_channels))
    old = save_weights(
        tmp_path / "old.pt",
        model,
        spec,
        sigma=2.0,
        threshold=Threshold(0.5, 2.0, 99.0, "old"),
        provenance={"val_videos": ["clip02", "clip03"]},
        variant="fastaed-xs",
    )
    out = tmp_path / "new.pt"
    args = [str(old), "--dataset", "folder", "--root", str(tmp_path / "data"), "--out", str(out)]
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "hold_edges.py"), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr

    new = load_weights(out)
    assert new.spec == dataclasses.replace(spec, edges="hold")
    held_out = {c.name: c for c in dataset.train if c.name in ("clip02", "clip03")}
    runner = StudentRunner(new, batch_size=4)
    raw = {name: runner.score_clip(clip.frames(gray=True))[0] for name, clip in held_out.items()}
    assert new.threshold is not None
    assert new.threshold.value == threshold_from_normal(raw, 2.0, 99.0).value
    assert "held edges" in new.provenance["edges"] and new.provenance["val_videos"] == ["clip02", "clip03"]
    before, after = torch.load(old, weights_only=True), torch.load(out, weights_only=True)
    assert all(torch.equal(before["state_dict"][k], after["state_dict"][k]) for k in before["state_dict"])
    scores = raw["clip02"]
    np.testing.assert_array_equal(scores[:3], [scores[3]] * 3)
