"""The NATS store's replica (stores.nats_replica) on its own: KV messages applied to the local
copy, no server. The store's behaviour as a whole is the contract suite's, run on NATS."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from plait.core.cascade import new_run
from plait.core.rows import EventRow, RunStatus, StepRow, StepStatus
from plait.stores.nats_replica import Replica, held_id, page_key
from plait.testing.contract.helpers import chain


def _events(run_id: str, *seqs: int, kind: str = "step_done") -> list[EventRow]:
    return [EventRow(run_id, seq, kind, None, {}, 0.0) for seq in seqs]


def _seqs(replica: Replica, run_id: str) -> list[tuple[int, str]]:
    return [(e.seq, e.type) for e in asyncio.run(replica.get_events(run_id, 0, None))]


def test_event_keys_applied_in_order_are_appended() -> None:
    replica = Replica()
    for stream_seq, first in enumerate(range(1, 30, 3), start=1):
        events = _events("r", first, first + 1, first + 2)
        replica.apply_key(f"ev.r.{first}", events, {}, stream_seq, remote=False)
    assert _seqs(replica, "r") == [(seq, "step_done") for seq in range(1, 31)]


def test_an_earlier_event_key_arriving_late_is_put_in_its_place() -> None:
    replica = Replica()
    replica.apply_key("ev.r.4", _events("r", 4, 5), {}, 10, remote=False)
    replica.apply_key("ev.r.1", _events("r", 1, 2, 3), {}, 11, remote=False)
    replica.apply_key("ev.r.6", _events("r", 6), {}, 12, remote=False)
    assert [seq for seq, _ in _seqs(replica, "r")] == [1, 2, 3, 4, 5, 6]


def test_an_event_key_written_again_replaces_its_events_and_a_deleted_one_drops_them() -> None:
    replica = Replica()
    replica.apply_key("ev.r.1", _events("r", 1, 2), {}, 1, remote=False)
    replica.apply_key("ev.r.3", _events("r", 3), {}, 2, remote=False)
    replica.apply_key("ev.r.1", _events("r", 1, 2, kind="again"), {}, 3, remote=False)
    assert _seqs(replica, "r") == [(1, "again"), (2, "again"), (3, "step_done")]
    replica.apply_key("ev.r.3", _events("r", 3, kind="old"), {}, 2, remote=False)  # stale: no-op
    assert _seqs(replica, "r")[-1] == (3, "step_done")
    replica.apply_key("ev.r.1", None, {}, 4, remote=False)
    assert _seqs(replica, "r") == [(3, "step_done")]


def _state(replica: Replica) -> dict[str, Any]:
    """Everything the replica holds, as values (rows by identity: an undo puts back the very
    rows it had)."""
    r = replica
    return {
        "runs": {k: (id(v), r._run_updated.get(k)) for k, v in r._runs.items()},
        "steps": {k: {n: id(s) for n, s in v.items()} for k, v in r._steps.items()},
        "indices": (list(r._ready), list(r._running), list(r._waiting)),
        "events": {k: [(e.seq, e.type) for e in v] for k, v in r._events.items()},
        "held": {k: dict(v) for k, v in r.held.items()},
        "pages": {k: {p: set(n) for p, n in v.items()} for k, v in r.pages.items()},
        "event_keys": {k: {e: list(s) for e, s in v.items()} for k, v in r.event_keys.items()},
        "blobs": {k: (v.refs, v.size, v.at) for k, v in r.blob_info.items()},
        "records": dict(r._records),
        "revs": dict(r.revs),
    }


def test_supposed_writes_are_held_until_undone_and_the_undo_puts_back_everything() -> None:
    """`supposing` (a hand-off's claim is decided on it) applies writes of every kind, new
    keys and changed ones, without touching the revisions; its undo leaves the replica as it
    was, to the row."""
    plan = chain("supposed", 20)  # two pages of 16
    run, steps, events = new_run(plan, "r", b"{}", 1.0)
    replica = Replica()
    pages: dict[str, list[StepRow]] = {}
    for step in steps:
        pages.setdefault(page_key("r", step.idx), []).append(step)
    initial: list[tuple[str, Any]] = [
        ("run.r", (run, 1.0)),
        *pages.items(),
        ("ev.r.1", events),
        ("blob.abc", {"refs": 1, "size": 10, "at": 1.0}),
    ]
    for seq, (key, row) in enumerate(initial, start=1):
        replica.apply_key(key, row, {}, seq, remote=False)
    before = _state(replica)

    first = steps[0]
    done = dataclasses.replace(first, status=StepStatus.DONE, output=b"1")
    moved = dataclasses.replace(steps[1], status=StepStatus.READY)
    later = dataclasses.replace(run, status=RunStatus.RUNNING)
    extra = dataclasses.replace(steps[-1], name="extra", idx=len(steps) + 40)  # a new page
    last = events[-1].seq
    writes: list[tuple[str, Any, dict[str, Any]]] = [
        ("run.r", (later, 2.0), {}),
        (page_key("r", 0), [done, moved, *pages[page_key("r", 0)][2:]], {"s0": {"output": "f"}}),
        (page_key("r", extra.idx), [extra], {}),
        (f"ev.r.{last + 1}", [EventRow("r", last + 1, "step_done", "s0", {}, 2.0)], {}),
        ("blob.abc", {"refs": 2, "size": 10, "at": 1.0}, {}),
        ("blob.new", {"refs": 1, "size": 5, "at": 2.0}, {}),
        ("flow", {"at": 2.0}, {}),
    ]
    undo = replica.supposing(writes)
    during = _state(replica)
    assert replica._steps["r"]["s0"] is done and replica._steps["r"]["extra"] is extra
    assert ("r", "s1") in replica._ready
    assert replica.held[held_id("r", "s0")] == {"output": "f"}
    assert during["events"]["r"][-1] == (last + 1, "step_done")
    assert during["blobs"]["abc"][0] == 2 and "new" in during["blobs"]
    assert during["revs"] == before["revs"]  # a commit expects the server's
    undo()
    assert _state(replica) == before
