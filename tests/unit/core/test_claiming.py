"""The claim policy (`core.claiming`): the candidate order, and admission under flow control
(property tests against the limits it enforces)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from plait.core.claiming import (
    Candidate,
    admit_candidates,
    blocked,
    charge,
    frees_room,
    order,
    token_wait,
)
from plait.core.queues import QueueConfig
from plait.core.rate import Bucket, Rate
from plait.core.rows import StepOptions, StepRow, StepStatus

QUEUES = ["a", "b", "default"]
KEYS = [None, "k1", "k2"]

candidates = st.lists(
    st.builds(
        Candidate,
        st.sampled_from(QUEUES),
        st.sampled_from(KEYS),
        st.sampled_from([None, 1, 2]),
    ),
    max_size=30,
)


@given(
    candidates,
    st.integers(1, 4),
    st.floats(0, 5),
    st.dictionaries(st.sampled_from(QUEUES), st.integers(0, 5)),
    st.dictionaries(st.sampled_from(["k1", "k2"]), st.integers(0, 3)),
    st.integers(0, 40),
)
def test_admission_never_exceeds_a_limit(
    found: list[Candidate],
    concurrency: int,
    tokens: float,
    queue_running: dict[str, int],
    key_running: dict[str, int],
    limit: int,
) -> None:
    rate = Rate(1, per=1.0, burst=5)
    queues = {
        "a": QueueConfig("a", concurrency=concurrency),
        "b": QueueConfig("b", rate=rate, bucket=Bucket(tokens, 100.0)),
    }
    taken, buckets = admit_candidates(found, queues, queue_running, key_running, 100.0, limit)
    assert taken == sorted(set(taken)) and len(taken) <= limit
    chosen = [found[i] for i in taken]
    in_a = sum(c.queue == "a" for c in chosen)
    assert in_a <= max(0, concurrency - queue_running.get("a", 0))
    in_b = sum(c.queue == "b" for c in chosen)
    assert in_b <= int(tokens)
    assert buckets["b"].tokens == tokens  # counted, not charged: `charge` does that
    charged = charge(queues, buckets, [c.queue for c in chosen], 100.0)
    assert charged["b"].tokens == tokens - in_b
    for key in ("k1", "k2"):
        for c in chosen:
            if c.key == key and c.key_limit is not None:
                running = key_running.get(key, 0) + sum(
                    1 for d in chosen[: chosen.index(c) + 1] if d.key == key
                )
                assert running <= c.key_limit
    # what it refused, it refused for a reason: a full queue or key, or the batch limit
    if len(taken) < min(limit, len(found)):
        for i, c in enumerate(found):
            if i in taken:
                continue
            full_queue = (c.queue == "a" and in_a >= concurrency - queue_running.get("a", 0)) or (
                c.queue == "b" and in_b >= int(tokens)
            )
            before = sum(1 for j in taken if j < i and found[j].key == c.key)
            full_key = (
                c.key is not None
                and c.key_limit is not None
                and key_running.get(c.key, 0) + before >= c.key_limit
            )
            assert full_queue or full_key or len([j for j in taken if j < i]) >= limit


def test_blocked_queues_are_full_or_out_of_tokens() -> None:
    rate = Rate(1, per=10.0, burst=2)
    queues = {
        "full": QueueConfig("full", concurrency=2),
        "room": QueueConfig("room", concurrency=3),
        "dry": QueueConfig("dry", rate=rate, bucket=Bucket(0.5, 100.0)),
        "wet": QueueConfig("wet", rate=rate, bucket=Bucket(0.5, 90.0)),  # refilled by now
    }
    assert blocked(queues, {"full": 2, "room": 2}, 100.0) == ["full", "dry"]


def test_a_held_claim_waits_for_the_earliest_token_of_a_queue_that_is_not_full() -> None:
    rate = Rate(1, per=10.0, burst=2)
    queues = {
        "dry": QueueConfig("dry", rate=rate, bucket=Bucket(0.5, 100.0)),  # a token at 105
        "drier": QueueConfig("drier", rate=rate, bucket=Bucket(0.2, 100.0)),  # at 108
        "full": QueueConfig("full", concurrency=1, rate=rate, bucket=Bucket(0.9, 100.0)),
    }
    assert token_wait(queues, {"full": 1}, ["dry", "drier", "full"], 100.0) == 105.0
    assert token_wait(queues, {"full": 1}, ["drier", "full"], 100.0) == 108.0
    # a full queue waits for a slot, whatever its tokens: no time to wake at
    assert token_wait(queues, {"full": 1}, ["full"], 100.0) is None
    assert token_wait(queues, {"full": 0}, ["full"], 100.0) == 101.0


def test_a_slot_is_freed_by_a_step_of_a_limited_queue_or_with_a_key() -> None:
    def step(options: StepOptions | None = None) -> StepRow:
        return StepRow("r", "s", 0, StepStatus.DONE, 0, options=options)

    assert not frees_room([step(), step(StepOptions(queue="open"))], {"emails"})
    assert frees_room([step(), step(StepOptions(queue="emails"))], {"emails"})
    assert frees_room([step()], {"default"})  # the default queue, configured with a limit
    assert frees_room([step(StepOptions(key="ann", key_limit=1))], ())
    assert not frees_room([], {"emails"})


ready_steps = st.lists(
    st.tuples(st.integers(-3, 3), st.floats(0, 100)), max_size=12, unique_by=lambda t: t[1]
).map(
    lambda found: [
        StepRow("r", f"s{i}", i, StepStatus.READY, 0, priority=p, available_at=at)
        for i, (p, at) in enumerate(found)
    ]
)


@given(ready_steps, st.one_of(st.none(), st.floats(0, 100)))
def test_candidates_come_best_first_and_the_starved_one_first_of_all(
    steps: list[StepRow], aged_before: float | None
) -> None:
    ordered = order(steps, aged_before)
    assert sorted(s.name for s in ordered) == sorted(s.name for s in steps)
    best_first = sorted(steps, key=lambda s: (-s.priority, s.available_at))
    oldest = min(steps, key=lambda s: s.available_at or 0.0, default=None)
    if (
        oldest is not None
        and aged_before is not None
        and (oldest.available_at or 0.0) <= aged_before
    ):
        assert ordered == [oldest, *(s for s in best_first if s is not oldest)]
    else:
        assert ordered == best_first


def test_a_low_priority_step_that_waited_too_long_goes_first() -> None:
    def ready(name: str, priority: int, at: float) -> StepRow:
        return StepRow("r", name, 0, StepStatus.READY, 0, priority=priority, available_at=at)

    steps = [ready("low", 0, 10.0), ready("high", 5, 50.0), ready("mid", 1, 20.0)]
    assert [s.name for s in order(steps, None)] == ["high", "mid", "low"]
    assert [s.name for s in order(steps, 5.0)] == ["high", "mid", "low"]  # not aged yet
    assert [s.name for s in order(steps, 10.0)] == ["low", "high", "mid"]
    assert order([], 10.0) == []
