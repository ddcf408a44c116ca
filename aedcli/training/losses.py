"""The distillation losses (method.md section 4), one head set and one discriminator per teacher.

- :func:`kd_loss`: ``L_KD = sum_k sum_scale MSE(student_k,scale, teacher_k,scale)`` over the scales 1x1, 4x4
  and 16x16, head set k learning teacher k;
- :func:`adversarial_loss`: the student's term ``sum_k BCE(D_k(student_k), 1)``, with the discriminators'
  parameters held fixed;
- :func:`discriminator_loss`: ``sum_k BCE(D_k(teacher_k), real) + BCE(D_k(student_k detached), 0)``;
- :func:`constant_kd_loss`: the L_KD of always answering the mean training maps, the bar a student must beat.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from aedcli.model.student import StudentMaps

REAL_LABEL = 0.9
"""The discriminators' target for teacher maps: one-sided label smoothing (Salimans et al., 2016)."""


def kd_loss(maps: StudentMaps, s: torch.Tensor, m: torch.Tensor, l: torch.Tensor) -> torch.Tensor:  # noqa: E741
    """Targets ``s (B, K)``, ``m (B, K, 4, 4)``, ``l (B, K, 16, 16)``; the student's maps are shaped alike.

    The mean squared error is taken per teacher and scale and summed, so every teacher weighs the same.
    """
    k = s.shape[1]
    per_scale = [
        F.mse_loss(maps.s, s, reduction="none").mean(0),  # (K,)
        F.mse_loss(maps.m, m, reduction="none").reshape(-1, k, 16).mean((0, 2)),
        F.mse_loss(maps.l, l, reduction="none").reshape(-1, k, 256).mean((0, 2)),
    ]
    return torch.stack(per_scale).sum()


def adversarial_loss(maps: StudentMaps, discriminators: Sequence[nn.Module]) -> torch.Tensor:
    """``sum_k BCE(D_k(head set k), 1)``: gradients reach the student through each D_k, not D_k's own
    parameters (held fixed; eval mode keeps the spectral norm's power iteration for D_k's own step)."""
    loss = maps.s.new_zeros(())
    ones = torch.ones(maps.s.shape[0], device=maps.s.device)
    for k, d in enumerate(discriminators):
        frozen = {n: p.detach() for n, p in d.named_parameters()}
        d.eval()
        logits = functional_call(d, frozen, (maps.s[:, k], maps.m[:, k], maps.l[:, k]))
        d.train()
        loss = loss + F.binary_cross_entropy_with_logits(logits, ones)
    return loss


def discriminator_loss(
    maps: StudentMaps, targets: Sequence[torch.Tensor], discriminators: Sequence[nn.Module]
) -> torch.Tensor:
    """Each D_k learns teacher k's maps (label :data:`REAL_LABEL`) against head set k's (label 0)."""
    s_t, m_t, l_t = targets
    b = s_t.shape[0]
    labels = torch.cat([torch.full((b,), REAL_LABEL), torch.zeros(b)]).to(s_t.device)
    loss = s_t.new_zeros(())
    for k, d in enumerate(discriminators):
        logits = d(
            torch.cat([s_t[:, k], maps.s[:, k].detach()]),
            torch.cat([m_t[:, k], maps.m[:, k].detach()]),
            torch.cat([l_t[:, k], maps.l[:, k].detach()]),
        )  # (2B,)
        loss = loss + 2 * F.binary_cross_entropy_with_logits(logits, labels)  # BCE(real) + BCE(fake)
    return loss


def constant_kd_loss(train: Sequence[np.ndarray], val: Sequence[np.ndarray]) -> float:
    """L_KD on ``val`` targets of a student that ignores its input and answers the mean ``train`` targets
    (per teacher and cell): what a student must beat to have learnt anything."""
    total = 0.0
    for tr, va in zip(train, val, strict=True):
        if len(tr) == 0 or len(va) == 0:
            continue
        mean = tr.mean(axis=0, dtype=np.float64)  # (K, ...)
        per_teacher = ((va - mean) ** 2).reshape(len(va), tr.shape[1], -1).mean(axis=(0, 2))
        total += float(per_teacher.sum())
    return total
