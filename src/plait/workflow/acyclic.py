"""The workflow graph must be acyclic: Kahn's algorithm, and on a cycle, one cycle's path."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from .._errors import DefinitionError


def check_acyclic(workflow: str, steps: Mapping[str, Collection[str]]) -> None:
    """Kahn's algorithm over {step: its dependencies, each named once}; on a cycle, report one
    cycle path. The collections are used as given (a fan-out's 100,000 steps share one).

    Steps usually come after their dependencies (a graph defined in order): that is checked
    first, each shared collection once, and proves the graph acyclic without Kahn's lists."""
    deps = steps
    if _in_order(deps):
        return
    remaining = {name: len(d) for name, d in deps.items()}
    dependents: dict[str, list[str]] = {name: [] for name in steps}
    for name, ds in deps.items():
        for d in ds:
            dependents[d].append(name)
    queue = [n for n, c in remaining.items() if c == 0]
    seen = 0
    while queue:
        n = queue.pop()
        seen += 1
        for m in dependents[n]:
            remaining[m] -= 1
            if remaining[m] == 0:
                queue.append(m)
    if seen == len(steps):
        return
    # walk backwards along unresolved dependencies until a name repeats
    node = next(n for n, c in remaining.items() if c > 0)
    path = [node]
    while True:
        node = next(d for d in sorted(deps[node]) if remaining[d] > 0)
        if node in path:
            cycle = [*path[path.index(node) :], node]
            cycle.reverse()
            raise DefinitionError(
                f"workflow {workflow!r}, step {node!r}: cycle: {' -> '.join(cycle)}"
            )
        path.append(node)


def _in_order(steps: Mapping[str, Collection[str]]) -> bool:
    """Whether every step names only steps before it (then no cycle can exist)."""
    before: set[str] = set()
    checked: set[int] = set()  # collections whose names are all before (the set only grows)
    for name, deps in steps.items():
        if deps and id(deps) not in checked:
            for d in deps:
                if d not in before:
                    return False
            checked.add(id(deps))  # alive in `steps` meanwhile: its id is its own
        before.add(name)
    return True
