"""The layering of DESIGN.md, checked on the source: every import (module-level or inside a
function) points down the layers, and no module imports itself back through others."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# package -> the packages of ours it may import (DESIGN.md, "Packages")
MAY_IMPORT = {
    "embeddings": set(),
    "index": {"embeddings"},
    "recsys": {"index", "embeddings"},
    "jobs": {"recsys", "index", "embeddings"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of ours it imports (a package import counts as its __init__)."""
    modules = {module_name(p): p for package in MAY_IMPORT for p in (ROOT / package).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                # `from pkg import mod` imports pkg.mod when that is a module, else pkg itself
                found = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                         for a in node.names]
            else:
                continue
            targets.update(t for t in found if t.split(".")[0] in MAY_IMPORT and t in modules)
        graph[name] = targets - {name}
    return graph


def test_every_import_points_down_the_layers() -> None:
    wrong = [f"{source} imports {target}" for source, targets in import_graph().items() for target in targets
             if target.split(".")[0] != source.split(".")[0]
             and target.split(".")[0] not in MAY_IMPORT[source.split(".")[0]]]
    assert not wrong, wrong


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a list of modules (the first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_cycle() -> None:
    graph = import_graph()
    assert "embeddings.backbones" in graph["embeddings.engines"]  # the walk sees function-level imports
    # a package's __init__ importing its own submodules is how a package exposes them, not a cycle
    edges = {source: {t for t in targets if not t.startswith(source + ".")}
             for source, targets in graph.items()}
    cycle = find_cycle(edges)
    assert cycle is None, " -> ".join(cycle)


def test_the_spec_resolver_sits_above_both_leaves() -> None:
    """timm's shape: one dispatcher (embeddings/backbones.py) above the modules it picks from."""
    graph = import_graph()
    assert {"embeddings.artifact", "embeddings.timm_models"} <= graph["embeddings.backbones"]
    for leaf in ("embeddings.artifact", "embeddings.timm_models"):
        assert "embeddings.backbones" not in graph[leaf]
    assert "embeddings.artifact" not in graph["embeddings.timm_models"]
    assert "embeddings.timm_models" not in graph["embeddings.artifact"]


if __name__ == "__main__":  # print the arrows: python tests/test_architecture.py
    for name, targets in sorted(import_graph().items()):
        print(f"{name} -> {', '.join(sorted(targets)) or '-'}")
