"""Region mixing: a rectangle of a sped-up frame, and of its targets, pasted into a normal training frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _distill_fixtures import distill_write_dataset, distill_write_targets, tiny_config

from aedcli.cli import main
from aedcli.data.clips import Dataset, sped_up
from aedcli.distill import DistillConfig, StackDataset, distill, region_mix
from aedcli.errors import UsageError
from aedcli.weights import load_weights

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _targets(rng: np.random.Generator, n: int, k: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Consistent targets as the teachers write them: m = 4x4 block maxima of l, s = max of l."""
    l = rng.random((n, k, 16, 16)).astype(np.float32)  # noqa: E741
    m = l.reshape(n, k, 4, 4, 4, 4).max(axis=(3, 5))
    return l.reshape(n, k, -1).max(axis=2), m, l


def test_region_mix_pastes_one_rectangle_of_pixels_and_the_same_cells_of_the_targets() -> None:
    rng = np.random.default_rng(0)
    stack, patch = np.zeros((3, 240, 360), np.uint8), np.full((3, 240, 360), 200, np.uint8)
    (s, m, big), (ps, pm, pl) = _targets(rng, 1), _targets(rng, 1)
    sizes = set()
    for seed in range(40):
        out, ns, nm, nl = region_mix(
            stack, (s[0], m[0], big[0]), patch, (ps[0], pm[0], pl[0]), np.random.default_rng(seed)
        )
        pasted = out[0] == 200
        rows, cols = np.flatnonzero(pasted.any(axis=1)), np.flatnonzero(pasted.any(axis=0))
        assert (
            pasted.sum() == len(rows) * len(cols) and (out[1:] == out[0]).all()
        )  # one rectangle, all 3 frames
        assert rows[0] % 60 == 0 and cols[0] % 90 == 0 and len(rows) in (60, 120) and len(cols) in (90, 180)
        cells = np.zeros((4, 4), bool)
        cells[rows[0] // 60 : (rows[-1] + 1) // 60, cols[0] // 90 : (cols[-1] + 1) // 90] = True
        np.testing.assert_array_equal(nm[:, cells], pm[0][:, cells])
        np.testing.assert_array_equal(nm[:, ~cells], m[0][:, ~cells])
        fine = cells.repeat(4, 0).repeat(4, 1)
        np.testing.assert_array_equal(nl[:, fine], pl[0][:, fine])
        np.testing.assert_array_equal(nl[:, ~fine], big[0][:, ~fine])
        np.testing.assert_array_equal(nm, nl.reshape(2, 4, 4, 4, 4).max(axis=(2, 4)))  # still consistent
        np.testing.assert_array_equal(ns, nl.reshape(2, -1).max(axis=1))
        sizes.add((len(rows), len(cols)))
    assert stack.max() == 0 and m[0].max() == big[0].max()  # inputs untouched
    assert sizes == {(60, 90), (60, 180), (120, 90), (120, 180)}


def _two_videos(tmp_path: Path) -> list[Path]:
    paths = []
    for v in range(2):
        path = tmp_path / f"video{v}.npy"
        np.save(path, np.full((12, 32, 48), 10 * (v + 1), np.uint8))  # each video its own grey
        paths.append(path)
    return paths


def test_mixing_draws_patches_from_sped_up_frames_of_the_same_video_only(tmp_path: Path) -> None:
    paths = _two_videos(tmp_path)
    frames = [paths[0], paths[1], paths[0], paths[1]]
    steps = [1, 1, 2, 2]  # two videos at normal speed, then each at 2x: 12 + 12 + 6 + 6 items
    rng = np.random.default_rng(1)
    s, m, l = _targets(rng, 36, k=1)  # noqa: E741
    plain = StackDataset(frames, 3, (s, m, l), steps)
    mixed = StackDataset(frames, 3, (s, m, l), steps, mix=1.0, seed=5)
    for i in range(36):
        stack, _, mm, ml = mixed[i]
        _, _, pm, pl = plain[i]
        if i >= 24:  # sped-up items are never mixed
            assert np.array_equal(mm, pm) and np.array_equal(ml, pl)
            continue
        assert not np.array_equal(ml, pl)  # every normal-speed item got a patch of targets
        video = i // 12
        candidates = [j for j in range(24, 36) if (j - 24) // 6 == video]
        assert any(
            np.array_equal(ml[:, :4, :4] if False else ml, _paste_of(pl, l[j], ml)) for j in candidates
        )
        assert set(np.unique(stack).tolist()) == {10 * (video + 1)}  # the same video: one grey everywhere


def _paste_of(base: np.ndarray, patch: np.ndarray, mixed: np.ndarray) -> np.ndarray:
    """``base`` with the cells where ``mixed`` differs from it taken from ``patch``."""
    changed = mixed != base
    out = base.copy()
    out[changed] = patch[changed]
    return out


def test_mixing_changes_with_the_epoch_and_repeats_for_the_same_epoch(tmp_path: Path) -> None:
    paths = _two_videos(tmp_path)
    s, m, l = _targets(np.random.default_rng(2), 36, k=1)  # noqa: E741
    data = StackDataset([*paths, *paths], 3, (s, m, l), [1, 1, 2, 2], mix=0.5, seed=0)

    def draw(epoch: int) -> list[np.ndarray]:
        data.set_epoch(epoch)
        return [data[i][3] for i in range(24)]

    first, again, second = draw(0), draw(0), draw(1)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    mixed = sum(not np.array_equal(a, l[i]) for i, a in enumerate(first))
    assert 4 <= mixed <= 20  # about half of the 24 normal-speed items


def test_mixing_needs_sped_up_copies() -> None:
    with pytest.raises(UsageError, match="--region-mix pastes in sped-up frames; add --speedups"):
        DistillConfig(region_mix=0.5)
    with pytest.raises(UsageError, match="--region-mix is a probability"):
        DistillConfig(region_mix=1.5, speedups=(2,))


def test_distillation_with_region_mixing_trains_and_records_it(tmp_path: Path) -> None:
    dataset = distill_write_dataset(tmp_path / "data")
    out = tmp_path / "run"
    distill_write_targets(dataset, out / "targets", ("a",))
    fast = [sped_up(c, 2) for c in dataset.train]
    distill_write_targets(
        Dataset(dataset.name, dataset.root, fast, [], dataset.gray, dataset.fps), out / "targets", ("a",)
    )
    result = distill(dataset, out, tiny_config(speedups=(2,), region_mix=0.5, select="val"), quiet=True)
    assert result.weights is not None
    assert load_weights(result.weights).provenance["distill_config"]["region_mix"] == 0.5


def test_cli_refuses_region_mixing_without_speedups(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = distill_write_dataset(tmp_path / "data")
    args = ["distill", "--dataset", "folder", "--root", str(dataset.root), "--out", str(tmp_path / "run")]
    with pytest.raises(SystemExit) as exc:
        main([*args, "--region-mix", "0.5", "--quiet"])
    assert exc.value.code == 2 and "add --speedups" in capsys.readouterr().err
