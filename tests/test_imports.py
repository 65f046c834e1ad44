"""The package's import graph: every module imports in a fresh interpreter, and no module reaches
itself through imports (module-level, function-level and TYPE_CHECKING ones alike)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("loop", "evals")


def modules() -> dict[str, Path]:
    """Dotted name -> file, for every module of the packages."""
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The package modules `name` imports anywhere in its file. `from a.b import c` names the
    module a.b.c when that is a module, else a.b; a relative import is resolved against `name`."""
    is_pkg = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_pkg else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names
            ]
        else:
            continue
        for t in targets:
            # `import a.b.c` also runs a and a.b, but those are parents, not a cycle's edge
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports_of(name, path, set(mods)) for name, path in mods.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path a -> ... -> a, or None (depth-first search, three colours)."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_graph_sees_lazy_and_type_checking_imports():
    edges = graph()
    assert "loop.cell" in edges["loop.cluster"]  # imported inside functions only
    assert "loop.clean.result" in edges["loop.tiers"]  # under TYPE_CHECKING only


def test_no_module_imports_itself_through_others():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_workers_import_the_cell_module_not_the_driver():
    edges = graph()
    assert "loop.driver" not in edges["loop.cluster"]
    reach, todo = set(), ["loop.cell"]
    while todo:
        for nxt in edges[todo.pop()] - reach:
            reach.add(nxt)
            todo.append(nxt)
    assert not reach & {"loop.driver", "loop.track", "loop.prepare", "loop.commands"}, reach


def test_every_module_imports_in_a_fresh_interpreter():
    names = sorted(modules())
    code = "import importlib, sys\nfor n in sys.argv[1:]:\n    importlib.import_module(n)\n"
    # one interpreter per module: an import that only works after another module ran fails here
    for name in names:
        proc = subprocess.run(
            [sys.executable, "-c", code, name], cwd=ROOT, capture_output=True, text=True
        )
        assert proc.returncode == 0, f"{name}:\n{proc.stderr[-2000:]}"
