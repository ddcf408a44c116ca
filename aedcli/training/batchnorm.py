"""BatchNorm running statistics re-estimated from training batches after an epoch ("precise BN").

During training every BatchNorm layer normalises with the statistics of its batch and keeps an exponential
moving average of them (momentum 0.1: mostly the last ten or twenty batches) for evaluation. While the
weights move fast, that average lags behind them, and the evaluated network can be far off the trained one:
on Ped2, at the second distillation epoch of the shipped recipe, the stored averages gave a validation L_KD
of 1.81 (the constant answer's is 0.89), and the same weights with their averages re-estimated on 30
training batches gave 0.12. :func:`recalibrate_batchnorm` replaces each average with the plain mean over a
number of training batches seen by the final weights. Training itself is untouched: train-mode forward
passes use batch statistics, parameters do not change, and the random state is restored, so a run with and
without it follows the same trajectory and only what is evaluated and saved differs.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm layers of ``model`` that keep running statistics."""
    return [
        m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]


def recalibrate_batchnorm(model: nn.Module, batches: Iterable[torch.Tensor], max_batches: int) -> int:
    """Re-estimate the running mean and variance of every BatchNorm layer of ``model`` as their plain mean
    over the first ``max_batches`` input ``batches`` (train-mode forward passes, no gradients).

    Returns the number of batches used. Parameters, the train/eval mode, each layer's momentum and the CPU and
    CUDA random states are left as they were; with no batch at all the previous statistics are kept.
    """
    layers = batchnorm_layers(model)
    if not layers or max_batches <= 0:
        return 0
    saved = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone()) for m in layers]
    momenta = [m.momentum for m in layers]
    was_training = model.training
    devices = (
        [torch.cuda.current_device()] if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    )
    used = 0
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        try:
            for m in layers:
                m.reset_running_stats()
                m.momentum = None  # a cumulative (plain) average
            model.train()
            for x in batches:
                if used >= max_batches:
                    break
                model(x)
                used += 1
        finally:
            for m, momentum in zip(layers, momenta, strict=True):
                m.momentum = momentum
            model.train(was_training)
            if used == 0:
                for m, (mean, var, count) in zip(layers, saved, strict=True):
                    m.running_mean.copy_(mean)
                    m.running_var.copy_(var)
                    m.num_batches_tracked.copy_(count)
    return used
