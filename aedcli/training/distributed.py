"""Where a training process stands: alone, or one rank of a ``torchrun`` launch (DistributedDataParallel;
gloo on CPU, NCCL on GPU). Rank 0 writes every file; the others wait for it at barriers.

>>> env = init_distributed("cpu")      # reads RANK / WORLD_SIZE / LOCAL_RANK set by torchrun
>>> model = wrap(model, env)           # DistributedDataParallel when there are several processes
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from aedcli.errors import UsageError


@dataclass
class DistEnv:
    """Where this process stands in a (possibly single-process) run."""

    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    owns_group: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum of ``values`` over all processes."""
        if not self.distributed:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def wrap(module: nn.Module, env: DistEnv) -> nn.Module:
    """``module`` in DistributedDataParallel when several processes train, else itself."""
    if not env.distributed:
        return module
    ids = [env.device.index] if env.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids)


def init_distributed(device: str) -> DistEnv:
    """Join the process group ``torchrun`` set up (gloo on CPU, NCCL on CUDA), or run alone."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda was given but no CUDA GPU is available; use --device cpu.")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch.device("cuda", local_rank) if device.startswith("cuda") else torch.device("cpu")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world <= 1:
        return DistEnv(device=dev)
    owns = False
    if not dist.is_initialized():
        # Long timeout: rank 0 may spend a while on teacher targets and frame caches before the others go on.
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", timeout=timedelta(hours=4))
        owns = True
    return DistEnv(dist.get_rank(), dist.get_world_size(), dev, owns)


def hardware(env: DistEnv) -> dict[str, Any]:
    """What trained: device, processes, CPU, threads and versions (for the weights' provenance)."""
    info: dict[str, Any] = {
        "device": env.device.type,
        "processes": env.world,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    if env.device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(env.device)
    return info
