"""BatchNorm statistics re-estimated after an epoch: the plain mean over training batches, nothing else."""

from __future__ import annotations

import torch
from torch import nn

from aedcli.training.batchnorm import batchnorm_layers, recalibrate_batchnorm


def _batches(n: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centre, scale = torch.tensor([1.0, -2.0, 5.0]), torch.tensor([0.5, 2.0, 3.0])
    return [centre + scale * torch.randn(16, 3, generator=g) for _ in range(n)]


def test_recalibration_replaces_lagging_averages_with_the_mean_over_the_batches() -> None:
    model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3)).eval()
    norm = model[1]
    norm.running_mean.fill_(40.0)  # averages that lag far behind the weights
    norm.running_var.fill_(1e-4)
    weights = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k and "num" not in k}
    batches = _batches(6)
    torch.manual_seed(123)
    used = recalibrate_batchnorm(model, batches, max_batches=4)
    after = torch.rand(3)
    torch.manual_seed(123)
    assert torch.equal(after, torch.rand(3))  # the random state was restored
    assert used == 4
    with torch.no_grad():
        outputs = [model[0](x) for x in batches[:4]]
    expected_mean = torch.stack([o.mean(0) for o in outputs]).mean(0)
    expected_var = torch.stack([o.var(0, unbiased=True) for o in outputs]).mean(0)
    torch.testing.assert_close(norm.running_mean, expected_mean)
    torch.testing.assert_close(norm.running_var, expected_var)
    assert norm.momentum == 0.1 and not model.training  # mode and momentum as they were
    for key, value in weights.items():
        assert torch.equal(model.state_dict()[key], value)  # parameters untouched


def test_without_batches_the_previous_statistics_stay() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU())
    (norm,) = batchnorm_layers(model)
    norm.running_mean.fill_(0.25)
    assert recalibrate_batchnorm(model, [], max_batches=5) == 0
    assert torch.equal(norm.running_mean, torch.full((2,), 0.25))
    assert recalibrate_batchnorm(model, [torch.ones(2, 1, 5, 5)], max_batches=0) == 0
    assert torch.equal(norm.running_mean, torch.full((2,), 0.25)) and model.training
