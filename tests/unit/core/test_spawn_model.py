"""Spawned steps in the pure state machine, property-tested: random spawn trees (nested, with
optional children, `after=` between siblings, outputs of earlier siblings and of a workflow step
read, detached children, gathered or not, now and then a read of a step that has not ended, which
refuses the spawn), random successes and failures, completed in a random order. After every
transaction the run counts exactly its unfinished steps and every joining parent waits for exactly
its unfinished joined children; at the end every step has the status and output an independent
recursive reference gives it, and the run has the status it gives."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

import plait
from plait.core.cascade import new_run
from plait.core.rows import EdgeKind, Outcome, RunStatus, Spawn, StepRow, StepStatus
from plait.core.spawn import spawner_of
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
    reads: tuple[str, ...] = ()  # earlier siblings' outputs (and "base", a workflow step) it reads
    detached: bool = False  # spawned with join=False
    bad: bool = False  # its spawns read a step the run does not have: refused at commit


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
        kid.reads = tuple(
            draw(st.lists(st.sampled_from([*earlier, "base"]), unique=True, max_size=2))
        )
        kid.detached = draw(st.booleans())
        node.children.append(kid)
    joined = [c for c in node.children if not c.detached]
    node.gathers = bool(joined) and draw(st.booleans())
    node.bad = bool(node.children) and draw(st.integers(0, 9)) == 0
    return node


def expected(node: Node, ended: dict[str, StepStatus]) -> tuple[StepStatus, Any]:
    """The reference: how a step ends, and its output, from its own outcome and its joined
    children's (a detached child's end is its own: `ended`, which the run's status reads)."""
    if not node.succeeds or node.bad:
        return StepStatus.FAILED, None
    outputs = {}
    for kid in node.children:  # siblings in spawn order: `after` names earlier ones only
        waits = [*kid.after, *(r for r in kid.reads if r != "base")]
        if any(ended[b] is not StepStatus.DONE for b in waits):
            ended[kid.name], outputs[kid.name] = StepStatus.SKIPPED, None
            _skip_below(kid, ended)
        else:
            ended[kid.name], outputs[kid.name] = expected(kid, ended)
    joined = [k for k in node.children if not k.detached]
    if any(ended[k.name] is not StepStatus.DONE and not k.optional for k in joined):
        return StepStatus.FAILED, None
    if node.gathers:
        return StepStatus.DONE, [outputs[k.name] for k in joined]
    return StepStatus.DONE, node.name


def detached_failures(node: Node, ended: dict[str, StepStatus]) -> bool:
    """Does a non-optional detached step (spawned) end other than done? It fails the run."""
    for kid in node.children:
        if kid.name not in ended:
            continue
        if kid.detached and not kid.optional and ended[kid.name] is not StepStatus.DONE:
            return True
        if detached_failures(kid, ended):
            return True
    return False


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
        Spawn(
            k.name,
            "t",
            b"{}",
            after=k.after,
            optional=k.optional,
            reads=tuple((f"p{i}", r) for i, r in enumerate(k.reads))
            + ((("late", "ghost"),) if node.bad and i == 0 else ()),
            join=not k.detached,
        )
        for i, k in enumerate(node.children)
    )
    joined = [k.name for k in node.children if not k.detached]
    gather = orjson.dumps(joined) if node.gathers else None
    output = None if gather is not None else orjson.dumps(node.name)
    return Outcome("r", node.name, token, output=output, spawned=spawned, gather=gather)


def _check_counts(rows: Rows) -> None:
    steps = list(rows.steps.values())
    assert rows.run.unfinished == sum(1 for s in steps if not s.status.terminal)
    for parent in steps:
        if parent.joining:
            kids = [
                s
                for s in steps
                if any(e.target == parent.name and e.kind is EdgeKind.CHILD for e in s.dependents)
            ]
            kids = [k for k in kids if k.task is not None]
            assert parent.unmet == sum(1 for k in kids if not k.status.terminal), parent.name


@settings(max_examples=300, deadline=None)
@given(trees(), st.randoms(use_true_random=False))
def test_spawned_steps_end_as_the_reference_says_whatever_the_order(tree: Node, rnd: Any) -> None:
    wf = plait.Workflow("model")
    wf.add_step("base", lambda: None)
    wf.add_step("root", lambda **_: None, ["base"])
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
    nodes["base"] = Node("base", succeeds=True)

    while not run.status.terminal:
        ready = sorted(s.name for s in rows.steps.values() if s.status is StepStatus.READY)
        assert ready, "stuck: nothing ready and the run has not ended"
        name = rnd.choice(ready)
        txn = Txn(NOW)
        drive(claim(txn, "r", name, token=name, worker_id="w", lease=30), rows.load, txn)
        txn = Txn(NOW)
        drive(complete(txn, _outcome(nodes[name], name)), rows.load, txn)
        assert txn.result.accepted == [True]
        if nodes[name].bad and nodes[name].succeeds:  # its spawns were refused: none committed
            assert not txn.new_steps
            assert rows.steps[name].error_code == "invalid_spawn"
            assert "'ghost', which does not exist in this run" in (
                rows.steps[name].error_message or ""
            )
        rows.commit(txn)
        _check_counts(rows)

    ended: dict[str, StepStatus] = {}
    root_status, root_output = expected(tree, ended)
    ended["root"] = root_status
    ended["base"] = StepStatus.DONE
    assert {n: s.status for n, s in rows.steps.items() if n != "sink"} == ended
    root = rows.steps["root"]
    if root_status is StepStatus.DONE:
        assert orjson.loads(root.output or b"null") == root_output
    sink = rows.steps["sink"].status
    assert sink is (StepStatus.DONE if root_status is StepStatus.DONE else StepStatus.SKIPPED)
    ok = root_status is StepStatus.DONE and not detached_failures(tree, ended)
    assert run.status is (RunStatus.COMPLETED if ok else RunStatus.FAILED)
    assert run.unfinished == 0


def test_a_spawn_reading_a_step_that_has_not_ended_done_commits_nothing() -> None:
    wf = plait.Workflow("model")
    wf.add_step("root", lambda: None)
    wf.add_step("sink", lambda **_: None, ["root"])
    run, steps, _ = new_run(wf.plan(), "r", b"{}", NOW)
    rows = Rows(run, steps)
    txn = Txn(NOW)
    drive(claim(txn, "r", "root", token="t", worker_id="w", lease=30), rows.load, txn)
    spawned = (Spawn("root/a-0", "a", b"{}", reads=(("x", "sink"),), join=False),)
    txn = Txn(NOW)
    outcome = Outcome("r", "root", "t", output=b"1", spawned=spawned)
    drive(complete(txn, outcome), rows.load, txn)
    rows.commit(txn)
    root = rows.steps["root"]
    assert (root.status, root.error_code, root.output) == (StepStatus.FAILED, "invalid_spawn", None)
    assert root.error_message == (
        "step 'root' spawned 'root/a-0' reading the output of step 'sink', which is pending: a "
        "spawned step reads the outputs of workflow steps that have ended done (the spawning "
        "step's upstream); nothing of this attempt was committed"
    )
    assert "root/a-0" not in rows.steps and run.status is RunStatus.FAILED


def test_the_spawner_of_a_detached_step_is_read_from_its_name() -> None:
    def row(name: str, task: str | None = "t") -> StepRow:
        return StepRow("r", name, 0, StepStatus.PENDING, 0, task=task)

    assert spawner_of(row("fan/a-0")) == "fan"
    assert spawner_of(row("fan#2/a-0")) == "fan"
    assert spawner_of(row("fan/a-0#1/b-3")) == "fan/a-0"
    assert spawner_of(row("fan", task=None)) is None
