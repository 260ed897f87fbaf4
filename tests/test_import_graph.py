"""The package's imports flow one way: no module imports itself back, no subpackage circles (function-level
imports count too — they are circles that only show later)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "bireco"


def _module_name(f: Path) -> str:
    parts = f.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module -> the bireco modules it imports anywhere in its file."""
    files = {_module_name(f): f for f in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, f in files.items():
        package = mod if f.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                names = [base, *(f"{base}.{a.name}" for a in node.names)]
            else:
                continue
            for name in names:
                while name and name not in files:
                    name = name.rpartition(".")[0]
                if name and name != mod:
                    graph[mod].add(name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
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
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def subpackage(mod: str) -> str:
    """bireco.lit.module -> bireco.lit; top-level modules stand for themselves."""
    parts = mod.split(".")
    if len(parts) > 1 and (PACKAGE / parts[1]).is_dir():
        return ".".join(parts[:2])
    return mod


def test_no_module_cycle() -> None:
    assert cycles(import_graph()) == []


def test_no_subpackage_cycle() -> None:
    graph: dict[str, set[str]] = {}
    for mod, deps in import_graph().items():
        graph.setdefault(subpackage(mod), set()).update(
            subpackage(d) for d in deps if subpackage(d) != subpackage(mod)
        )
    for deps in list(graph.values()):
        for d in deps:
            graph.setdefault(d, set())
    assert cycles(graph) == []


def test_the_checker_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


# one-way flow: cli -> pipeline -> factory (the composition root) -> lit -> losses / data / models
LAYERS = [
    {"bireco.cli"},
    {"bireco.pipeline"},
    {"bireco.factory"},
    {"bireco.lit"},
    {"bireco.losses", "bireco.data", "bireco.models"},
]


def test_imports_flow_down_the_layers() -> None:
    """No module of a lower layer imports one of a higher layer (the training path's layering)."""
    rank = {name: i for i, layer in enumerate(LAYERS) for name in layer}
    upward = []
    for mod, deps in import_graph().items():
        here = rank.get(subpackage(mod))
        for d in deps:
            there = rank.get(subpackage(d))
            if here is not None and there is not None and there < here:
                upward.append(f"{mod} -> {d}")
    assert upward == []
