"""The state machine of runs and steps. Pure: no I/O, no clock, no randomness.

A transition is a generator working on a `Txn`, the in-memory view of one store transaction. When
it needs records it has not seen, it yields a `Need`; the store loads those rows into the `Txn` and
resumes it. So a store loads exactly the rows a transition touches (the step, its dependents, the
run), and the logic is written once for every store:

    txn = Txn(now)
    drive(complete(txn, outcome), load)     # or: await drive_async(..., load_async)
    store.write(txn)                        # changed rows, new events: one commit

Rules (DESIGN §3.2-3.3): a step becomes ready when all its dependencies are terminal; if a data or
`after` dependency ended other than `done` and the step has no default for it, the step is skipped,
and that cascades. A run ends when no step is unfinished: `failed` if a non-optional step failed or
was skipped for a failure, else `completed` with output {sink: output}.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass

from .rows import (
    Claim,
    CommitResult,
    Edge,
    EdgeKind,
    EventRow,
    Gate,
    Outcome,
    RunRow,
    RunStatus,
    StepData,
    StepRow,
    StepStatus,
    WorkflowPlan,
)

StepKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Need:
    """Rows a transition needs: the run, and the named steps of it (those not loaded yet), or
    every step of it (`all_steps`: operator actions, never the hot path)."""

    run_id: str
    steps: tuple[str, ...] = ()
    all_steps: bool = False


class Txn:
    """The records one store transaction has loaded, and what it changed."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.runs: dict[str, RunRow | None] = {}
        self.steps: dict[StepKey, StepRow | None] = {}
        self.changed_steps: dict[StepKey, StepRow] = {}
        self.new_steps: dict[StepKey, StepRow] = {}  # added to their run (spawned)
        self.changed_runs: dict[str, RunRow] = {}
        self.events: list[EventRow] = []
        self.claims: list[Claim] = []
        self.ended_attempts: list[
            StepRow
        ] = []  # steps whose running attempt ended here (flow wakes)
        self.result = CommitResult()
        self.whole_runs: set[str] = set()  # runs whose every step is loaded
        self.data: list[tuple[str, str, StepData]] = []  # (run, step, what it wrote) to commit
        self.rekeyed: set[StepKey] = set()  # steps whose concurrency key changed (rare)

    def missing(self, run_id: str, names: Iterable[str]) -> Need | None:
        absent = tuple(n for n in names if (run_id, n) not in self.steps)
        if absent or run_id not in self.runs:
            return Need(run_id, absent)
        return None

    def add_run(self, run_id: str, run: RunRow | None) -> None:
        self.runs.setdefault(run_id, run)

    def add_step(self, run_id: str, name: str, step: StepRow | None) -> None:
        self.steps.setdefault((run_id, name), step)

    def step(self, run_id: str, name: str) -> StepRow | None:
        return self.steps.get((run_id, name))

    def touch(self, step: StepRow) -> None:
        self.changed_steps[(step.run_id, step.name)] = step

    def insert(self, step: StepRow) -> None:
        key = (step.run_id, step.name)
        self.steps[key] = self.new_steps[key] = step

    def emit(self, run: RunRow, type_: str, step: str | None, **payload: object) -> None:
        if step is not None:
            payload["step"] = step
        self.events.append(EventRow(run.id, run.next_seq, type_, step, payload, self.now))
        run.next_seq += 1
        self.changed_runs[run.id] = run


Transition = Iterator[Need]
Action = Callable[["Txn"], Transition]  # an operator action, bound to its arguments


def need(txn: Txn, run_id: str, names: Iterable[str] = ()) -> Transition:
    """Yield a Need for whatever of (run, steps) the transaction has not loaded."""
    missing = txn.missing(run_id, names)
    if missing is not None:
        yield missing
        for name in missing.steps:  # rows that do not exist are remembered as None
            txn.add_step(run_id, name, None)
        txn.add_run(run_id, None)


def need_all(txn: Txn, run_id: str) -> Transition:
    """Yield a Need for every step of the run, unless the transaction has them already."""
    if run_id not in txn.whole_runs:
        yield Need(run_id, all_steps=True)
        txn.whole_runs.add(run_id)
        txn.add_run(run_id, None)


def steps_of(txn: Txn, run_id: str) -> list[StepRow]:
    """The loaded steps of a run, in definition order."""
    found = [s for (r, _), s in txn.steps.items() if r == run_id and s is not None]
    return sorted(found, key=lambda s: s.idx)


def drive(transition: Transition, load: Callable[[Txn, Need], None], txn: Txn) -> None:
    for request in transition:
        load(txn, request)


async def drive_async(
    transition: Transition, load: Callable[[Txn, Need], Awaitable[None]], txn: Txn
) -> None:
    for request in transition:
        await load(txn, request)


# -- creating a run --------------------------------------------------------------------------


def new_run(
    plan: WorkflowPlan, run_id: str, input_json: bytes, now: float
) -> tuple[RunRow, list[StepRow], list[EventRow]]:
    """The rows of a new run: roots ready, everything else pending on its dependencies."""
    dependents: dict[str, list[Edge]] = {s.name: [] for s in plan.steps}
    for s in plan.steps:
        for dep, kind in s.dependencies:
            dependents[dep].append(Edge(s.name, kind, dep in s.defaults))
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
        sinks=tuple(s.name for s in plan.steps if not dependents[s.name]),
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


def _waiting_payload(step: StepRow) -> dict[str, object]:
    gate = step.options.gate if step.options is not None else None
    return {"gate": gate, "expires_at": step.available_at}


# -- worker transitions ------------------------------------------------------------------------


def dispatchable(run: RunStatus, attempt: int) -> bool:
    """May a ready step of a run in this state be claimed? A pausing run dispatches nothing new,
    but lets the steps in flight finish, their retries included (a retry has attempt > 0).
    (queries.sql's claim_candidates says the same in SQL.)"""
    return run in (RunStatus.PENDING, RunStatus.RUNNING) or (
        run is RunStatus.PAUSING and attempt > 0
    )


def in_flight(step: StepRow) -> bool:
    """Running, or waiting for a retry: what a pausing run waits for before it is paused."""
    return step.status is StepStatus.RUNNING or (
        step.status is StepStatus.READY and step.attempt > 0
    )


def claim(
    txn: Txn, run_id: str, name: str, *, token: str, worker_id: str, lease: float
) -> Transition:
    """A ready step whose time has come goes to running under a fresh lease."""
    yield from need(txn, run_id, (name,))
    step, run = txn.step(run_id, name), txn.runs.get(run_id)
    if step is None or run is None or step.status is not StepStatus.READY:
        return
    if not dispatchable(run.status, step.attempt):
        return
    if step.available_at is not None and step.available_at > txn.now:
        return
    step.status = StepStatus.RUNNING
    step.attempt += 1
    step.lease_token = token
    step.lease_expires_at = txn.now + lease
    step.worker_id = worker_id
    step.started_at = txn.now
    if run.status is RunStatus.PENDING:
        run.status = RunStatus.RUNNING
        run.started_at = txn.now
    txn.touch(step)
    txn.emit(run, "step_started", name, attempt=step.attempt, worker=worker_id)
    txn.claims.append(
        Claim(
            run_id,
            name,
            run.fingerprint,
            step.attempt,
            token,
            step.lease_expires_at,
            step.iteration,
            step.task,
            step.input,
            step.options is not None and step.options.key_from_outputs and not step.options.key,
        )
    )


def complete(txn: Txn, outcome: Outcome) -> Transition:
    """Record a claimed step's outcome, fenced by its lease token; schedule what follows."""
    yield from _complete(txn, outcome)
    yield from _paused_when_idle(txn, outcome.run_id)


def _complete(txn: Txn, outcome: Outcome) -> Transition:
    yield from need(txn, outcome.run_id, (outcome.step,))
    step, run = txn.step(outcome.run_id, outcome.step), txn.runs.get(outcome.run_id)
    if step is None or run is None:
        txn.result.accepted.append(False)
        return
    if step.status is not StepStatus.RUNNING or step.lease_token != outcome.token:
        txn.result.accepted.append(False)
        reason = (
            "lease lost" if step.status is StepStatus.RUNNING else f"step is {step.status.value}"
        )
        txn.emit(run, "step_outcome_ignored", step.name, reason=reason, succeeded=outcome.succeeded)
        return
    txn.result.accepted.append(True)
    txn.ended_attempts.append(step)
    if outcome.data is not None and outcome.succeeded:
        txn.data.append((run.id, step.name, outcome.data))
    step.lease_token = None
    step.lease_expires_at = None
    txn.touch(step)
    duration = round(txn.now - (step.started_at or txn.now), 6)
    if outcome.skipped and not run.status.terminal:
        step.status = StepStatus.SKIPPED
        step.skip_reason = CONDITION
        step.finished_at = txn.now
        txn.emit(run, "step_skipped", step.name, reason=CONDITION)
        yield from _settle(txn, run, step)
        return
    if outcome.goto is not None and not run.status.terminal:
        from .loops import loop_back  # rare: loaded when a step first loops

        yield from loop_back(txn, run, step, outcome.goto, outcome.max_iterations)
        return
    if outcome.spawned and outcome.succeeded and not run.status.terminal:
        from .spawn import spawn  # loaded when a step first spawns

        step.error_code = step.error_message = None
        spawn(txn, run, step, outcome)
        return
    if outcome.succeeded:
        step.status = StepStatus.DONE
        step.output = outcome.output
        step.error_code = step.error_message = None
        step.finished_at = txn.now
        txn.emit(run, "step_completed", step.name, attempt=step.attempt, duration=duration)
        yield from _settle(txn, run, step)
        return
    step.error_code = outcome.error_code
    step.error_message = outcome.error_message
    if run.status.terminal:
        # the run was cancelled (or passed its deadline) while this step ran: record how it
        # ended, schedule nothing
        interrupted = outcome.error_code == "cancelled"
        step.status = StepStatus.CANCELLED if interrupted else StepStatus.FAILED
        step.finished_at = txn.now
        kind = "step_cancelled" if interrupted else "step_failed"
        txn.emit(run, kind, step.name, attempt=step.attempt, code=outcome.error_code)
        yield from _settle(txn, run, step)
        return
    detail = {
        "attempt": step.attempt,
        "code": outcome.error_code,
        "message": outcome.error_message,
        "traceback": outcome.traceback,
        "duration": duration,
    }
    if outcome.retry_at is not None:
        step.status = StepStatus.READY
        step.available_at = step.ready_at = outcome.retry_at
        txn.result.readied += 1
        txn.emit(run, "step_retrying", step.name, retry_at=outcome.retry_at, **detail)
        return
    step.status = StepStatus.FAILED
    step.finished_at = txn.now
    txn.emit(run, "step_failed", step.name, **detail)
    yield from _settle(txn, run, step)


def release(txn: Txn, run_id: str, name: str, token: str) -> Transition:
    """A stopping worker hands a step back: ready at once, its attempt not counted."""
    yield from _release(txn, run_id, name, token)
    yield from _paused_when_idle(txn, run_id)


def _release(txn: Txn, run_id: str, name: str, token: str) -> Transition:
    yield from need(txn, run_id, (name,))
    step, run = txn.step(run_id, name), txn.runs.get(run_id)
    if (
        step is None
        or run is None
        or step.status is not StepStatus.RUNNING
        or step.lease_token != token
    ):
        return
    worker = step.worker_id
    if run.status.terminal:  # cancelled while it ran: handed back, it ends here
        _end_interrupted(txn, run, step, worker)
        yield from _settle(txn, run, step)
        return
    _back_to_ready(txn, step)
    txn.emit(run, "step_released", name, worker=worker)


def recover(txn: Txn, run_id: str, name: str, max_recoveries: int) -> Transition:
    """A step whose lease expired (its worker died or hung) becomes claimable again, without
    using its retry budget, unless that has happened more than `max_recoveries` times."""
    yield from _recover(txn, run_id, name, max_recoveries)
    yield from _paused_when_idle(txn, run_id)


def _recover(txn: Txn, run_id: str, name: str, max_recoveries: int) -> Transition:
    yield from need(txn, run_id, (name,))
    step, run = txn.step(run_id, name), txn.runs.get(run_id)
    if step is None or run is None or step.status is not StepStatus.RUNNING:
        return
    if step.lease_expires_at is None or step.lease_expires_at > txn.now:
        return
    worker = step.worker_id
    if run.status.terminal:  # cancelled while it ran, and its worker died: nothing to re-run
        _end_interrupted(txn, run, step, worker)
        yield from _settle(txn, run, step)
        return
    step.recoveries += 1
    if step.recoveries > max_recoveries:
        step.lease_token = None
        step.lease_expires_at = None
        step.status = StepStatus.FAILED
        step.error_code = "lease_expired"
        step.error_message = (
            f"the lease expired {step.recoveries} times (max_recoveries={max_recoveries}); "
            "the step may be killing or hanging its worker"
        )
        step.finished_at = txn.now
        txn.touch(step)
        txn.emit(
            run,
            "step_failed",
            name,
            code=step.error_code,
            message=step.error_message,
            attempt=step.attempt,
            worker=worker,
        )
        yield from _settle(txn, run, step)
        return
    _back_to_ready(txn, step)
    txn.emit(run, "step_lease_expired", name, worker=worker, recoveries=step.recoveries)


def _paused_when_idle(txn: Txn, run_id: str) -> Transition:
    """A pausing run is paused once nothing of it is in flight (running, or awaiting a retry).
    Looks at every step of the run, but only while it is pausing: never on the hot path."""
    run = txn.runs.get(run_id)
    if run is None or run.status is not RunStatus.PAUSING:
        return
    yield from need_all(txn, run_id)
    if not any(in_flight(s) for s in steps_of(txn, run_id)):
        run.status = RunStatus.PAUSED
        txn.emit(run, "run_paused", None)


def _end_interrupted(txn: Txn, run: RunRow, step: StepRow, worker: str | None) -> None:
    step.status = StepStatus.CANCELLED
    step.lease_token = None
    step.lease_expires_at = None
    step.finished_at = txn.now
    txn.touch(step)
    txn.emit(run, "step_cancelled", step.name, worker=worker, attempt=step.attempt)


def _back_to_ready(txn: Txn, step: StepRow) -> None:
    step.status = StepStatus.READY
    step.attempt -= 1
    step.lease_token = None
    step.lease_expires_at = None
    step.worker_id = None
    step.started_at = None
    step.available_at = step.ready_at = txn.now
    txn.result.readied += 1
    txn.touch(step)


# -- cascade and run end -----------------------------------------------------------------------


CONDITION = "condition"  # the skip reason of a false `when=`; a cascade from it starts with it too


def skipped_by_condition(step: StepRow) -> bool:
    return step.skip_reason is not None and step.skip_reason.startswith(CONDITION)


def fails_run(step: StepRow) -> bool:
    """Does this terminal step make its run fail? A skip for a false condition, or cascading
    from one, does not: it is a branch not taken."""
    if step.optional or step.task is not None:  # a spawned step fails its parent instead
        return False
    if step.status is StepStatus.FAILED:
        return True
    return step.status is StepStatus.SKIPPED and not skipped_by_condition(step)


def _settle(txn: Txn, run: RunRow, first: StepRow) -> Transition:
    """`first` just became terminal: count it, update its dependents, cascade skips, end the run.

    Iterative, so a skip cascading down a 100,000-step chain needs no deep recursion."""
    worklist = [first]
    while worklist:
        step = worklist.pop()
        run.unfinished -= 1
        if fails_run(step):
            run.failures += 1
            if run.error is None:
                what = step.error_message or step.skip_reason or step.status.value
                run.error = f"step {step.name!r} {step.status.value}: {what}"
        if not step.dependents:
            continue
        yield from need(txn, run.id, (e.target for e in step.dependents))
        failed = step.status is not StepStatus.DONE
        for edge in step.dependents:
            dep = txn.step(run.id, edge.target)
            if dep is not None and edge.kind is EdgeKind.CHILD:
                from .spawn import join  # a spawned step's parent waits for it

                if (yield from join(txn, run, step, dep)):
                    worklist.append(dep)
                continue
            if dep is None or dep.status is not StepStatus.PENDING:
                continue
            dep.unmet -= 1
            if (
                failed
                and dep.skip_reason is None
                and edge.kind is not EdgeKind.AFTER_ANY
                and not edge.absorbs
            ):
                dep.skip_reason = f"dependency {step.name!r} {step.status.value}"
                if skipped_by_condition(step):
                    dep.skip_reason = f"{CONDITION}: {dep.skip_reason}"
            if dep.unmet <= 0:
                if dep.skip_reason is not None:
                    dep.status = StepStatus.SKIPPED
                    dep.finished_at = txn.now
                    txn.emit(run, "step_skipped", dep.name, reason=dep.skip_reason)
                    worklist.append(dep)
                else:
                    reached(txn, run, dep, worklist)
            txn.touch(dep)
    txn.changed_runs[run.id] = run
    if run.unfinished <= 0 and not run.status.terminal:
        yield from _end_run(txn, run)


def reached(txn: Txn, run: RunRow, step: StepRow, worklist: list[StepRow]) -> None:
    """`reach` inside a transaction: count a ready step, log a waiting one, and queue one done
    by an early signal on `worklist` for settling."""
    reach(step, txn.now)
    if step.status is StepStatus.READY:
        txn.result.readied += 1
    elif step.status is StepStatus.WAITING:
        txn.result.timers_changed = txn.result.timers_changed or step.available_at is not None
        txn.emit(run, "step_waiting", step.name, **_waiting_payload(step))
    else:  # a signal kept since it came: delivered now
        txn.emit(run, "step_completed", step.name, signal=True)
        worklist.append(step)


def settle(txn: Txn, run: RunRow, step: StepRow) -> Transition:
    """`step` just became terminal (by an operator, a signal or a timer): cascade, end the run."""
    yield from _settle(txn, run, step)


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


def _json_str(name: str) -> bytes:
    # step names are restricted to [A-Za-z0-9_.-], so no escaping is needed
    return b'"' + name.encode() + b'"'
