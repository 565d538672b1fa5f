"""The Store protocol, checked on every store (see backends.py).

Runs are built by the pure state machine (`new_run`) from real workflow plans; the tests speak only
the protocol: create, claim, complete, heartbeat, release, recover, read.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from typing import Any

import orjson
import pytest

import plait
from plait.core.cascade import new_run
from plait.core.rows import (
    Claim,
    Lease,
    Outcome,
    RunStatus,
    StepStatus,
)
from plait.stores import Store, open_store
from plait.testing.contract.helpers import (
    LEASE,
    NOW,
    chain,
    claim,
    claim_one,
    drain,
    event_types,
    fail,
    noop,
    ok,
    plan_of,
    run,
    start,
    statuses,
    step_row,
)

# -- definitions ---------------------------------------------------------------------------------


async def test_workflows_are_saved_once_and_read_back_equal(store: Store) -> None:
    def fetch(order_id: int, region: str = "eu") -> None: ...

    wf1 = plait.Workflow("orders", version="1")
    wf1.step(fetch)
    wf1.add_step("charge", noop, ["fetch"], priority=2, optional=True)
    wf1.add_step("notify", noop, ["charge"], after_any=["fetch"], defaults={"charge": None})
    v1 = wf1.plan()
    wf2 = plait.Workflow("orders", version="2")
    wf2.step(fetch)
    v2 = wf2.plan()

    assert not await store.workflow_known(v1.fingerprint)
    await store.save_workflow(v1)
    await store.save_workflow(v2)
    await store.save_workflow(v1)  # idempotent by fingerprint

    assert await store.workflow_known(v1.fingerprint)
    assert await store.workflow_known(v2.fingerprint)
    assert not await store.workflow_known("no-such-fingerprint")
    assert await store.get_workflow("orders", v1.fingerprint) == v1
    assert await store.get_workflow("orders") == v2  # the latest registered
    assert await store.get_workflow("orders", "no-such-fingerprint") is None
    assert await store.get_workflow("other") is None
    assert await store.list_workflows() == [v1, v2]


# -- runs ----------------------------------------------------------------------------------------


async def test_create_run_is_idempotent(store: Store) -> None:
    plan = chain()
    first = await start(store, plan, "r1", data=b'{"n":1}')
    assert first.id == "r1" and first.status is RunStatus.PENDING

    again, steps, events = new_run(plan, "r1", b'{"n":2}', NOW + 5)
    existing, created = await store.create_run(again, steps, events)

    assert created is False
    assert existing.input == b'{"n":1}' and existing.created_at == NOW
    assert [s.name for s in await store.get_steps("r1")] == ["s0", "s1", "s2"]
    assert await event_types(store, "r1") == ["run_started"]


async def test_create_runs_creates_many_in_order_and_reads_back_as_written(store: Store) -> None:
    plan = chain()
    made = [new_run(plan, f"r{i}", f'{{"n":{i}}}'.encode(), NOW + i) for i in range(5)]

    # a run and steps as only a fork or a spawn makes them: every column is kept all the same
    made[3][0].parent_run, made[3][0].forked_from, made[3][0].deadline = "r0", "s1", NOW + 9
    made[4][1][0].reused_from, made[4][1][0].output, made[4][1][0].attempt = "r0", b"7", 1
    made[4][1][1].task, made[4][1][1].input, made[4][1][1].iteration = "t", b'{"x":1}', 2

    results = await store.create_runs(made)

    assert [(row.id, created) for row, created in results] == [(f"r{i}", True) for i in range(5)]
    for (run_row, steps, _), (returned, _) in zip(made, results, strict=True):
        assert returned == run_row
        assert await store.get_run(run_row.id) == run_row
        assert await store.get_steps(run_row.id) == steps
        assert await event_types(store, run_row.id) == ["run_started"]
    # the run-list change feed has them, at their creation
    assert await store.list_run_changes((0.0, ""), 10) == [(NOW + i, f"r{i}") for i in range(5)]
    claimed = await claim(store, [plan], now=NOW + 10)
    assert sorted(c.run_id for c in claimed) == [f"r{i}" for i in range(5)]
    assert await store.create_runs([]) == []


async def test_create_runs_is_idempotent_per_id(store: Store) -> None:
    plan = chain()
    await start(store, plan, "old", data=b'{"n":1}')
    batch = [
        new_run(plan, "new1", b'{"n":2}', NOW + 1),
        new_run(plan, "old", b'{"n":3}', NOW + 1),  # exists: kept as it was
        new_run(plan, "new2", b'{"n":4}', NOW + 1),
        new_run(plan, "new1", b'{"n":5}', NOW + 1),  # twice in the batch: the first counts
    ]

    results = await store.create_runs(batch)

    assert [(row.id, created) for row, created in results] == [
        ("new1", True),
        ("old", False),
        ("new2", True),
        ("new1", False),
    ]
    assert results[1][0].input == b'{"n":1}' and results[1][0].created_at == NOW
    assert results[3][0].input == b'{"n":2}'
    assert [(await store.get_run(r)).input for r in ("old", "new1", "new2")] == [  # type: ignore[union-attr]
        b'{"n":1}',
        b'{"n":2}',
        b'{"n":4}',
    ]
    assert await event_types(store, "old") == ["run_started"]  # nothing added to it
    again = await store.create_runs(batch)  # all of them exist now
    assert [(row.id, created) for row, created in again] == [
        ("new1", False),
        ("old", False),
        ("new2", False),
        ("new1", False),
    ]


async def test_create_runs_with_an_id_of_another_workflow_writes_nothing(store: Store) -> None:
    plan, other = chain(), chain("other")
    await start(store, other, "taken")
    batch = [new_run(plan, "a", b"{}", NOW), new_run(plan, "taken", b"{}", NOW)]

    with pytest.raises(plait.RunConflict) as caught:
        await store.create_runs(batch)

    assert str(caught.value) == (
        "run id 'taken' is already used by a run of workflow 'other', not 'chain'; "
        "choose another run id"
    )
    assert caught.value.run_id == "taken"
    assert await store.get_run("a") is None and await store.get_steps("a") == []
    assert (await store.get_run("taken")).workflow == "other"  # type: ignore[union-attr]
    # the same id twice in one batch, for two workflows
    with pytest.raises(plait.RunConflict, match="'twice' is already used by a run of workflow"):
        await store.create_runs(
            [new_run(plan, "twice", b"{}", NOW), new_run(other, "twice", b"{}", NOW)]
        )
    assert await store.get_run("twice") is None


async def test_concurrent_create_runs_create_each_run_once(store: Store, store_url: str) -> None:
    """Batches sharing ids, committed at once by several connections (several store objects on
    a durable store): each run is created by one of them, whole."""
    plan = chain()
    ids = [f"r{i}" for i in range(30)]
    results: list[tuple[str, bool]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    async def creator(seed: int) -> None:
        mine = store if store_url.startswith("memory") else open_store(store_url)
        await mine.open()
        try:
            order = ids[seed:] + ids[:seed]
            for start_at in range(0, len(order), 6):
                batch = [new_run(plan, r, b"{}", NOW) for r in order[start_at : start_at + 6]]
                got = await mine.create_runs(batch)
                with lock:
                    results.extend((row.id, created) for row, created in got)
        finally:
            if mine is not store:
                await mine.close()

    def in_thread(seed: int) -> None:
        try:
            run(creator(seed))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=in_thread, args=(seed,)) for seed in (0, 7, 13, 21)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert Counter(r for r, created in results if created) == Counter(ids)  # once each
    assert Counter(r for r, _ in results) == Counter({r: 4 for r in ids})
    for r in ids:
        assert len(await store.get_steps(r)) == 3
        assert await event_types(store, r) == ["run_started"]


async def test_create_runs_keeps_big_inputs_as_blobs(store_url: str) -> None:
    opened = open_store(f"{store_url}{'&' if '?' in store_url else '?'}blob_threshold=100")
    await opened.open()
    try:
        plan = chain()
        big = b'"' + b"x" * 500 + b'"'
        made = [new_run(plan, f"r{i}", big, NOW) for i in range(3)]
        await opened.create_runs(made)
        assert [(await opened.get_run(f"r{i}")).input for i in range(3)] == [big] * 3  # type: ignore[union-attr]
        stats = await opened.blob_stats()
        assert (stats.blobs, stats.references) == (1, 3)
    finally:
        await opened.close()


async def test_missing_runs_read_as_empty(store: Store) -> None:
    assert await store.get_run("nope") is None
    assert await store.get_steps("nope") == []
    assert await store.get_events("nope", 0, None) == []
    assert await store.step_inputs({"nope": ["a"]}) == {}
    assert await store.get_runs(["nope"]) == []
    assert await store.get_runs([]) == []


async def test_get_runs_reads_many_at_once(store: Store) -> None:
    plan = chain()
    for r in ("a", "b", "c"):
        await start(store, plan, r)
    rows = await store.get_runs(["c", "nope", "a"])
    assert sorted(r.id for r in rows) == ["a", "c"]
    assert all(r.status is RunStatus.PENDING and r.fingerprint == plan.fingerprint for r in rows)


async def test_run_and_steps_read_back_as_written(store: Store) -> None:
    plan = plan_of(
        "shape",
        ("zeta", [], {"priority": 7}),
        ("alpha", ["zeta"], {"optional": True}),
        ("mid", ["zeta", "alpha"], {"defaults": {"alpha": None}}),
    )
    run_row, steps, _ = new_run(plan, "r1", b'{"x": [1, 2]}', NOW)
    await start(store, plan, "r1", data=b'{"x": [1, 2]}')

    assert await store.get_run("r1") == run_row
    got = await store.get_steps("r1")
    assert [s.name for s in got] == ["zeta", "alpha", "mid"]  # definition order
    assert got == steps  # dependents, priority, optional, unmet … all kept


async def test_events_are_numbered_without_gaps_and_paged(store: Store) -> None:
    plan = chain(length=3)
    await start(store, plan, "r1")
    await drain(store, [plan], batch=1)

    events = await store.get_events("r1", 0, None)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert [e.type for e in events] == [
        "run_started",
        "step_started",
        "step_completed",
        "step_started",
        "step_completed",
        "step_started",
        "step_completed",
        "run_completed",
    ]
    assert events[1].step == "s0" and events[1].payload["attempt"] == 1
    assert events[0].payload["fingerprint"] == plan.fingerprint
    page = await store.get_events("r1", 2, 3)
    assert [e.seq for e in page] == [3, 4, 5]
    assert await store.get_events("r1", 8, None) == []
    run_row = await store.get_run("r1")
    assert run_row is not None and run_row.next_seq == 9


async def test_list_runs_pages_newest_first_with_filters(store: Store) -> None:
    a, b = chain("wf-a", 1), chain("wf-b", 1)
    for i in range(5):
        await start(store, a, f"a{i}", now=NOW + i)
    await start(store, b, "b0", now=NOW + 2)  # same created_at as a2: ties broken by id
    await start(store, b, "b1", now=NOW + 9)
    claims = await claim(store, [b], now=NOW + 9)
    await store.complete([ok(c) for c in claims if c.run_id == "b1"], NOW + 10)

    async def ids(**kw: Any) -> list[str]:
        kw.setdefault("workflow", None)
        kw.setdefault("status", None)
        kw.setdefault("before", None)
        return [r.id for r in await store.list_runs(**kw)]

    assert await ids(limit=100) == ["b1", "a4", "a3", "b0", "a2", "a1", "a0"]
    first = await store.list_runs(workflow=None, status=None, limit=3, before=None)
    assert [r.id for r in first] == ["b1", "a4", "a3"]
    cursor = (first[-1].created_at, first[-1].id)
    assert await ids(limit=3, before=cursor) == ["b0", "a2", "a1"]
    assert await ids(limit=3, before=(NOW + 2, "b0")) == ["a2", "a1", "a0"]
    assert await ids(limit=100, workflow="wf-a") == ["a4", "a3", "a2", "a1", "a0"]
    assert await ids(limit=2, workflow="wf-a", before=(NOW + 3, "a3")) == ["a2", "a1"]
    assert await ids(limit=100, status=RunStatus.COMPLETED) == ["b1"]
    assert await ids(limit=100, status=RunStatus.RUNNING) == ["b0"]
    assert await ids(limit=100, workflow="wf-b", status=RunStatus.RUNNING) == ["b0"]
    assert await ids(limit=100, workflow="wf-a", status=RunStatus.RUNNING) == []
    assert await ids(limit=100, workflow="nobody") == []


# -- claiming ------------------------------------------------------------------------------------


async def test_claim_takes_only_ready_due_steps_of_given_fingerprints(store: Store) -> None:
    mine, other = chain("mine", 2), chain("other", 2)
    await start(store, mine, "m1")
    await start(store, other, "o1")
    await start(store, mine, "later", now=NOW + 60)  # its root is ready from NOW+60 on

    claims = await claim(store, [mine])

    assert [(c.run_id, c.step) for c in claims] == [("m1", "s0")]  # not s1: it is pending
    c = claims[0]
    assert c.fingerprint == mine.fingerprint and c.attempt == 1
    assert c.lease_expires_at == NOW + LEASE and len(c.token) >= 16
    row = await step_row(store, "m1", "s0")
    assert row.status is StepStatus.RUNNING and row.worker_id == "w1" and row.lease_token == c.token
    run_row = await store.get_run("m1")
    assert run_row is not None and run_row.status is RunStatus.RUNNING
    assert run_row.started_at == NOW
    assert await claim(store, [mine]) == []  # nothing else is due
    assert await claim(store, []) == []
    assert [c.run_id for c in await claim(store, [mine], now=NOW + 60)] == ["later"]


async def test_claim_respects_limit_and_priority_then_age(store: Store) -> None:
    plan = plan_of(
        "prio",
        ("low", [], {}),
        ("high", [], {"priority": 5}),
        ("mid", [], {"priority": 1}),
    )
    await start(store, plan, "new", now=NOW)
    await start(store, plan, "old", now=NOW - 10)

    got = await claim(store, [plan], limit=3)
    assert [(c.step, c.run_id) for c in got] == [("high", "old"), ("high", "new"), ("mid", "old")]
    got = await claim(store, [plan], limit=2)
    assert [(c.step, c.run_id) for c in got] == [("mid", "new"), ("low", "old")]
    assert [(c.step, c.run_id) for c in await claim(store, [plan], limit=5)] == [("low", "new")]


async def test_concurrent_claims_never_share_a_step(store: Store) -> None:
    plan = plan_of("wide", *[(f"t{i}", [], {}) for i in range(40)])
    for r in range(10):
        await start(store, plan, f"r{r}")
    total = 400
    claimed: list[Claim] = []
    lock = threading.Lock()

    async def claimer(worker: str) -> None:
        while got := await claim(store, [plan], limit=7, worker=worker):
            with lock:
                claimed.extend(got)

    errors: list[BaseException] = []

    def in_thread(worker: str) -> None:
        try:
            run(claimer(worker))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=in_thread, args=(f"thread{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    await asyncio.gather(*(claimer(f"task{i}") for i in range(8)))
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert errors == []

    counts = Counter((c.run_id, c.step) for c in claimed)
    assert len(counts) == total
    assert max(counts.values()) == 1
    assert len({c.token for c in claimed}) == total


async def test_next_ready_at(store: Store) -> None:
    plan, other = chain("soon", 2), chain("elsewhere", 1)
    assert await store.next_ready_at([plan.fingerprint]) is None
    await start(store, plan, "r1", now=NOW + 30)
    await start(store, plan, "r2", now=NOW + 20)
    await start(store, other, "o1", now=NOW + 1)
    assert await store.next_ready_at([plan.fingerprint]) == NOW + 20
    assert await store.next_ready_at([other.fingerprint, plan.fingerprint]) == NOW + 1
    assert await store.next_ready_at(["unknown"]) is None


async def test_step_inputs(store: Store) -> None:
    plan = plan_of("inputs", ("a", [], {}), ("b", ["a"], {}))
    await start(store, plan, "r1", data=b'{"k": 1}')
    await store.complete([ok(await claim_one(store, plan, "a"), {"v": 2})], NOW)

    got = await store.step_inputs({"r1": ["a"], "ghost": ["a"]})

    assert set(got) == {"r1"}
    assert got["r1"].run_input == b'{"k": 1}'
    status, output = got["r1"].dependencies["a"]
    assert status is StepStatus.DONE and orjson.loads(output or b"") == {"v": 2}


# -- completing ----------------------------------------------------------------------------------


async def test_completion_is_fenced_by_the_lease_token(store: Store) -> None:
    plan = chain(length=2)
    await start(store, plan, "r1")
    c = await claim_one(store, plan, "s0")
    before_steps = await store.get_steps("r1")

    forged = Outcome("r1", "s0", "not-the-token", output=b"1")
    result = await store.complete([forged], NOW + 1)

    assert result.accepted == [False] and result.ended_runs == [] and result.readied == 0
    assert await store.get_steps("r1") == before_steps
    last = (await store.get_events("r1", 0, None))[-1]
    assert last.type == "step_outcome_ignored" and last.step == "s0"
    assert last.payload["reason"] == "lease lost"

    assert (await store.complete([ok(c, "first")], NOW + 2)).accepted == [True]
    after = await store.get_steps("r1")
    duplicate = await store.complete([ok(c, "second")], NOW + 3)
    assert duplicate.accepted == [False] and duplicate.readied == 0
    assert await store.get_steps("r1") == after
    assert orjson.loads((await step_row(store, "r1", "s0")).output or b"") == "first"
    last = (await store.get_events("r1", 0, None))[-1]
    assert last.type == "step_outcome_ignored" and last.payload["reason"] == "step is done"
    unknown = await store.complete([Outcome("ghost", "s0", "t", output=b"1")], NOW)
    assert unknown.accepted == [False]


async def test_success_readies_dependents_and_ends_run_with_sink_outputs(store: Store) -> None:
    plan = plan_of("fan", ("a", [], {}), ("b", ["a"], {}), ("c", ["a"], {}))
    await start(store, plan, "r1")

    result = await store.complete([ok(await claim_one(store, plan, "a"), 1)], NOW + 1)
    assert result.accepted == [True] and result.readied == 2 and result.ended_runs == []
    assert await statuses(store, "r1") == {
        "a": StepStatus.DONE,
        "b": StepStatus.READY,
        "c": StepStatus.READY,
    }
    b, c = sorted(await claim(store, [plan], now=NOW + 2), key=lambda x: x.step)
    result = await store.complete([ok(b, {"bee": True}), ok(c, [3])], NOW + 3)

    assert result.accepted == [True, True] and result.ended_runs == ["r1"]
    run_row = await store.get_run("r1")
    assert run_row is not None and run_row.status is RunStatus.COMPLETED
    assert orjson.loads(run_row.output or b"") == {"b": {"bee": True}, "c": [3]}
    assert run_row.finished_at == NOW + 3 and run_row.unfinished == 0
    assert (await event_types(store, "r1"))[-1] == "run_completed"


async def test_failure_with_retry_at_is_ready_later_not_before(store: Store) -> None:
    plan = chain(length=1)
    await start(store, plan, "r1")
    c = await claim_one(store, plan, "s0")

    result = await store.complete([fail(c, retry_at=NOW + 10)], NOW + 1)

    assert result.accepted == [True] and result.readied == 1
    row = await step_row(store, "r1", "s0")
    assert row.status is StepStatus.READY and row.available_at == NOW + 10
    assert row.error_code == "Boom" and row.attempt == 1
    assert await claim(store, [plan], now=NOW + 9) == []
    assert await store.next_ready_at([plan.fingerprint]) == NOW + 10
    again = await claim_one(store, plan, "s0", now=NOW + 10)
    assert again.attempt == 2
    retrying = [e for e in await store.get_events("r1", 0, None) if e.type == "step_retrying"]
    assert len(retrying) == 1 and retrying[0].payload["traceback"] == "Traceback…"


async def test_failure_without_retry_cascades_skips_and_fails_the_run(store: Store) -> None:
    plan = plan_of(
        "doomed",
        ("a", [], {}),
        ("b", ["a"], {}),
        ("c", [], {"after": ["b"]}),
        ("d", [], {}),
    )
    await start(store, plan, "r1")
    claims = {c.step: c for c in await claim(store, [plan])}
    assert set(claims) == {"a", "d"}

    result = await store.complete([fail(claims["a"], code="Kaput")], NOW + 1)

    assert result.accepted == [True] and result.ended_runs == []
    assert await statuses(store, "r1") == {
        "a": StepStatus.FAILED,
        "b": StepStatus.SKIPPED,
        "c": StepStatus.SKIPPED,
        "d": StepStatus.RUNNING,
    }
    assert "'a'" in ((await step_row(store, "r1", "b")).skip_reason or "")
    assert "'b'" in ((await step_row(store, "r1", "c")).skip_reason or "")
    assert (await step_row(store, "r1", "a")).error_code == "Kaput"
    result = await store.complete([ok(claims["d"])], NOW + 2)
    assert result.ended_runs == ["r1"]
    run_row = await store.get_run("r1")
    assert run_row is not None and run_row.status is RunStatus.FAILED
    assert run_row.error is not None and "'a'" in run_row.error and "a broke" in run_row.error
    assert run_row.output is None
    assert (await event_types(store, "r1"))[-1] == "run_failed"


async def test_after_any_does_not_cascade(store: Store) -> None:
    plan = plan_of("cleanup", ("a", [], {}), ("b", [], {"after_any": ["a"]}))
    await start(store, plan, "r1")
    await store.complete([fail(await claim_one(store, plan, "a"))], NOW)

    assert (await statuses(store, "r1"))["b"] is StepStatus.READY
    await store.complete([ok(await claim_one(store, plan, "b"))], NOW)
    assert (await statuses(store, "r1"))["b"] is StepStatus.DONE
    run_row = await store.get_run("r1")
    assert run_row is not None and run_row.status is RunStatus.FAILED  # a itself failed


async def test_defaults_absorb_a_failure(store: Store) -> None:
    plan = plan_of("absorb", ("a", [], {}), ("b", ["a"], {"defaults": {"a": None}}))
    await start(store, plan, "r1")
    await store.complete([fail(await claim_one(store, plan, "a"))], NOW)

    assert (await statuses(store, "r1"))["b"] is StepStatus.READY


async def test_optional_failure_lets_the_run_complete(store: Store) -> None:
    plan = plan_of("opt", ("a", [], {"optional": True}), ("b", [], {}))
    await start(store, plan, "r1")
    claims = {c.step: c for c in await claim(store, [plan])}

    result = await store.complete([fail(claims["a"]), ok(claims["b"], 2)], NOW)

    assert result.ended_runs == ["r1"]
    run_row = await store.get_run("r1")
    assert run_row is not None and run_row.status is RunStatus.COMPLETED
    assert orjson.loads(run_row.output or b"") == {"a": None, "b": 2}


# -- leases --------------------------------------------------------------------------------------


async def test_heartbeat_extends_leases_and_reports_lost_ones(store: Store) -> None:
    plan = plan_of("beat", ("a", [], {}), ("b", [], {}))
    await start(store, plan, "r1")
    claims = {c.step: c for c in await claim(store, [plan], lease=10)}
    held_a = Lease("r1", "a", claims["a"].token)
    stale_b = Lease("r1", "b", "stale-token")

    lost = await store.heartbeat([held_a, stale_b, Lease("ghost", "a", "t")], 60, NOW + 5)

    assert lost == [stale_b, Lease("ghost", "a", "t")]
    assert (await step_row(store, "r1", "a")).lease_expires_at == NOW + 65
    assert (await step_row(store, "r1", "b")).lease_expires_at == NOW + 10
    result = await store.recover_expired(NOW + 20, max_recoveries=10, limit=100)
    assert result.readied == 1
    assert await statuses(store, "r1") == {"a": StepStatus.RUNNING, "b": StepStatus.READY}
    assert await store.heartbeat([Lease("r1", "b", claims["b"].token)], 60, NOW + 21) == [
        Lease("r1", "b", claims["b"].token)
    ]


async def test_release_gives_the_step_back_without_using_an_attempt(store: Store) -> None:
    plan = chain(length=1)
    await start(store, plan, "r1")
    c = await claim_one(store, plan, "s0")

    ignored = await store.release([Lease("r1", "s0", "wrong")], NOW + 1, max_recoveries=10)
    assert ignored.readied == 0
    assert (await step_row(store, "r1", "s0")).status is StepStatus.RUNNING

    result = await store.release([Lease("r1", "s0", c.token)], NOW + 2, max_recoveries=10)

    assert result.readied == 1
    row = await step_row(store, "r1", "s0")
    assert row.status is StepStatus.READY and row.attempt == 0
    assert row.recoveries == 1  # an attempt ended without an outcome: counted as an expiry is
    assert row.lease_token is None and row.worker_id is None and row.available_at == NOW + 2
    assert (await event_types(store, "r1"))[-1] == "step_released"
    assert (await claim_one(store, plan, "s0", now=NOW + 2)).attempt == 1
    assert (await store.complete([ok(c)], NOW + 3)).accepted == [False]  # the old lease is gone


async def test_recover_expired_makes_steps_claimable_again(store: Store) -> None:
    plan = chain(length=1)
    await start(store, plan, "r1")
    c = await claim_one(store, plan, "s0")  # lease until NOW + 30

    assert (await store.recover_expired(NOW + 29, max_recoveries=10, limit=100)).readied == 0
    result = await store.recover_expired(NOW + 31, max_recoveries=10, limit=100)

    assert result.readied == 1
    row = await step_row(store, "r1", "s0")
    assert row.status is StepStatus.READY and row.recoveries == 1 and row.attempt == 0
    assert (await event_types(store, "r1"))[-1] == "step_lease_expired"
    assert (await store.complete([ok(c)], NOW + 32)).accepted == [False]
    assert (await claim_one(store, plan, "s0", now=NOW + 32)).attempt == 1


async def test_recover_expired_respects_its_limit(store: Store) -> None:
    plan = plan_of("many", *[(f"t{i}", [], {}) for i in range(5)])
    await start(store, plan, "r1")
    await claim(store, [plan], lease=1)

    assert (await store.recover_expired(NOW + 2, max_recoveries=10, limit=2)).readied == 2
    assert (await store.recover_expired(NOW + 2, max_recoveries=10, limit=10)).readied == 3


async def test_a_step_past_max_recoveries_fails_with_lease_expired(store: Store) -> None:
    plan = chain(length=1)
    await start(store, plan, "r1")
    now = NOW
    for _ in range(2):
        await claim_one(store, plan, "s0", now=now)
        now += LEASE + 1
        assert (await store.recover_expired(now, max_recoveries=2, limit=10)).readied == 1
    await claim_one(store, plan, "s0", now=now)
    now += LEASE + 1

    result = await store.recover_expired(now, max_recoveries=2, limit=10)

    assert result.ended_runs == ["r1"]
    row = await step_row(store, "r1", "s0")
    assert row.status is StepStatus.FAILED and row.error_code == "lease_expired"
    assert row.recoveries == 3
    run_row = await store.get_run("r1")
    assert run_row is not None and run_row.status is RunStatus.FAILED


async def test_releases_count_toward_max_recoveries_with_expiries(store: Store) -> None:
    """A step that hangs every worker is handed back by each one that stops: without a bound it
    would poison workers forever. Hand-backs and expiries share `max_recoveries`."""
    plan = chain(length=1)
    await start(store, plan, "r1")
    c = await claim_one(store, plan, "s0", now=NOW)
    assert (
        await store.release([Lease("r1", "s0", c.token)], NOW + 1, max_recoveries=2)
    ).readied == 1
    await claim_one(store, plan, "s0", now=NOW + 1)
    assert (await store.recover_expired(NOW + LEASE + 2, max_recoveries=2, limit=10)).readied == 1
    c = await claim_one(store, plan, "s0", now=NOW + LEASE + 2)

    result = await store.release([Lease("r1", "s0", c.token)], NOW + LEASE + 3, max_recoveries=2)

    assert result.readied == 0 and result.ended_runs == ["r1"]
    row = await step_row(store, "r1", "s0")
    assert row.status is StepStatus.FAILED and row.error_code == "abandoned"
    assert row.error_message == (
        "step 's0' ended 3 attempts without an outcome (max_recoveries=2), the last when a "
        "stopping worker released it: it may be killing or hanging its worker"
    )
    assert row.recoveries == 3 and row.attempt == 1 and row.lease_token is None
    run_row = await store.get_run("r1")
    assert run_row is not None and run_row.status is RunStatus.FAILED
    types = await event_types(store, "r1")
    assert types.count("step_released") == 1 and types.count("step_lease_expired") == 1
    assert types[-2:] == ["step_failed", "run_failed"]


# -- scale ---------------------------------------------------------------------------------------


async def test_a_10000_step_fan_out_completes_with_group_commits(store: Store) -> None:
    width = 10_000
    wf = plait.Workflow("wide")
    wf.add_step("root", noop)
    for i in range(width):
        wf.add_step(f"leaf{i}", noop, ["root"])
    wf.add_step("join", noop, [f"leaf{i}" for i in range(width)])
    plan = wf.plan()
    await start(store, plan, "big")

    commits = await drain(store, [plan], batch=500)

    assert commits == 1 + width // 500 + 1
    run_row = await store.get_run("big")
    assert run_row is not None and run_row.status is RunStatus.COMPLETED
    assert orjson.loads(run_row.output or b"") == {"join": "join"}
    assert (await step_row(store, "big", "join")).unmet == 0


async def test_many_runs_complete_in_batches(store: Store) -> None:
    plan = chain("bulk", 3)
    for i in range(300):
        await start(store, plan, f"r{i:03}")

    await drain(store, [plan], batch=64)

    runs = await store.list_runs(workflow="bulk", status=None, limit=1000, before=None)
    assert len(runs) == 300 and {r.status for r in runs} == {RunStatus.COMPLETED}
    events = await store.get_events("r123", 0, None)
    assert [e.seq for e in events] == list(range(1, 9))


# -- durability (stores that keep state across a reopen of the same URL) --------------------------


def test_state_survives_closing_and_reopening(durable_backend: Any, tmp_path: Any) -> None:
    url = durable_backend.url(tmp_path)
    plan = chain("durable", 3)

    async def first() -> None:
        store = open_store(url)
        await store.open()
        try:
            await store.save_workflow(plan)
            await start(store, plan, "r1")
            await store.complete([ok(await claim_one(store, plan, "s0"), "zero")], NOW)
            await claim_one(store, plan, "s1")
        finally:
            await store.close()

    async def second() -> None:
        store = open_store(url)
        await store.open()
        try:
            assert await store.get_workflow("durable") == plan
            assert await statuses(store, "r1") == {
                "s0": StepStatus.DONE,
                "s1": StepStatus.RUNNING,
                "s2": StepStatus.PENDING,
            }
            assert len(await store.get_events("r1", 0, None)) == 4
            await store.recover_expired(NOW + LEASE + 1, max_recoveries=10, limit=10)
            while claims := await claim(store, [plan], now=NOW + LEASE + 1):
                await store.complete([ok(c) for c in claims], NOW + LEASE + 1)
            run_row = await store.get_run("r1")
            assert run_row is not None and run_row.status is RunStatus.COMPLETED
        finally:
            await store.close()

    run(first())
    run(second())


def test_stores_sharing_one_database_never_share_a_step(
    durable_backend: Any, tmp_path: Any
) -> None:
    url = durable_backend.url(tmp_path)
    plan = plan_of("shared", *[(f"t{i}", [], {}) for i in range(30)])
    claimed: list[Claim] = []
    lock = threading.Lock()

    async def setup() -> None:
        store = open_store(url)
        await store.open()
        for r in range(10):
            await start(store, plan, f"r{r}")
        await store.close()

    async def worker(name: str) -> None:
        store = open_store(url)
        await store.open()
        try:
            while got := await claim(store, [plan], limit=5, worker=name):
                with lock:
                    claimed.extend(got)
                await store.complete([ok(c) for c in got], NOW)
        finally:
            await store.close()

    errors: list[BaseException] = []

    def in_thread(name: str) -> None:
        try:
            run(worker(name))
        except BaseException as exc:
            errors.append(exc)

    run(setup())
    threads = [threading.Thread(target=in_thread, args=(f"w{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert errors == []

    counts = Counter((c.run_id, c.step) for c in claimed)
    assert len(counts) == 300 and max(counts.values()) == 1
