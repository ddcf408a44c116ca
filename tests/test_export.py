"""ONNX export: the graph matches PyTorch, takes any batch size, carries its input spec and fails loudly."""

from __future__ import annotations

import builtins
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from _students import random_student

import aedcli.export as export_module
from aedcli.cli import main
from aedcli.errors import AedError, UsageError
from aedcli.export import (
    _static_adaptive_max_pool2d,
    export_onnx,
    random_stack_input,
    read_onnx_metadata,
    require_onnxruntime,
)
from aedcli.inputs import InputSpec
from aedcli.runtime import OnnxRunner, onnx_session
from aedcli.weights import LoadedWeights, save_weights

SPEC = InputSpec(height=48, width=72, channels=1)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_weights(spec: InputSpec = SPEC, variant: str = "fastaed-xs", seed: int = 0) -> LoadedWeights:
    return random_student(spec, variant, seed)


@pytest.mark.parametrize(
    ("size", "cells"), [((15, 23), 2), ((15, 23), 4), ((15, 23), 16), ((3, 5), 16), ((32, 32), 4)]
)
def test_constant_window_pooling_equals_adaptive_max_pooling(size: tuple[int, int], cells: int) -> None:
    x = torch.randn(2, 3, *size)
    assert torch.equal(_static_adaptive_max_pool2d(x, cells), F.adaptive_max_pool2d(x, cells))


def test_export_round_trips_within_tolerance_at_batch_sizes_other_than_the_traced_one(tmp_path: Path) -> None:
    loaded = tiny_weights()
    report, _ = export_onnx(loaded, tmp_path / "student.onnx")
    assert report.max_abs_diff < 1e-4
    assert report.batches_checked == [1, 7]
    session = onnx_session(tmp_path / "student.onnx", threads=1)
    assert session.get_inputs()[0].shape[0] == "batch"  # symbolic: not baked in
    for batch in (1, 3, 7):
        x = random_stack_input(SPEC, batch, seed=batch)
        with torch.inference_mode():
            expected = loaded.model(x)
        got = session.run(["s", "m", "l"], {"x": x.numpy()})
        for e, g in zip(expected, got, strict=True):
            assert g.shape == tuple(e.shape)
            np.testing.assert_allclose(g, e.numpy(), atol=1e-4, rtol=0)


def test_colour_student_exports_too(tmp_path: Path) -> None:
    spec = InputSpec(height=40, width=56, channels=3)
    report, _ = export_onnx(tiny_weights(spec, variant="fastaed-s"), tmp_path / "colour.onnx")
    assert report.max_abs_diff < 1e-4
    assert report.input_shape == ["batch", 9, 40, 56]


def test_exported_file_carries_the_input_spec_and_scoring_metadata(tmp_path: Path) -> None:
    loaded = tiny_weights()
    export_onnx(loaded, tmp_path / "student.onnx")
    meta = read_onnx_metadata((tmp_path / "student.onnx").read_bytes())
    assert InputSpec.from_dict(meta["input"]) == SPEC
    assert meta["sigma"] == 2.0
    assert meta["variant"] == "fastaed-xs"
    runner = OnnxRunner.from_file(tmp_path / "student.onnx", batch_size=4)
    assert runner.spec == SPEC


def test_onnx_file_for_another_input_size_is_refused(tmp_path: Path) -> None:
    export_onnx(tiny_weights(), tmp_path / "student.onnx")
    with pytest.raises(UsageError, match="export it again"):
        OnnxRunner.from_file(tmp_path / "student.onnx", spec=InputSpec(64, 64, 1))


def test_a_graph_that_disagrees_with_pytorch_is_not_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export_module, "compare_with_torch", lambda *a, **k: {"s": 0.0, "m": 3e-3, "l": 0.0})
    out = tmp_path / "student.onnx"
    with pytest.raises(AedError, match="was not written"):
        export_onnx(tiny_weights(), out)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind either


def test_too_old_opset_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--opset 11"):
        export_onnx(tiny_weights(), tmp_path / "student.onnx", opset=11)


def test_opset_newer_than_the_exporter_writes_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--opset 99"):
        export_onnx(tiny_weights(), tmp_path / "student.onnx", opset=99)
    assert not (tmp_path / "student.onnx").exists()


def test_missing_onnxruntime_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_onnxruntime(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "onnxruntime":
            raise ImportError("No module named 'onnxruntime'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnxruntime)
    with pytest.raises(AedError, match=r"aedcli\[onnx\]"):
        require_onnxruntime()


def test_export_command_writes_the_graph_and_reports_the_difference(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    loaded = tiny_weights()
    weights = save_weights(tmp_path / "weights.pt", loaded.model, SPEC, sigma=2.0, variant="fastaed-xs")
    out = tmp_path / "out" / "student.onnx"
    main(["export", "--weights", str(weights), "--onnx", str(out)])
    assert out.is_file()
    err = capsys.readouterr().err
    assert "max abs diff vs PyTorch" in err
    with pytest.raises(SystemExit) as exc:  # an existing file is not overwritten without --force
        main(["export", "--weights", str(weights), "--onnx", str(out)])
    assert exc.value.code == 2
    assert "--force" in capsys.readouterr().err
