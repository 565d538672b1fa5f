"""Spawned steps in the pure state machine, property-tested: random spawn trees (nested, with
optional children, `after=` between siblings, gathered or not), random successes and failures,
completed in a random order. After every transaction the run counts exactly its unfinished steps
and every joining parent waits for exactly its unfinished children; at the end every step has the
status and output an independent recursive reference gives it."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

import plait
from plait.core.cascade import new_run
from plait.core.rows import Outcome, RunStatus, Spawn, StepRow, StepStatus
from plait.core.transitions import claim, complete
from plait.core.txn import Need, Txn, drive

NOW = 1_000_000.0


@dataclasses.dataclass
class Node:
    """A step of the tree: how it ends, and what it spawns if it succeeds."""

    name: str
    succeeds: bool
    optional: bool = False
    after: tuple[str, ...] = ()
    children: list[Node] = dataclasses.field(default_factory=list)
    gathers: bool = False


@st.composite
def trees(draw: st.DrawFn, name: str = "root", depth: int = 0) -> Node:
    node = Node(name, succeeds=draw(st.integers(0, 5)) > 0)
    if depth >= 2:
        return node
    count = draw(st.integers(0, 4 if depth == 0 else 2))
    for i in range(count):
        kid = draw(trees(f"{name}/t-{i}", depth + 1))
        kid.optional = draw(st.booleans()) and draw(st.booleans())
        earlier = [c.name for c in node.children]
        if earlier:
            kid.after = tuple(draw(st.lists(st.sampled_from(earlier), unique=True, max_size=2)))
        node.children.append(kid)
    node.gathers = bool(node.children) and draw(st.booleans())
    return node


def expected(node: Node, ended: dict[str, StepStatus]) -> tuple[StepStatus, Any]:
    """The reference: how a step ends, and its output, from its own outcome and its children's."""
    if not node.succeeds:
        return StepStatus.FAILED, None
    outputs = {}
    for kid in node.children:  # siblings in spawn order: `after` names earlier ones only
        if any(ended[b] is not StepStatus.DONE for b in kid.after):
            ended[kid.name], outputs[kid.name] = StepStatus.SKIPPED, None
            _skip_below(kid, ended)
        else:
            ended[kid.name], outputs[kid.name] = expected(kid, ended)
    if any(ended[k.name] is not StepStatus.DONE and not k.optional for k in node.children):
        return StepStatus.FAILED, None
    if node.gathers:
        return StepStatus.DONE, [outputs[k.name] for k in node.children]
    return StepStatus.DONE, node.name


def _skip_below(node: Node, ended: dict[str, StepStatus]) -> None:
    for kid in node.children:  # never spawned: absent from the run
        ended.pop(kid.name, None)


class Rows:
    def __init__(self, run: Any, steps: list[StepRow]) -> None:
        self.run = run
        self.steps = {s.name: s for s in steps}

    def load(self, txn: Txn, need: Need) -> None:
        txn.add_run(need.run_id, self.run)
        for name in self.steps if need.all_steps else need.steps:
            txn.add_step(need.run_id, name, self.steps.get(name))

    def commit(self, txn: Txn) -> None:
        for key, step in txn.new_steps.items():
            assert key[1] not in self.steps, f"{key[1]} spawned twice"
            self.steps[key[1]] = step


def _outcome(node: Node, token: str) -> Outcome:
    if not node.succeeds:
        return Outcome("r", node.name, token, error_code="Boom", error_message="no")
    spawned = tuple(
        Spawn(k.name, "t", None, after=k.after, optional=k.optional) for k in node.children
    )
    gather = orjson.dumps([k.name for k in node.children]) if node.gathers else None
    output = None if gather is not None else orjson.dumps(node.name)
    return Outcome("r", node.name, token, output=output, spawned=spawned, gather=gather)


def _check_counts(rows: Rows) -> None:
    steps = list(rows.steps.values())
    assert rows.run.unfinished == sum(1 for s in steps if not s.status.terminal)
    for parent in steps:
        if parent.joining:
            kids = [s for s in steps if any(e.target == parent.name for e in s.dependents)]
            kids = [k for k in kids if k.task is not None]
            assert parent.unmet == sum(1 for k in kids if not k.status.terminal), parent.name


@settings(max_examples=300, deadline=None)
@given(trees(), st.randoms(use_true_random=False))
def test_spawned_steps_end_as_the_reference_says_whatever_the_order(tree: Node, rnd: Any) -> None:
    wf = plait.Workflow("model")
    wf.add_step("root", lambda: None)
    wf.add_step("sink", lambda **_: None, ["root"])
    run, steps, _ = new_run(wf.plan(), "r", b"{}", NOW)
    rows = Rows(run, steps)
    nodes: dict[str, Node] = {}
    stack = [tree]
    while stack:
        node = stack.pop()
        nodes[node.name] = node
        stack.extend(node.children)
    nodes["sink"] = Node("sink", succeeds=True)

    while not run.status.terminal:
        ready = sorted(s.name for s in rows.steps.values() if s.status is StepStatus.READY)
        assert ready, "stuck: nothing ready and the run has not ended"
        name = rnd.choice(ready)
        txn = Txn(NOW)
        drive(claim(txn, "r", name, token=name, worker_id="w", lease=30), rows.load, txn)
        txn = Txn(NOW)
        drive(complete(txn, _outcome(nodes[name], name)), rows.load, txn)
        assert txn.result.accepted == [True]
        rows.commit(txn)
        _check_counts(rows)

    ended: dict[str, StepStatus] = {}
    root_status, root_output = expected(tree, ended)
    ended["root"] = root_status
    assert {n: s.status for n, s in rows.steps.items() if n != "sink"} == ended
    root = rows.steps["root"]
    if root_status is StepStatus.DONE:
        assert orjson.loads(root.output or b"null") == root_output
    sink = rows.steps["sink"].status
    assert sink is (StepStatus.DONE if root_status is StepStatus.DONE else StepStatus.SKIPPED)
    assert run.status is (
        RunStatus.COMPLETED if root_status is StepStatus.DONE else RunStatus.FAILED
    )
    assert run.unfinished == 0
