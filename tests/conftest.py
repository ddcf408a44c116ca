"""Fixtures shared by test modules."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Run a test on one torch thread: tiny networks gain nothing from more, and a busy machine only spins."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


PED2_ROOT = Path(os.environ.get("AED_PED2_ROOT", "~/.cache/aed/ped2")).expanduser()


@pytest.fixture(scope="session")
def ped2_root() -> Path:
    """The folder holding ``UCSDped2/`` (``$AED_PED2_ROOT``, default ``~/.cache/aed/ped2``); skips when
    absent."""
    if not any((p / "Train").is_dir() and (p / "Test").is_dir() for p in (PED2_ROOT, PED2_ROOT / "UCSDped2")):
        pytest.skip(f"UCSD Ped2 not found at {PED2_ROOT}; set AED_PED2_ROOT to the folder holding UCSDped2/")
    return PED2_ROOT
