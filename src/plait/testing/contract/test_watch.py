"""Watching a run (`engine.watch`), on every store: a run's events as they are committed, in
order, with no gap and no repeat, ending once the run has ended; woken by this process's commits
and, on a store that pushes them (PostgreSQL), by other processes' commits."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import queue
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import plait
from plait.engine import watch as engine_watch
from plait.stores import open_store
from plait.testing.contract.conftest import Backend

DEADLINE = 20.0  # seconds any one wait may take before the test fails
# A poll interval no test can wait for: an event that arrives within DEADLINE was woken for.
SLOW = 10 * DEADLINE


@pytest.fixture
def engine(store_url: str) -> Iterator[plait.Engine]:
    with plait.Engine(store_url, lease=5.0) as eng:
        yield eng


class Watcher:
    """`engine.watch` iterated (the blocking way) in a thread; the test takes its events one by
    one, each with a deadline."""

    def __init__(self, engine: plait.Engine, run_id: str, after_seq: int = 0) -> None:
        self.seen: list[plait.Event] = []
        self._items: queue.Queue[plait.Event | BaseException | None] = queue.Queue()
        self._thread = threading.Thread(
            target=self._watch, args=(engine, run_id, after_seq), daemon=True
        )
        self._thread.start()

    def _watch(self, engine: plait.Engine, run_id: str, after_seq: int) -> None:
        try:
            for event in engine.watch(run_id, after_seq=after_seq):
                self._items.put(event)
            self._items.put(None)
        except BaseException as exc:
            self._items.put(exc)

    def next(self) -> plait.Event | None:
        """The next event, or None once the watch has ended."""
        try:
            item = self._items.get(timeout=DEADLINE)
        except queue.Empty:
            raise AssertionError(
                f"no event within {DEADLINE}s; seen: {[e.type for e in self.seen]}"
            ) from None
        if isinstance(item, BaseException):
            raise item
        if item is not None:
            self.seen.append(item)
        return item

    def until(self, type_: str, step: str | None = None) -> plait.Event:
        while (event := self.next()) is not None:
            if event.type == type_ and event.step == step:
                return event
        raise AssertionError(f"the watch ended without {type_} {step}: {self.seen}")

    def rest(self) -> list[plait.Event]:
        """Every event until the watch ends (which it must, within the deadline)."""
        while self.next() is not None:
            pass
        self._thread.join(DEADLINE)
        return self.seen


def serving(engine: plait.Engine, run: plait.RunHandle) -> threading.Thread:
    thread = threading.Thread(
        target=engine.run_worker, kwargs={"until": run, "timeout": DEADLINE}, daemon=True
    )
    thread.start()
    return thread


def gated(name: str, gate: threading.Event) -> plait.Workflow:
    """first (waits for the gate) → second, third (retried once) → last."""
    wf = plait.Workflow(name)
    tries: list[int] = []

    def first(n: int) -> int:
        if not gate.wait(DEADLINE):
            raise TimeoutError("the test never opened the gate")
        return n

    def third(first: int) -> int:
        tries.append(first)
        if len(tries) == 1:
            raise plait.Retryable("third fails once")
        return first + 2

    wf.add_step("first", first)
    wf.add_step("second", lambda first: first + 1)
    wf.add_step("third", third, retry=plait.Retry(attempts=2, delay=0.0, jitter=0.0))
    wf.add_step("last", lambda second, third: second + third)
    return wf


def rows(events: list[plait.Event]) -> list[tuple[int, str, str | None]]:
    return [(e.seq, e.type, e.step) for e in events]


def assert_whole_log(engine: plait.Engine, run_id: str, seen: list[plait.Event]) -> None:
    """The watch delivered the run's log: every seq once, in order, ending with the run's end."""
    assert [e.seq for e in seen] == list(range(1, len(seen) + 1))
    assert rows(seen) == rows(engine.events(run_id))
    assert seen[-1].type in ("run_completed", "run_failed", "run_cancelled")


# -- live runs -----------------------------------------------------------------------------------


def test_events_arrive_in_order_while_a_worker_runs_the_run(engine: plait.Engine) -> None:
    gate = threading.Event()
    run = engine.start(gated("watched", gate), {"n": 1})
    watcher = Watcher(engine, run.id)
    worker = serving(engine, run)

    assert watcher.until("run_started").seq == 1
    gate.set()
    seen = watcher.rest()
    worker.join(DEADLINE)

    assert_whole_log(engine, run.id, seen)
    assert seen[-1].type == "run_completed"
    assert ("step_retrying", "third") in [(e.type, e.step) for e in seen]
    assert run.result(timeout=DEADLINE) == {"last": 5}


def test_a_waiting_watcher_is_woken_by_the_commits_of_this_process(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # neither the watcher's poll nor the engine's would look again within the deadline
    monkeypatch.setattr(engine_watch, "FIRST_POLL", SLOW)
    gate = threading.Event()
    with plait.Engine(store_url, poll_interval=SLOW, sweep_interval=SLOW) as engine:
        run = engine.start(gated("woken", gate), {"n": 1})
        watcher = Watcher(engine, run.id)
        assert watcher.next() is not None and watcher.seen[0].type == "run_started"
        worker = serving(engine, run)

        gate.set()  # from here on, every event is delivered by a wake-up, or not in time
        seen = watcher.rest()
        worker.join(DEADLINE)

        assert_whole_log(engine, run.id, seen)
        assert seen[-1].type == "run_completed"


def test_a_run_retried_after_it_failed_is_watched_to_its_new_end(engine: plait.Engine) -> None:
    wf = plait.Workflow("comeback")
    fixed = threading.Event()

    def flaky() -> str:
        if not fixed.is_set():
            raise plait.Permanent("not yet")
        return "ok"

    wf.add_step("flaky", flaky)
    run = engine.start(wf)
    engine.run_worker(until=run, timeout=DEADLINE)
    assert engine.get_run(run.id).status is plait.RunStatus.FAILED
    engine.retry(run.id, "flaky")
    fixed.set()

    watcher = Watcher(engine, run.id)
    failed = watcher.until("run_failed")
    # the run failed once but runs again: the watch goes on past that end
    worker = serving(engine, run)
    seen = watcher.rest()
    worker.join(DEADLINE)

    assert failed.seq < len(seen)
    assert [e.type for e in seen if e.type.startswith("run_")] == [
        "run_started",
        "run_failed",
        "run_completed",
    ]
    assert "step_retried" in [e.type for e in seen]
    assert_whole_log(engine, run.id, seen)


# -- ended runs, after_seq, errors ---------------------------------------------------------------


def finished(engine: plait.Engine) -> plait.RunHandle:
    wf = plait.Workflow("finished")
    wf.add_step("a", lambda: 1)
    wf.add_step("b", lambda a: a + 1)
    run = engine.start(wf)
    engine.run_worker(until=run, timeout=DEADLINE)
    return run


def test_watching_an_ended_run_yields_its_log_and_ends(engine: plait.Engine) -> None:
    run = finished(engine)
    log = engine.events(run.id)

    assert list(engine.watch(run.id)) == log
    assert rows(log)[-1] == (len(log), "run_completed", None)


def test_after_seq_skips_the_events_up_to_it(engine: plait.Engine) -> None:
    run = finished(engine)
    log = engine.events(run.id)

    assert list(engine.watch(run.id, after_seq=3)) == log[3:]
    assert list(engine.watch(run.id, after_seq=len(log))) == []
    assert list(engine.watch(run.id, after_seq=len(log) + 10)) == []


def test_unknown_run_and_bad_arguments_are_clear_errors(engine: plait.Engine) -> None:
    with pytest.raises(plait.RunNotFound, match=r"^no run with id 'ghost' in "):
        list(engine.watch("ghost"))
    with pytest.raises(plait.InputError, match=r"^after_seq must be an integer >= 0, got -1$"):
        engine.watch("ghost", after_seq=-1)
    with pytest.raises(plait.InputError, match=r"^after_seq must be an integer >= 0, got '3'$"):
        engine.watch_async("ghost", after_seq="3")  # type: ignore[arg-type]  # the error tested
    with pytest.raises(plait.InputError, match=r"^run_id must be a string, got int$"):
        engine.watch(42)  # type: ignore[arg-type]  # the error tested


async def test_async_for_on_a_user_loop(store_url: str) -> None:
    wf = plait.Workflow("async_watch")
    wf.add_step("a", lambda n: n)
    wf.add_step("b", lambda a: a + 1)
    async with plait.Engine(store_url) as engine:
        with pytest.raises(plait.RunNotFound, match=r"^no run with id 'ghost' in "):
            async for _ in engine.watch("ghost"):
                pass
        run = await engine.start_async(wf, {"n": 1})
        worker = asyncio.create_task(engine.run_worker_async(until=run, timeout=DEADLINE))
        async with asyncio.timeout(DEADLINE):
            seen = [event async for event in engine.watch(run.id)]
        await worker

        log = await engine.events_async(run.id)
        assert seen == log and log[-1].type == "run_completed"
        async with contextlib.aclosing(engine.watch_async(run.id, after_seq=2)) as events:
            assert [event async for event in events] == log[2:]


# -- other processes -----------------------------------------------------------------------------

APP = """
    import os
    import time
    from pathlib import Path

    import plait

    wf = plait.Workflow("watched_elsewhere")


    @wf.step()
    def first(n: int) -> int:
        release = Path(os.environ["WATCH_RELEASE"])
        deadline = time.monotonic() + 60
        while not release.exists():  # the test's watcher has seen this step start
            if time.monotonic() > deadline:
                raise TimeoutError("never released")
            time.sleep(0.01)
        return n


    @wf.step()
    def second(first: int) -> int:
        return first + 1
"""


def load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"watch_app_{os.getpid()}_{id(path)}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)  # polling interval of a deadline-bounded condition wait


def test_events_written_by_another_process_reach_the_watcher(
    durable_backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = durable_backend.url(tmp_path)
    app = tmp_path / "watch_app.py"
    app.write_text(textwrap.dedent(APP), encoding="utf-8")
    release = tmp_path / "release"
    pushed = "push_events" in open_store(url).capabilities
    options: dict[str, Any] = {}
    if pushed:
        # only a push can wake this watcher in time: it would look by itself after SLOW
        monkeypatch.setattr(engine_watch, "FIRST_POLL", SLOW)
        options = {"poll_interval": SLOW, "sweep_interval": SLOW}
    with plait.Engine(url, **options) as engine:
        run = engine.start(load(app).wf, {"n": 1})
        if pushed:
            wait_for(lambda: engine._rt.push_live, "the store's notifications")
        watcher = Watcher(engine, run.id)
        assert watcher.until("run_started").seq == 1
        log = (tmp_path / "worker.log").open("w")
        worker = subprocess.Popen(
            [sys.executable, "-m", "plait", "worker", str(app), "--db", url],
            cwd=tmp_path,
            env={**os.environ, "WATCH_RELEASE": str(release)},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        try:
            # written by the other process's claim, which makes nothing ready and ends nothing
            started = watcher.until("step_started", "first")
            assert f":{worker.pid}:" in str(started.payload["worker"])
            release.touch()
            seen = watcher.rest()
        finally:
            release.touch()
            worker.terminate()
            try:
                worker.wait(DEADLINE)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
            log.close()

        assert_whole_log(engine, run.id, seen)
        assert seen[-1].type == "run_completed"
        assert all(
            f":{worker.pid}:" in str(e.payload["worker"]) for e in seen if "worker" in e.payload
        )
