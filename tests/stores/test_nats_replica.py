"""The NATS store's replica (stores.nats_replica) on its own: KV messages applied to the local
copy, no server. The store's behaviour as a whole is the contract suite's, run on NATS."""

from __future__ import annotations

import asyncio

from plait.core.rows import EventRow
from plait.stores.nats_replica import Replica


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
