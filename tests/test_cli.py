"""The command-line shell: help, version, exit codes and error formatting."""

from __future__ import annotations

import subprocess
import sys

import pytest

from aedcli import __version__
from aedcli.cli import main


def run_cli(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aedcli", *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_version_flag_prints_the_package_version() -> None:
    result = run_cli(["--version"])
    assert result.returncode == 0
    assert result.stdout.strip() == f"aed {__version__}"


def test_help_lists_every_subcommand() -> None:
    result = run_cli(["--help"])
    assert result.returncode == 0
    for name in ("distill", "eval", "detect", "bench"):
        assert name in result.stdout


def test_unknown_subcommand_is_a_usage_error_with_exit_code_2() -> None:
    result = run_cli(["no-such-command"])
    assert result.returncode == 2
    assert "No such command" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_option_is_a_usage_error_with_exit_code_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["eval", "--no-such-option"])
    assert exc.value.code == 2
