"""Direct calls (capability "direct": SQLite and memory): a sync `start()`, `result()` or `get_run()` runs
its store call on the caller's own thread (on SQLite under the connection's lock) instead of
crossing to the engine's loop (and SQLite's store thread) and back. What it must keep: the same answers and errors as
the loop's path, group commit of concurrent starts (the contract suite's test_starts holds a
blocking start's commit and sees the starts queued behind it share the next), and one user of
the connection at a time."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import plait
from plait._portal import run_to_end
from plait.stores.memory import MemoryStore
from plait.stores.protocol import CallsDirect
from plait.stores.sqlite import SQLiteStore


def chain() -> plait.Workflow:
    wf = plait.Workflow("direct_chain")

    @wf.step
    def double(n: int) -> int:
        return 2 * n

    @wf.step
    def plus_one(double: int) -> int:
        if double < 0:
            raise ValueError("negative")
        return double + 1

    return wf


@pytest.fixture(params=["memory", "sqlite"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path}/direct.db"


@pytest.fixture
def engine(url: str) -> Iterator[plait.Engine]:
    with plait.Engine(url) as eng:
        yield eng


class NoLoop:
    """Fails any call that crosses to the engine's loop, while switched on."""

    def __init__(self, engine: plait.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
        self.on = False
        portal = engine._portal
        call = portal.call

        def guarded(coro: Any) -> Any:
            if self.on:
                coro.close()
                raise AssertionError("crossed to the engine's loop")
            return call(coro)

        monkeypatch.setattr(portal, "call", guarded)


@pytest.mark.parametrize("store", [SQLiteStore("sqlite:///:memory:"), MemoryStore()])
def test_sqlite_and_memory_take_direct_calls(store: Any) -> None:
    assert "direct" in store.capabilities and isinstance(store, CallsDirect)


def test_a_sync_start_and_result_of_a_registered_workflow_stay_on_the_callers_thread(
    engine: plait.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    wf = chain()
    engine.register(wf)
    no_loop = NoLoop(engine, monkeypatch)

    no_loop.on = True
    handles = [engine.start(wf, {"n": n}) for n in range(3)]
    by_name = engine.start("direct_chain", {"n": 5}, run_id="named")
    no_loop.on = False
    engine.run_worker(until=[*handles, by_name], timeout=30)
    no_loop.on = True

    assert [h.result() for h in handles] == [{"plus_one": 2 * n + 1} for n in range(3)]
    assert by_name.result() == {"plus_one": 11} and by_name.created
    assert by_name.get().status == "completed" == engine.get_run("named").status
    again = engine.start(wf, {"n": 5}, run_id="named")  # idempotent, as on the loop
    assert again.id == "named" and not again.created
    unregistered = plait.Workflow("direct_other")
    unregistered.add_step("one", lambda: 1)
    engine.start(unregistered)  # registered on the way, by the same calls
    no_loop.on = False
    assert [w.name for w in engine.workflows()].count("direct_other") == 1


def test_direct_starts_and_results_give_the_loops_errors(
    engine: plait.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    wf = chain()
    engine.register(wf)
    failing = engine.start(wf, {"n": -1}, run_id="failing")
    cancelled = engine.start(wf, {"n": 1}, run_id="cancelled")
    engine.cancel(cancelled.id)
    engine.run_worker(until=[failing], timeout=30)
    no_loop = NoLoop(engine, monkeypatch)
    no_loop.on = True

    with pytest.raises(plait.RunConflict, match="with a different input"):
        engine.start(wf, {"n": 2}, run_id="failing")
    with pytest.raises(plait.InputError, match="priority"):
        engine.start(wf, {"n": 2}, priority="high")  # type: ignore[arg-type]
    with pytest.raises(plait.InputError, match="run id"):
        engine.start(wf, {"n": 2}, run_id="")
    with pytest.raises(plait.RunFailed) as failed:
        failing.result()
    assert failed.value.failures["plus_one"].message == "negative"
    with pytest.raises(plait.RunCancelled):
        cancelled.result()
    with pytest.raises(plait.RunNotFound, match="no run with id 'nothing'"):
        plait.RunHandle(engine, "nothing", False).result()
    with pytest.raises(plait.InputError, match="timeout"):
        failing.result(timeout=-1)


def test_what_cannot_go_direct_goes_through_the_loop(url: str) -> None:
    wf = chain()
    with plait.Engine(url) as engine:
        first = engine.start(wf, {"n": 1})  # not registered yet: the loop registers it
        with pytest.raises(plait.WorkflowNotFound, match="unknown workflow 'nope'"):
            engine.start("nope")
        pending = engine.start(wf, {"n": 2})
        with pytest.raises(TimeoutError):
            pending.result(timeout=0)  # not ended: waited for on the loop
        engine.run_worker(until=[first, pending], timeout=30)
        assert pending.result() == {"plus_one": 5}


def test_a_read_only_engine_refuses_a_direct_start_saying_why(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/ro.db"
    wf = chain()
    with plait.Engine(url) as engine:
        engine.register(wf)
    with plait.Engine(url, read_only=True) as reader:
        reader._rt.workflows.add(wf)  # as if registered here: the start may go direct
        reader.list_runs()  # opens the store
        with pytest.raises(plait.StoreError, match="open read-only: create 1 runs would write"):
            reader.start(wf, {"n": 1})


def test_direct_callers_and_the_store_thread_take_turns_on_the_connection(
    engine: plait.Engine,
) -> None:
    """Threads start runs and read results directly while a worker's calls run on the store
    thread: every run is created once and completes, and no call meets another on the
    connection (sqlite3 would raise, or a transaction would nest)."""
    wf = chain()
    engine.register(wf)
    per_thread, errors = 40, []
    started: list[list[plait.RunHandle]] = [[] for _ in range(8)]
    worker = threading.Thread(target=engine.run_worker, kwargs={"timeout": 60}, daemon=True)

    def starter(i: int) -> None:
        try:
            for n in range(per_thread):
                handle = engine.start(wf, {"n": n}, run_id=f"t{i}-{n}")
                started[i].append(handle)
                handle.result(timeout=30)
        except BaseException as exc:  # the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=starter, args=(i,)) for i in range(8)]
    worker.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    engine.stop_workers()
    worker.join(timeout=30)

    assert errors == []
    assert sum(len(s) for s in started) == 8 * per_thread
    assert len(engine.list_runs(limit=1000).runs) == 8 * per_thread


def test_a_direct_call_that_would_wait_for_a_loop_is_refused() -> None:
    async def waits() -> None:
        await asyncio.sleep(0)

    with pytest.raises(RuntimeError, match="it needs an event loop"):
        run_to_end(waits())


def test_a_blocking_start_from_a_thread_with_a_running_loop_is_still_direct(
    engine: plait.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A thread may have an event loop running while it makes a blocking call: Playwright's
    sync API (greenlets) and Jupyter do. The blocking start must not take that loop for its
    own: it was driven directly, and waiting on a future there would never end."""
    wf = chain()
    engine.register(wf)
    no_loop = NoLoop(engine, monkeypatch)

    async def blocking_calls_inside_a_loop() -> tuple[plait.RunHandle, plait.RunHandle]:
        no_loop.on = True
        try:
            return engine.start(wf, {"n": 3}), engine.start(wf, {"n": 4}, run_id="in-loop")
        finally:
            no_loop.on = False

    first, second = asyncio.run(blocking_calls_inside_a_loop())
    engine.run_worker(until=[first, second], timeout=30)
    assert (first.result(), second.result()) == ({"plus_one": 7}, {"plus_one": 9})
