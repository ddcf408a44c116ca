"""Files shipped with the package: the default weights are found and load, and the wheel lists every
package."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib

import aedcli
from aedcli.errors import WeightsError
from aedcli.model.weights import load_weights
from aedcli.resources import default_weights, resolve_weights, shipped

REPO = Path(__file__).resolve().parents[1]


def test_default_weights_are_the_shipped_ped2_pt() -> None:
    path = default_weights()
    assert path.name == "ped2.pt" and path.is_file()
    assert path.resolve() == (REPO / "weights" / "ped2.pt").resolve()
    assert shipped("ped2.pt") == path


def test_default_weights_load_as_the_current_format() -> None:
    loaded = load_weights(default_weights())
    assert loaded.spec.height > 0 and loaded.config.teachers
    assert loaded.normal is not None and loaded.domain is not None


def test_resolve_weights_prefers_the_given_path(tmp_path: Path) -> None:
    assert resolve_weights(tmp_path / "mine.pt") == tmp_path / "mine.pt"
    assert resolve_weights(None) == default_weights()


def test_a_missing_shipped_file_is_none_and_missing_default_weights_say_to_pass_weights(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert shipped("no-such-file.pt") is None
    monkeypatch.setattr("aedcli.resources.DEFAULT_WEIGHTS", "no-such-file.pt")
    with pytest.raises(WeightsError, match="pass --weights"):
        default_weights()


def test_every_package_folder_is_listed_in_pyproject() -> None:
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    root = Path(aedcli.__file__).parent
    on_disk = {
        ".".join(("aedcli", *folder.relative_to(root).parts)).rstrip(".")
        for folder in (root, *(p.parent for p in root.rglob("*.py")))
        if "__pycache__" not in folder.parts
    }
    assert on_disk <= listed, f"packages missing from pyproject.toml: {sorted(on_disk - listed)}"
    assert listed - on_disk == {"aedcli.shipped"}, "pyproject.toml lists packages that do not exist"
    assert setuptools["package-dir"] == {"aedcli.shipped": "weights"}


@pytest.mark.slow
def test_a_built_wheel_carries_the_weights_and_finds_them_without_the_repository(tmp_path: Path) -> None:
    """``pip wheel .`` packs weights/ as aedcli.shipped; unpacked alone, the package finds its weights."""
    import subprocess
    import sys
    import zipfile

    pytest.importorskip("setuptools")
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(REPO),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next(tmp_path.glob("aedcli-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "aedcli/shipped/ped2.pt" in names
    assert any(n.startswith("aedcli/shipped/ped2-teachers/") and n.endswith(".pt") for n in names)
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    probe = (
        "from aedcli.resources import default_weights, shipped\n"
        "from aedcli.model.weights import load_weights\n"
        "p = default_weights(); load_weights(p); print(p); print(shipped('ped2-teachers'))"
    )
    # -I: no working folder or user site on the path, so only the unpacked wheel provides aedcli.
    env_path = [str(site), *[p for p in sys.path if "site-packages" in p]]
    found = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys\nsys.path[:0] = {env_path!r}\n{probe}"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert found.returncode == 0, found.stderr[-2000:]
    weights, teachers = found.stdout.split()
    assert Path(weights).is_relative_to(site) and Path(teachers).is_relative_to(site)
