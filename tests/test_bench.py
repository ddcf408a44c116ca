"""Speed paths and the benchmark: optimised runtimes give the student's maps, faster; bench reports it all."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from _students import random_student

from aedcli.bench import (
    BenchOptions,
    parse_batches,
    parse_size,
    run_bench,
    summarise,
    write_generated_clip,
)
from aedcli.cli.app import main
from aedcli.errors import UsageError
from aedcli.model.inputs import InputSpec
from aedcli.model.weights import LoadedWeights, save_weights
from aedcli.runtime import StudentRunner, make_runner
from aedcli.runtime.onnx import random_stack_input
from aedcli.runtime.optimise import (
    CPU_CHUNK,
    OneDnnConv2d,
    OneDnnLinear,
    onednn_available,
    optimise_for_inference,
)
from aedcli.video import iter_frames

SPEC = InputSpec(height=48, width=72, channels=1)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_weights(spec: InputSpec = SPEC, variant: str = "fastaed-xs", seed: int = 0) -> LoadedWeights:
    return random_student(spec, variant, seed)


# ---------------------------------------------------------------------------------------------------------
# Optimised PyTorch


@pytest.mark.parametrize(
    ("variant", "channels", "batch"),
    [("fastaed-xs", 1, 3), ("fastaed-s", 3, 2), ("fastaed", 1, CPU_CHUNK + 3)],  # the last runs in chunks
)
def test_optimised_torch_model_gives_the_eager_maps(variant: str, channels: int, batch: int) -> None:
    spec = InputSpec(40, 56, channels)
    loaded = tiny_weights(spec, variant)
    prepared = optimise_for_inference(loaded.model)
    x = random_stack_input(spec, batch)
    with torch.inference_mode():
        expected = loaded.model(x)
        got = prepared.model(x.contiguous(memory_format=prepared.memory_format))
    for e, g in zip(expected, got, strict=True):
        assert g.shape == e.shape
        torch.testing.assert_close(g, e, atol=1e-4, rtol=1e-4)
    assert not prepared.notes, prepared.notes


@pytest.mark.skipif(not onednn_available(), reason="this PyTorch has no oneDNN fused operators")
def test_optimisation_swaps_leaf_layers_and_fuses_activations_without_touching_the_original() -> None:
    loaded = tiny_weights()
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    model = optimise_for_inference(loaded.model).model
    layers = list(model.modules())
    assert not any(type(m) in (torch.nn.Linear, torch.nn.Conv2d, torch.nn.BatchNorm2d) for m in layers)
    fused = [m for m in layers if isinstance(m, OneDnnConv2d | OneDnnLinear) and m.activation != "none"]
    assert {m.activation for m in fused} == {"relu", "gelu"}
    after = loaded.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in loaded.model.modules())


@pytest.mark.skipif(not onednn_available(), reason="this PyTorch has no oneDNN fused operators")
def test_reduced_precision_on_cpu_is_checked_before_running() -> None:
    loaded = tiny_weights()
    with pytest.raises(UsageError, match="fp16 runs only on CUDA"):
        make_runner(loaded, precision="fp16")
    with pytest.raises(UsageError, match="--runtime onnx"):
        make_runner(loaded, runtime="onnx", precision="bf16")


# ---------------------------------------------------------------------------------------------------------
# Runners: the same frame scores whichever runtime


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_generated_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", 48, 72, 21, colour=True)


def test_optimised_runner_gives_the_eval_mode_students_frame_scores(short_clip: Path) -> None:
    loaded = tiny_weights()
    plain = StudentRunner(loaded.model, loaded.spec, batch_size=4)  # the eval-mode student as it is
    fast, info = make_runner(loaded, runtime="torch", batch_size=4)
    expected, maps_expected = plain.score_clip(iter_frames(short_clip))
    got, maps_got = fast.score_clip(iter_frames(short_clip))
    assert len(got) == 21
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    np.testing.assert_allclose(maps_got, maps_expected, atol=1e-4, rtol=0)
    assert "batchnorm folded" in info.optimisations


def test_onnx_threads_spin_only_for_one_frame_at_a_time() -> None:
    pytest.importorskip("onnxruntime")
    loaded = tiny_weights()
    _, single = make_runner(loaded, runtime="onnx", batch_size=1, threads=1)
    _, batched = make_runner(loaded, runtime="onnx", batch_size=16, threads=1)
    assert "idle threads spin" in single.optimisations
    assert "idle threads sleep" in batched.optimisations


def test_onnx_runner_gives_the_torch_runners_frame_scores(short_clip: Path) -> None:
    pytest.importorskip("onnxruntime")
    loaded = tiny_weights()
    torch_runner, _ = make_runner(loaded, runtime="torch", batch_size=4)
    onnx_runner, info = make_runner(loaded, runtime="onnx", batch_size=4, threads=1)
    expected, maps_expected = torch_runner.score_clip(iter_frames(short_clip))
    got, maps_got = onnx_runner.score_clip(iter_frames(short_clip))
    assert got.shape == expected.shape == (21,)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    np.testing.assert_allclose(maps_got, maps_expected, atol=1e-4, rtol=0)
    assert info.runtime == "onnx"
    assert info.providers == ["CPUExecutionProvider"]


# ---------------------------------------------------------------------------------------------------------
# The benchmark


def tiny_options(**changes: object) -> BenchOptions:
    base = BenchOptions(
        variant="fastaed-xs",
        size=(48, 72),
        channels=1,
        batches=(1, 3),
        warmup=1,
        iters=3,
        frames=16,
        e2e_runs=1,
        runtime="torch",
    )
    for key, value in changes.items():
        setattr(base, key, value)
    return base


def test_bench_json_has_every_documented_key_with_sane_types() -> None:
    report = run_bench(tiny_options()).to_json()
    json.dumps(report)  # serialisable as is
    for key in ("fps_model", "latency_ms_p50", "latency_ms_p99"):
        assert set(report[key]) == {"1", "3"}
        assert all(isinstance(v, float) and v > 0 for v in report[key].values())
    for key in ("fps_end_to_end", "fps_end_to_end_overlay", "ratio_end_to_end", "ratio_overlay"):
        assert isinstance(report[key], float) and report[key] > 0, key
    assert report["batch_end_to_end"] == 3
    assert report["ratio_end_to_end"] == pytest.approx(
        report["fps_end_to_end"] / report["fps_model"]["3"], rel=0.02
    )
    assert report["ratio_overlay"] == pytest.approx(
        report["fps_end_to_end_overlay"] / report["fps_end_to_end"], rel=0.02
    )
    assert all(report["latency_ms_p99"][b] >= report["latency_ms_p50"][b] for b in ("1", "3"))
    assert isinstance(report["gmac_per_frame"], float) and report["gmac_per_frame"] > 0
    assert isinstance(report["params"], int) and report["params"] > 100_000
    assert report["teachers_fps"] is None and report["ratio_student_teachers"] is None  # not asked for
    assert report["device"] == "cpu"
    assert report["batch"] == [1, 3]
    assert report["size"] == {"height": 48, "width": 72}
    assert report["precision"] == "fp32" and report["runtime"] == "torch"
    assert report["threads"] == 1
    assert report["max_abs_diff_vs_eager"] < 1e-4
    assert report["peak_rss_mb"] > 0 and report["peak_gpu_mb"] is None
    assert report["system"]["torch"] == torch.__version__
    figures = {"fps_model", "fps_end_to_end", "fps_end_to_end_overlay", "ratio_end_to_end", "ratio_overlay"}
    assert figures | {"teachers_fps", "ratio_student_teachers"} <= set(report["includes"])
    assert report["end_to_end"]["clip"]["frames"] == 16
    assert len(report["end_to_end"]["runs_fps"]) == len(report["end_to_end"]["overlay_runs_fps"]) == 1
    assert any("teachers not timed" in n for n in report["notes"])


def test_bench_without_the_overlay_reports_no_overlay_figures() -> None:
    report = run_bench(tiny_options(overlay=False, batches=(2,))).to_json()
    assert report["fps_end_to_end"] > 0
    assert report["fps_end_to_end_overlay"] is None and report["ratio_overlay"] is None


def test_bench_times_the_teachers_and_reports_the_ratio(tmp_path: Path) -> None:
    clip = write_generated_clip(tmp_path / "clip.mp4", 96, 128, 24, colour=False)
    report = run_bench(tiny_options(clip=clip, teachers=True, batches=(4,))).to_json()
    teachers = report["teachers"]
    assert set(teachers["names"]) == {"motion", "objects"}
    assert "fitted on the clip itself" in teachers["source"]
    assert teachers["objects"] > 0 and teachers["frames"] == 24
    assert report["teachers_fps"] > 0
    expected = report["fps_end_to_end"] / report["teachers_fps"]
    assert report["ratio_student_teachers"] == pytest.approx(expected, rel=0.02)


def test_bench_says_why_teachers_are_unavailable_on_a_clip_without_motion(tmp_path: Path) -> None:
    folder = tmp_path / "still"
    folder.mkdir()
    frame = np.full((48, 72), 100, np.uint8)
    for i in range(12):
        cv2.imwrite(str(folder / f"{i:03d}.png"), frame)
    report = run_bench(tiny_options(clip=folder, teachers=True, batches=(2,))).to_json()
    assert report["teachers_fps"] is None and report["ratio_student_teachers"] is None
    assert report["fps_end_to_end"] > 0  # the student's figures are still measured
    assert any(n.startswith("teachers unavailable") and "nothing moves" in n for n in report["notes"])


def test_onnx_runtime_bench_reports_its_runtime() -> None:
    pytest.importorskip("onnxruntime")
    report = run_bench(tiny_options(runtime="onnx", batches=(2,))).to_json()
    assert report["runtime"] == "onnx"
    assert report["max_abs_diff_vs_eager"] < 1e-4
    assert report["fps_model"]["2"] > 0


def _bench_args(tmp_path: Path) -> list[str]:
    loaded = tiny_weights()
    weights = save_weights(tmp_path / "w.pt", loaded.model, SPEC, sigma=2.0, variant="fastaed-xs")
    return [
        *("bench", "--weights", str(weights), "--batch", "2", "--iters", "2"),
        *("--frames", "12", "--threads", "1", "--runtime", "torch"),
    ]


def test_bench_command_prints_a_table_and_writes_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench.json"
    args = _bench_args(tmp_path)
    main([*args, "--json", str(out)])
    report = json.loads(out.read_text())
    assert report["size"] == {"height": 48, "width": 72}
    assert report["model"]["source"] == f"weights {tmp_path / 'w.pt'}"
    printed = capsys.readouterr().out
    assert "model only, batch 2" in printed and "end to end with overlay" in printed


def test_bench_json_dash_prints_only_json_on_stdout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main([*_bench_args(tmp_path), "--json", "-"])
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["batch"] == [2] and report["fps_end_to_end"] > 0
    assert "model only, batch 2" in captured.err


def test_random_default_model_is_the_papers_configuration_and_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from aedcli.bench import resolve_model

    monkeypatch.setattr("aedcli.bench.shipped", lambda name: None)
    loaded, info, notes = resolve_model(BenchOptions())
    assert loaded.variant == "fastaed"
    assert (loaded.spec.height, loaded.spec.width, loaded.spec.in_channels) == (360, 640, 9)
    assert "random initialisation" in info["source"]
    assert any("no default weights" in n for n in notes)
    assert info["gmac_per_frame"] == pytest.approx(7.05, rel=0.03)


@pytest.mark.parametrize(
    ("text", "expected"), [("240x360", (240, 360)), ("360X640", (360, 640)), ("32*48", (32, 48))]
)
def test_size_is_height_by_width(text: str, expected: tuple[int, int]) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["240", "240x", "axb", "1x2x3"])
def test_bad_size_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError, match="--size"):
        parse_size(text)


def test_batch_sizes_are_parsed_deduplicated_and_checked() -> None:
    assert parse_batches("1,32,1") == (1, 32)
    with pytest.raises(UsageError, match="--batch"):
        parse_batches("0,4")
    with pytest.raises(UsageError, match="--batch"):
        parse_batches("one")


def test_conflicting_model_options_are_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--weights and --variant"):
        run_bench(tiny_options(weights=tmp_path / "w.pt"))


def test_latency_percentiles_and_throughput_follow_from_the_timings() -> None:
    timing = summarise(4, [0.010, 0.020, 0.030, 0.040, 1.0], warmup=2)
    assert timing.latency_ms_p50 == pytest.approx(30.0)
    assert timing.fps_model == pytest.approx(4 / 0.030)
    assert 40.0 < timing.latency_ms_p99 <= 1000.0
