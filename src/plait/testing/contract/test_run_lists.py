"""What the HTTP server lists and acts on, on every store: runs filtered by time range and text,
counts, the run-list change feed, failed steps across runs, and bulk actions with a dry run."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

import plait
from plait.core.rows import RunStatus


@pytest.fixture
def engine(store_url: str) -> Iterator[plait.Engine]:
    with plait.Engine(store_url, lease=5.0) as eng:
        yield eng


def _workflows() -> tuple[plait.Workflow, plait.Workflow]:
    ok = plait.Workflow("lists_ok")

    @ok.step()
    def one(n: int) -> int:
        return n

    bad = plait.Workflow("lists_bad")

    @bad.step()
    def boom(n: int) -> int:
        raise plait.Permanent(f"boom {n}", code="kaput")

    @bad.step()
    def after(boom: int) -> int:
        return boom

    return ok, bad


def test_runs_filter_by_time_range_and_text(engine: plait.Engine) -> None:
    ok, _ = _workflows()
    first = engine.start(ok, {"n": 1}, run_id="alpha-1")
    middle = time.time()
    while time.time() == middle:  # the next run is created strictly after `middle`
        pass
    engine.start(ok, {"n": 2}, run_id="Beta-2")
    engine.start(ok, {"n": 3}, run_id="alpha-3")

    assert [r.id for r in engine.list_runs(created_to=middle)] == [first.id]
    assert [r.id for r in engine.list_runs(created_from=middle)] == ["alpha-3", "Beta-2"]
    as_dt = datetime.fromtimestamp(middle, UTC)
    assert [r.id for r in engine.list_runs(created_from=as_dt)] == ["alpha-3", "Beta-2"]
    assert [r.id for r in engine.list_runs(text="ALPHA")] == ["alpha-3", "alpha-1"]
    assert [r.id for r in engine.list_runs(text="beta", workflow="lists_ok")] == ["Beta-2"]
    assert engine.list_runs(text="nothing-like-it").runs == []
    assert engine.count_runs() == 3
    assert engine.count_runs(plait.RunFilter(text="alpha")) == 2
    assert engine.count_runs(plait.RunFilter(workflow="lists_ok", status="pending")) == 3
    assert engine.count_runs(plait.RunFilter(created_from=middle, text="alpha")) == 1

    # keyset pages with the filter kept
    page = engine.list_runs(text="a", limit=2)
    assert [r.id for r in page] == ["alpha-3", "Beta-2"] and page.next_cursor is not None
    rest = engine.list_runs(text="a", limit=2, cursor=page.next_cursor)
    assert [r.id for r in rest] == ["alpha-1"] and rest.next_cursor is None


def test_bad_filters_say_what_is_wrong(engine: plait.Engine) -> None:
    with pytest.raises(plait.InputError, match="unknown run status 'nope'"):
        engine.list_runs(status="nope")
    with pytest.raises(plait.InputError, match="created_from must be a datetime or epoch"):
        engine.list_runs(created_from="yesterday")  # type: ignore[arg-type]  # a wrong type on purpose
    with pytest.raises(plait.InputError, match="limit must be an integer between 1 and 10000"):
        engine.list_runs(limit=10_001)
    with pytest.raises(plait.InputError, match="invalid cursor 'x'"):
        engine.list_runs(cursor="x")
    with pytest.raises(plait.InputError, match=re.escape("invalid cursor 'nan|a|b'")):
        engine.failed_steps(cursor="nan|a|b")


def test_failed_steps_across_runs_latest_first(engine: plait.Engine) -> None:
    ok, bad = _workflows()
    handles = [engine.start(bad, {"n": n}, run_id=f"bad-{n}") for n in range(3)]
    good = engine.start(ok, {"n": 9})
    engine.run_worker(until=[*handles, good], timeout=30)

    every = engine.failed_steps(limit=10).steps
    assert sorted((f.run_id, f.step) for f in every) == [
        ("bad-0", "boom"), ("bad-1", "boom"), ("bad-2", "boom"),
    ]  # fmt: skip
    ends = [(f.finished_at, f.run_id) for f in every]
    assert ends == sorted(ends, reverse=True)  # the latest ended first
    first = every[0]
    assert first.error == plait.StepError("kaput", f"boom {first.run_id[-1]}")
    assert first.workflow == "lists_bad" and first.attempts == 1
    page = engine.failed_steps(limit=2)
    rest = engine.failed_steps(limit=2, cursor=page.next_cursor)
    assert [f.run_id for f in page.steps + rest.steps] == [f.run_id for f in every]
    assert rest.next_cursor is None
    assert engine.failed_steps(workflow="lists_ok").steps == []
    assert len(engine.failed_steps(workflow="lists_bad").steps) == 3


def test_bulk_dry_run_counts_and_execution_acts(engine: plait.Engine) -> None:
    ok, bad = _workflows()
    failed = [engine.start(bad, {"n": n}, run_id=f"b-{n}") for n in range(2)]
    engine.run_worker(until=failed, timeout=30)
    pending = [engine.start(ok, {"n": n}, run_id=f"p-{n}") for n in range(3)]

    everything = plait.RunFilter()
    dry = engine.bulk("cancel", filter=everything, dry_run=True)
    assert (dry.matched, dry.selected, dry.eligible) == (5, 5, 3)
    assert dry.skipped_by_status == {"failed": 2}
    assert sorted(dry.sample) == ["p-0", "p-1", "p-2"] and dry.items == []
    assert engine.count_runs(plait.RunFilter(status="pending")) == 3  # nothing was done

    limited = engine.bulk("cancel", filter=everything, dry_run=True, limit=2)
    assert (limited.matched, limited.selected) == (5, 2)

    done = engine.bulk("cancel", filter=plait.RunFilter(workflow="lists_ok"), by="ops", reason="r")
    assert sorted((i.run_id, i.outcome) for i in done.items) == [
        ("p-0", "done"), ("p-1", "done"), ("p-2", "done"),
    ]  # fmt: skip
    assert {engine.get_run(h.id).status for h in pending} == {RunStatus.CANCELLED}
    cancelled = [e for e in engine.events("p-0") if e.type == "run_cancelled"]
    assert cancelled and cancelled[0].payload.get("by") == "ops"

    by_ids = engine.bulk("delete", run_ids=["p-0", "b-0"])
    assert [(i.run_id, i.outcome) for i in by_ids.items] == [("p-0", "done"), ("b-0", "done")]
    with pytest.raises(plait.RunNotFound):
        engine.get_run("p-0")

    skipped = engine.bulk("resume", run_ids=["p-1"])
    assert skipped.items[0].outcome == "skipped"
    assert (
        skipped.items[0].message == "run 'p-1' is cancelled: resume applies to paused, pausing runs"
    )

    retried = engine.bulk("retry", run_ids=["b-1"])
    assert retried.items[0].outcome == "done"
    assert engine.get_run("b-1").status is RunStatus.RUNNING


def test_bulk_refuses_bad_selections_and_changes_nothing(engine: plait.Engine) -> None:
    ok, _ = _workflows()
    engine.start(ok, {"n": 1}, run_id="here")
    with pytest.raises(plait.InputError, match=r"no run with id 'gone' in .*: nothing was done"):
        engine.bulk("cancel", run_ids=["here", "gone"])
    assert engine.get_run("here").status is RunStatus.PENDING
    with pytest.raises(plait.InputError, match="unknown bulk action 'explode'"):
        engine.bulk("explode", run_ids=["here"])
    with pytest.raises(plait.InputError, match="exactly one of them"):
        engine.bulk("cancel")
    with pytest.raises(plait.InputError, match="exactly one of them"):
        engine.bulk("cancel", run_ids=["here"], filter=plait.RunFilter())
    with pytest.raises(plait.InputError, match="at most 1 run ids, got 2"):
        engine.bulk("cancel", run_ids=["here", "there"], limit=1)
    with pytest.raises(plait.InputError, match="limit must be an integer between 1 and 1000"):
        engine.bulk("cancel", filter=plait.RunFilter(), limit=0)


def test_store_change_feed_orders_runs_by_their_last_status_change(
    engine: plait.Engine,
) -> None:
    ok, bad = _workflows()
    before = time.time() - 1
    a = engine.start(ok, {"n": 1}, run_id="feed-a")
    engine.start(bad, {"n": 2}, run_id="feed-b")  # no worker serves it here: it stays pending
    store = engine.store

    async def changes() -> list[str]:
        return [r for _, r in await store.list_run_changes((before, ""), 100)]

    assert asyncio.run(changes()) == ["feed-a", "feed-b"]
    engine.run_worker(until=a, timeout=30, workflows=[ok])  # feed-a ends: it moves to the end
    seen = asyncio.run(changes())
    assert seen[-1] == "feed-a" and sorted(seen) == ["feed-a", "feed-b"]
    at = asyncio.run(store.list_run_changes((before, ""), 100))
    assert at == sorted(at)
    assert asyncio.run(store.list_run_changes(at[-1], 100)) == []


async def test_watch_runs_delivers_status_changes(store_url: str) -> None:
    ok, _ = _workflows()
    async with plait.Engine(store_url, lease=5.0) as engine:
        feed = engine.watch_runs()
        seen: list[tuple[str, str]] = []

        async def follow() -> None:
            async for run in feed:
                assert run.updated_at is not None
                seen.append((run.id, run.status.value))
                if (run.id, run.status.value) == ("w-1", "completed"):
                    return

        async with contextlib.aclosing(feed):
            follower = asyncio.create_task(follow())
            handle = await engine.start_async(ok, {"n": 1}, run_id="w-1")
            await engine.run_worker_async(until=handle, timeout=30)
            await asyncio.wait_for(follower, 30)
        # a look shows each run as it is then: states it passed through meanwhile are not seen
        assert {run_id for run_id, _ in seen} == {"w-1"}
        assert seen[-1] == ("w-1", "completed")


def test_step_backlog_counts_ready_running_and_waiting_per_queue(engine: plait.Engine) -> None:
    wf = plait.Workflow("backlog")

    @wf.step(queue="emails")
    def mail(n: int) -> int:
        return n

    @wf.step(approval=True)
    def gate(n: int) -> int:
        return n

    before = time.time()
    for n in range(3):
        engine.start(wf, {"n": n}, run_id=f"bl-{n}")
    store = engine.store
    claimed = asyncio.run(store.claim(worker_id="w", fingerprints=[wf.fingerprint], limit=1,
                                      lease=30.0, now=time.time()))  # fmt: skip
    assert len(claimed) == 1
    found = {(q, s.value): (n, since) for q, s, n, since in
             asyncio.run(store.step_backlog(time.time()))}  # fmt: skip
    assert {k: n for k, (n, _) in found.items()} == {
        ("emails", "ready"): 2, ("emails", "running"): 1, ("default", "waiting"): 3,
    }  # fmt: skip
    oldest = found[("emails", "ready")][1]
    assert oldest is not None and before <= oldest <= time.time()
    assert found[("emails", "running")][1] is None
    # steps claimable only later are not backlog yet: no age
    later = {(q, s.value): since for q, s, _, since in asyncio.run(store.step_backlog(before - 60))}
    assert later[("emails", "ready")] is None
