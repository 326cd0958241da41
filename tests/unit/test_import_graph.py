"""No import cycles between modules of `framework/` or `fake_stream_proxy/`, and no service imports `app.py`.

Every import counts: those under `TYPE_CHECKING` and those inside functions too, since a cycle held off by
either still means two modules that cannot be understood (or loaded) one without the other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(package: str) -> dict[str, set[str]]:
    modules = {module_name(p): p for p in (ROOT / package).rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = here[: len(here) - node.level + 1] if node.level else []
                prefix = ".".join(base + ([node.module] if node.module else []))
                targets = [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in modules else prefix for a in node.names]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while (w := stack.pop()) != v:
                component.append(w)
            if component:
                found.append(sorted([v, *component]))

    for v in graph:
        if v not in index:
            visit(v)
    return found


@pytest.mark.parametrize("package", ["framework", "fake_stream_proxy"])
def test_no_import_cycles(package: str) -> None:
    assert cycles(import_graph(package)) == []


def test_the_checker_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_fake_service_imports_the_app() -> None:
    graph = import_graph("fake_stream_proxy")
    importers = {m for m, deps in graph.items() if "fake_stream_proxy.app" in deps}
    assert importers <= {"fake_stream_proxy", "fake_stream_proxy.cli"}, importers


def test_every_fake_service_folder_has_the_same_file_roles() -> None:
    services = [p for p in (ROOT / "fake_stream_proxy").iterdir() if p.is_dir() and (p / "routes.py").exists()]
    assert len(services) >= 5
    for folder in services:
        assert {"routes.py", "handlers.py"} <= {p.name for p in folder.iterdir()}, folder.name
        assert (folder / "store.py").exists() or (folder / "models.py").exists(), folder.name
