"""The package's imports, read with ``ast`` (nothing is imported): no cycle, and each layer
imports only the layers below it: schemas <- prompts <- transforms <- runs <- pipeline; the
trainer uses schemas, prompts and transforms, never runs or pipeline."""
from __future__ import annotations

import ast
from itertools import pairwise
from pathlib import Path

import pytest

from support import REPO

# Each layer and the layers it may import (besides itself).
ALLOWED = {
    "schemas": set(),
    "prompts": {"schemas"},
    "transforms": {"schemas", "prompts"},
    "runs": {"schemas", "prompts", "transforms", "trainer"},  # exports build the trainer's own rows
    "pipeline": {"schemas", "prompts", "transforms", "runs", "trainer"},
    "trainer": {"schemas", "prompts", "transforms"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(("groundcot", *(parts[:-1] if parts[-1] == "__init__" else parts)))


def package_files() -> dict[str, Path]:
    """Every module of the package (the tests and the demo's data scripts aside)."""
    files = {}
    for path in sorted(REPO.rglob("*.py")):
        rel = path.relative_to(REPO).parts
        if rel[0] in ("tests", "jobs") or any(p.startswith(".") or p == "build" for p in rel):
            continue
        files[module_name(path)] = path
    return files


def imports(path: Path, name: str, known: set[str]) -> dict[str, int]:
    """The groundcot modules ``path`` imports, at module level or inside functions: {module: line}."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from .x import y
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # import a.b.c: the deepest module of ours it names
                target = target.rpartition(".")[0]
            if target and target != name:
                found.setdefault(target, node.lineno)
    return found


def graph() -> dict[str, dict[str, int]]:
    files = package_files()
    return {name: imports(path, name, set(files)) for name, path in files.items()}


def layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ALLOWED else None


def find_cycle(edges: dict[str, dict[str, int]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, {})):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (found := visit(start)):
            return found
    return None


def all_cycles(edges: dict[str, dict[str, int]]) -> list[list[str]]:
    """A cycle per group of modules that import each other, until none is left."""
    edges = {a: dict(b) for a, b in edges.items()}
    found = []
    while cycle := find_cycle(edges):
        found.append(cycle)
        del edges[cycle[-2]][cycle[-1]]  # break it and look again
    return found


def test_the_walk_finds_the_imports_it_should():
    edges = graph()
    assert len(edges) > 50 and "groundcot.pipeline.cli" in edges
    assert "groundcot.transforms.stage" in edges["groundcot.pipeline.graph"]  # module level
    assert "groundcot.runs.plots" in edges["groundcot.runs.card"]  # inside a function


def test_no_import_cycle():
    edges = graph()
    cycles = [" -> ".join(f"{a} (line {edges[a][b]})" for a, b in pairwise(c)) + f" -> {c[-1]}"
              for c in all_cycles(edges)]
    assert not cycles, "import cycles (even a function-level import closes one):\n" + "\n".join(cycles)


def test_layers_import_only_the_layers_below():
    wrong = []
    for module, targets in graph().items():
        mine = layer(module)
        if mine is None:  # groundcot/__main__.py, bench/: may use anything
            continue
        for target, line in sorted(targets.items()):
            theirs = layer(target)
            if theirs is not None and theirs != mine and theirs not in ALLOWED[mine]:
                wrong.append(f"{module} (line {line}) imports {target}: {mine} may not import {theirs}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("edges, cycle", [
    ({"a": {"b": 1}, "b": {"c": 1}, "c": {}}, None),
    ({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}}, ["a", "b", "c", "a"]),
    ({"x": {"y": 1}, "y": {"y2": 1}, "y2": {"y": 1}}, ["y", "y2", "y"]),
])
def test_find_cycle_names_the_modules_in_order(edges, cycle):
    assert find_cycle(edges) == cycle


def test_all_cycles_finds_each_one():
    edges = {"a": {"b": 1}, "b": {"a": 1}, "c": {"d": 1}, "d": {"c": 1}, "e": {"a": 1}}
    assert all_cycles(edges) == [["a", "b", "a"], ["c", "d", "c"]]


def test_relative_and_from_imports_resolve_to_modules(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    source = pkg / "mod.py"
    source.write_text("from . import sib\nfrom .sub import thing\nimport groundcot.runs.plots as p\n"
                      "def f():\n    from groundcot import prompts\n")
    known = {"groundcot.pkg", "groundcot.pkg.sib", "groundcot.pkg.sub", "groundcot.runs.plots", "groundcot.prompts"}
    assert imports(source, "groundcot.pkg.mod", known) == {
        "groundcot.pkg.sib": 1, "groundcot.pkg.sub": 2, "groundcot.runs.plots": 3, "groundcot.prompts": 5}
