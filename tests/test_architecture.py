"""The layout the docs describe: imports point one way, with no cycle, and no module grows unreadably long."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "aedcli"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The aedcli modules ``path`` imports, at any depth of its code (function-local imports count too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        found |= {n for n in names if n in known}
    return found


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    known = set(files)
    graph = {name: imports_of(path, known) - {name} for name, path in files.items()}
    # A module imports its parent packages' __init__ on the way in; those edges are not choices of the code.
    return {name: {d for d in deps if not name.startswith(d + ".")} for name, deps in graph.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return [*stack[stack.index(dep) :], dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_aedcli_imports_form_no_cycle() -> None:
    assert find_cycle(import_graph()) is None


def test_the_core_never_imports_the_command_line() -> None:
    graph = import_graph()
    offenders = [
        m
        for m, deps in graph.items()
        if not m.startswith(("aedcli.cli", "aedcli.__main__"))
        and any(d.startswith("aedcli.cli") for d in deps)
    ]
    assert offenders == []


def test_networks_and_dataset_readers_do_not_reach_up_into_training_or_detection() -> None:
    graph = import_graph()
    lower = [
        m for m in graph if m.startswith(("aedcli.model", "aedcli.data", "aedcli.video", "aedcli.scoring"))
    ]
    upper = (
        "aedcli.training",
        "aedcli.detect",
        "aedcli.teachers",
        "aedcli.evaluation",
        "aedcli.cli",
        "aedcli.bench",
    )
    assert [(m, d) for m in lower for d in graph[m] if d.startswith(upper)] == []


def test_no_module_is_longer_than_a_reader_can_follow() -> None:
    lengths = {
        p.relative_to(PACKAGE.parent).as_posix(): len(p.read_text().splitlines())
        for p in PACKAGE.rglob("*.py")
    }
    assert {name: n for name, n in lengths.items() if n > 800} == {}
