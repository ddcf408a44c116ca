"""Validation AUC on local pseudo-anomalies: does the student find one fast object among normal motion?

Held-out normal video says how well a student reproduces its teachers (validation L_KD), not whether it
tells anomalies from normal frames, and runs with the same L_KD can differ by many points of AUC. This
probe measures the second thing without any test data. Every normal-speed frame of the held-out videos
appears twice: as it is (label 0), and with a rectangle of a sped-up frame of the same video pasted in
around a proposal box (label 1), so that the rectangle holds an object moving 2 or 3 times too fast. The
student scores both with the frame score of inference (:func:`aedcli.scoring.frame_scores`), and the probe
reports the ROC AUC of those scores against the labels (no smoothing: the pastes are drawn per frame).

Two kinds of paste (``region``):

- ``cells``: one or two cells of the student's 4x4 grid each way, placed to hold the box's centre. A quarter
  to half of the frame changes at once, seams included; students trained with ``--region-mix`` (which pastes
  the same kind of rectangle) learn to see it, and their AUC saturates near 1.
- ``box``: the sped-up frame's proposal box itself, a quarter of its size wider on each side: one object
  moving too fast in its own place, with the background around it nearly unchanged. Harder, and not the
  shape ``--region-mix`` trains on, so it still spreads students whose ``cells`` AUC ties.

Both test speed alone, not appearance: on Ped2 they favoured students of the motion-only flow teacher over
students of teachers that also see appearance, which scored higher on the test set (``docs/results.md``).

The draws depend on the videos, their proposal boxes and a fixed seed only, not on the teachers or the
run's seed, so every run on the same held-out videos and boxes is measured on the same frames.

>>> probe = PseudoAnomalyProbe(frames, steps, boxes, offset=3)
>>> probe_auc(student, probe, spec, torch.device("cpu"))
0.93
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from aedcli.inputs import InputSpec
from aedcli.metrics import roc_auc
from aedcli.scoring import frame_scores

PROBE_SEED = 0
"""Fixed, so that runs with different ``--seed`` are compared on the same frames."""
GRID = 4
"""A ``cells`` paste is one or two cells of this grid each way (the student's 4x4 map)."""
BOX_MARGIN = 0.25
"""A ``box`` paste is the proposal box widened by this fraction of its size on each side."""
REGIONS: tuple[str, ...] = ("cells", "box")


def cell_rect(
    rows: int, cols: int, r0: int, c0: int, height: int, width: int, grid: int = GRID
) -> tuple[int, int, int, int]:
    """Pixel bounds ``(y0, y1, x0, x1)`` of ``rows`` x ``cols`` cells from cell (r0, c0) of a ``grid`` x
    ``grid`` division of a ``height`` x ``width`` frame (rows and columns split evenly)."""
    y0, y1 = round(r0 * height / grid), round((r0 + rows) * height / grid)
    x0, x1 = round(c0 * width / grid), round((c0 + cols) * width / grid)
    return y0, y1, x0, x1


def box_fractions(row: np.ndarray, height: int, width: int, margin: float = BOX_MARGIN) -> np.ndarray:
    """Bounds ``(y0, y1, x0, x1)`` as fractions of the frame of a box row ``[frame, x0, y0, x1, y1, ...]``
    (source pixels of a ``height`` x ``width`` frame), widened by ``margin`` of its size and clipped."""
    x0, y0, x1, y1 = (float(v) for v in row[1:5])
    dy, dx = margin * (y1 - y0), margin * (x1 - x0)
    out = np.array([(y0 - dy) / height, (y1 + dy) / height, (x0 - dx) / width, (x1 + dx) / width])
    return np.clip(out, 0.0, 1.0)


def rect_around(
    cy: float, cx: float, rng: np.random.Generator, grid: int = GRID
) -> tuple[int, int, int, int]:
    """A rectangle of 1-2 x 1-2 grid cells, at a random place among those that hold the cell of (cy, cx),
    given as fractions of the frame's height and width. Returns ``(rows, cols, r0, c0)``."""
    rows, cols = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    rc = min(int(cy * grid), grid - 1)
    cc = min(int(cx * grid), grid - 1)
    r0 = int(rng.integers(max(0, rc - rows + 1), min(rc, grid - rows) + 1))
    c0 = int(rng.integers(max(0, cc - cols + 1), min(cc, grid - cols) + 1))
    return rows, cols, r0, c0


class PseudoAnomalyProbe(Dataset):
    """Item k -> ``(stack (3, H, W[, C]) uint8, label)``: the held-out normal-speed frames as they are
    (label 0), then the same frames with a sped-up rectangle pasted in (label 1).

    ``frame_paths``/``steps`` are the validation clips as for :class:`aedcli.distill.StackDataset` (normal
    speed, step 1, and their sped-up copies, step k, reading the same cache); ``boxes[c]`` are clip c's
    proposal boxes, rows ``[frame, x0, y0, x1, y1, ...]`` in source pixels with ``frame_sizes[c]`` = (H, W)
    (0 = unknown: the clip's boxes are not used); ``region`` is ``cells`` or ``box`` (module docstring).
    A normal frame whose video has no sped-up frame with a box is left out of both halves.
    """

    def __init__(
        self,
        frame_paths: Sequence[Path],
        steps: Sequence[int],
        boxes: Sequence[np.ndarray],
        frame_sizes: Sequence[tuple[int, int]],
        offset: int,
        region: str = "cells",
    ) -> None:
        from aedcli.distill import StackDataset

        if region not in REGIONS:
            raise ValueError(f"region must be one of {', '.join(REGIONS)}, got {region!r}")
        self.region = region
        self.data = StackDataset(frame_paths, offset, None, steps)
        where = zip(self.data.clip_of, self.data.t_of, strict=True)
        items = {(int(c), int(t)): i for i, (c, t) in enumerate(where)}
        rng = np.random.default_rng(PROBE_SEED)
        normal_of = {str(p): c for c, p in enumerate(frame_paths) if steps[c] == 1}
        # (item, box centre and widened bounds as fractions) of every sped-up frame with a box, per
        # normal-speed clip
        sources: dict[int, list[tuple[int, float, float, np.ndarray]]] = {c: [] for c in normal_of.values()}
        for c, (path, step) in enumerate(zip(frame_paths, steps, strict=True)):
            owner = normal_of.get(str(path))
            h, w = frame_sizes[c]
            if step == 1 or owner is None or not h or not w:
                continue
            rows = np.asarray(boxes[c], np.float64)
            for row in rows.reshape(len(rows), -1) if rows.size else ():
                i = items.get((c, int(row[0]) * step))
                if i is not None:
                    cy, cx = (row[2] + row[4]) / 2 / h, (row[1] + row[3]) / 2 / w
                    sources[owner].append((i, cy, cx, box_fractions(row, h, w)))
        self.normal: list[int] = []
        self.pastes: list[tuple[int, int, int, int, int]] = []  # cells: (source item, rows, cols, r0, c0)
        self.boxes: list[tuple[int, np.ndarray]] = []  # box: (source item, bounds as fractions)
        for i, c in enumerate(self.data.clip_of):
            src = sources.get(int(c))
            if not src:
                continue
            j, cy, cx, bounds = src[int(rng.integers(len(src)))]
            self.normal.append(i)
            rect = rect_around(cy, cx, rng)  # drawn for both regions, so both paste the same frames
            if region == "cells":
                self.pastes.append((j, *rect))
            else:
                self.boxes.append((j, bounds))

    def __len__(self) -> int:
        return 2 * len(self.normal)

    def labels(self) -> np.ndarray:
        """0 for the frames as they are, 1 for the pasted ones, in item order."""
        n = len(self.normal)
        return np.r_[np.zeros(n), np.ones(n)]

    def __getitem__(self, k: int) -> tuple[np.ndarray, int]:
        n = len(self.normal)
        (stack,) = self.data[self.normal[k % n]]
        if k < n:
            return stack, 0
        (y0, y1, x0, x1), j = self.rect(k - n, stack.shape[1], stack.shape[2])
        (patch,) = self.data[j]
        out = stack.copy()
        out[:, y0:y1, x0:x1] = patch[:, y0:y1, x0:x1]
        return out, 1

    def rect(self, i: int, height: int, width: int) -> tuple[tuple[int, int, int, int], int]:
        """Pixel bounds ``(y0, y1, x0, x1)`` of paste ``i`` in a ``height`` x ``width`` stack, and the item
        its pixels come from."""
        if self.region == "cells":
            j, rows, cols, r0, c0 = self.pastes[i]
            return cell_rect(rows, cols, r0, c0, height, width), j
        j, (fy0, fy1, fx0, fx1) = self.boxes[i]
        y0, x0 = int(np.floor(fy0 * height)), int(np.floor(fx0 * width))
        y1, x1 = max(int(np.ceil(fy1 * height)), y0 + 1), max(int(np.ceil(fx1 * width)), x0 + 1)
        return (y0, y1, x0, x1), j


@torch.no_grad()
def probe_auc(
    net: nn.Module, probe: PseudoAnomalyProbe, spec: InputSpec, device: torch.device, batch: int = 32
) -> float:
    """ROC AUC of the student's raw frame scores on ``probe`` (nan when it has no frames)."""
    if len(probe) == 0:
        return float("nan")
    net.eval()
    scores = []
    for stacks, _ in DataLoader(probe, batch_size=batch):
        x = spec.to_tensor(stacks.numpy()).to(device)
        maps = net(x)
        scores.append(frame_scores(maps.s, maps.m, maps.l))
    return roc_auc(probe.labels(), np.concatenate(scores))
