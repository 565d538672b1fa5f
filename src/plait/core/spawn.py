"""Spawned steps in the state machine (DESIGN §3.3): a running step adds steps to its run, then
waits for them. Pure.

A handler's `ctx.spawn` / `ctx.map` calls travel with its successful outcome (`Outcome.spawned`,
never with a failed attempt), so what a step spawns is inserted in the transaction that records its
success, and a retried attempt spawns nothing twice. The parent then *joins*: it is `waiting` with
`unmet` = its unfinished children, each of which has a `child` edge to it. When the last one ends
the parent ends too (`cascade.join`, part of the cascade): `failed` (code `child_failed`) if a
non-optional child did not finish `done`, else `done`, its output being what its handler returned,
or, if it returned handles, the outputs of those children (a list, in order, for a list of
handles).

A spawned step may read outputs (`Spawn.reads`): of steps spawned before it by the same handler
(a `data` edge from each: it waits for them, and is skipped if one does not end `done`), and of
workflow steps, which must have ended `done` when the spawn commits (`check_spawns`: else the
attempt fails, `invalid_spawn`, and nothing of it is committed). A child spawned with
`join=False` is *detached*: it has no `child` edge, so its parent ends with its own output as
soon as the children it joins have (at once if none), while the run waits for it like any other
step, and its failure (unless optional) fails the run, as a workflow step's does.

Children are named `<parent>/<label>` (`<parent>#<iteration>/<label>` once a `Goto` sent the run
back through the parent), where the label is the `name=` given or `<task>-<n>`. Those characters
cannot occur in a workflow's step names, so a child never collides with a static step.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable
from dataclasses import replace

from .cascade import CHILD_FAILED, child_failure, fails_run, reached
from .rows import Edge, EdgeKind, Outcome, RunRow, Spawn, StepOptions, StepRow, StepStatus
from .txn import Need, Txn, need

LISTED_NAMES = 100  # a spawn event names at most this many children (it says how many in all)
INVALID_SPAWN = "invalid_spawn"  # the code of an attempt whose spawns are refused


def child_prefix(parent: str, iteration: int) -> str:
    """What the names of the steps a parent spawns in this pass start with."""
    return f"{parent}/" if iteration == 0 else f"{parent}#{iteration}/"


def spawner_of(step: StepRow) -> str | None:
    """The step that spawned `step` (None for a workflow step): its parent, which it has a
    `child` edge to, or, detached, the one its name says (`<parent>/<label>`,
    `<parent>#<iteration>/<label>`)."""
    joined = next((e.target for e in step.dependents if e.kind is EdgeKind.CHILD), None)
    if joined is not None or step.task is None:
        return joined
    head = step.name.rsplit("/", 1)[0]
    pass_mark = head.rfind("#")
    return head if pass_mark < 0 or not head[pass_mark + 1 :].isdigit() else head[:pass_mark]


def check_spawns(txn: Txn, run: RunRow, outcome: Outcome) -> Generator[Need, None, str | None]:
    """Why the spawns of a successful `outcome` cannot commit (a message), or None. The
    workflow steps they read must have ended `done`; the worker checked everything else
    (`workflow.tasks.Spawner`)."""
    own = {s.name for s in outcome.spawned}
    static = sorted({src for s in outcome.spawned for _, src in s.reads or () if src not in own})
    if not static:
        return None
    yield from need(txn, run.id, static)
    for name in static:
        row = txn.step(run.id, name)
        if row is None or row.status is not StepStatus.DONE:
            reader = next(s for s in outcome.spawned if name in {r for _, r in s.reads or ()})
            what = "does not exist in this run" if row is None else f"is {row.status.value}"
            return (
                f"step {outcome.step!r} spawned {reader.name!r} reading the output of step "
                f"{name!r}, which {what}: a spawned step reads the outputs of workflow steps "
                "that have ended done (the spawning step's upstream); nothing of this attempt "
                "was committed"
            )
    return None


def spawn(txn: Txn, run: RunRow, parent: StepRow, outcome: Outcome) -> bool:
    """`parent` succeeded and spawned `outcome.spawned`: add them to the run. If it joins some
    of them, it waits for those (its output, or what it gathers, is set when they have ended)
    and this returns True; if every one is detached, it returns False and the caller ends the
    parent with its own output."""
    spawned = outcome.spawned
    dependents: dict[str, list[Edge]] = {
        s.name: [Edge(parent.name, EdgeKind.CHILD)] if s.join else [] for s in spawned
    }
    unmet: dict[str, int] = {}
    for s in spawned:
        ups: dict[str, EdgeKind] = {before: EdgeKind.AFTER for before in s.after}
        for _, src in s.reads or ():
            if src in dependents:  # spawned before it: it waits for it (else: a done step)
                ups[src] = EdgeKind.DATA
        for up, kind in ups.items():
            dependents[up].append(Edge(s.name, kind))
        unmet[s.name] = len(ups)
    joined = sum(1 for s in spawned if s.join)
    run.unfinished += len(spawned)
    names = [s.name for s in spawned]
    listed = names if len(names) <= LISTED_NAMES else names[:LISTED_NAMES]
    detached = len(names) - joined
    extra: dict[str, object] = {"detached": detached} if detached else {}
    txn.emit(run, "steps_spawned", parent.name, count=len(names), steps=listed, **extra)
    if joined:
        parent.status = StepStatus.WAITING
        parent.unmet = joined
        parent.output = outcome.output
        parent.gather = outcome.gather
        timeout = parent.options.join_timeout if parent.options is not None else None
        parent.available_at = None if timeout is None else txn.now + timeout  # `join_expired`
        txn.result.timers_changed = txn.result.timers_changed or timeout is not None
    for s in spawned:
        child = StepRow(
            run_id=run.id,
            name=s.name,
            idx=run.next_idx,
            status=StepStatus.PENDING,
            unmet=unmet[s.name],
            dependents=tuple(dependents[s.name]),
            optional=s.optional,
            priority=s.priority + _run_priority(parent),
            task=s.task,
            input=s.input,
            options=_options(s, parent),
        )
        run.next_idx += 1
        txn.insert(child)
        if not child.unmet:
            reached(txn, run, child, [])  # no gate on a task: it is ready
        if s.not_before is not None and child.available_at is not None:
            child.available_at = max(child.available_at, s.not_before)
    return joined > 0


def _options(s: Spawn, parent: StepRow) -> StepOptions | None:
    """A spawned step's options: its task's queue and target, or the spawning worker; and the
    run's priority, which it passes on to what it spawns in turn."""
    options = s.options
    if s.reads is not None:
        options = replace(options or StepOptions(), reads=s.reads)
    if s.colocate:
        options = replace(options or StepOptions(), target="@" + str(parent.worker_id))
    if _run_priority(parent):
        options = replace(options or StepOptions(), run_priority=_run_priority(parent))
    return options


def _run_priority(parent: StepRow) -> int:
    """The priority the run was started with (`start(priority=)`), added to its steps'."""
    return 0 if parent.options is None else parent.options.run_priority


def children_of(parent: StepRow, ups: Iterable[tuple[StepRow, Edge]]) -> list[StepRow]:
    """The steps `parent` spawned in its current pass, from its upstream (`upstream_of`)."""
    prefix = child_prefix(parent.name, parent.iteration)
    return [up for up, edge in ups if edge.kind is EdgeKind.CHILD and up.name.startswith(prefix)]


def reopen_parent(txn: Txn, run: RunRow, parent: StepRow) -> bool:
    """A child of `parent` was retried: a parent that its children failed waits for them again
    (`recount` then says for how many, once every retried step is back). True if it was ended."""
    if parent.status is not StepStatus.FAILED or parent.error_code != CHILD_FAILED:
        return False
    if fails_run(parent):
        run.failures -= 1
    run.unfinished += 1
    parent.status = StepStatus.WAITING
    parent.finished_at = None
    txn.touch(parent)
    txn.emit(run, "step_reopened", parent.name, joining=True)
    return True


def recount(parent: StepRow, children: list[StepRow]) -> None:
    """How many children a (re)joining parent waits for, and whether one failed it already."""
    if parent.status is not StepStatus.WAITING:
        return
    parent.unmet = sum(1 for c in children if not c.status.terminal)
    failed = next(
        (
            c
            for c in children
            if c.status.terminal and c.status is not StepStatus.DONE and not c.optional
        ),
        None,
    )
    parent.error_code = None if failed is None else CHILD_FAILED
    parent.error_message = None if failed is None else child_failure(failed)
