"""ONNX export and the runtimes: the graph matches PyTorch, takes any batch size, carries its input spec and
fails loudly; the PyTorch and ONNX Runtime runners score a clip alike."""

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

import aedcli.runtime.onnx as export_module
from aedcli.cli.app import main
from aedcli.errors import AedError, UsageError
from aedcli.model.inputs import InputSpec
from aedcli.model.weights import LoadedWeights, save_weights
from aedcli.runtime import StudentRunner, make_runner, resolve_runtime
from aedcli.runtime.onnx import (
    _static_adaptive_max_pool2d,
    export_onnx,
    load_onnx_file,
    random_stack_input,
    read_onnx_metadata,
)
from aedcli.runtime.session import onnx_session, require_onnxruntime

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
        assert got[0].shape == (batch, 2)  # one S per teacher's head set
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
    assert meta["config"]["teachers"] == ["motion", "objects"]
    assert load_onnx_file(tmp_path / "student.onnx", SPEC) == (tmp_path / "student.onnx").read_bytes()
    runner, info = make_runner(loaded, runtime="onnx", onnx_file=tmp_path / "student.onnx", threads=1)
    assert runner.spec == SPEC and info.runtime == "onnx"


def test_onnx_file_for_another_input_size_is_refused(tmp_path: Path) -> None:
    export_onnx(tiny_weights(), tmp_path / "student.onnx")
    with pytest.raises(UsageError, match="export it again"):
        load_onnx_file(tmp_path / "student.onnx", InputSpec(64, 64, 1))
    other = tiny_weights(InputSpec(64, 64, 1))
    with pytest.raises(UsageError, match="export it again"):
        make_runner(other, runtime="onnx", onnx_file=tmp_path / "student.onnx", threads=1)


def test_missing_or_unreadable_onnx_file_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(AedError, match=r"nothing\.onnx does not exist"):
        load_onnx_file(tmp_path / "nothing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a graph")
    with pytest.raises(AedError, match=r"junk\.onnx is not a readable ONNX model"):
        load_onnx_file(tmp_path / "junk.onnx")


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
    with pytest.raises(AedError, match=r"install it with 'pip install onnxruntime'\.$"):
        require_onnxruntime()
    with pytest.raises(AedError, match=r"'pip install onnxruntime' or use --runtime torch\.$"):
        require_onnxruntime("or use --runtime torch")


def test_export_command_writes_the_graph_and_reports_the_difference(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    loaded = tiny_weights()
    weights = save_weights(tmp_path / "weights.pt", loaded.model, SPEC, sigma=2.0, variant="fastaed-xs")
    out = tmp_path / "out" / "student.onnx"
    main(["export", "--weights", str(weights), "--onnx", str(out)])
    assert out.is_file()
    printed = capsys.readouterr()
    assert "max abs diff vs PyTorch" in printed.out + printed.err
    with pytest.raises(SystemExit) as exc:  # an existing file is not overwritten without --force
        main(["export", "--weights", str(weights), "--onnx", str(out)])
    assert exc.value.code == 2
    assert "--force" in capsys.readouterr().err


def _clip(n: int, spec: InputSpec) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [rng.integers(0, 256, size=(spec.height, spec.width), dtype=np.uint8) for _ in range(n)]


@pytest.mark.parametrize("variant", ["fastaed-xxs", "fastaed-xs"])
def test_make_runner_torch_and_onnx_give_the_same_scores(variant: str) -> None:
    loaded = tiny_weights(variant=variant, seed=3)
    frames = _clip(9, SPEC)
    results = {}
    for runtime in ("torch", "onnx"):
        runner, info = make_runner(loaded, runtime=runtime, batch_size=4, threads=1)
        assert info.runtime == runtime and info.device == "cpu"
        results[runtime] = runner.score_clip(iter(frames))
    (torch_scores, torch_maps), (onnx_scores, onnx_maps) = results["torch"], results["onnx"]
    assert torch_scores.shape == (9,) and torch_maps.shape == (9, 16, 16)
    np.testing.assert_allclose(onnx_scores, torch_scores, atol=1e-4, rtol=0)
    np.testing.assert_allclose(onnx_maps, torch_maps, atol=1e-4, rtol=0)
    plain, _ = StudentRunner(loaded.model, SPEC, batch_size=4).score_clip(iter(frames))
    np.testing.assert_allclose(torch_scores, plain, atol=1e-4, rtol=0)  # as the eval-mode student scores


def test_resolve_runtime_takes_onnx_on_a_cpu_in_fp32_and_torch_otherwise() -> None:
    assert resolve_runtime("auto", "cpu") == "onnx"
    assert resolve_runtime("auto", "cpu", "bf16") == "torch"
    assert resolve_runtime("torch", "cpu") == "torch"
    with pytest.raises(UsageError, match="--runtime must be one of auto, torch, onnx"):
        resolve_runtime("tensorrt", "cpu")


def test_onnx_runtime_refuses_reduced_precision() -> None:
    with pytest.raises(UsageError, match="not available with --runtime onnx"):
        make_runner(tiny_weights(), runtime="onnx", precision="bf16", threads=1)
