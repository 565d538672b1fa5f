"""The worker's transitions: claim a ready step, complete it, release it, recover it when its
lease expired, and admit the concurrency key it resolved from its inputs. Pure: no I/O, no clock,
no randomness.

Each is a generator over a `Txn` (`core.txn`): it asks for the rows it needs, decides, and
changes records; the store commits what changed in one transaction. What follows when a step ends
(its dependents, its parent, the run) is the cascade (`core.cascade.settle`); which ready steps a
claim takes, in which order, is the claim policy (`core.claiming`).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import replace

from . import calls, session
from .cascade import CONDITION, cancel_call, paused_when_idle, settle
from .claiming import dispatchable
from .loops import loop_back
from .rows import Claim, CodeOf, Outcome, RunRow, RunStatus, StepRow, StepStatus
from .spawn import INVALID_SPAWN, check_spawns, spawn
from .txn import Need, Transition, Txn, need, need_records
from .user_events import PREFIX

KEY_FULL = "step_key_full"  # the event of a step handed back because its key was full
# the code of an attempt that wrote a record with `ctx.record(..., expected_revision=n)` while
# the record had another revision when its success was to commit (retryable)
REVISION_CONFLICT = "revision_conflict"


def claim(
    txn: Txn,
    run_id: str,
    name: str,
    *,
    token: str,
    worker_id: str,
    lease: float,
    code: CodeOf | None = None,
) -> Transition:
    """A ready step whose time has come goes to running under a fresh lease; the attempt
    records the digest of the code that runs it (`code`, the claiming worker's), if known."""
    yield from need(txn, run_id, (name,))
    step, run = txn.step(run_id, name), txn.runs.get(run_id)
    if step is None or run is None or step.status is not StepStatus.READY:
        return
    if not dispatchable(run.status, step.attempt):
        return
    if step.available_at is not None and step.available_at > txn.now:
        return
    # claimable since: ready, or later if it was delayed (the queue wait ends now)
    since = (
        step.ready_at if step.available_at is None else max(step.ready_at or 0.0, step.available_at)
    )
    step.status = StepStatus.RUNNING
    step.attempt += 1
    step.lease_token = token
    step.lease_expires_at = txn.now + lease
    step.worker_id = worker_id
    step.started_at = txn.now
    step.code = None if code is None else code(run.fingerprint, name, step.task)
    if run.status is RunStatus.PENDING:
        run.status = RunStatus.RUNNING
        run.started_at = txn.now
    txn.touch(step)
    extra: dict[str, object] = {} if step.code is None else {"code": step.code}
    if step.iteration or step.recoveries:  # rare: they tell its attempts apart (traces)
        txn.emit(run, "step_started", name, attempt=step.attempt, worker=worker_id,
                 iteration=step.iteration, recoveries=step.recoveries, **extra)  # fmt: skip
    else:
        txn.emit(run, "step_started", name, attempt=step.attempt, worker=worker_id, **extra)
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
            since,
            step.recoveries,
            None if step.options is None else step.options.reads,
            None if step.options is None else step.options.refusal,
            step.options is not None and step.options.policed,
        )
    )


def complete(txn: Txn, outcome: Outcome) -> Transition:
    """Record a claimed step's outcome, fenced by its lease token; schedule what follows."""
    yield from _complete(txn, outcome)
    yield from paused_when_idle(txn, outcome.run_id)


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
    if outcome.call is not None:  # it called a sub-workflow: it waits for it (`core.calls`)
        yield from _called(txn, run, step, outcome.call)
        return
    if outcome.input is not None and step.input != outcome.input and _records_input(step):
        step.input = outcome.input  # what this attempt's handler received
    if outcome.spawned and outcome.succeeded and not run.status.terminal:
        refused = yield from check_spawns(txn, run, outcome)
        if refused is not None:
            outcome = _nothing_committed(outcome, INVALID_SPAWN, refused, None)
    new_state = None
    if outcome.data is not None and outcome.succeeded and outcome.data.state:
        try:
            new_state = session.changed(run, outcome.data.state, step.name)
        except session.SessionConflict as exc:
            retry_at = outcome.conflict_retry_at if exc.code == session.STATE_CONFLICT else None
            outcome = _nothing_committed(outcome, exc.code, str(exc), retry_at)
    if outcome.data is not None and outcome.succeeded:
        outcome = yield from check_records(txn, outcome)
    if outcome.data is not None and outcome.succeeded:
        txn.data.append((run.id, step.name, outcome.data))
        for event in outcome.data.events:
            txn.emit(run, PREFIX + event.type, step.name, attempt=step.attempt, data=event.payload)
        if new_state is not None:
            session.commit(txn, run, step.name, outcome.data.state, new_state)
    step.lease_token = None
    step.lease_expires_at = None
    txn.touch(step)
    duration = round(txn.now - (step.started_at or txn.now), 6)
    if outcome.skipped and not run.status.terminal:
        step.status = StepStatus.SKIPPED
        step.skip_reason = CONDITION
        step.finished_at = txn.now
        txn.emit(run, "step_skipped", step.name, reason=CONDITION)
        yield from settle(txn, run, step)
        return
    if outcome.goto is not None and not run.status.terminal:
        yield from loop_back(txn, run, step, outcome.goto, outcome.max_iterations)
        return
    if outcome.spawned and outcome.succeeded and not run.status.terminal:
        step.error_code = step.error_message = None
        if spawn(txn, run, step, outcome):
            return  # it joins what it spawned; else (all detached) it is done now
    if outcome.succeeded:
        step.status = StepStatus.DONE
        step.output = outcome.output
        step.error_code = step.error_message = None
        step.finished_at = txn.now
        txn.emit(run, "step_completed", step.name, attempt=step.attempt, duration=duration)
        yield from settle(txn, run, step)
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
        yield from settle(txn, run, step)
        return
    detail: dict[str, object] = {
        "attempt": step.attempt,
        "code": outcome.error_code,
        "message": outcome.error_message,
        "traceback": outcome.traceback,
        "duration": duration,
    }
    if outcome.error_details is not None:
        detail["details"] = outcome.error_details
    if outcome.retry_at is not None:
        step.status = StepStatus.READY
        step.available_at = step.ready_at = outcome.retry_at
        txn.result.readied += 1
        txn.emit(run, "step_retrying", step.name, retry_at=outcome.retry_at, **detail)
        return
    step.status = StepStatus.FAILED
    step.finished_at = txn.now
    txn.emit(run, "step_failed", step.name, **detail)
    yield from settle(txn, run, step)


def _called(txn: Txn, run: RunRow, step: StepRow, child: str) -> Transition:
    if run.status.terminal:  # cancelled while it ran: it ends here, and so does its child
        _end_interrupted(txn, run, step, step.worker_id)
        yield from cancel_call(txn, child, f"the run that called it, {run.id!r}, ended")
        yield from settle(txn, run, step)
        return
    yield from calls.suspend(txn, run, step, child)


def _records_input(step: StepRow) -> bool:
    """Does an attempt's outcome record what the step's handler received? A workflow step's
    and a spawned step's bound by parameter do; a spawned step's one input is its spawn's."""
    return step.task is None or (step.options is not None and step.options.reads is not None)


def check_records(txn: Txn, outcome: Outcome) -> Generator[Need, None, Outcome]:
    """The outcome of a successful attempt whose records may be written: each one written with
    an expected revision must find it, in this transaction (this transaction's earlier writes
    of the key, and the attempt's own, count). Else the attempt failed: code
    `revision_conflict`, retried as its outcome says (`conflict_retry_at`), and nothing it
    wrote (records, artifacts, spawns, a Goto, its output) is committed."""
    assert outcome.data is not None
    writes = outcome.data.records
    checked = [(w.collection, w.key) for w in writes if w.expected is not None]
    if checked:
        yield from need_records(txn, outcome.run_id, checked)
    counted: list[tuple[str, str]] = []
    for w in writes:
        key = (w.collection, w.key)
        if w.expected is not None and (actual := txn.record_revision(key)) != w.expected:
            for done in counted:  # this attempt's earlier writes are not committed
                txn.records_written[done] -= 1
            txn.result.conflicted.append(outcome.token)
            now = "does not exist" if actual == 0 else f"is at revision {actual}"
            wanted = (
                "to create it (expected_revision=0)"
                if w.expected == 0
                else f"revision {w.expected}"
            )
            message = (
                f"record {w.key!r} of collection {w.collection!r} {now}, but the step's "
                f"ctx.record expected {wanted}; nothing of this attempt was committed"
            )
            return _nothing_committed(
                outcome, REVISION_CONFLICT, message, outcome.conflict_retry_at
            )
        txn.records_written[key] = txn.records_written.get(key, 0) + 1
        counted.append(key)
    return outcome


def _nothing_committed(
    outcome: Outcome, code: str, message: str, retry_at: float | None
) -> Outcome:
    """A success that fails at commit: the attempt failed with `code`, and nothing it wrote
    (records, state, artifacts, spawns, a Goto, its output) is committed."""
    return replace(
        outcome, output=None, error_code=code, error_message=message, retry_at=retry_at,
        goto=None, spawned=(), gather=None, data=None,
    )  # fmt: skip


def release(txn: Txn, run_id: str, name: str, token: str, max_recoveries: int | None) -> Transition:
    """A stopping worker hands a step back: ready at once, its attempt not counted. Like a lease
    expiry, the hand-back counts toward `max_recoveries`: past it the step fails with code
    `abandoned` (a step that hangs every worker that takes it would loop forever). None counts
    nothing (key admission hands back a step of an ended run, which ends it)."""
    yield from _release(txn, run_id, name, token, max_recoveries)
    yield from paused_when_idle(txn, run_id)


def _release(
    txn: Txn, run_id: str, name: str, token: str, max_recoveries: int | None
) -> Transition:
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
        yield from settle(txn, run, step)
        return
    if max_recoveries is not None:
        step.recoveries += 1
        if step.recoveries > max_recoveries:
            yield from _no_more_recoveries(txn, run, step, worker, "abandoned", max_recoveries)
            return
    back_to_ready(txn, step)
    txn.emit(run, "step_released", name, worker=worker)


def recover(txn: Txn, run_id: str, name: str, max_recoveries: int) -> Transition:
    """A step whose lease expired (its worker died or hung) becomes claimable again, without
    using its retry budget, unless its attempts have ended without an outcome (expired or
    released) more than `max_recoveries` times: then it fails with code `lease_expired`."""
    yield from _recover(txn, run_id, name, max_recoveries)
    yield from paused_when_idle(txn, run_id)


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
        yield from settle(txn, run, step)
        return
    step.recoveries += 1
    txn.result.expired += 1
    if step.recoveries > max_recoveries:
        yield from _no_more_recoveries(txn, run, step, worker, "lease_expired", max_recoveries)
        return
    back_to_ready(txn, step)
    txn.emit(run, "step_lease_expired", name, worker=worker, recoveries=step.recoveries)


_LAST_HAND_BACK = {
    "lease_expired": "its lease expired",
    "abandoned": "a stopping worker released it",
}


def _no_more_recoveries(
    txn: Txn, run: RunRow, step: StepRow, worker: str | None, code: str, max_recoveries: int
) -> Transition:
    """Fail a step whose attempts ended without an outcome (lease expired, or released by a
    stopping worker) more than `max_recoveries` times; `code` says how the last one ended."""
    step.lease_token = None
    step.lease_expires_at = None
    step.status = StepStatus.FAILED
    step.error_code = code
    step.error_message = (
        f"step {step.name!r} ended {step.recoveries} attempts without an outcome "
        f"(max_recoveries={max_recoveries}), the last when {_LAST_HAND_BACK[code]}: "
        "it may be killing or hanging its worker"
    )
    step.finished_at = txn.now
    txn.touch(step)
    txn.emit(
        run,
        "step_failed",
        step.name,
        code=step.error_code,
        message=step.error_message,
        attempt=step.attempt,
        worker=worker,
    )
    yield from settle(txn, run, step)


def _end_interrupted(txn: Txn, run: RunRow, step: StepRow, worker: str | None) -> None:
    step.status = StepStatus.CANCELLED
    step.lease_token = None
    step.lease_expires_at = None
    step.finished_at = txn.now
    txn.touch(step)
    txn.emit(run, "step_cancelled", step.name, worker=worker, attempt=step.attempt)


def back_to_ready(txn: Txn, step: StepRow) -> None:
    """A running step goes back to ready at once, its attempt not counted: handed back by its
    worker, its lease expired, or its key full."""
    step.status = StepStatus.READY
    step.attempt -= 1
    step.lease_token = None
    step.lease_expires_at = None
    step.worker_id = None
    step.started_at = None
    step.available_at = step.ready_at = txn.now
    txn.result.readied += 1
    txn.touch(step)


def admit_key(txn: Txn, run_id: str, name: str, token: str, key: str, running: int) -> Transition:
    """Store `key`, resolved by the worker that claimed the step under `token`, on the step, and
    keep it running if fewer than its `key_limit` other running steps have that key (`running`
    counts those stored with it, the step itself included if it already had it); else hand it
    back. `txn.result.accepted` is [True] when the step may run.

    A key that reads the outputs of the step's dependencies cannot be resolved by a store (it
    runs no user code), so such a step is claimed with its key pending and its worker resolves
    it; this admits it under the same count a claim makes. The key stays on the row, so every
    later claim counts it and skips the step while its key is full: nothing spins."""
    yield from need(txn, run_id, (name,))
    step, run = txn.step(run_id, name), txn.runs.get(run_id)
    if (
        step is None
        or run is None
        or step.options is None
        or step.status is not StepStatus.RUNNING
        or step.lease_token != token
    ):
        txn.result.accepted.append(False)  # its lease was lost: another worker may hold it
        return
    if run.status.terminal:  # cancelled meanwhile: handed back, it ends here
        txn.result.accepted.append(False)
        yield from release(txn, run_id, name, token, None)  # ends it: nothing to count
        return
    options = step.options
    limit = options.key_limit or 1
    others = running - (1 if options.key == key else 0)
    if options.key != key:
        step.options = replace(options, key=key)
        txn.rekeyed.add((run_id, name))
        txn.touch(step)
    if others < limit:
        txn.result.accepted.append(True)
        return
    txn.result.accepted.append(False)
    worker = step.worker_id
    # it held a slot of its queue (a completion's wake-up if the queue has a concurrency
    # limit), not of its key; and it is claimable again only once its key frees, which the
    # completion that frees it announces: no "ready" wake-up now
    txn.ended_attempts.append(replace(step, options=options))
    back_to_ready(txn, step)
    txn.result.readied -= 1
    txn.emit(run, KEY_FULL, name, key=key, key_limit=limit, running=others, worker=worker)
    yield from paused_when_idle(txn, run_id)
