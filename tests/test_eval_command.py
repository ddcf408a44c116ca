"""`aed eval` and the evaluation core under it: score files in, AUCs, RBDC/TBDC and their protocol out."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from _robustness_fixtures import run_aed, tiny_weights, write_video

from aedcli.cli.app import main
from aedcli.errors import AedError, UsageError
from aedcli.evaluation.evaluate import evaluate_scores
from aedcli.evaluation.files import read_score_csv
from aedcli.evaluation.metrics import Region
from aedcli.evaluation.report import protocol_lines, render_reports, write_plots

PED2_ROOT = Path(os.environ.get("AED_PED2_ROOT", Path.home() / ".cache" / "aed" / "ped2"))


@dataclass
class FakeClip:
    name: str
    labels: np.ndarray
    mask_list: list[np.ndarray] | None = None

    @property
    def frame_count(self) -> int:
        return int(self.labels.size)

    def frames(self, gray: bool | None = None) -> Iterator[np.ndarray]:
        raise AssertionError("evaluation of given scores must not read frames")

    def masks(self) -> Iterator[np.ndarray] | None:
        return None if self.mask_list is None else iter(self.mask_list)


@dataclass
class FakeDataset:
    name: str = "toy"
    root: Path = Path("/toy")
    test: list[FakeClip] = field(default_factory=list)


def _toy() -> FakeDataset:
    return FakeDataset(
        test=[
            FakeClip("v1", np.array([0, 0, 1, 1, 1, 0], dtype=np.uint8)),
            FakeClip("v2", np.array([0, 0, 0, 0], dtype=np.uint8)),  # normal only
        ]
    )


def _fmt3(value: float) -> str:
    return f"{value:.3f}"


def _write_scores(folder: Path, scores: dict[str, np.ndarray]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, values in scores.items():
        rows = "".join(f"{i},{float(v)!r}\n" for i, v in enumerate(values))
        (folder / f"{name}.csv").write_text("frame,score\n" + rows)


# ------------------------------------------------------------------------------------------ evaluation core


def test_label_scores_evaluate_to_perfect_micro_and_macro_auc() -> None:
    ds = _toy()
    report = evaluate_scores(ds, {c.name: c.labels.astype(float) for c in ds.test}, sigma=0)
    assert (report.micro_auc, report.macro_auc, report.macro_auc_padded) == (1.0, 1.0, 1.0)
    assert (report.frames, report.videos) == (10, 2)
    assert report.per_video["v2"].auc is None  # single class: no AUC of its own
    assert report.per_video["v1"].abnormal_frames == 3


def test_scores_are_smoothed_per_video_before_the_auc() -> None:
    ds = FakeDataset(test=[FakeClip("v", np.array([0] * 10 + [1] + [0] * 10, dtype=np.uint8))])
    spike = np.zeros(21)
    spike[10] = 1.0
    noise = np.zeros(21)
    noise[[3, 17]] = 0.9  # two isolated normal frames almost as high as the abnormal one
    scores = {"v": spike + noise}
    assert evaluate_scores(ds, scores, sigma=0).micro_auc == 1.0
    smoothed = evaluate_scores(ds, scores, sigma=2.0)
    assert smoothed.micro_auc == 1.0
    np.testing.assert_allclose(smoothed.scores["v"].raw, scores["v"])
    assert smoothed.scores["v"].evaluated[10] < 1.0  # the spike was spread out


def test_per_video_minmax_is_applied_only_when_asked_for() -> None:
    ds = _toy()
    raw = {"v1": np.array([5.0, 6, 9, 8, 7, 6]), "v2": np.array([1.0, 2, 3, 4])}
    plain = evaluate_scores(ds, raw, sigma=0)
    scaled = evaluate_scores(ds, raw, sigma=0, normalisation="per-video-minmax")
    np.testing.assert_allclose(plain.scores["v1"].evaluated, raw["v1"])
    assert scaled.scores["v1"].evaluated.min() == 0.0 and scaled.scores["v1"].evaluated.max() == 1.0
    assert "normalisation: per-video-minmax" in scaled.protocol


def test_a_test_video_without_scores_is_named() -> None:
    with pytest.raises(AedError, match="'v2'"):
        evaluate_scores(_toy(), {"v1": np.zeros(6)}, sigma=0)


def test_a_short_score_sequence_names_the_video_and_both_lengths() -> None:
    with pytest.raises(AedError, match=r"'v1' has 6 frames but 5 scores"):
        evaluate_scores(_toy(), {"v1": np.zeros(5), "v2": np.zeros(4)}, sigma=0)


def test_bad_sigma_and_normalisation_are_usage_errors() -> None:
    scores = {"v1": np.zeros(6), "v2": np.zeros(4)}
    for sigma in (-1.0, float("nan"), float("inf")):
        with pytest.raises(UsageError, match="--sigma"):
            evaluate_scores(_toy(), scores, sigma=sigma)
    with pytest.raises(UsageError, match="--normalisation"):
        evaluate_scores(_toy(), scores, sigma=0, normalisation="zscore")


def test_report_json_has_the_contract_keys_and_labels_its_conventions() -> None:
    ds = _toy()
    report = evaluate_scores(ds, {"v1": np.arange(6.0), "v2": np.arange(4.0)}, sigma=3.0)
    data = json.loads(json.dumps(report.to_json()))
    for key in ("micro_auc", "macro_auc", "macro_auc_padded", "frames", "videos", "sigma", "normalisation"):
        assert key in data
    assert "rbdc" not in data and "tbdc" not in data
    assert "1.0" in data["macro_convention"]["macro_auc"]
    assert "scored 0" in data["macro_convention"]["macro_auc_padded"]
    assert data["per_video"]["v2"]["auc"] is None
    assert 0.0 <= data["micro_auc"] <= 1.0


def test_protocol_line_states_dataset_frames_sigma_normalisation_and_macro_convention() -> None:
    report = evaluate_scores(_toy(), {"v1": np.arange(6.0), "v2": np.arange(4.0)}, sigma=3.0)
    assert report.protocol.startswith("toy test, all 10 frames of 2 videos, Gaussian sigma=3 frames (centred")
    assert "normalisation: none" in report.protocol
    assert "macro: single-class videos count 1.0 / padded 0-1" in report.protocol
    unsmoothed = evaluate_scores(_toy(), {"v1": np.arange(6.0), "v2": np.arange(4.0)}, sigma=0)
    assert "no temporal smoothing" in unsmoothed.protocol


def test_regions_add_rbdc_and_tbdc_against_tracks_from_the_masks() -> None:
    masks = []
    for f in range(4):
        m = np.zeros((40, 60), dtype=bool)
        if f >= 2:
            m[10:20, 10:20] = True
        masks.append(m)
    ds = FakeDataset(test=[FakeClip("v", np.array([0, 0, 1, 1], dtype=np.uint8), masks)])
    regions = {"v": [Region(2, 10, 10, 20, 20, 0.9), Region(3, 10, 10, 20, 20, 0.9)]}
    report = evaluate_scores(ds, {"v": np.array([0.0, 0, 1, 1])}, sigma=0, regions=regions)
    assert (report.rbdc, report.tbdc) == (1.0, 1.0)
    data = report.to_json()
    assert data["rbdc"] == 1.0 and data["region_criteria"]["gt_tracks"] == 1
    assert "RBDC/TBDC: IoU >= 0.1" in report.protocol


def test_regions_need_pixel_masks() -> None:
    with pytest.raises(AedError, match="pixel masks"):
        evaluate_scores(_toy(), {"v1": np.zeros(6), "v2": np.zeros(4)}, sigma=0, regions={})


def test_reports_render_side_by_side_with_one_protocol_line() -> None:
    ds = _toy()
    a = evaluate_scores(ds, {c.name: c.labels.astype(float) for c in ds.test}, sigma=1.0)
    b = evaluate_scores(ds, {"v1": np.arange(6.0), "v2": np.arange(4.0)}, sigma=1.0)
    table = render_reports({"student": a, "flow floor": b})
    assert table.row_count == 2
    assert list(table.columns[0].cells) == ["student", "flow floor"]
    assert list(table.columns[1].cells) == ["1.000", _fmt3(b.micro_auc)]
    assert len(protocol_lines({"student": a, "flow floor": b})) == 1


def test_plots_are_written_for_the_roc_and_every_video(tmp_path: Path) -> None:
    ds = _toy()
    report = evaluate_scores(ds, {"v1": np.arange(6.0), "v2": np.arange(4.0)}, sigma=1.0)
    written = write_plots(report, tmp_path / "plots", threshold=2.5)
    assert sorted(p.name for p in written) == ["roc.png", "v1.png", "v2.png"]
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in (tmp_path / "plots").iterdir() if p.name.startswith(".")]  # no temporary files


def test_score_csv_is_read_in_frame_order_with_extra_columns_ignored(tmp_path: Path) -> None:
    path = tmp_path / "v.csv"
    path.write_text("frame,label,score\n2,0,0.3\n0,1,0.1\n1,0,0.2\n")
    np.testing.assert_allclose(read_score_csv(path, 3), [0.1, 0.2, 0.3])


def test_score_csv_numbered_from_one_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "v.csv"
    path.write_text("frame,score\n1,0.1\n2,0.2\n")
    with pytest.raises(AedError, match="number frames 0 to 1"):
        read_score_csv(path, 2)


def test_score_csv_without_a_score_column_or_with_text_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "v.csv"
    path.write_text("frame,value\n0,0.1\n")
    with pytest.raises(AedError, match="no 'frame' and 'score' columns"):
        read_score_csv(path)
    path.write_text("frame,score\n0,0.1\n1,high\n")
    with pytest.raises(AedError, match="line 3"):
        read_score_csv(path)


# --------------------------------------------------------------------------------------------- aed eval


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("aed-cache")


@pytest.fixture(scope="module")
def synthetic_labels(synthetic_root: Path) -> dict[str, np.ndarray]:
    from aedcli.data import load_dataset

    ds = load_dataset("synthetic", synthetic_root)
    return {clip.name: np.asarray(clip.labels) for clip in ds.test}


def _eval(args: list[str]) -> int:
    try:
        main(["eval", *args])
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_eval_of_label_scores_on_synthetic_prints_and_writes_perfect_auc(
    tmp_path: Path,
    synthetic_root: Path,
    synthetic_labels: dict[str, np.ndarray],
    capsys: pytest.CaptureFixture[str],
) -> None:
    _write_scores(tmp_path / "scores", {k: v.astype(float) for k, v in synthetic_labels.items()})
    out_json = tmp_path / "out" / "eval.json"
    code = _eval(
        [
            "--dataset",
            "synthetic",
            "--root",
            str(synthetic_root),
            "--scores",
            str(tmp_path / "scores"),
            "--sigma",
            "0",
            "--json",
            str(out_json),
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0
    data = json.loads(out_json.read_text())
    assert (data["micro_auc"], data["macro_auc"], data["macro_auc_padded"]) == (1.0, 1.0, 1.0)
    assert data["frames"] == sum(v.size for v in synthetic_labels.values())
    assert data["sigma"] == 0.0 and data["normalisation"] == "none"
    assert "1.000" in printed and "protocol: synthetic test, all" in printed


def test_eval_of_random_scores_is_near_chance_and_prints_the_default_sigma(
    tmp_path: Path,
    synthetic_root: Path,
    synthetic_labels: dict[str, np.ndarray],
    capsys: pytest.CaptureFixture[str],
) -> None:
    rng = np.random.default_rng(0)
    _write_scores(tmp_path / "scores", {k: rng.random(v.size) for k, v in synthetic_labels.items()})
    out_json = tmp_path / "eval.json"
    code = _eval(
        [
            "--dataset",
            "synthetic",
            "--root",
            str(synthetic_root),
            "--scores",
            str(tmp_path / "scores"),
            "--json",
            str(out_json),
        ]
    )
    assert code == 0
    data = json.loads(out_json.read_text())
    # 256 frames, about a third abnormal: the AUC of noise has a spread of about 0.04 (smoothing adds some).
    assert abs(data["micro_auc"] - 0.5) < 0.15
    assert data["sigma"] == 3.0
    assert "sigma=3 frames" in capsys.readouterr().out


def test_eval_with_a_missing_score_file_names_the_video_and_writes_no_json(
    tmp_path: Path,
    synthetic_root: Path,
    synthetic_labels: dict[str, np.ndarray],
    capsys: pytest.CaptureFixture[str],
) -> None:
    names = sorted(synthetic_labels)
    _write_scores(tmp_path / "scores", {k: synthetic_labels[k].astype(float) for k in names[1:]})
    out_json = tmp_path / "eval.json"
    code = _eval(
        [
            "--dataset",
            "synthetic",
            "--root",
            str(synthetic_root),
            "--scores",
            str(tmp_path / "scores"),
            "--json",
            str(out_json),
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert names[0] in err
    assert not out_json.exists()
    assert list(tmp_path.iterdir()) == [tmp_path / "scores"]  # no temporary file left either


def test_eval_with_a_missing_scores_folder_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _eval(["--dataset", "synthetic", "--scores", str(tmp_path / "nope")])
    assert code == 2
    assert "--scores" in capsys.readouterr().err


def test_eval_without_a_source_evaluates_the_default_weights_or_says_to_pass_weights(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("aedcli.resources.shipped", lambda name: None)
    assert _eval(["--dataset", "synthetic"]) == 1
    assert "--weights" in capsys.readouterr().err


def test_eval_rejects_an_unknown_baseline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _eval(["--dataset", "synthetic", "--baseline", "psnr"]) == 2
    assert "--baseline" in capsys.readouterr().err


def test_eval_with_the_flow_baseline_adds_a_row_and_writes_plots(
    tmp_path: Path,
    synthetic_root: Path,
    synthetic_labels: dict[str, np.ndarray],
    capsys: pytest.CaptureFixture[str],
) -> None:
    _write_scores(tmp_path / "scores", {k: v.astype(float) for k, v in synthetic_labels.items()})
    out_json = tmp_path / "eval.json"
    code = _eval(
        [
            "--dataset",
            "synthetic",
            "--root",
            str(synthetic_root),
            "--scores",
            str(tmp_path / "scores"),
            "--baseline",
            "flow",
            "--json",
            str(out_json),
            "--plots",
            str(tmp_path / "plots"),
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0
    assert "flow floor" in printed
    data = json.loads(out_json.read_text())
    assert data["source"] == "scores"
    assert set(data["rows"]) == {"scores", "flow floor"}
    assert 0.0 <= data["rows"]["flow floor"]["micro_auc"] <= 1.0
    assert (tmp_path / "plots" / "flow-floor" / "roc.png").is_file()
    assert (tmp_path / "plots" / "scores" / f"{sorted(synthetic_labels)[0]}.png").is_file()


# --------------------------------------------------------------------------------------------- real Ped2

needs_ped2 = pytest.mark.skipif(
    not (PED2_ROOT / "UCSDped2" / "Test").is_dir(), reason=f"UCSD Ped2 not found at {PED2_ROOT}"
)


@pytest.mark.ped2
@needs_ped2
def test_eval_on_ped2_with_label_scores_gives_one(tmp_path: Path) -> None:
    from aedcli.data import load_dataset

    ds = load_dataset("ped2", PED2_ROOT)
    _write_scores(tmp_path / "scores", {c.name: np.asarray(c.labels, dtype=float) for c in ds.test})
    out_json = tmp_path / "eval.json"
    code = _eval(
        [
            "--dataset",
            "ped2",
            "--root",
            str(PED2_ROOT),
            "--scores",
            str(tmp_path / "scores"),
            "--json",
            str(out_json),
        ]
    )
    assert code == 0
    data = json.loads(out_json.read_text())
    assert (data["micro_auc"], data["macro_auc"], data["macro_auc_padded"]) == (1.0, 1.0, 1.0)
    assert (data["frames"], data["videos"]) == (2010, 12)


@pytest.mark.ped2
@pytest.mark.slow
@needs_ped2
def test_flow_floor_on_ped2_beats_095_micro_auc_unsmoothed() -> None:
    from aedcli.data import load_dataset
    from aedcli.evaluation.sources import flow_floor_source

    ds = load_dataset("ped2", PED2_ROOT)
    # All 2,010 test frames (subsets of Ped2 range from 0.93 to 0.99, so only the full set is meaningful).
    report = evaluate_scores(ds, flow_floor_source(ds).raw, sigma=0)
    assert report.micro_auc > 0.95  # method.md: 0.969


# ------------------------------------------------------------------------------- aed detect, then aed eval


@pytest.fixture(scope="module")
def folder_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny folder dataset: one training video and two labelled test videos of 12 frames (64x48), one
    of them with a space in its name."""
    root = tmp_path_factory.mktemp("footage")
    write_video(root / "train" / "train01.mp4", n=12)
    for name in ("test01", "test 02"):
        write_video(root / "test" / f"{name}.mp4", n=12)
    (root / "labels").mkdir()
    (root / "labels" / "test01.txt").write_text("0\n" * 6 + "1\n" * 6)
    (root / "labels" / "test 02.txt").write_text("1\n" * 3 + "0\n" * 9)
    return root


@pytest.fixture(scope="module")
def gray_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_weights(tmp_path_factory.mktemp("weights") / "gray.pt")


@pytest.mark.usefixtures("one_torch_thread")
def test_eval_scores_reads_the_folder_aed_detect_writes_and_agrees_with_the_student(
    folder_dataset: Path, gray_weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results"
    code, _, err = run_aed(
        [
            "detect",
            folder_dataset / "test",
            "--weights",
            gray_weights,
            "--runtime",
            "torch",
            "--out",
            results,
        ],
        capsys,
    )
    assert code == 0, err
    assert sorted(p.name for p in results.glob("*_scores.csv")) == ["test01_scores.csv", "test_02_scores.csv"]

    out_json = tmp_path / "eval.json"
    code, stdout, err = run_aed(
        [
            *("eval", "--dataset", "folder", "--root", folder_dataset, "--scores", results),
            *("--weights", gray_weights, "--runtime", "torch", "--sigma", "2", "--json", out_json),
        ],
        capsys,
    )

    assert code == 0, err
    data = json.loads(out_json.read_text())
    assert set(data["rows"]) == {"scores", "student"}
    assert data["source"] == "scores" and data["frames"] == 24 and data["videos"] == 2
    # The files hold the very scores the student gives when eval runs it: the same figures.
    scores, student = data["rows"]["scores"], data["rows"]["student"]
    for key in ("micro_auc", "macro_auc", "macro_auc_padded"):
        assert scores[key] == student[key]
    assert scores["per_video"] == student["per_video"]
    assert "protocol: folder test, all 24 frames of 2 videos" in stdout


def test_eval_json_dash_prints_only_json_on_stdout(
    tmp_path: Path,
    synthetic_root: Path,
    synthetic_labels: dict[str, np.ndarray],
    capsys: pytest.CaptureFixture[str],
) -> None:
    _write_scores(tmp_path / "scores", {k: v.astype(float) for k, v in synthetic_labels.items()})
    code, stdout, err = run_aed(
        [
            *("eval", "--dataset", "synthetic", "--root", synthetic_root),
            *("--scores", tmp_path / "scores", "--sigma", "0", "--json", "-"),
        ],
        capsys,
    )
    assert code == 0, err
    data = json.loads(stdout)  # the table and protocol went to stderr
    assert data["micro_auc"] == 1.0 and data["rows"]["scores"]["micro_auc"] == 1.0
    assert "protocol: synthetic test" in err and "micro AUC" in err


@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_eval_refuses_a_sigma_that_is_not_a_number_of_frames(
    value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_aed(["eval", "--dataset", "synthetic", "--scores", tmp_path, "--sigma", value], capsys)
    assert code == 2 and "--sigma must be 0" in err


def test_eval_of_a_run_folders_teachers_also_scores_the_student_beside_them(
    tmp_path: Path, synthetic_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from _students import random_student

    from aedcli.data import load_dataset
    from aedcli.model.inputs import InputSpec
    from aedcli.model.weights import save_weights
    from aedcli.teachers import TeachConfig, teach

    dataset = load_dataset("synthetic", synthetic_root)
    run = tmp_path / "run"
    teach(dataset, run, TeachConfig(height_sample=50))
    first = next(iter(dataset.train[0].frames()))
    spec = InputSpec.for_frames(first.shape[0], first.shape[1], 1)
    loaded = random_student(spec, variant="fastaed-xxs")
    save_weights(run / "weights.pt", loaded.model, spec, sigma=3.0, variant="fastaed-xxs")
    out_json = tmp_path / "eval.json"
    code = _eval(
        [
            *("--dataset", "synthetic", "--root", str(synthetic_root), "--teachers", str(run)),
            *("--runtime", "torch", "--json", str(out_json)),
        ]
    )
    capsys.readouterr()
    assert code == 0
    rows = json.loads(out_json.read_text())["rows"]
    assert next(iter(rows)) == "student" and "teachers" in rows
