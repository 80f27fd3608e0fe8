"""core has no import circles: not between modules, counting imports inside functions (a lazy
import that closes a circle still ties the modules together), and not between its packages
(train/, eval/, data/, ...), which keeps the layers readable: base/ at the bottom, then data/,
policy/ and eval/, then train/, dagger/ and deploy/, with the CLI on top."""

from __future__ import annotations

import ast
from pathlib import Path

import polx

CORE = Path(polx.__file__).resolve().parent


def _modules() -> dict[str, Path]:
    out = {}
    for path in CORE.rglob("*.py"):
        parts = list(path.relative_to(CORE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the core modules it imports anywhere in its body (``from polx import x`` names
    ``polx.x`` when that is a module, else the package ``polx`` itself)."""
    modules = _modules()

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(up + ([base] if base else []))
                targets = [f"{base}.{alias.name}" for alias in node.names]
            for target in targets:
                found = resolve(target) if target.startswith("polx") else None
                if found is not None and found != name:
                    graph[name].add(found)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def package_of(module: str) -> str:
    """``polx.train.trainer`` -> ``polx.train``; a top-level module is its own unit."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 or (len(parts) == 2 and (CORE / parts[1]).is_dir()) else module


def test_the_finder_sees_a_circle_made_by_a_lazy_import() -> None:
    """The checks below can fail: a circle closed inside a function body is found."""
    graph = import_graph()
    assert "polx.base.checkpoint" in graph["polx.train.trainer"] and "polx.plugins" in graph["polx.cli"]
    assert cycles({**graph, "polx.errors": {"polx.cli"}})  # errors -> cli -> ... -> errors
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_core_modules_import_each_other_without_circles() -> None:
    assert cycles(import_graph()) == []


def test_core_packages_import_each_other_without_circles() -> None:
    graph = import_graph()
    packages: dict[str, set[str]] = {}
    for module, targets in graph.items():
        packages.setdefault(package_of(module), set()).update(package_of(t) for t in targets if package_of(t) != package_of(module))
    assert cycles(packages) == []


def test_base_imports_nothing_above_it() -> None:
    """base/ (checkpoints, run directories, device, paths) is the floor train/, eval/, dagger/ and deploy/ stand on."""
    allowed = {"polx.errors", "polx.version", "polx.base"}
    graph = import_graph()
    above = {m: sorted(t for t in ts if package_of(t) not in allowed) for m, ts in graph.items() if package_of(m) == "polx.base"}
    assert all(not t for t in above.values()), above
