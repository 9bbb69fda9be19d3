"""The project's import graph, read from the source (stdlib ``ast``, nothing is imported):
no cycles between our own modules, and the layering the extension zip relies on.

Every import counts, also those inside functions: a lazy import still ties two modules
together, it only hides the knot until the function runs.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SKIP_DIRS = {".venv", ".git", "__pycache__", "build", "dist", "out"}

# Cycles that exist outside the training split, left for their owners to open. Each entry is a
# pair of modules on a cycle; remove it once the cycle is gone (the test then checks it stays gone).
KNOWN_CYCLES: frozenset[frozenset[str]] = frozenset()

# The one place ``server`` may name ``training``: the lazy forward of the old command names
# (python -m server make-corpus|train-default|evaluate), inside a function, never at import time.
SERVER_TO_TRAINING = {"server.__main__": {"training.__main__"}}


def project_packages() -> list[str]:
    """Top-level packages of this repository (folders with an ``__init__.py``)."""
    return sorted(p.name for p in REPO.iterdir()
                  if p.is_dir() and p.name not in SKIP_DIRS and (p / "__init__.py").is_file())


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of every project package."""
    modules = {}
    for package in project_packages():
        for path in (REPO / package).rglob("*.py"):
            rel = path.relative_to(REPO)
            if SKIP_DIRS & set(rel.parts):
                continue
            parts = list(rel.with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _module_level(tree: ast.Module) -> set[int]:
    """Ids of the import statements that run when the module is imported (not inside a function)."""
    found, todo = set(), list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.add(id(node))
        todo.extend(ast.iter_child_nodes(node))
    return found


def imports_of(name: str, path: Path, modules: set[str]) -> list[tuple[str, bool]]:
    """(imported module, at import time?) for every import statement in the file. Relative imports
    resolve against ``name`` (a package's ``__init__`` against the package itself); ``from p import x``
    is module ``p.x`` when that is one of ours, else ``p``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    module_level = _module_level(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in module_level) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                # ``from ..server`` in wav2sem_blender climbs to the extension's root package, whose
                # children are this repository's top-level packages: an empty base is that root
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}" if target else alias.name
                found.append((sub if sub in modules else target, id(node) in module_level))
    return [(t, at_import) for t, at_import in found if t]


def graph() -> tuple[dict[str, set[str]], dict[str, list[tuple[str, bool]]]]:
    """(edges between project modules, every import of every module)."""
    files = module_files()
    raw = {name: imports_of(name, path, set(files)) for name, path in files.items()}
    edges = {name: {t for t, _ in found if t in files and t != name} for name, found in raw.items()}
    return edges, raw


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def cycle_pairs(edges: dict[str, set[str]], component: list[str]) -> set[frozenset[str]]:
    """The pairs of modules in a cycle that import each other directly (or, failing that, every
    edge inside it), so that the failure names what to cut."""
    members = set(component)
    inner = {(a, b) for a in component for b in edges[a] if b in members}
    mutual = {frozenset((a, b)) for a, b in inner if (b, a) in inner}
    return mutual or {frozenset(edge) for edge in inner}


def test_imports_are_resolved(tmp_path):
    """Relative imports, ``from package import module``, imports inside functions, and ``..`` out of
    the add-on package (which reaches the extension root, whose children are the top-level packages)."""
    (tmp_path / "addon").mkdir()
    path = tmp_path / "addon" / "mod.py"
    path.write_text("from . import sibling\nfrom .sibling import name\nfrom ..server.errors import E\n"
                    "import numpy as np\n\n\ndef f():\n    import torch\n")
    found = imports_of("addon.mod", path, {"addon", "addon.mod", "addon.sibling", "server", "server.errors"})
    assert found == [("addon.sibling", True), ("addon.sibling", True), ("server.errors", True), ("numpy", True),
                     ("torch", False)]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_graph_is_read():
    edges, _ = graph()
    assert {"server", "training", "wav2sem_blender", "tests"} <= set(project_packages())
    assert "training.splits" in edges["training.recipe"] and "training.splits" in edges["training.eval.evaluate"]
    assert "training.data.corpus" in edges["training.recipe"]  # imported inside a function


def test_no_import_cycles():
    edges, _ = graph()
    found = []
    for component in cycles(edges):
        unknown = cycle_pairs(edges, component) - KNOWN_CYCLES
        if unknown:
            found.append(" <-> ".join(sorted(next(iter(sorted(unknown, key=sorted))))) + f" (cycle: {', '.join(component)})")
    assert not found, "import cycles:\n" + "\n".join(found)


def test_known_cycles_still_exist():
    """An allow-listed pair that no longer forms a cycle must leave the list."""
    edges, _ = graph()
    live = set().union(*(cycle_pairs(edges, c) for c in cycles(edges)))
    assert KNOWN_CYCLES <= live, f"remove from KNOWN_CYCLES: {sorted(map(sorted, KNOWN_CYCLES - live))}"


def _top(target: str) -> str:
    return target.split(".")[0]


# What each side may never import (docs/ARCHITECTURE.md): the add-on runs in Blender's Python
# (no torch) and talks to the server only through a subprocess; the contract is stdlib + numpy,
# imported by both sides; the extension zip ships server/ without training/.
FORBIDDEN = {
    "server": {"wav2sem_blender": "the server never depends on the add-on",
               "training": "the extension zip ships server/ without training/"},
    "wav2sem_blender": {"server": "the add-on starts the server as a process, it never imports it",
                        "torch": "Blender's Python has no torch",
                        "training": "the zip has no training/"},
}
CONTRACT_MAY_IMPORT = {"wav2sem_contract", "numpy"}  # and the standard library


def layering_errors(raw: dict[str, list[tuple[str, bool]]]) -> list[str]:
    wrong = []
    for name, found in raw.items():
        top = _top(name)
        for target, at_import in found:
            why = FORBIDDEN.get(top, {}).get(_top(target))
            if why and not (target in SERVER_TO_TRAINING.get(name, set()) and not at_import):
                wrong.append(f"{name} imports {target}: {why}")
            if top == "wav2sem_contract" and not (_top(target) in CONTRACT_MAY_IMPORT
                                                   or _top(target) in sys.stdlib_module_names):
                wrong.append(f"{name} imports {target}: the contract is stdlib + numpy (both sides import it)")
    return wrong


def test_layering_rules_catch_a_planted_import():
    raw = {"wav2sem_blender.rig": [("server.pipeline", False), ("numpy", True)],
           "wav2sem_contract.paths": [("torch", False), ("os", True), ("wav2sem_contract.errors", True)],
           "server.audio": [("training.data", False)],
           "server.__main__": [("training.__main__", False)]}
    assert layering_errors(raw) == [
        "wav2sem_blender.rig imports server.pipeline: the add-on starts the server as a process, it never imports it",
        "wav2sem_contract.paths imports torch: the contract is stdlib + numpy (both sides import it)",
        "server.audio imports training.data: the extension zip ships server/ without training/",
    ]


def test_layering():
    _, raw = graph()
    wrong = layering_errors(raw)
    assert not wrong, "\n".join(wrong)
