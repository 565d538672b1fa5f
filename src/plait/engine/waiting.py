"""Waiting for runs to end: one (`result()`), all of many (`wait_all`), or each of many as it
ends (`as_completed`).

A waiter reads the runs it waits for once, then waits for a wake-up and reads again only what
the wake-up names (`Runtime.runs_ended`): a commit of this process that ends some of its runs
wakes it once and names them, so waiting for 10,000 runs costs one wake-up and one read per
commit that ends some, never one per run. What it is not told by name it looks for by reading
every run it still waits for:
- when a store's push says that runs ended in another process (PostgreSQL);
- when nothing woke it for a while: a poll that backs off from 5 ms to `poll_interval` (to
  `sweep_interval` while a store's push is live), the safety net, and how runs finished by
  other processes on SQLite are seen.
Either at most once per ten times such a read last took (so that a process whose own commits
are pushed back to it, unnamed, does not read 10,000 runs per commit).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Collection, Iterable, Iterator
from typing import Any

from .. import _codec
from .._errors import InputError, RunCancelled, RunFailed, RunNotFound, StepError
from .._runtime import Runtime
from ..core.gates import DEADLINE_EXCEEDED
from ..core.rows import RunRow, RunStatus, StepStatus
from ..workflow.options import wait_limit
from .views import Run

FIRST_POLL = 0.005  # seconds: the first look when nothing wakes the waiter
MIN_SWEEP_GAP = 0.002  # seconds between two reads of every run waited for, at the least
SWEEP_COST_FACTOR = 10  # ... and ten times what the last one took
READ_BATCH = 1000  # run ids read in one query


async def wait(rt: Runtime, run_id: str, timeout: float | None) -> dict[str, Any]:
    """Wait for a run to end; its output, or RunFailed / RunCancelled / TimeoutError. A run
    that has ended costs one read."""
    timeout = wait_limit(f"run {run_id!r}", "timeout", timeout)
    answer = await if_ended(rt, run_id)
    if answer is not None:  # as it mostly is when asked: nothing to wait for
        return answer[0]
    async with contextlib.aclosing(ended(rt, [run_id], timeout, what=None)) as rows_ended:
        async for rows in rows_ended:
            return await result_of(rt, rows[0])
    raise AssertionError("unreachable: `ended` yields the run or raises")  # pragma: no cover


def wait_direct(rt: Runtime, run_id: str, timeout: float | None) -> dict[str, Any] | None:
    """`wait` for a run that has ended, on the caller's thread (`Runtime.direct_store`): one
    read, no crossing to the loop. None when the store takes no direct call or the run has
    not ended: then `wait` on the loop."""
    store = rt.direct_store()
    if store is None:
        return None
    wait_limit(f"run {run_id!r}", "timeout", timeout)
    answer = store.direct(lambda: if_ended(rt, run_id))
    return None if answer is None else answer[0]


async def if_ended(rt: Runtime, run_id: str) -> tuple[dict[str, Any]] | None:
    """The run's output, in a tuple, if it has ended; RunFailed or RunCancelled if it ended
    so; RunNotFound, with the usual message; None while it runs."""
    row = await rt.run_row(run_id)
    return (await result_of(rt, row),) if row.status.terminal else None


async def result_of(rt: Runtime, row: RunRow) -> dict[str, Any]:
    """An ended run's output, or the RunFailed / RunCancelled that says how it ended."""
    if row.status is RunStatus.COMPLETED:
        output = _codec.loads(row.output)
        return output if isinstance(output, dict) else {}
    if row.status is RunStatus.CANCELLED:
        raise RunCancelled(row.id, row.error)
    failures = {
        s.name: StepError(s.error_code or "failed", s.error_message or s.skip_reason or "")
        for s in await rt.store.get_steps(row.id)
        if s.status is StepStatus.FAILED
    }
    code = DEADLINE_EXCEEDED if (row.error or "").startswith(DEADLINE_EXCEEDED) else None
    raise RunFailed(row.id, failures, code=code, error=row.error)


def run_ids(what: str, runs: Any) -> list[str]:
    """The run ids of `runs`: handles (anything with a string `id`) or ids, in order."""
    if isinstance(runs, str) or not isinstance(runs, Iterable):
        raise InputError(
            f"{what}: runs must be an iterable of RunHandles or run ids, got {type(runs).__name__}"
        )
    ids = []
    for i, item in enumerate(runs):
        run_id = item if isinstance(item, str) else getattr(item, "id", None)
        if not isinstance(run_id, str):
            raise InputError(f"{what}: runs[{i}] is {item!r}, not a RunHandle or a run id")
        ids.append(run_id)
    return ids


def checked(what: str, runs: Any, timeout: float | None) -> tuple[list[str], float | None]:
    """The run ids and the timeout of a wait for many runs, checked."""
    return run_ids(what, runs), wait_limit(what, "timeout", timeout)


async def wait_all(rt: Runtime, runs: Any, timeout: float | None) -> list[Run]:
    """Wait until every run has ended (completed, failed or cancelled); their views, in the
    order given. TimeoutError if some have not by `timeout`."""
    ids, timeout = checked("wait_all", runs, timeout)
    views: dict[str, Run] = {}
    async with contextlib.aclosing(ended(rt, ids, timeout, what="wait_all")) as rows_ended:
        async for rows in rows_ended:
            views.update((row.id, Run.from_row(row)) for row in rows)
    return [views[run_id] for run_id in ids]


async def as_completed(
    rt: Runtime, ids: list[str], timeout: float | None
) -> AsyncGenerator[list[Run], None]:
    """The runs' views as they end, in batches (those ended already first), each run once
    (`ids` and `timeout` as `checked` returns them). TimeoutError if some have not ended by
    `timeout`."""
    # closed with this generator, so that its watch ends at once (a `break` of the caller's)
    async with contextlib.aclosing(ended(rt, ids, timeout, what="as_completed")) as rows_ended:
        async for rows in rows_ended:
            yield [Run.from_row(row) for row in rows]


def blocking_batches(rt: Runtime, batches: AsyncGenerator[list[Run], None]) -> Iterator[Run]:
    """`as_completed` for a blocking caller: each batch fetched on the engine's loop, one
    crossing per batch; left early (break, an error), the waiter is closed there."""
    portal = rt.portal
    pending: list[asyncio.Task[list[Run] | None]] = []
    try:
        while (batch := portal.call(_advance(batches, pending))) is not None:
            yield from batch
    finally:
        portal.call(_close(batches, pending))


async def _advance(
    batches: AsyncGenerator[list[Run], None], pending: list[asyncio.Task[list[Run] | None]]
) -> list[Run] | None:
    task = asyncio.ensure_future(anext(batches, None))
    pending[:] = [task]
    return await task


async def _close(
    batches: AsyncGenerator[list[Run], None], pending: list[asyncio.Task[list[Run] | None]]
) -> None:
    for task in pending:
        if not task.done():
            task.cancel()
            await asyncio.wait([task])
    await batches.aclose()


async def ended(
    rt: Runtime, run_ids: Collection[str], timeout: float | None, *, what: str | None
) -> AsyncGenerator[list[RunRow], None]:
    """The rows of these runs as they end, in batches (see the module docstring): each run
    once; RunNotFound if one does not exist, TimeoutError naming what is unfinished (`what`
    waits, None: the one run's `result()`)."""
    store = await rt.ready()
    deadline = None if timeout is None else time.monotonic() + timeout
    waiting = dict.fromkeys(run_ids)
    if not waiting:
        return
    statuses: dict[str, RunStatus] = {}  # as last read, for a timeout's message
    with rt.runs_ended.watch(waiting) as watch:
        seen = watch.generation
        began = time.monotonic()
        rows = await _read(store, waiting)
        next_sweep = time.monotonic() + _sweep_gap(time.monotonic() - began)
        found = {row.id for row in rows}
        for run_id in waiting:
            if run_id not in found:
                raise RunNotFound(f"no run with id {run_id!r} in {rt.url}")
        pause = FIRST_POLL
        owed = False  # a push said that runs ended elsewhere: every run is to be read again
        while True:
            done = []
            for row in rows:
                statuses[row.id] = row.status
                if row.status.terminal and row.id in waiting:
                    del waiting[row.id]
                    done.append(row)
            if done:
                yield done
            if not waiting:
                return
            now = time.monotonic()
            # a poll, like a push, reads every run: never more often than its cost allows
            wait_for = max(pause, next_sweep - now) if not owed else max(0.0, next_sweep - now)
            if deadline is not None:
                if deadline <= now:
                    raise _timed_out(what, timeout, waiting, statuses)
                wait_for = min(wait_for, deadline - now)
            woken = await watch.wait(wait_for, since=seen)
            seen = watch.generation
            named, unknown = watch.take()
            owed = owed or unknown
            now = time.monotonic()
            if not woken and not owed:  # nothing said a word: the safety net, backing off
                pause = min(pause * 2, rt.idle_interval)
                sweep = True
            else:
                sweep = owed and now >= next_sweep
            if sweep:
                owed = False
                rows = await _read(store, waiting)
                next_sweep = time.monotonic() + _sweep_gap(time.monotonic() - now)
            else:
                look = [run_id for run_id in named if run_id in waiting]
                rows = await _read(store, look) if look else []


def _sweep_gap(cost: float) -> float:
    """How long after reading every run waited for the next such read may come."""
    return max(MIN_SWEEP_GAP, SWEEP_COST_FACTOR * cost)


async def _read(store: Any, run_ids: Collection[str]) -> list[RunRow]:
    ids = list(run_ids)
    if len(ids) == 1:
        row = await store.get_run(ids[0])
        return [] if row is None else [row]
    rows: list[RunRow] = []
    for i in range(0, len(ids), READ_BATCH):
        rows.extend(await store.get_runs(ids[i : i + READ_BATCH]))
    return rows


def _timed_out(
    what: str | None,
    timeout: float | None,
    waiting: dict[str, None],
    statuses: dict[str, RunStatus],
) -> TimeoutError:
    if what is None:
        (run_id,) = waiting
        return TimeoutError(
            f"run {run_id!r} did not end within {timeout}s (it is {statuses[run_id].value})"
        )
    named = ", ".join(repr(r) for r in list(waiting)[:3])
    more = f" and {len(waiting) - 3} more" if len(waiting) > 3 else ""
    runs = "run" if len(waiting) == 1 else "runs"
    return TimeoutError(
        f"{what}: {len(waiting)} {runs} did not end within {timeout}s: {named}{more}"
    )
