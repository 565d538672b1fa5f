"""Loops: a step returns `plait.Goto("target", max_iterations=N)` to run `target` and everything
downstream of it again (DESIGN §3.3). Pure.

Each pass is counted on the steps it re-runs (`StepRow.iteration`, 0 on the first pass; a
handler sees it as `ctx.iteration`). A loop back resets those steps to `pending` (the target is
then ready, or waits at its gate), and logs each one's previous end with its output
(`step_reset`; an output over 64 KiB by its SHA-256 and size), so every pass stays visible
in the run's log. A Goto that would start more than
`max_iterations` passes of its target fails the step that returned it with code `max_iterations`.
Loops are rare, so a loop back loads every step of its run.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import orjson

from .actions import doomed_by, upstream_of
from .blobs import DEFAULT_THRESHOLD, digest
from .cascade import abandon, fails_run, jumped, reached, settle, spawned_below
from .rows import Edge, EdgeKind, RunRow, StepRow, StepStatus
from .txn import Transition, Txn, need_all, steps_of

MAX_ITERATIONS = "max_iterations"
INVALID_GOTO = "invalid_goto"


@dataclass(frozen=True, slots=True)
class Goto:
    """Return this from a step to run `step` (itself or a step upstream of it) and everything
    downstream of it again; at most `max_iterations` passes of `step`, the first included."""

    step: str
    max_iterations: int = 10

    def __post_init__(self) -> None:
        if not isinstance(self.step, str) or not self.step:
            raise ValueError(f"Goto needs the name of a step, got {self.step!r}")
        n = self.max_iterations
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"Goto max_iterations must be an integer >= 1, got {n!r}")


def body_of(target: str, dependents: dict[str, tuple[Edge, ...]]) -> list[str]:
    """`target` and every step downstream of it: what a loop back to it runs again. (A spawned
    step's parent is not downstream of it: the parent waits for it, but a loop never leaves the
    pass it was spawned in.)"""
    seen = {target: None}
    stack = [target]
    while stack:
        for edge in dependents.get(stack.pop(), ()):
            if edge.target not in seen and edge.kind is not EdgeKind.CHILD:
                seen[edge.target] = None
                stack.append(edge.target)
    return list(seen)


def loop_back(txn: Txn, run: RunRow, step: StepRow, target: str, limit: int) -> Transition:
    """`step` (running, its outcome accepted) returned Goto(target, limit): a loop back if
    `target` is the step or upstream of it, a jump (`jump`) if it is downstream of it."""
    yield from need_all(txn, run.id)
    steps = {s.name: s for s in steps_of(txn, run.id)}
    dependents = {s.name: s.dependents for s in steps.values()}
    body = body_of(target, dependents) if target in steps else []
    if step.name not in body:
        if target in steps and target in body_of(step.name, dependents):
            yield from jump(txn, run, steps, step, target, dependents)
            return
        where = "not a step of this workflow" if target not in steps else "neither upstream "
        if target in steps:
            where += "nor downstream of it"
        message = f"step {step.name!r} returned Goto({target!r}): {target!r} is {where}"
        yield from _fail(txn, run, step, INVALID_GOTO, message)
        return
    passes = steps[target].iteration + 1
    if passes >= limit:
        message = (
            f"step {step.name!r} returned Goto({target!r}) after {passes} passes "
            f"(max_iterations={limit})"
        )
        yield from _fail(txn, run, step, MAX_ITERATIONS, message)
        return
    txn.emit(run, "step_looped", step.name, goto=target, iteration=passes)
    reset = [steps[name] for name in body]
    for s in sorted(reset, key=lambda s: s.idx):
        _reset(txn, run, s)
    for s in spawned_below(list(steps.values()), body):
        if not s.status.terminal:  # spawned by a pass that is being run again: it is moot
            abandon(txn, run, s, "its parent runs again (Goto)")
    upstream = upstream_of(steps.values())
    for s in reset:  # counted once all are pending: each waits for what it depends on again
        ups = upstream.get(s.name, [])
        s.unmet = sum(1 for up, _ in ups if not up.status.terminal)
        s.skip_reason = doomed_by(ups)
    for s in reset:
        if s.unmet == 0 and s.skip_reason is None:
            reached(txn, run, s, [])  # a reset signal has no payload: it cannot be done here
    txn.changed_runs[run.id] = run


def jump(
    txn: Txn,
    run: RunRow,
    steps: dict[str, StepRow],
    step: StepRow,
    target: str,
    dependents: dict[str, tuple[Edge, ...]],
) -> Transition:
    """A forward goto: `step` ends `done` (with no output, as a loop back records none), and the
    steps on its paths to `target` are skipped as a branch not taken (`cascade.jumped`), so
    `target` runs once its other dependencies have ended (a jumped-over dependency gives it
    null, or its default). Steps after a jumped-over one that do not lead to `target` are
    skipped with it; branches that do not pass through the jumped-over steps run as before."""
    below = set(body_of(step.name, dependents))
    between = [
        s
        for name in below - {step.name, target}
        if target in body_of(name, dependents) and (s := steps[name]).status is StepStatus.PENDING
    ]
    txn.emit(run, "step_jumped", step.name, goto=target, over=sorted(s.name for s in between))
    step.status = StepStatus.DONE
    step.output = None
    step.finished_at = txn.now
    txn.touch(step)
    txn.emit(run, "step_completed", step.name, attempt=step.attempt, goto=target)
    reason = jumped(target)
    for s in between:
        s.status = StepStatus.SKIPPED
        s.skip_reason = reason
        s.finished_at = txn.now
        txn.touch(s)
        txn.emit(run, "step_skipped", s.name, reason=reason)
    yield from settle(txn, run, step)
    for s in sorted(between, key=lambda s: s.idx):
        yield from settle(txn, run, s)


def _reset(txn: Txn, run: RunRow, s: StepRow) -> None:
    if s.status.terminal:
        if fails_run(s):
            run.failures -= 1
        run.unfinished += 1
    previous: dict[str, object] = {"status": s.status.value, "iteration": s.iteration}
    if s.output is not None and len(s.output) > DEFAULT_THRESHOLD:
        # an output that would be a blob is named, not copied into the log
        previous["output_sha256"], previous["output_size"] = digest(s.output), len(s.output)
    else:
        previous["output"] = None if s.output is None else orjson.loads(s.output)
    if s.error_code is not None:
        previous["error"] = {"code": s.error_code, "message": s.error_message}
    txn.emit(run, "step_reset", s.name, **previous)
    s.status = StepStatus.PENDING
    s.iteration += 1
    s.output = s.gather = s.error_code = s.error_message = s.skip_reason = None
    s.attempt = s.recoveries = 0
    s.lease_token = s.lease_expires_at = s.worker_id = None
    s.available_at = s.ready_at = s.started_at = s.finished_at = None
    forget_key(txn, s)  # a key read from upstream outputs is resolved again, from the new ones
    txn.touch(s)


def forget_key(txn: Txn, step: StepRow) -> None:
    """Make a concurrency key read from upstream outputs pending again: the step runs again on
    new ones, so its worker resolves it again (`transitions.admit_key`)."""
    options = step.options
    if options is not None and options.key_from_outputs and options.key is not None:
        step.options = replace(options, key=None)
        txn.rekeyed.add((step.run_id, step.name))


def _fail(txn: Txn, run: RunRow, step: StepRow, code: str, message: str) -> Transition:
    step.status = StepStatus.FAILED
    step.error_code = code
    step.error_message = message
    step.finished_at = txn.now
    txn.touch(step)
    txn.emit(run, "step_failed", step.name, attempt=step.attempt, code=code, message=message)
    yield from settle(txn, run, step)
