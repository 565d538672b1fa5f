"""The claim policy: which ready steps a claim takes, and in which order. Pure.

Every store claims by these rules. The memory store calls the functions of this module; the SQL
stores' claim queries (`claim_candidates`, `claim_oldest`, `held_queues`, and the `claimable`
fragment they share) are its SQL form, and their programs call the rest of it.

**Which steps may be claimed.** A step is a candidate when it is `ready` and its time has come
(`available_at` is not in the future: delays and retry backoff), its run dispatches
(`dispatchable`: a pending or running run; a pausing run only lets the retries of its steps in
flight go on), the worker registered its workflow version (fingerprint), serves its queue
(`--queues`), and may run it (its target: a label, or colocation; `core.placement`).

**In which order.** Best first: the highest priority, then the longest waiting (`candidate_order`).
One exception keeps a steady stream of high-priority work from starving the rest: the candidate
that has waited longest goes first, whatever its priority, once it has waited since before the
claim's `aged_before` (the worker's `starvation_after`; `starved_first`, and `order` for both).

**How many.** Flow control limits what a claim may start (DESIGN §3.4; configured queues and keys
are in `core.queues`):

- a queue's `concurrency`: at most this many of its steps run at once, across all workers;
- a queue's `rate`: a token bucket (`plait.Rate`) stored with the queue; a step waits for a
  token in `ready`, holding no worker slot;
- a step's `concurrency_key` and `key_limit`: at most that many running steps share its key.
  Keys are global: every running step with the same key counts, whatever its queue or workflow.

A claim counts the running steps of the limited queues and of the keys its candidates carry,
under a lock that serialises the claims that involve limits (SQLite's write lock; an advisory
lock on PostgreSQL), so that claims never overshoot together. A queue that can start nothing
now (full, or out of tokens) is left out of the candidates at once (`blocked`); the others are
admitted in order while their budgets last, `limit` at most (`admit_candidates`). A rate limit
is charged (`charge`) only for the steps the claim then took: a step passed over because another
transaction held its run (PostgreSQL) keeps its token.
A claim stamps and charges at its `claim_time`: never before a bucket's last update, which another
claim may have made while this one waited for the lock.

**Waiting, not polling.** A claim that takes nothing tells its worker whether limits held ready
work back, and when the next token of a rate limit holding it comes (`token_wait`); a completion
that frees a slot (a queue's concurrency, a key) says so (`frees_room`), which wakes the workers
in its process and, on PostgreSQL, in every other.

A key read from dependency outputs is not known when the step is claimed: its worker resolves
it, and the store admits it under the same count (`transitions.admit_key`).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from .queues import DEFAULT, QueueConfig, queue_of
from .rate import Bucket, available_at, take_many
from .rows import Claim, RunStatus, StepOptions, StepRow, StepStatus
from .txn import Txn

# -- which steps may be claimed ------------------------------------------------------------------


def dispatchable(run: RunStatus, attempt: int) -> bool:
    """May a ready step of a run in this state be claimed? A pausing run dispatches nothing new,
    but lets the steps in flight finish, their retries included (a retry has attempt > 0)."""
    return run in (RunStatus.PENDING, RunStatus.RUNNING) or (
        run is RunStatus.PAUSING and attempt > 0
    )


# -- in which order -------------------------------------------------------------------------------


def waited_since(step: StepRow) -> float:
    """Since when a ready step has been claimable (the older, the longer it has waited)."""
    return step.available_at or 0.0


def candidate_order(step: StepRow) -> tuple[int, float]:
    """The sort key of candidates, best first: the highest priority, then the longest waiting
    (in SQL: `ORDER BY s.priority DESC, s.available_at`)."""
    return (-step.priority, waited_since(step))


def starved_first(
    ordered: list[StepRow], oldest: StepRow | None, aged_before: float | None
) -> list[StepRow]:
    """The starvation rule: `oldest`, the candidate that has waited longest, goes first whatever
    its priority if it has waited since before `aged_before`; else `ordered` is unchanged."""
    if oldest is None or aged_before is None or waited_since(oldest) > aged_before:
        return ordered
    key = (oldest.run_id, oldest.name)
    return [oldest, *(s for s in ordered if (s.run_id, s.name) != key)]


def order(candidates: Iterable[StepRow], aged_before: float | None) -> list[StepRow]:
    """The candidates in the order a claim takes them: best first, the starved one first of all."""
    ordered = sorted(candidates, key=candidate_order)
    oldest = min(ordered, key=waited_since, default=None)
    return starved_first(ordered, oldest, aged_before)


# -- how many: flow control -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Candidate:
    """What flow control counts of a candidate step: its queue, and its key with its limit."""

    queue: str
    key: str | None
    key_limit: int | None


_PLAIN = Candidate(DEFAULT, None, None)


def flow_candidate(options: StepOptions | None) -> Candidate:
    if options is None:
        return _PLAIN
    return Candidate(queue_of(options), options.key, options.key_limit)


def blocked(queues: Mapping[str, QueueConfig], running: Mapping[str, int], now: float) -> list[str]:
    """The configured queues that can start nothing now: full, or out of tokens."""
    out = []
    for name, q in queues.items():
        if q.concurrency is not None and running.get(name, 0) >= q.concurrency:
            out.append(name)
            continue
        bucket = q.tokens_at(now)
        if bucket is not None and bucket.tokens < 1:
            out.append(name)
    return out


def admit_candidates(
    candidates: Sequence[Candidate],
    queues: Mapping[str, QueueConfig],
    queue_running: Mapping[str, int],
    key_running: Mapping[str, int],
    now: float,
    limit: int,
) -> tuple[list[int], dict[str, Bucket]]:
    """Which candidates (indexes, in order) to claim, and the rate-limited queues' buckets as
    they stand at `now` (nothing taken yet: `charge` them with what was actually claimed).

    A candidate is taken while its queue has room (concurrency and tokens) and its key has room
    (`key_limit`); at most `limit` in all."""
    room: dict[str, float] = {}
    buckets: dict[str, Bucket] = {}
    for name, q in queues.items():
        free = math.inf
        if q.concurrency is not None:
            free = q.concurrency - queue_running.get(name, 0)
        bucket = q.tokens_at(now)
        if bucket is not None:
            buckets[name] = bucket
            free = min(free, math.floor(bucket.tokens))
        room[name] = free
    keys = dict(key_running)
    taken: list[int] = []
    for i, c in enumerate(candidates):
        if len(taken) >= limit:
            break
        if room.get(c.queue, math.inf) <= 0:
            continue
        if c.key is not None and c.key_limit is not None and keys.get(c.key, 0) >= c.key_limit:
            continue
        taken.append(i)
        if c.queue in room:
            room[c.queue] -= 1
        if c.key is not None:
            keys[c.key] = keys.get(c.key, 0) + 1
    return taken, buckets


def claim_time(queues: Mapping[str, QueueConfig], now: float) -> float:
    """The time a claim stamps its steps with and charges the rate limits at: `now`, or the
    latest time one of these queues' buckets was counted, if that is later.

    A claim reads its clock before it waits for the lock that serialises claims; another claim
    (another process) may charge a bucket in that wait. Charging at `now` then takes from the
    bucket as it stands at its later `updated_at` (a clock never refills backwards), and the
    steps, stamped `now`, would seem to start earlier than their tokens were counted: a bucket
    is never charged, nor its steps stamped, at a time before its last update."""
    latest = now
    for q in queues.values():
        if q.rate is not None and q.bucket is not None and q.bucket.updated_at > latest:
            latest = q.bucket.updated_at
    return latest


def charge(
    queues: Mapping[str, QueueConfig],
    buckets: Mapping[str, Bucket],
    claimed: Iterable[str],
    now: float,
) -> dict[str, Bucket]:
    """The buckets to store after a claim: a token taken for each step actually claimed (the
    queues of `claimed`), not for those admitted but passed over (their run was held by another
    transaction), whose tokens would otherwise be lost."""
    used: dict[str, int] = {}
    for queue in claimed:
        used[queue] = used.get(queue, 0) + 1
    stored: dict[str, Bucket] = {}
    for name, bucket in buckets.items():
        rate = queues[name].rate
        assert rate is not None
        stored[name] = take_many(rate, bucket, now, used.get(name, 0))[1]
    return stored


# -- waiting, not polling -------------------------------------------------------------------------


def next_token_at(queues: Mapping[str, QueueConfig], now: float) -> float | None:
    """When the earliest rate-limited queue out of tokens has one again (None: none is)."""
    times = [
        available_at(q.rate, b, now)
        for q in queues.values()
        if q.rate is not None and (b := q.tokens_at(now)) is not None and b.tokens < 1
    ]
    return min(times) if times else None


def token_wait(
    queues: Mapping[str, QueueConfig], running: Mapping[str, int], held: Iterable[str], now: float
) -> float | None:
    """Of the queues that hold ready work back (`held`), when the earliest one that is short of
    tokens, and not full, gets a token again. None if none is: the work waits for a free slot,
    which the completion that frees it announces (`CommitResult.slot_freed`)."""
    short = {}
    for name in held:
        q = queues.get(name)
        if q is not None and (q.concurrency is None or running.get(name, 0) < q.concurrency):
            short[name] = q
    return next_token_at(short, now)


def frees_room(stopped: Iterable[StepRow], slotted: Collection[str]) -> bool:
    """Did one of these steps, whose running attempt just ended, hold a slot that a claim may
    now take: a step of a queue with a concurrency limit (`slotted`), or one with a concurrency
    key? (A rate limit has no slots: the work it holds waits for a token, not a completion.)"""
    for step in stopped:
        options = step.options
        if options is not None and options.key is not None:
            return True
        if slotted and queue_of(options) in slotted:
            return True
    return False


def unclaimed_ready(txn: Txn, claimed: Iterable[Claim]) -> int:
    """Completions and a claim in one transaction (`Store.complete_and_claim`): how many of the
    steps the completions made ready (`txn.result.readied`) the claim left for other workers.
    Those the claim took need no wake-up; a step back in `ready` for a later retry counts."""
    taken = {(c.run_id, c.step) for c in claimed}
    left = sum(
        1
        for key, step in txn.changed_steps.items()
        if step.status is StepStatus.READY and key not in taken
    )  # and those written and forgotten (`Need.release`): a claim may have taken some
    return min(txn.result.readied, left + txn.released_ready)
