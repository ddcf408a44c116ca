"""From the student's (or the teachers') maps to one raw score per frame (method.md section 5).

Each teacher's head set gives ``(S + max(M) + max(L)) / 3``, the paper's score; with several teachers the
frame takes the largest of them, so a frame one teacher finds unusual stays unusual however calm the others
find it (their scales agree: every teacher's maps are scaled alike on normal training video, see
:mod:`aedcli.teachers.maps`).

>>> raw = frame_scores(maps.s, maps.m, maps.l)          # (N, K), (N, K, 4, 4), (N, K, 16, 16) -> (N,)
"""

from __future__ import annotations

from typing import Any

import numpy as np


def as_numpy(x: Any) -> np.ndarray:
    """A float64 numpy copy of a numpy array, list or torch tensor (detached, on the CPU)."""
    if hasattr(x, "detach"):  # torch.Tensor without importing torch here
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def teacher_scores(s: Any, m: Any, l: Any) -> np.ndarray:  # noqa: E741 - names follow the paper's S, M, L
    """Per-teacher scores ``(S + max(M) + max(L)) / 3`` of ``s (N, K)``, ``m (N, K, ...)``, ``l (N, K, ...)``
    -> ``(N, K)`` float64."""
    s_np, m_np, l_np = as_numpy(s), as_numpy(m), as_numpy(l)
    if s_np.ndim != 2 or m_np.shape[:2] != s_np.shape or l_np.shape[:2] != s_np.shape:
        raise ValueError(
            f"frame scores need s (N, K), m (N, K, ...), l (N, K, ...); got {s_np.shape}, {m_np.shape}, "
            f"{l_np.shape}"
        )
    n, k = s_np.shape
    if n == 0:
        return np.zeros((0, k))
    m_max = m_np.reshape(n, k, -1).max(axis=2)
    l_max = l_np.reshape(n, k, -1).max(axis=2)
    return (s_np + m_max + l_max) / 3.0


def frame_scores(s: Any, m: Any, l: Any) -> np.ndarray:  # noqa: E741
    """Raw anomaly score per frame: the largest per-teacher score (:func:`teacher_scores`), shape ``(N,)``."""
    per_teacher = teacher_scores(s, m, l)
    return per_teacher.max(axis=1) if per_teacher.shape[1] else np.zeros(len(per_teacher))
