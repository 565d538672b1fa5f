"""Bulk actions: one operator action (cancel, pause, resume, retry, delete) on a selection of
runs, named by their ids or by a `RunFilter`, with a dry run that counts first.

A bulk action is a loop of the single-run operations (`operator`, `data.delete_run`), each its
own transaction, so it has their rules and their messages; it is not atomic. A run whose status
does not allow the action is skipped (and said so), never an error for the whole call; a run
that changes state between the count and the act gets the Engine's refusal as its outcome.
At most `MAX_BULK` runs are acted on per call, the newest first: a filter that matches more is
acted on again by calling again (the runs already done no longer match, or are skipped).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Collection

from .._errors import InputError, PlaitError
from .._runtime import Runtime
from ..core.rows import RunRow, RunStatus, StepStatus
from . import data, operator
from .runs import check_run_id, store_filter
from .views import BulkItem, BulkResult, RunFilter

MAX_BULK = 1000  # runs one call acts on at most
SAMPLE = 20  # eligible run ids a result shows

_ACTIVE = {RunStatus.PENDING, RunStatus.RUNNING, RunStatus.PAUSING, RunStatus.PAUSED}
# the statuses each action applies to (cancel on a cancelled run would change nothing)
ELIGIBLE: dict[str, Collection[RunStatus]] = {
    "cancel": _ACTIVE,
    "pause": {RunStatus.PENDING, RunStatus.RUNNING},
    "resume": {RunStatus.PAUSING, RunStatus.PAUSED},
    "retry": {RunStatus.FAILED},
    "delete": {RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED},
}
ACTIONS = tuple(ELIGIBLE)


async def bulk(
    rt: Runtime,
    action: str,
    *,
    run_ids: Collection[str] | None,
    filter: RunFilter | None,
    dry_run: bool,
    limit: int,
    by: str | None,
    reason: str | None,
) -> BulkResult:
    if action not in ELIGIBLE:
        raise InputError(f"unknown bulk action {action!r}; use one of: {', '.join(ACTIONS)}")
    if not isinstance(dry_run, bool):
        raise InputError(f"dry_run must be True or False, got {dry_run!r}")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_BULK:
        raise InputError(f"limit must be an integer between 1 and {MAX_BULK}, got {limit!r}")
    if (run_ids is None) == (filter is None):
        raise InputError("a bulk action takes either run_ids or a filter (exactly one of them)")
    who = operator.actor(by)
    store = await rt.ready()
    if run_ids is not None:
        if isinstance(run_ids, str) or not isinstance(run_ids, Collection):
            raise InputError("run_ids must be a list of run ids")
        ids = list(dict.fromkeys(run_ids))  # once each, in the order given
        if len(ids) > limit:
            raise InputError(
                f"a bulk action takes at most {limit} run ids, got {len(ids)}; "
                "split the selection, or use a filter"
            )
        for run_id in ids:
            check_run_id(run_id)
        found = {r.id: r for r in await store.get_runs(ids)}
        missing = [r for r in ids if r not in found]
        if missing:
            shown = ", ".join(repr(m) for m in missing[:5])
            raise InputError(f"no run with id {shown} in {rt.url}: nothing was done")
        rows = [found[r] for r in ids]
        matched = len(rows)
    else:
        assert filter is not None
        conditions = store_filter(filter)
        matched = await store.count_runs(**conditions)
        rows = await store.list_runs(**conditions, limit=limit, before=None)
    eligible = [r for r in rows if r.status in ELIGIBLE[action]]
    skipped = Counter(r.status.value for r in rows if r.status not in ELIGIBLE[action])
    result = BulkResult(
        action=action,
        dry_run=dry_run,
        matched=matched,
        selected=len(rows),
        eligible=len(eligible),
        skipped_by_status=dict(skipped),
        sample=[r.id for r in eligible[:SAMPLE]],
    )
    if dry_run:
        return result
    act = _act(rt, action, who, reason)
    for row in rows:
        if row.status not in ELIGIBLE[action]:
            allowed = ", ".join(sorted(s.value for s in ELIGIBLE[action]))
            message = f"run {row.id!r} is {row.status.value}: {action} applies to {allowed} runs"
            result.items.append(BulkItem(row.id, "skipped", message))
            continue
        try:
            await act(row)
        except PlaitError as exc:
            result.items.append(BulkItem(row.id, "error", str(exc)))
        else:
            result.items.append(BulkItem(row.id, "done"))
    return result


def _act(
    rt: Runtime, action: str, by: str, reason: str | None
) -> Callable[[RunRow], Awaitable[object]]:
    async def cancel(row: RunRow) -> object:
        return await operator.cancel(rt, row.id, reason, by)

    async def pause(row: RunRow) -> object:
        return await operator.pause(rt, row.id, by)

    async def resume(row: RunRow) -> object:
        return await operator.resume(rt, row.id, by)

    async def retry(row: RunRow) -> object:
        failed = [s.name for s in await rt.store.get_steps(row.id) if s.status is StepStatus.FAILED]
        if not failed:
            raise InputError(f"run {row.id!r} has no failed step to retry")
        for name in failed:  # a step its retried sibling's cascade doomed is retried too
            await operator.retry(rt, row.id, name, by)
        return None

    async def delete(row: RunRow) -> object:
        await data.delete_run(rt, row.id, False)
        return None

    return {"cancel": cancel, "pause": pause, "resume": resume, "retry": retry, "delete": delete}[
        action
    ]
