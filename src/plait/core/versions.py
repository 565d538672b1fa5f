"""Versions of a workflow side by side: what changed from one plan to another (steps, edges,
options, code), and whether two plans registered under one name and version are one graph. Pure.

A plan's `graph` is its fingerprint without the code (a workflow with code_changes="deploy" has
no other); plans saved before it was kept have none, and are compared step by step instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .rows import StepPlan, WorkflowPlan

# the fields of a step's plan that are its options (not its name, edges or code)
_OPTION_FIELDS = ("defaults", "optional", "priority", "inputs", "options")


@dataclass(frozen=True, slots=True)
class PlanDiff:
    """What changed from plan `a` to plan `b`: steps added and removed (in definition order),
    for steps in both their edges ({step: {"added": [...], "removed": [...]}}, each edge
    "dependency (kind)"), the options that changed ({step: [field, ...]}) and the code
    ({step: {"a": digest, "b": digest}}). `graph` says whether the graphs differ at all (a
    workflow-wide option such as its retry or timeout is not kept step by step: it shows only
    there, between two plans of one version string)."""

    a: str  # fingerprints
    b: str
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    edges: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    options: dict[str, list[str]] = field(default_factory=dict)
    code: dict[str, dict[str, str | None]] = field(default_factory=dict)
    graph: bool = False

    @property
    def same(self) -> bool:
        return not self.graph and not self.code

    def as_dict(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "graph_changed": self.graph,
            "steps_added": self.added,
            "steps_removed": self.removed,
            "edges": self.edges,
            "options": self.options,
            "code": self.code,
        }


def _edge(dep: str, kind: Any) -> str:
    return f"{dep} ({kind.value})"


def structure_differs(a: StepPlan, b: StepPlan) -> list[str]:
    """The option fields that differ between two plans of one step."""
    return [name for name in _OPTION_FIELDS if getattr(a, name) != getattr(b, name)]


def diff_plans(a: WorkflowPlan, b: WorkflowPlan) -> PlanDiff:
    steps_a = {s.name: s for s in a.steps}
    steps_b = {s.name: s for s in b.steps}
    out = PlanDiff(a.fingerprint, b.fingerprint)
    out.added.extend(n for n in steps_b if n not in steps_a)
    out.removed.extend(n for n in steps_a if n not in steps_b)
    for name, old in steps_a.items():
        new = steps_b.get(name)
        if new is None:
            continue
        edges_a = {_edge(d, k) for d, k in old.dependencies}
        edges_b = {_edge(d, k) for d, k in new.dependencies}
        if edges_a != edges_b:
            out.edges[name] = {
                "added": sorted(edges_b - edges_a),
                "removed": sorted(edges_a - edges_b),
            }
        changed = structure_differs(old, new)
        if changed:
            out.options[name] = changed
        if old.code != new.code and old.code is not None and new.code is not None:
            out.code[name] = {"a": old.code, "b": new.code}
    structural = bool(out.added or out.removed or out.edges or out.options)
    # two version strings are two graphs by their fingerprints: what their steps say then,
    # and for a plan saved before graphs were kept
    known = a.graph is not None and b.graph is not None and a.version == b.version
    graph = a.graph != b.graph if known else structural
    return PlanDiff(
        out.a, out.b, out.added, out.removed, out.edges, out.options, out.code, graph or structural
    )


def describe(diff: PlanDiff, most: int = 5) -> str:
    """The graph's changes in a few words: "steps added: 'x'; edges of 'y' changed"."""
    parts = []
    if diff.added:
        parts.append("steps added: " + ", ".join(repr(n) for n in diff.added[:most]))
    if diff.removed:
        parts.append("steps removed: " + ", ".join(repr(n) for n in diff.removed[:most]))
    for name in list(diff.edges)[:most]:
        parts.append(f"edges of {name!r} changed")
    for name, fields in list(diff.options.items())[:most]:
        parts.append(f"options of {name!r} changed ({', '.join(fields)})")
    if not parts and diff.graph:
        parts.append("the workflow's own options (retry, timeout, fail_fast) or step retries")
    return "; ".join(parts)
