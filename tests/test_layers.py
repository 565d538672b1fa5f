"""The house's layering rule (docs/architecture.md), checked on every import of src/plait:

    cli → server → testing → engine → worker → _runtime → declare → workflow → data → stores → core → foundation

A module imports from its own wing or from wings to its right; `TYPE_CHECKING` and
function-local imports count like any other. No import cycle, except the one documented cycle
inside `workflow/` (a Workflow holds its tasks; a running step's context spawns them). Nothing
below `engine/` names `Engine`: it takes a `Runtime`."""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "plait"
ORDER = [
    "cli",
    "server",
    "testing",
    "engine",
    "worker",
    "_runtime",
    "declare",
    "workflow",
    "data",
    "stores",
    "core",
    "foundation",
]
FOUNDATION = {"_errors", "_codec", "_portal", "_clock"}
TOP_LEVEL = {"__init__", "__main__", "_runtime", *FOUNDATION}
CYCLE_ALLOWED_IN = "workflow"


def wing(module: str) -> str | None:
    """The wing of a module below plait ("core.rows" → "core"); None for the face."""
    head = module.split(".")[0]
    if head in FOUNDATION:
        return "foundation"
    return head if head in ORDER else None


def modules(root: Path = SRC) -> dict[str, Path]:
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(module: str, path: Path) -> Iterator[tuple[str, int]]:
    """Every plait module a module imports (by dotted name below plait), with its line."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    if module == "__init__":
        package = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
            elif node.module and node.module.split(".")[0] == "plait":
                base, node_module = [], node.module.removeprefix("plait").lstrip(".")
                yield from _targets(base, node_module or None, node, module)
                continue
            else:
                continue
            yield from _targets(base, node.module, node, module)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("plait."):
                    yield alias.name.removeprefix("plait."), node.lineno


def _targets(
    base: list[str], name: str | None, node: ast.ImportFrom, module: str
) -> Iterator[tuple[str, int]]:
    # `from pkg import a`: a may be a module of pkg or a name in it; resolving keeps the
    # longest prefix that is a module
    for alias in node.names:
        yield ".".join([*base, *([name] if name else []), alias.name]), node.lineno


def graph(found: Mapping[str, Path]) -> dict[str, dict[str, int]]:
    edges: dict[str, dict[str, int]] = {}
    for module, path in found.items():
        targets = edges.setdefault(module, {})
        for target, line in imports(module, path):
            resolved = _resolve(target, found)
            if resolved is not None and resolved != module:
                targets.setdefault(resolved, line)
    return edges


def _resolve(target: str, found: Mapping[str, Path]) -> str | None:
    parts = target.split(".")
    while parts:
        if ".".join(parts) in found:
            return ".".join(parts)
        parts.pop()
    return None


def against_the_rule(edges: Mapping[str, Mapping[str, int]]) -> list[str]:
    wrong = []
    for module, targets in edges.items():
        source = wing(module)
        for target, line in targets.items():
            aim = wing(target)
            if source is None or aim is None:
                continue  # the face (plait/__init__, __main__) may import every wing
            if ORDER.index(aim) < ORDER.index(source):
                wrong.append(f"{module}:{line} imports {target}: {source} → {aim} goes left")
    return wrong


def cycles(edges: Mapping[str, Mapping[str, int]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(edges.get(root, {})))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(edges.get(child, {}))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(component)
    return found


def names_engine(module: str, path: Path) -> list[int]:
    """Lines where a module below engine/ names `Engine` in code (docstrings do not count)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    lines = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Name) and node.id == "Engine") or (
            isinstance(node, ast.alias) and (node.asname or node.name).split(".")[-1] == "Engine"
        ):
            lines.append(node.lineno if isinstance(node, ast.Name) else 0)
    return lines


@pytest.fixture(scope="module")
def edges() -> dict[str, dict[str, int]]:
    return graph(modules())


def test_every_import_goes_to_the_right(edges: dict[str, dict[str, int]]) -> None:
    assert against_the_rule(edges) == []


def test_no_cycle_but_the_documented_one_in_workflow(edges: dict[str, dict[str, int]]) -> None:
    unexpected = [sorted(c) for c in cycles(edges) if {wing(m) for m in c} != {CYCLE_ALLOWED_IN}]
    assert unexpected == []


def test_the_top_holds_only_the_face_and_the_foundation() -> None:
    top = {p.stem for p in SRC.glob("*.py")}
    assert top <= TOP_LEVEL, sorted(top - TOP_LEVEL)
    assert {p.name for p in SRC.iterdir() if p.is_dir() and not p.name.startswith("__")} == {
        w for w in ORDER if w not in ("_runtime", "foundation")
    }


def test_nothing_below_the_engine_names_it() -> None:
    below = ORDER[ORDER.index("engine") + 1 :]
    named = {
        module: lines
        for module, path in modules().items()
        if wing(module) in below and (lines := names_engine(module, path))
    }
    assert named == {}


def test_the_checks_catch_what_they_look_for(tmp_path: Path) -> None:
    """The checker itself: a left-going import, a cycle, and a worker naming the Engine."""
    package = tmp_path / "plait"
    for folder in ("core", "engine", "worker"):
        (package / folder).mkdir(parents=True)
        (package / folder / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "core" / "rows.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..engine.engine import X\n"
    )
    (package / "engine" / "engine.py").write_text("def f():\n    from plait.core import rows\n")
    (package / "worker" / "worker.py").write_text("def g(e: 'Engine') -> None:\n    Engine\n")
    found = modules(package)
    fake = graph(found)
    assert against_the_rule(fake) == ["core.rows:3 imports engine.engine: core → engine goes left"]
    assert cycles(fake) == [{"core.rows", "engine.engine"}]
    assert names_engine("worker.worker", found["worker.worker"]) == [2]
