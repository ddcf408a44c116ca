"""The command-line shell: help, version, exit codes and error formatting."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from _robustness_fixtures import assert_one_sentence, run_aed, tiny_weights

from aedcli import __version__
from aedcli.cli.app import app, main

COMMANDS = ("detect", "teach", "distill", "eval", "calibrate", "bench", "export")
MOST_OPTIONS = {"detect": 15, "eval": 15, "bench": 15, "teach": 20, "distill": 20}
"""The most options a command's help may list (--help included): a user reads every one of them."""


def run_cli(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aedcli", *args], capture_output=True, text=True, timeout=120, check=False
    )


def help_text(command: str, capsys: pytest.CaptureFixture[str]) -> str:
    try:
        main([command, "--help"])
    except SystemExit as exc:
        assert exc.code in (0, None)
    return capsys.readouterr().out


def listed_options(text: str) -> list[str]:
    """The options of a help text: the lines of its Options section that start with a dash."""
    section = text.split("Options:", 1)[1]
    return [line.strip() for line in section.splitlines() if re.match(r"^  {1,3}-", line)]


def test_version_flag_prints_the_package_version() -> None:
    result = run_cli(["--version"])
    assert result.returncode == 0
    assert result.stdout.strip() == f"aed {__version__}"


def test_help_lists_every_subcommand_and_no_removed_one() -> None:
    result = run_cli(["--help"])
    assert result.returncode == 0
    for name in COMMANDS:
        assert name in result.stdout
    assert "soup" not in result.stdout and "devset " not in result.stdout
    assert "<bool>" not in result.stdout and not re.search(r"\bround", result.stdout, re.IGNORECASE)


def test_the_app_registers_exactly_the_documented_commands() -> None:
    assert sorted(c.name for c in app.registered_commands) == sorted(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help_shows_no_type_placeholders_or_ranges_and_never_says_round(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    text = help_text(command, capsys)
    assert "Usage:" in text and "Options:" in text
    assert not re.search(r"<(bool|str|int|float|list|Path)", text), text  # no Python type names
    assert "{" not in text.splitlines()[0]  # the usage line names arguments plainly
    assert "[x>=" not in text and "x<=" not in text
    assert not re.search(r"\bround", text, re.IGNORECASE), text
    options = listed_options(text)
    assert any("--help" in line for line in options)
    if command in MOST_OPTIONS:
        assert len(options) <= MOST_OPTIONS[command], f"{command} lists {len(options)} options:\n{text}"


def test_unknown_subcommand_is_a_usage_error_with_exit_code_2() -> None:
    result = run_cli(["no-such-command"])
    assert result.returncode == 2
    assert "No such command" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("removed", ["soup", "devset"])
def test_removed_subcommands_are_unknown(removed: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([removed])
    assert exc.value.code == 2
    assert "No such command" in capsys.readouterr().err


def test_unknown_option_is_a_usage_error_with_exit_code_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["eval", "--no-such-option"])
    assert exc.value.code == 2
    assert "--no-such-option" in capsys.readouterr().err


def test_export_without_onnxruntime_says_how_to_install_it_and_offers_no_runtime_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = tiny_weights(tmp_path / "w.pt")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now fails
    out = tmp_path / "student.onnx"

    code, _, err = run_aed(["export", "--weights", weights, "--onnx", out], capsys)

    line = assert_one_sentence(code, err, exit_code=1, names="onnxruntime")
    assert "pip install onnxruntime" in line
    assert "--runtime" not in line  # export has no such option
    assert not out.exists() and list(tmp_path.iterdir()) == [weights]
