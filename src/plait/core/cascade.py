"""What follows when a step ends: its dependents, a joining parent, the run. Pure.

Rules (DESIGN §3.2-3.3): a step becomes ready when all its dependencies are terminal; if a data or
`after` dependency ended other than `done` and the step has no default for it, the step is skipped,
and that cascades. A step that spawned steps joins them: it ends when the last of them has ended
(`join`). A run ends when no step is unfinished: `failed` if a non-optional step failed or was
skipped for a failure, else `completed` with output {sink: output}. A pausing run is paused once
nothing of it is in flight.

Every transition that ends a step calls `settle`; `new_run` makes the rows of a run whose roots
are reached at once.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable

import orjson

from . import calls
from .rows import (
    AtEnd,
    Edge,
    EdgeKind,
    EventRow,
    Gate,
    JoinMode,
    RunRow,
    RunStatus,
    StepRow,
    StepStatus,
    WorkflowPlan,
)
from .txn import Need, Transition, Txn, need, need_all, steps_of

CONDITION = "condition"  # the skip reason of a false `when=`; a cascade from it starts with it too
CHILD_FAILED = "child_failed"  # the error code of a parent whose non-optional child did not succeed
JOIN_TIMEOUT = "timeout"  # the code of a parent whose children did not end within join_timeout
FAIL_FAST = "fail_fast"  # the code of a run of a fail-fast workflow that its first failure ended
# steps that ending a run unfinished ends at once; running ones are interrupted and end when
# their worker reports
_CANCELLED_AT_ONCE = (StepStatus.PENDING, StepStatus.READY, StepStatus.WAITING)
# a step with more dependents than this updates them a chunk at a time, releasing each chunk
# (`Need.release`): a SQL store writes and forgets it, holding 2,000 rows, not 100,000
FAN_OUT_CHUNK = 2_000


# -- creating a run --------------------------------------------------------------------------


def new_run(
    plan: WorkflowPlan, run_id: str, input_json: bytes, now: float
) -> tuple[RunRow, list[StepRow], list[EventRow]]:
    """The rows of a new run: roots ready, everything else pending on its dependencies."""
    dependents: dict[str, list[Edge]] = {s.name: [] for s in plan.steps}
    at_end = {s.name for s in plan.steps if s.options is not None and s.options.at_end}
    sinks = {s.name: s.name not in at_end for s in plan.steps}
    for s in plan.steps:
        for dep, kind in s.dependencies:
            dependents[dep].append(Edge(s.name, kind, dep in s.defaults))
            if s.name not in at_end:  # a step at the end makes no sink of what it waits for
                sinks[dep] = False
    steps = []
    for idx, s in enumerate(plan.steps):
        step = StepRow(
            run_id=run_id,
            name=s.name,
            idx=idx,
            status=StepStatus.PENDING,
            unmet=len(s.dependencies),
            dependents=tuple(dependents[s.name]),
            optional=s.optional,
            priority=s.priority,
            options=s.options,
        )
        if not s.dependencies:
            reach(step, now)
        steps.append(step)
    run = RunRow(
        id=run_id,
        workflow=plan.name,
        version=plan.version,
        fingerprint=plan.fingerprint,
        status=RunStatus.PENDING,
        input=input_json,
        sinks=tuple(name for name, sink in sinks.items() if sink),
        unfinished=len(steps),
        created_at=now,
        next_idx=len(steps),
    )
    started: dict[str, object] = {
        "workflow": plan.name,
        "version": plan.version,
        "fingerprint": plan.fingerprint,
    }
    events = [EventRow(run_id, 1, "run_started", None, started, now)]
    for step in steps:
        if step.status is StepStatus.WAITING:
            waiting = _waiting_payload(step)
            events.append(
                EventRow(run_id, len(events) + 1, "step_waiting", step.name, waiting, now)
            )
    run.next_seq = len(events) + 1
    return run, steps, events


# -- a step's dependencies are met -----------------------------------------------------------


def reach(step: StepRow, now: float) -> None:
    """The step's dependencies are met (none dooms it): it is ready, claimable after its delay;
    or it waits at its gate (until its approval expires); or, a signal step whose payload came
    early, it is done (the caller settles it)."""
    options = step.options
    step.ready_at = now
    if options is None:
        step.status = StepStatus.READY
        step.available_at = now
    elif options.gate is None:
        step.status = StepStatus.READY
        step.available_at = now + (options.delay or 0.0)
    elif options.gate is Gate.SIGNAL and step.output is not None:
        step.status = StepStatus.DONE
        step.finished_at = now
    else:
        step.status = StepStatus.WAITING
        expires = options.expires_after
        step.available_at = None if expires is None else now + expires


def reached(txn: Txn, run: RunRow, step: StepRow, worklist: list[StepRow]) -> None:
    """`reach` inside a transaction: count a ready step, log a waiting one, and queue one done
    by an early signal on `worklist` for settling. A step for a failing run's end (`AtEnd.FAILED`)
    of a run that is not failing is skipped instead, as a branch not taken."""
    if step.options is not None and step.options.at_end is AtEnd.FAILED and not run.failures:
        step.status = StepStatus.SKIPPED
        step.skip_reason = f"{CONDITION}: the run did not fail"
        step.finished_at = txn.now
        txn.emit(run, "step_skipped", step.name, reason=step.skip_reason)
        worklist.append(step)
        return
    reach(step, txn.now)
    if step.status is StepStatus.READY:
        txn.result.readied += 1
    elif step.status is StepStatus.WAITING:
        txn.result.timers_changed = txn.result.timers_changed or step.available_at is not None
        txn.emit(run, "step_waiting", step.name, **_waiting_payload(step))
    else:  # a signal kept since it came: delivered now
        txn.emit(run, "step_completed", step.name, signal=True)
        worklist.append(step)


def _waiting_payload(step: StepRow) -> dict[str, object]:
    gate = step.options.gate if step.options is not None else None
    return {"gate": gate, "expires_at": step.available_at}


# -- a step ends -----------------------------------------------------------------------------


def skipped_by_condition(step: StepRow) -> bool:
    return step.skip_reason is not None and step.skip_reason.startswith(CONDITION)


def caught(step: StepRow) -> bool:
    """A failed step that another step catches (a `CATCH` edge): its failure fails no run."""
    return step.status is StepStatus.FAILED and any(
        e.kind is EdgeKind.CATCH for e in step.dependents
    )


def jumped(target: str) -> str:
    """The skip reason of a step a forward Goto to `target` jumped over (`loops.jump`)."""
    return f"{CONDITION}: jumped over by a goto to {target!r}"


def doom(up: StepRow, edge: Edge) -> str | None:
    """Why the ended step `up` skips its dependent along `edge` (the reason), or None if it does
    not: a data or `after` dependency that did not end `done`, unless a default absorbs it; a
    step caught (`CATCH`) that did not fail. A skip from a branch not taken (a false
    condition, a caught failure, a goto that jumped over the step) is one too."""
    if edge.kind is EdgeKind.CATCH:
        if up.status is StepStatus.FAILED:
            return None
        return f"{CONDITION}: step {up.name!r} did not fail (it ended {up.status.value})"
    if (
        up.status is StepStatus.DONE
        or edge.kind is EdgeKind.AFTER_ANY
        or edge.kind is EdgeKind.CHILD
        or edge.absorbs
        or up.skip_reason == jumped(edge.target)  # the goto's target runs
    ):
        return None
    reason = f"dependency {up.name!r} {up.status.value}"
    return f"{CONDITION}: {reason}" if skipped_by_condition(up) or caught(up) else reason


def fails_run(step: StepRow) -> bool:
    """Does this terminal step make its run fail? A skip for a false condition, or cascading
    from one, does not: it is a branch not taken; nor does a failure another step catches."""
    if step.optional or (step.task is not None and joined(step)):
        return False  # a spawned step its parent joins fails its parent instead
    if step.status is StepStatus.FAILED:
        return not caught(step)
    return step.status is StepStatus.SKIPPED and not skipped_by_condition(step)


def joined(step: StepRow) -> bool:
    """A spawned step its parent waits for (a `child` edge); a detached one only its run does."""
    return any(e.kind is EdgeKind.CHILD for e in step.dependents)


def settle(txn: Txn, run: RunRow, first: StepRow) -> Transition:
    """`first` just became terminal: count it, update its dependents, cascade skips, end the run.

    Iterative, so a skip cascading down a 100,000-step chain needs no deep recursion."""
    worklist = [first]
    fast = False  # a step of a fail-fast workflow failed the run: end it now
    while worklist:
        step = worklist.pop()
        run.unfinished -= 1
        if fails_run(step):
            run.failures += 1
            fast = fast or (step.options is not None and step.options.fail_fast)
            if run.error is None:
                what = step.error_message or step.skip_reason or step.status.value
                run.error = f"step {step.name!r} {step.status.value}: {what}"
        edges = step.dependents
        if not edges:
            continue
        if len(edges) <= FAN_OUT_CHUNK:
            yield from _update_dependents(txn, run, step, edges, worklist)
            continue
        # a big fan-out: its dependents a chunk at a time, each chunk released (`Need.release`)
        for start in range(0, len(edges), FAN_OUT_CHUNK):
            chunk = edges[start : start + FAN_OUT_CHUNK]
            queued = len(worklist)
            yield from _update_dependents(txn, run, step, chunk, worklist)
            kept = {s.name for s in worklist[queued:]}  # settled later: still needed
            done = tuple(e.target for e in chunk if e.target not in kept)
            if done:
                yield Need(run.id, release=done)
    txn.changed_runs[run.id] = run
    if run.unfinished <= 0 and not run.status.terminal:
        yield from _end_run(txn, run)
    elif fast and not run.status.terminal:
        yield from _fail_fast(txn, run)


def _update_dependents(
    txn: Txn, run: RunRow, step: StepRow, edges: tuple[Edge, ...], worklist: list[StepRow]
) -> Transition:
    """`step` ended: count it in these dependents' unmet dependencies, ready or skip those
    with none left (queued on `worklist` when they end here), join a spawned step's parent."""
    yield from need(txn, run.id, (e.target for e in edges))
    for edge in edges:
        dep = txn.step(run.id, edge.target)
        if dep is not None and edge.kind is EdgeKind.CHILD:  # a spawned step's parent
            if (yield from join(txn, run, step, dep)):
                worklist.append(dep)
            continue
        if dep is None or dep.status is not StepStatus.PENDING:
            continue
        dep.unmet -= 1
        if dep.skip_reason is None:
            dep.skip_reason = doom(step, edge)
        if dep.unmet <= 0:
            if dep.skip_reason is not None:
                dep.status = StepStatus.SKIPPED
                dep.finished_at = txn.now
                txn.emit(run, "step_skipped", dep.name, reason=dep.skip_reason)
                worklist.append(dep)
            else:
                reached(txn, run, dep, worklist)
        txn.touch(dep)


def _fail_fast(txn: Txn, run: RunRow) -> Transition:
    """The first failure of a fail-fast workflow's run that fails it ends it now: failed, its
    waiting steps cancelled, its running ones interrupted (as a cancel does)."""
    yield from need_all(txn, run.id)
    error = run.error or "a step failed"
    running = yield from end_unfinished(txn, run, RunStatus.FAILED, error, by=FAIL_FAST)
    txn.emit(run, "run_failed", None, code=FAIL_FAST, error=error, failures=run.failures,
             interrupting=running)  # fmt: skip


def end_unfinished(
    txn: Txn, run: RunRow, status: RunStatus, error: str, *, by: str
) -> Generator[Need, None, list[str]]:
    """End a run that has not finished (cancelled, failed past its deadline, or by fail-fast):
    its waiting steps end `cancelled` now, its running ones are interrupted (the worker learns
    it from its next heartbeat, or at once in this process), the child runs its steps wait for
    (`core.calls`) are cancelled, and a step that called this run is ready again. Returns the
    names of the steps still running. The run's steps must be loaded (`need_all`)."""
    running = []
    children = []
    for step in steps_of(txn, run.id):
        child = calls.waits_for(step)
        if child is not None:
            children.append(child)
        if step.status in _CANCELLED_AT_ONCE:
            step.status = StepStatus.CANCELLED
            step.finished_at = txn.now
            step.available_at = None
            run.unfinished -= 1
            txn.touch(step)
            txn.emit(run, "step_cancelled", step.name, by=by)
        elif step.status is StepStatus.RUNNING:
            running.append(step.name)
    run.status = status
    run.error = error
    run.finished_at = txn.now
    if run.started_at is None:
        run.started_at = txn.now
    txn.result.ended_runs.append(run.id)
    txn.result.cancelled_runs.append(run.id)
    for child in children:
        yield from cancel_call(txn, child, f"the run that called it, {run.id!r}, ended: {error}")
    yield from calls.returned(txn, run)
    return running


def cancel_call(txn: Txn, child_id: str, reason: str) -> Transition:
    """Cancel the child run a step of an ending run waits for (and, through `end_unfinished`,
    the children its own steps wait for)."""
    yield from need_all(txn, child_id)
    child = txn.runs.get(child_id)
    if child is None or child.status.terminal:
        return
    running = yield from end_unfinished(txn, child, RunStatus.CANCELLED, reason, by="parent")
    txn.emit(child, "run_cancelled", None, by="parent", reason=reason, interrupting=running)


# -- a spawned step ends: its parent joins it -------------------------------------------------


def join(txn: Txn, run: RunRow, child: StepRow, parent: StepRow) -> Generator[Need, None, bool]:
    """`child` ended: count it on its joining parent. Returns (via StopIteration) whether the
    parent has now ended, so that the caller settles it. A parent joining in a `JoinMode` may
    end before its last child: the unfinished ones are then cancelled."""
    if not parent.joining:  # the parent ended already (cancelled, or reset by a loop)
        return False
    parent.unmet -= 1
    txn.touch(parent)
    failed = child.status is not StepStatus.DONE and not child.optional
    if failed and parent.error_code is None:
        parent.error_code = CHILD_FAILED
        parent.error_message = child_failure(child)
    mode = parent.options.join if parent.options is not None else None
    if mode is JoinMode.FIRST and child.status is StepStatus.DONE:
        yield from _end_join_early(txn, run, parent, f"{child.name!r} succeeded first")
        parent.error_code = parent.error_message = None
        parent.gather = None
        parent.output = child.output if child.output is not None else b"null"
        parent.status = StepStatus.DONE
        txn.emit(run, "step_completed", parent.name, attempt=parent.attempt, joined=True,
                 first=child.name)  # fmt: skip
        return True
    if mode is JoinMode.ANY_ERROR and failed:
        yield from _end_join_early(txn, run, parent, f"{child.name!r} failed")
        parent.unmet = 0
    if parent.unmet > 0:
        return False
    parent.finished_at = txn.now
    if parent.error_code is not None:
        parent.status = StepStatus.FAILED
        txn.emit(
            run,
            "step_failed",
            parent.name,
            attempt=parent.attempt,
            code=parent.error_code,
            message=parent.error_message,
        )
        return True
    if parent.gather is not None:
        gathered = orjson.loads(parent.gather)
        names = [gathered] if isinstance(gathered, str) else gathered
        yield from need(txn, run.id, names)
        outputs = [_output(txn.step(run.id, n)) for n in names]
        if isinstance(gathered, str):
            parent.output = outputs[0]
        else:  # one join: one copy of each output, however big (blobs)
            pieces = [b"["]
            for output in outputs:
                pieces += (output, b",")
            pieces[-1] = b"]" if outputs else b"[]"
            parent.output = b"".join(pieces)
    parent.status = StepStatus.DONE
    txn.emit(run, "step_completed", parent.name, attempt=parent.attempt, joined=True)
    return True


def _end_join_early(txn: Txn, run: RunRow, parent: StepRow, why: str) -> Transition:
    """A parent ends before all its children have: cancel the unfinished ones (and what they
    spawned), whose late outcomes change nothing (their leases are gone)."""
    yield from need_all(txn, run.id)
    parent.unmet = 0
    parent.finished_at = txn.now
    parent.available_at = None
    for s in spawned_below(steps_of(txn, run.id), [parent.name]):
        if not s.status.terminal:
            abandon(txn, run, s, f"its parent {parent.name!r} ended: {why}")


def join_expired(txn: Txn, run: RunRow, parent: StepRow) -> Transition:
    """A parent still joining at its `join_timeout` fails with code `timeout`; its unfinished
    children are cancelled."""
    timeout = parent.options.join_timeout if parent.options is not None else None
    message = (
        f"step {parent.name!r}: the {parent.unmet} step(s) it spawned did not end within "
        f"its join timeout of {timeout}s"
    )
    yield from _end_join_early(txn, run, parent, "its join timed out")
    parent.status = StepStatus.FAILED
    parent.error_code = JOIN_TIMEOUT
    parent.error_message = message
    parent.gather = None
    txn.touch(parent)
    txn.emit(run, "step_failed", parent.name, attempt=parent.attempt, code=JOIN_TIMEOUT,
             message=message)  # fmt: skip
    yield from settle(txn, run, parent)


def abandon(txn: Txn, run: RunRow, s: StepRow, reason: str) -> None:
    """End a spawned step that no longer matters (its parent ended or runs again) `cancelled`,
    without a cascade: what depends on it is its parent and its later siblings, abandoned too.
    A running one is interrupted: its worker learns it from a heartbeat made at once."""
    if s.status is StepStatus.RUNNING and run.id not in txn.result.cancelled_runs:
        txn.result.cancelled_runs.append(run.id)  # "some running steps of it must stop"
    s.status = StepStatus.CANCELLED
    s.lease_token = s.lease_expires_at = s.available_at = None
    s.finished_at = txn.now
    s.unmet = 0
    run.unfinished -= 1
    txn.touch(s)
    txn.emit(run, "step_cancelled", s.name, reason=reason)


def spawned_below(steps: Iterable[StepRow], roots: Iterable[str]) -> list[StepRow]:
    """Every step spawned, directly or not, by one of `roots`, in the order they were added,
    and the detached steps that read or wait for one of those (else they would wait forever)."""
    below = set(roots)
    pulled: set[str] = set()  # spawned steps that wait for one found
    found = []
    for step in sorted(steps, key=lambda s: s.idx):  # a child is added after its parent
        if step.task is not None and (
            step.name in pulled
            or any(e.kind is EdgeKind.CHILD and e.target in below for e in step.dependents)
        ):
            below.add(step.name)
            found.append(step)
            pulled.update(e.target for e in step.dependents if e.kind is not EdgeKind.CHILD)
    return found


def child_failure(child: StepRow) -> str:
    """The error message of a parent that `child` failed."""
    what = child.error_message or child.skip_reason or child.status.value
    return f"spawned step {child.name!r} {child.status.value}: {what}"


def _output(step: StepRow | None) -> bytes:
    # an optional child that did not finish `done` gives null
    if step is None or step.status is not StepStatus.DONE or step.output is None:
        return b"null"
    return step.output


# -- the run ends, or pauses ------------------------------------------------------------------


def _end_run(txn: Txn, run: RunRow) -> Transition:
    run.finished_at = txn.now
    if run.started_at is None:
        run.started_at = txn.now
    if run.failures:
        run.status = RunStatus.FAILED
        txn.emit(run, "run_failed", None, error=run.error, failures=run.failures)
    else:
        yield from need(txn, run.id, run.sinks)
        parts = [b"{"]
        for name in run.sinks:
            sink = txn.step(run.id, name)
            value = sink.output if sink is not None and sink.status is StepStatus.DONE else None
            parts += (_json_str(name), b":", b"null" if value is None else value, b",")
        parts[-1] = b"}" if len(parts) > 1 else b"{}"
        run.output = b"".join(parts)  # one copy of each output, however big (blobs)
        run.status = RunStatus.COMPLETED
        txn.emit(run, "run_completed", None)
    txn.result.ended_runs.append(run.id)
    yield from calls.returned(txn, run)


def end_if_done(txn: Txn, run: RunRow) -> Transition:
    """End a run in flight that has no unfinished step left (its last ones were dropped by an
    upgrade, `core.upgrade`)."""
    if run.unfinished <= 0 and not run.status.terminal:
        yield from _end_run(txn, run)


def _json_str(name: str) -> bytes:
    # step names are restricted to [A-Za-z0-9_.-], so no escaping is needed
    return b'"' + name.encode() + b'"'


def in_flight(step: StepRow) -> bool:
    """Running, or waiting for a retry: what a pausing run waits for before it is paused."""
    return step.status is StepStatus.RUNNING or (
        step.status is StepStatus.READY and step.attempt > 0
    )


def paused_when_idle(txn: Txn, run_id: str) -> Transition:
    """A pausing run is paused once nothing of it is in flight (running, or awaiting a retry).
    Looks at every step of the run, but only while it is pausing: never on the hot path."""
    run = txn.runs.get(run_id)
    if run is None or run.status is not RunStatus.PAUSING:
        return
    yield from need_all(txn, run_id)
    if not any(in_flight(s) for s in steps_of(txn, run_id)):
        run.status = RunStatus.PAUSED
        txn.emit(run, "run_paused", None)
