"""Random students for tests of the inference runtimes (optimised PyTorch, ONNX, bench, detect)."""

from __future__ import annotations

import torch

from aedcli.model.inputs import InputSpec
from aedcli.model.student import Student, student_config
from aedcli.model.weights import LoadedWeights


def random_student(
    spec: InputSpec,
    variant: str = "fastaed-xs",
    seed: int = 0,
    teachers: tuple[str, ...] = ("motion", "objects"),
) -> LoadedWeights:
    """A randomly initialised student whose BatchNorm statistics are moved off their defaults, so that
    folding them into the convolutions is actually exercised."""
    torch.manual_seed(seed)
    model = Student(student_config(variant, spec.in_channels, teachers))
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(4, spec.in_channels, spec.height, spec.width) * 1.5 + 0.3)
    model.eval()
    return LoadedWeights(
        model=model, config=model.config, spec=spec, sigma=2.0, threshold=None, variant=variant
    )
