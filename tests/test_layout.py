"""The floor plan holds: the protocol layer knows nothing of checks or reports, probes use each
other's public names only, diag/ reaches checks/ only through the registry, a check's code is
found from its ID, and the import graph has no circle."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

from checks import REGISTRY

ROOT = Path(__file__).resolve().parent.parent
# Stdlib-only leaves that diag/ owns and the wire layer may use: the outcome vocabulary of a
# probe, and registrar URI parsing. Neither knows of checks or reports.
SHARED_LEAVES = {"diag.outcomes", "diag.target"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources(*packages: str) -> Iterator[Path]:
    for package in packages:
        yield from sorted((ROOT / package).rglob("*.py"))


def imports(path: Path) -> Iterator[tuple[str, list[str]]]:
    """(module, names) of every import in the file, wherever it stands (lazy ones too)."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [a.name for a in node.names]
            package = ROOT / node.module.replace(".", "/")
            modules = [n for n in names if (package / f"{n}.py").exists()]
            if len(modules) < len(names):  # names defined in node.module itself
                yield node.module, [n for n in names if n not in modules]
            for name in modules:  # `from diag import outcomes` imports diag.outcomes
                yield f"{node.module}.{name}", []


def ours(module: str) -> bool:
    return module.split(".")[0] in ("checks", "diag")


def test_the_wire_layer_imports_nothing_from_checks_or_diag_but_the_shared_leaves() -> None:
    wrong = [
        f"{module_name(p)} imports {m}"
        for p in sources("checks/wire")
        for m, _ in imports(p)
        if ours(m) and not m.startswith("checks.wire") and m not in SHARED_LEAVES
    ]
    assert wrong == []


def test_the_shared_leaves_import_only_the_standard_library() -> None:
    for leaf in SHARED_LEAVES:
        path = ROOT / (leaf.replace(".", "/") + ".py")
        found = {m.split(".")[0] for m, _ in imports(path)}
        assert found <= set(sys.stdlib_module_names) | {"__future__"}, (leaf, found)


def test_no_module_imports_another_modules_private_names() -> None:
    wrong = [
        f"{module_name(p)} imports {name} from {m}"
        for p in sources("checks", "diag")
        for m, names in imports(p)
        if ours(m) and m != module_name(p)
        for name in names
        if name.startswith("_") and not name.startswith("__")
    ]
    assert wrong == []


def test_diag_reaches_checks_only_through_the_registry() -> None:
    wrong = [
        f"{module_name(p)} imports {m} {names}"
        for p in sources("diag")
        for m, names in imports(p)
        if m.startswith("checks") and m != "checks"  # the registry package is the interface
    ]
    assert wrong == []


def test_every_check_lives_in_the_module_its_id_names() -> None:
    for check in REGISTRY:
        family, _, name = check.id.partition(".")
        expected = f"checks.{family}.{name.replace('-', '_')}"
        assert check.run.__module__ == expected, (check.id, check.run.__module__)


def test_the_import_graph_has_no_circle() -> None:
    graph: dict[str, set[str]] = {}
    for path in sources("checks", "diag"):
        here = module_name(path)
        graph[here] = {m for m, _ in imports(path) if ours(m) and m != here}
    known = set(graph)
    # Tarjan's strongly connected components: any with more than one module is a circle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in known:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert circles == []
