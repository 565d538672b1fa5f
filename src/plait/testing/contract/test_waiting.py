"""Waiting for runs on every store: `result()` of an ended run in one read, and `wait_all` /
`as_completed`, which read the runs a wake-up names instead of every run waited for."""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import plait
from plait.core.actions import cancel
from plait.engine import waiting
from plait.testing.contract.helpers import wait_until


@pytest.fixture
def engine(store_url: str) -> Iterator[plait.Engine]:
    with plait.Engine(store_url, lease=5.0) as eng:
        yield eng


def doubler() -> plait.Workflow:
    wf = plait.Workflow("doubler")

    @wf.step
    def double(n: int) -> int:
        if n < 0:
            raise plait.Permanent("negative", code="negative")
        return 2 * n

    return wf


class Reads:
    """Counts the store's run reads (and what each asked for), as each is done."""

    def __init__(self, engine: plait.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
        self.asked: list[list[str]] = []
        store = engine.store
        get_run, get_runs = store.get_run, store.get_runs
        self.other: list[str] = []

        async def one(run_id: str) -> Any:
            row = await get_run(run_id)
            self.asked.append([run_id])  # once read: what was read is what this shows
            return row

        async def many(run_ids: Any) -> Any:
            asked = sorted(run_ids)
            rows = await get_runs(run_ids)
            self.asked.append(asked)
            return rows

        monkeypatch.setattr(store, "get_run", one)
        monkeypatch.setattr(store, "get_runs", many)
        for name in ("get_steps", "get_events", "step_inputs", "list_runs"):
            original = getattr(store, name)

            async def other(*args: Any, _original: Any = original, _name: str = name) -> Any:
                self.other.append(_name)
                return await _original(*args)

            monkeypatch.setattr(store, name, other)


def test_the_result_of_an_ended_run_costs_one_read(
    engine: plait.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    wf = doubler()
    done = engine.start(wf, {"n": 4})
    engine.run_worker(until=done, timeout=30)
    reads = Reads(engine, monkeypatch)

    assert done.result() == {"double": 8}
    assert asyncio.run(done.result_async()) == {"double": 8}

    assert reads.asked == [[done.id], [done.id]] and reads.other == []


def test_wait_all_returns_every_run_once_ended_in_order(engine: plait.Engine) -> None:
    wf = doubler()
    handles = engine.start_many(wf, [{"n": n} for n in (1, -1, 2, 3)])
    engine.cancel(handles[3].id, reason="not needed")
    waited: list[list[plait.Run]] = []
    waiter = threading.Thread(
        target=lambda: waited.append(engine.wait_all([*handles, handles[0].id]))
    )
    waiter.start()
    engine.run_worker(until=handles, timeout=30)
    waiter.join(timeout=30)

    (views,) = waited
    assert [v.id for v in views] == [h.id for h in handles] + [handles[0].id]
    assert [v.status for v in views] == [
        plait.RunStatus.COMPLETED,
        plait.RunStatus.FAILED,
        plait.RunStatus.COMPLETED,
        plait.RunStatus.CANCELLED,
        plait.RunStatus.COMPLETED,
    ]
    assert [views[0].output, views[2].output] == [{"double": 2}, {"double": 4}]
    assert views[3].error == "not needed"
    assert engine.wait_all([]) == []


def test_as_completed_yields_each_run_as_it_ends(engine: plait.Engine) -> None:
    wf = doubler()
    handles = engine.start_many(wf, [{"n": n} for n in range(20)])
    engine.cancel(handles[5].id)
    seen: list[plait.Run] = []
    watcher = threading.Thread(
        target=lambda: seen.extend(engine.as_completed(handles + handles[:3], timeout=30))
    )
    watcher.start()
    wait_until(lambda: len(seen) == 1, "the cancelled run, ended already, to come first")
    assert seen[0].id == handles[5].id
    engine.run_worker(until=handles, timeout=30)
    watcher.join(timeout=30)

    assert sorted(v.id for v in seen) == sorted(h.id for h in handles)  # each once
    assert {v.id: v.output for v in seen if v.output} == {
        h.id: {"double": 2 * n} for n, h in enumerate(handles) if n != 5
    }


def test_as_completed_async_and_wait_all_async(engine: plait.Engine) -> None:
    wf = doubler()
    handles = engine.start_many(wf, [{"n": n} for n in range(3)])

    async def main() -> tuple[list[str], list[plait.Run]]:
        serving = asyncio.ensure_future(engine.run_worker_async(until=handles, timeout=30))
        ended = [run.id async for run in engine.as_completed_async(handles)]
        views = await engine.wait_all_async(handles, timeout=5)
        await serving
        return ended, views

    ended, views = asyncio.run(main())
    assert sorted(ended) == sorted(h.id for h in handles)
    assert [v.output for v in views] == [{"double": 0}, {"double": 2}, {"double": 4}]


def test_a_wake_up_names_the_runs_that_ended_and_only_those_are_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A commit in this process that ends some of the runs waited for wakes the waiter once,
    and it reads those runs, not all of them. A push from elsewhere names none: it reads all.
    (The engine's part, on the memory store: a store that pushes would push these commits too.)"""
    monkeypatch.setattr(waiting, "FIRST_POLL", 600.0)  # no poll: only wake-ups
    with plait.Engine("memory://") as engine:
        wake_ups_name_runs(engine, monkeypatch)


def wake_ups_name_runs(engine: plait.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    wf = doubler()
    handles = engine.start_many(wf, [{"n": n} for n in range(30)])
    ids = [h.id for h in handles]
    reads = Reads(engine, monkeypatch)
    rt = engine._rt
    seen: list[list[str]] = []

    async def watch() -> None:
        async for run in engine.as_completed_async(handles, timeout=60):
            seen[-1].append(run.id) if seen else seen.append([run.id])

    def end(run_ids: list[str]) -> None:
        """End these runs in one go, as a commit of this process does, and say so."""
        for run_id in run_ids:
            engine._portal.call(
                engine.store.apply(
                    functools.partial(cancel, run_id=run_id, reason=None, by="test"), time.time()
                )
            )
        rt.runs_ended.ended(run_ids)

    waiter = threading.Thread(target=lambda: asyncio.run(watch()), daemon=True)
    waiter.start()
    wait_until(lambda: len(reads.asked) == 1, "the first read")
    assert reads.asked[0] == sorted(ids)  # every run, once

    end(ids[:4])
    wait_until(lambda: len(reads.asked) == 2, "a read of the runs named")
    assert reads.asked[1] == sorted(ids[:4])

    for run_id in ids[4:10]:  # ended elsewhere, unnamed, then a push says that runs ended
        engine._portal.call(
            engine.store.apply(
                functools.partial(cancel, run_id=run_id, reason=None, by="test"), time.time()
            )
        )
    rt.runs_ended.fire()
    wait_until(lambda: len(reads.asked) == 3, "a read of every run still waited for")
    assert reads.asked[2] == sorted(ids[4:])

    end(ids[10:])
    waiter.join(timeout=30)
    assert reads.asked[3] == sorted(ids[10:]) and len(reads.asked) == 4


def test_leaving_as_completed_early_stops_watching(engine: plait.Engine) -> None:
    wf = doubler()
    handles = engine.start_many(wf, [{"n": n} for n in range(3)])
    engine.cancel(handles[0].id)
    for run in engine.as_completed(handles):
        assert run.id == handles[0].id
        break
    assert engine._rt.runs_ended._watches == set() and engine._rt.runs_ended._by_run == {}


def test_waiting_for_many_times_out_naming_what_did_not_end(engine: plait.Engine) -> None:
    wf = doubler()
    handles = engine.start_many(wf, [{"n": n} for n in range(5)], run_ids=list("abcde"))
    engine.cancel("b")

    with pytest.raises(TimeoutError) as caught:
        engine.wait_all(handles, timeout=0)
    assert str(caught.value) == "wait_all: 4 runs did not end within 0s: 'a', 'c', 'd' and 1 more"
    got = []
    with pytest.raises(TimeoutError) as caught:
        for run in engine.as_completed(handles[:2], timeout=0.05):
            got.append(run.id)
    assert got == ["b"]
    assert str(caught.value) == "as_completed: 1 run did not end within 0.05s: 'a'"
    with pytest.raises(TimeoutError) as caught:
        handles[0].result(timeout=0)
    assert str(caught.value) == "run 'a' did not end within 0s (it is pending)"


def test_waiting_for_many_refuses_bad_arguments(engine: plait.Engine) -> None:
    wf = doubler()
    handle = engine.start(wf, {"n": 1}, run_id="known")
    with pytest.raises(plait.RunNotFound) as missing:
        engine.wait_all([handle, "unknown"])
    assert str(missing.value) == f"no run with id 'unknown' in {engine.url}"
    with pytest.raises(plait.RunNotFound):
        list(engine.as_completed(["unknown"]))
    for call in (engine.wait_all, engine.as_completed, engine.as_completed_async):
        name = call.__name__.removesuffix("_async")
        with pytest.raises(plait.InputError) as caught:
            call("known")  # a str is no list of runs
        assert str(caught.value) == (
            f"{name}: runs must be an iterable of RunHandles or run ids, got str"
        )
        with pytest.raises(plait.InputError) as caught:
            call([handle, 7])  # type: ignore[list-item]  # on purpose
        assert str(caught.value) == f"{name}: runs[1] is 7, not a RunHandle or a run id"
        with pytest.raises(plait.InputError) as caught:
            call([handle], timeout=-1)
        assert str(caught.value) == (
            f"{name}: timeout must be None (no limit) or a finite number of seconds >= 0, got -1"
        )
