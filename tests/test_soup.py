"""Weight soups: the average of runs from one pre-training, measured and thresholded as distill does."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from _distill_fixtures import distill_write_dataset, distill_write_targets, tiny_config

from aedcli.cli import main
from aedcli.data.clips import Dataset
from aedcli.distill import DistillConfig, distill, measure_and_write
from aedcli.errors import UsageError
from aedcli.soup import average_states, read_member, soup
from aedcli.weights import load_weights

TEACHERS = ("a", "b")
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny(**kw: object) -> DistillConfig:
    return tiny_config(**({"teachers": TEACHERS, "no_adversarial": True, "epochs": 2} | kw))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Dataset, list[Path]]:
    """The fixture dataset and three finished runs (seeds 1, 2, 3) that share one pre-training."""
    root = tmp_path_factory.mktemp("soup")
    dataset = distill_write_dataset(root / "data")
    pre = root / "pretrain"
    distill_write_targets(dataset, pre / "targets", TEACHERS)
    distill(dataset, pre, tiny(), stage="pretrain", quiet=True)
    done = []
    for seed in (1, 2, 3):
        run = root / f"s{seed}"
        shutil.copytree(pre / "targets", run / "targets")
        (run / "checkpoints").mkdir(parents=True)
        shutil.copy(pre / "checkpoints" / "pretrain.pt", run / "checkpoints")
        distill(dataset, run, tiny(seed=seed), stage="distill", quiet=True)
        done.append(run)
    return dataset, done


def test_average_states_means_floats_and_keeps_the_largest_batch_count() -> None:
    a = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(3)}
    b = {"w": torch.tensor([3.0, 6.0]), "n": torch.tensor(5)}
    out = average_states([a, b])
    assert torch.equal(out["w"], torch.tensor([2.0, 4.0])) and out["w"].dtype == torch.float32
    assert out["n"].item() == 5 and out["n"].dtype == torch.int64


def test_soup_of_three_seeds_is_the_mean_of_their_weights_with_threshold_and_provenance(
    runs: tuple[Dataset, list[Path]], tmp_path: Path
) -> None:
    dataset, members = runs
    result = soup(members, tmp_path / "soup", dataset=dataset, command="aed soup --test", bn_batches=0)
    loaded = load_weights(result.weights)
    states = [load_weights(r / "weights.pt").model.state_dict() for r in members]
    for name, value in loaded.model.state_dict().items():
        if value.is_floating_point():
            expected = torch.stack([s[name] for s in states]).double().mean(0).float()
            torch.testing.assert_close(value, expected, rtol=0, atol=1e-6)
    assert any(not torch.equal(states[0][k], states[1][k]) for k in states[0])  # the seeds really differ
    assert loaded.threshold is not None and "held out from training: clip02" in loaded.threshold.source
    prov = loaded.provenance
    assert prov["command"] == "aed soup --test" and "uniform average" in prov["selection"]
    assert [m["seed"] for m in prov["soup"]["members"]] == [1, 2, 3]
    assert prov["soup"]["pretrain_sha256"] == read_member(members[0]).pretrain
    assert prov["epochs"] == {"pretrain": 1, "distill": 2}
    assert set(result.metrics) == {"val_kd", "val_kd_constant"} and prov["metrics"] == result.metrics
    constant = {load_weights(r / "weights.pt").provenance["metrics"]["val_kd_constant"] for r in members}
    assert constant == {result.metrics["val_kd_constant"]}


def test_soup_batchnorm_statistics_are_re_estimated_for_the_averaged_weights_by_default(
    runs: tuple[Dataset, list[Path]], tmp_path: Path
) -> None:
    dataset, members = runs
    assert read_member(members[0]).config.bn_batches == 30  # what the runs used after each epoch
    plain = load_weights(soup(members, tmp_path / "plain", dataset=dataset, bn_batches=0).weights)
    fresh = [load_weights(soup(members, tmp_path / f"bn{i}", dataset=dataset).weights) for i in (0, 1)]
    averaged, state = plain.model.state_dict(), fresh[0].model.state_dict()
    parameters = {name for name, _ in plain.model.named_parameters()}
    statistics = [n for n in state if n.endswith(("running_mean", "running_var"))]
    assert statistics  # the student has BatchNorm layers
    for name in parameters:
        assert torch.equal(state[name], averaged[name])  # the weights are the average either way
    changed = [n for n in statistics if not torch.allclose(state[n], averaged[n])]
    assert len(changed) > len(statistics) // 2  # re-estimated, not the members' average
    for name in statistics:  # measured on the same training batches: the same statistics again
        assert torch.equal(state[name], fresh[1].model.state_dict()[name])
    assert "re-estimated on 30 training batches" in fresh[0].provenance["soup"]["averaging"]
    assert "re-estimated" not in plain.provenance["soup"]["averaging"]
    with pytest.raises(UsageError, match="--bn-batches must be 0 or more"):
        soup(members, tmp_path / "bad", dataset=dataset, bn_batches=-1)


def test_measuring_a_run_again_reproduces_the_held_out_loss_distill_recorded(
    runs: tuple[Dataset, list[Path]], tmp_path: Path
) -> None:
    dataset, members = runs
    loaded = load_weights(members[1] / "weights.pt")
    config = DistillConfig.from_dict(loaded.provenance["distill_config"])
    threshold, metrics, _ = measure_and_write(
        dataset, members[1], config, loaded.model, tmp_path / "again.pt", selection="x", seconds=0.0, extra={}
    )
    assert metrics["val_kd"] == pytest.approx(loaded.provenance["metrics"]["val_kd"], rel=1e-5)
    assert threshold.value == pytest.approx(loaded.threshold.value, rel=1e-5)  # type: ignore[union-attr]


def test_soup_refuses_runs_from_different_pretrainings(
    runs: tuple[Dataset, list[Path]], tmp_path: Path
) -> None:
    dataset, members = runs
    other = tmp_path / "other"
    shutil.copytree(members[1], other)
    state = torch.load(other / "checkpoints" / "pretrain.pt", weights_only=True)
    name = next(k for k, v in state["student"].items() if v.is_floating_point())
    state["student"][name] = state["student"][name] + 1.0
    torch.save(state, other / "checkpoints" / "pretrain.pt")
    with pytest.raises(UsageError, match="starts from another pre-training"):
        soup([members[0], other], tmp_path / "soup", dataset=dataset)
    assert not (tmp_path / "soup" / "weights.pt").exists()


def test_soup_refuses_a_single_run_a_repeated_run_and_a_folder_without_weights(
    runs: tuple[Dataset, list[Path]], tmp_path: Path
) -> None:
    dataset, members = runs
    with pytest.raises(UsageError, match="at least two runs"):
        soup(members[:1], tmp_path / "soup", dataset=dataset)
    with pytest.raises(UsageError, match="is given twice"):
        soup([members[0], members[0]], tmp_path / "soup", dataset=dataset)
    with pytest.raises(UsageError, match=r"holds no weights\.pt"):
        soup([members[0], tmp_path], tmp_path / "soup", dataset=dataset)


def test_soup_refuses_runs_distilled_from_other_teachers(
    runs: tuple[Dataset, list[Path]], tmp_path: Path
) -> None:
    dataset, members = runs
    other = tmp_path / "other"
    shutil.copytree(members[1], other)
    payload = torch.load(other / "weights.pt", weights_only=True)
    payload["provenance"]["distill_config"]["teachers"] = ["a"]
    torch.save(payload, other / "weights.pt")
    with pytest.raises(UsageError, match="teachers="):
        soup([members[0], other], tmp_path / "soup", dataset=dataset)


def test_cli_soup_reads_the_recorded_dataset_and_will_not_overwrite_without_force(
    runs: tuple[Dataset, list[Path]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, members = runs
    out = tmp_path / "soup"
    main(["soup", *map(str, members[:2]), "--out", str(out)])
    printed = capsys.readouterr().out
    assert str(out / "weights.pt") in printed and "soup" in printed
    assert load_weights(out / "weights.pt").provenance["dataset"]["name"] == "folder"
    with pytest.raises(SystemExit) as exc:
        main(["soup", *map(str, members[:2]), "--out", str(out)])
    assert exc.value.code != 0
    assert "pass --force" in capsys.readouterr().err
