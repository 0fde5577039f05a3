"""The embeddings package's import graph: no cycle (function-level imports included), nothing of ours
imported from above it, and commands that import only what they run.

Run as a script it prints the graph's arrows: `python tests/test_embeddings_imports.py`.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "embeddings"
UPPER_LAYERS = ("index", "recsys", "jobs", "tests")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """Every module `path` imports anywhere in it (top level, functions, TYPE_CHECKING blocks)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # `from embeddings import runner` imports the module embeddings.runner
            found.update(f"{node.module}.{alias.name}" for alias in node.names
                         if f"{node.module}.{alias.name}" in known)
    return found


def import_graph() -> dict[str, set[str]]:
    """embeddings module -> the modules of ours it imports (packages' own __init__ left out)."""
    files = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    known = set(files)
    graph = {}
    for name, path in files.items():
        ours = {m for m in imported_modules(path, known) if m.split(".")[0] in ("embeddings", *UPPER_LAYERS)}
        graph[name] = {m for m in ours if m in known and m != name and not name.startswith(m + ".")} | {
            m for m in ours if m.split(".")[0] in UPPER_LAYERS}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a list of modules (first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_embeddings_has_no_import_cycle() -> None:
    graph = import_graph()
    assert "embeddings.backbones" in graph["embeddings.engines"]  # the walk sees function-level imports
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]


def test_embeddings_imports_nothing_from_the_layers_above() -> None:
    upward = {(name, m) for name, targets in import_graph().items() for m in targets
              if m.split(".")[0] in UPPER_LAYERS}
    assert not upward


def test_the_spec_resolver_sits_above_both_leaves() -> None:
    graph = import_graph()
    assert {"embeddings.artifact", "embeddings.timm_models"} <= graph["embeddings.backbones"]
    for leaf in ("embeddings.artifact", "embeddings.timm_models"):
        assert "embeddings.backbones" not in graph[leaf]
    assert "embeddings.artifact" not in graph["embeddings.timm_models"]
    assert "embeddings.timm_models" not in graph["embeddings.artifact"]


if __name__ == "__main__":
    graph = import_graph()
    for name in sorted(graph):
        print(f"{name} -> {', '.join(sorted(graph[name])) or '-'}")
    cycle = find_cycle(graph)
    print("cycle: " + " -> ".join(cycle) if cycle else "no cycle")
    sys.exit(1 if cycle else 0)
