"""Starting runs many at a time, on every store: `start_many` (chunked transactions, every input
checked first, idempotent per id) and concurrent `start()` calls sharing commits (group commit).
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import plait
from plait.engine import runs
from plait.stores import Store
from plait.testing.contract.helpers import wait_until


@pytest.fixture
def engine(store_url: str) -> Iterator[plait.Engine]:
    with plait.Engine(store_url, lease=5.0) as eng:
        yield eng


def squares() -> plait.Workflow:
    wf = plait.Workflow("squares")

    @wf.step
    def square(n: int) -> int:
        return n * n

    @wf.step
    def plus_one(square: int) -> int:
        return square + 1

    return wf


def other() -> plait.Workflow:
    wf = plait.Workflow("other")
    wf.add_step("s", lambda: 1)
    return wf


# -- start_many ----------------------------------------------------------------------------------


def test_start_many_starts_a_run_per_input_in_order(
    engine: plait.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runs, "CHUNK_RUNS", 3)  # several transactions
    seen: list[int] = []

    handles = engine.start_many(squares(), [{"n": n} for n in range(7)], progress=seen.append)

    assert len(handles) == 7 and len({h.id for h in handles}) == 7
    assert seen == [3, 6, 7]  # after each transaction
    engine.run_worker(until=handles, timeout=30)
    assert [h.result() for h in handles] == [{"plus_one": n * n + 1} for n in range(7)]
    assert sorted(r.id for r in engine.list_runs(limit=100).runs) == sorted(h.id for h in handles)


def test_start_many_with_run_ids_is_idempotent_per_id(engine: plait.Engine) -> None:
    wf = squares()
    first = engine.start(wf, {"n": 2}, run_id="b")

    handles = engine.start_many(
        wf, [{"n": 1}, {"n": 9}, {"n": 3}, {"n": 8}], run_ids=list("abca"), if_exists="return"
    )

    assert [h.id for h in handles] == ["a", "b", "c", "a"]
    assert [h.created for h in handles] == [True, False, True, False]
    engine.run_worker(until=handles, timeout=30)
    # "b" is the run started before; the second "a" is the first
    assert [h.result() for h in handles] == [
        {"plus_one": 2},
        {"plus_one": 5},
        {"plus_one": 10},
        {"plus_one": 2},
    ]
    assert first.result() == {"plus_one": 5}
    assert len(engine.list_runs().runs) == 3
    again = engine.start_many(wf, [{"n": 5}] * 3, run_ids=["a", "b", "c"], if_exists="return")
    assert [h.id for h in again] == ["a", "b", "c"] and len(engine.list_runs().runs) == 3


def test_start_many_refuses_a_run_id_of_another_workflow_before_writing(
    engine: plait.Engine,
) -> None:
    engine.start(other(), run_id="taken")

    with pytest.raises(plait.RunConflict) as caught:
        engine.start_many(squares(), [{"n": 1}, {"n": 2}, {"n": 3}], run_ids=["x", "y", "taken"])

    assert str(caught.value) == (
        "inputs[2]: run id 'taken' is already used by a run of workflow 'other', not 'squares'; "
        "choose another run id; no run was started"
    )
    assert (caught.value.index, caught.value.run_id) == (2, "taken")
    assert [r.id for r in engine.list_runs().runs] == ["taken"]


def test_a_run_id_taken_meanwhile_stops_start_many_at_its_transaction(
    engine: plait.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process created a run of that id after start_many checked the ids: the
    transaction that holds it writes nothing, and the message says which runs were started."""
    monkeypatch.setattr(runs, "CHUNK_RUNS", 2)

    async def nothing_taken(store: Store, workflow: str, ids: list[str], *_: object) -> None:
        await engine.start_async(other(), run_id="r3")  # as if between the check and the writes

    monkeypatch.setattr(runs, "_check_taken", nothing_taken)
    ids = [f"r{i}" for i in range(6)]

    with pytest.raises(plait.RunConflict) as caught:
        engine.start_many(squares(), [{"n": i} for i in range(6)], run_ids=ids)

    assert str(caught.value) == (
        "inputs[3]: run id 'r3' is already used by a run of workflow 'other', not 'squares'; "
        "choose another run id; the runs of inputs[0] to inputs[1] were started, none after"
    )
    assert caught.value.index == 3
    # r2 shared r3's transaction: not started
    assert sorted(r.id for r in engine.list_runs().runs) == ["r0", "r1", "r3"]


def test_start_many_checks_every_input_before_writing(engine: plait.Engine) -> None:
    wf = squares()
    inputs: list[Any] = [{"n": 1}, {"n": 2}, {"m": 3}, {"n": "four"}]

    with pytest.raises(plait.InputError) as caught:
        engine.start_many(wf, inputs)

    assert str(caught.value) == (
        "inputs[2]: run input of 'squares' misses field 'n', required by step 'square'"
    )
    assert caught.value.index == 2
    with pytest.raises(plait.InputError, match=r"^inputs\[1\]: run input field 'n' \(step"):
        engine.start_many(wf, [{"n": 1}, {"n": "two"}])
    with pytest.raises(plait.InputError, match=r"^inputs\[0\]: run input of 'squares' is not JSON"):
        engine.start_many(wf, [{"n": 1, "x": object()}])
    assert engine.list_runs().runs == []


@pytest.mark.parametrize(
    ("inputs", "options", "message"),
    [
        (
            {"n": 1},
            {},
            "start_many: inputs must be an iterable of run inputs (a list of dicts, say), got dict",
        ),
        (
            "abc",
            {},
            "start_many: inputs must be an iterable of run inputs (a list of dicts, say), got str",
        ),
        (
            7,
            {},
            "start_many: inputs must be an iterable of run inputs (a list of dicts, say), got int",
        ),
        (
            [{"n": 1}] * 2,
            {"run_ids": ["a"]},
            "start_many: 1 run ids for 2 inputs; give one id per input",
        ),
        (
            [{"n": 1}],
            {"run_ids": "a"},
            "start_many: run_ids must be a list of run ids (one per input) or None, got str",
        ),
        (
            [{"n": 1}] * 2,
            {"run_ids": ["a", "b c"]},
            "run_ids[1]: invalid run id 'b c': use 1-200 ASCII letters, digits or any of _ . : @ -",
        ),
        ([{"n": 1}], {"priority": "high"}, "start_many: priority must be an integer, got 'high'"),
        ([{"n": 1}], {"deadline": -1}, "start_many: deadline must be"),
        ([{"n": 1}], {"progress": 3}, "start_many: progress must be a callable or None, got 3"),
    ],
)
def test_start_many_refuses_bad_arguments(
    engine: plait.Engine, inputs: Any, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(plait.InputError) as caught:
        engine.start_many(squares(), inputs, **options)
    assert str(caught.value).startswith(message)
    assert engine.list_runs().runs == []


def test_start_many_applies_deadline_and_priority_to_every_run(engine: plait.Engine) -> None:
    before = time.time()
    handles = engine.start_many(squares(), [{"n": 1}, {"n": 2}], deadline=60, priority=5)
    for handle in handles:
        run = engine.get_run(handle.id)
        assert run.deadline is not None
        assert before + 60 <= run.deadline.timestamp() <= time.time() + 60
        rows = engine._portal.call(engine.store.get_steps(handle.id))
        assert [(s.name, s.priority) for s in rows] == [("square", 5), ("plus_one", 5)]


def test_start_many_by_name_and_of_nothing(engine: plait.Engine) -> None:
    wf = squares()
    assert engine.start_many(wf, []) == []
    engine.register(wf)
    handles = engine.start_many("squares", [{"n": 3}])
    engine.run_worker(until=handles, timeout=30)
    assert handles[0].result() == {"plus_one": 10}
    with pytest.raises(plait.WorkflowNotFound, match="unknown workflow 'nope'"):
        engine.start_many("nope", [{}])


def test_start_many_async(engine: plait.Engine) -> None:
    async def main() -> list[plait.RunHandle]:
        return await engine.start_many_async(squares(), [{"n": 4}, {"n": 5}])

    handles = asyncio.run(main())
    engine.run_worker(until=handles, timeout=30)
    assert [h.result() for h in handles] == [{"plus_one": 17}, {"plus_one": 26}]


# -- concurrent starts share commits -------------------------------------------------------------


class HeldCommits:
    """Holds the store's first run-creating commit until released, and records every one:
    starts that arrive meanwhile queue for the next."""

    def __init__(self, engine: plait.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
        self.engine = engine
        self.release = threading.Event()
        self.calls: list[list[str]] = []
        store = engine.store
        create_run, create_runs = store.create_run, store.create_runs

        async def held() -> None:
            if len(self.calls) == 1:
                try:
                    loop = asyncio.get_running_loop()
                except RuntimeError:  # a direct call, on a blocking start's own thread
                    self.release.wait(30)
                    return
                await loop.run_in_executor(None, self.release.wait, 30)

        async def one(run: Any, steps: Any, events: Any) -> Any:
            self.calls.append([run.id])
            await held()
            return await create_run(run, steps, events)

        async def many(new: Any) -> Any:
            self.calls.append([run.id for run, _, _ in new])
            await held()
            return await create_runs(new)

        monkeypatch.setattr(store, "create_run", one)
        monkeypatch.setattr(store, "create_runs", many)

    def queued(self) -> int:
        return len(self.engine._rt.starts._queue)


def start_in_threads(
    engine: plait.Engine, starts: list[Callable[[], Any]]
) -> tuple[list[Any], list[threading.Thread]]:
    outcomes: list[Any] = [None] * len(starts)

    def run(i: int) -> None:
        try:
            outcomes[i] = starts[i]()
        except BaseException as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(starts))]
    for t in threads:
        t.start()
    return outcomes, threads


def test_concurrent_starts_share_one_commit_and_return_once_committed(
    engine: plait.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    wf = squares()
    engine.register(wf)
    held = HeldCommits(engine, monkeypatch)
    first, threads = start_in_threads(engine, [lambda: engine.start(wf, {"n": 0}, run_id="r0")])
    wait_until(lambda: held.calls == [["r0"]], "the first commit to begin")
    rest, more = start_in_threads(
        engine, [functools.partial(engine.start, wf, {"n": i}, run_id=f"r{i}") for i in range(1, 6)]
    )
    wait_until(lambda: held.queued() == 5, "five starts to queue behind it")
    assert first == [None] and rest == [None] * 5  # none returned: nothing is committed

    held.release.set()
    for t in threads + more:
        t.join(timeout=30)

    assert [h.id for h in first + rest] == [f"r{i}" for i in range(6)]
    assert held.calls[0] == ["r0"] and sorted(held.calls[1]) == [f"r{i}" for i in range(1, 6)]
    assert len(held.calls) == 2  # one commit for the five
    engine.run_worker(until=first + rest, timeout=30)
    assert [h.result() for h in first + rest] == [{"plus_one": i * i + 1} for i in range(6)]


def test_a_shared_commit_takes_as_many_steps_as_one_transaction_should(
    engine: plait.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine._rt.starts, "MAX_STEPS", 6)  # three runs of two steps
    wf = squares()
    engine.register(wf)
    held = HeldCommits(engine, monkeypatch)
    first, threads = start_in_threads(engine, [lambda: engine.start(wf, {"n": 0}, run_id="r0")])
    wait_until(lambda: len(held.calls) == 1, "the first commit to begin")
    rest, more = start_in_threads(
        engine, [functools.partial(engine.start, wf, {"n": i}, run_id=f"r{i}") for i in range(1, 6)]
    )
    wait_until(lambda: held.queued() == 5, "five starts to queue behind it")
    held.release.set()
    for t in threads + more:
        t.join(timeout=30)

    assert [len(batch) for batch in held.calls] == [1, 3, 2]
    assert sorted(h.id for h in first + rest) == [f"r{i}" for i in range(6)]


def test_a_conflict_in_a_shared_commit_is_only_its_own_start_s(
    engine: plait.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    wf = squares()
    engine.register(wf)
    engine.start(other(), run_id="taken")
    held = HeldCommits(engine, monkeypatch)
    first, threads = start_in_threads(engine, [lambda: engine.start(wf, {"n": 0}, run_id="a")])
    wait_until(lambda: len(held.calls) == 1, "the first commit to begin")
    rest, more = start_in_threads(
        engine,
        [
            lambda: engine.start(wf, {"n": 1}, run_id="b"),
            lambda: engine.start(wf, {"n": 2}, run_id="taken"),
            lambda: engine.start(wf, {"n": 1}, run_id="b"),  # the same id twice: one run
            lambda: engine.start(wf, {"n": 3}, run_id="b"),  # and with another input: refused
        ],
    )
    wait_until(lambda: held.queued() == 4, "four starts to queue")
    held.release.set()
    for t in threads + more:
        t.join(timeout=30)

    assert isinstance(rest[1], plait.RunConflict)
    assert str(rest[1]) == (
        "run id 'taken' is already used by a run of workflow 'other', not 'squares'; "
        "choose another run id"
    )
    assert [first[0].id, rest[0].id, rest[2].id] == ["a", "b", "b"]
    assert [first[0].created, rest[0].created, rest[2].created] == [True, True, False]
    assert isinstance(rest[3], plait.RunConflict)
    assert "run id 'b' is already a run of workflow 'squares' with a different input" in str(
        rest[3]
    )
    assert sorted(r.id for r in engine.list_runs().runs) == ["a", "b", "taken"]
    assert engine.get_run("b").input == {"n": 1}


def test_a_start_given_up_before_its_commit_is_not_written(
    engine: plait.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    wf = squares()
    engine.register(wf)
    held = HeldCommits(engine, monkeypatch)
    first, threads = start_in_threads(engine, [lambda: engine.start(wf, {"n": 0}, run_id="a")])
    wait_until(lambda: len(held.calls) == 1, "the first commit to begin")

    async def impatient() -> None:
        task = asyncio.ensure_future(engine.start_async(wf, {"n": 1}, run_id="gave-up"))
        await asyncio.to_thread(wait_until, lambda: held.queued() == 1, "the start to queue")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(impatient())
    held.release.set()
    for t in threads:
        t.join(timeout=30)
    assert first[0].id == "a"
    wait_until(lambda: held.queued() == 0, "the queue to be taken")
    with pytest.raises(plait.RunNotFound):
        engine.get_run("gave-up")


def test_many_threads_and_tasks_start_runs_at_once(engine: plait.Engine) -> None:
    wf = squares()
    engine.register(wf)
    outcomes, threads = start_in_threads(
        engine, [functools.partial(engine.start, wf, {"n": i}, run_id=f"t{i}") for i in range(16)]
    )

    async def tasks() -> list[plait.RunHandle]:
        return list(
            await asyncio.gather(
                *(engine.start_async(wf, {"n": i}, run_id=f"a{i}") for i in range(16))
            )
        )

    from_tasks = asyncio.run(tasks())
    for t in threads:
        t.join(timeout=30)
    handles = outcomes + from_tasks
    assert [h.id for h in handles] == [f"t{i}" for i in range(16)] + [f"a{i}" for i in range(16)]
    engine.run_worker(until=handles, timeout=30)
    assert [h.result()["plus_one"] for h in handles] == [i * i + 1 for i in range(16)] * 2


def test_an_async_engine_closes_the_loop_its_starts_commit_on(store_url: str) -> None:
    def portals() -> int:
        return sum(t.name == "plait-portal" for t in threading.enumerate())

    before = portals()

    async def main() -> None:
        async with plait.Engine(store_url) as engine:
            handle = await engine.start_async(squares(), {"n": 2})
            assert portals() == before + 1  # its starts commit on the engine's loop
            await engine.run_worker_async(until=handle, timeout=30)
            assert await handle.result_async() == {"plus_one": 5}

    asyncio.run(main())
    assert portals() == before
