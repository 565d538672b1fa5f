"""Flow control: queues with concurrency and rate limits, per-key limits, no starvation. Pure.

Every step belongs to a queue (`@wf.step(queue="emails")`; `default` otherwise). A queue that
was configured (`engine.configure_queue`) is stored, so every worker process obeys the same
limits, and they can change at run time:

- `concurrency`: at most this many of its steps are `running` at once, across all workers;
- `rate`: a token bucket (`plait.Rate`) whose state is stored with the queue, so a restart
  neither refills nor loses tokens. A step waits for a token in `ready`, holding no worker slot.

A step with `concurrency_key=` and `key_limit=` runs only while fewer than `key_limit` running
steps share its key, across queues. A key of run-input fields is resolved at `start`; one that
reads dependency outputs is *pending* until a worker, having claimed the step, computes it and
admits it under the same count (`_key_admission.py`).

A claim (every store does the same, with this module's functions) counts the running steps of
the limited queues and of the keys its candidates carry, under a lock that serialises the claims
that involve limits (SQLite's write lock; an advisory lock on PostgreSQL), and admits candidates
in order while budgets last. Candidates come best first (priority, then the longest waiting);
one ready step that has waited longer than the claim's `aged_before` is put first whatever its
priority, so a steady stream of high-priority work cannot starve low-priority work. A rate limit
is charged (`charge`) only for the steps the claim then took: a step passed over because another
transaction held its run (PostgreSQL) keeps its token.

Lease work is waited for, not polled: a claim that takes nothing tells its worker whether limits
held ready work back and when the next token of a rate limit holding it comes (`token_wait`);
a completion that frees a slot (a queue's concurrency, a key) says so (`frees_room`), which
wakes workers in its process and, on PostgreSQL, in every other.

Keys are global: every running step with the same key counts, whatever its queue or workflow.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from .._errors import ConfigError, DefinitionError
from .rate import Bucket, Rate, available_at, refill, take_many
from .rows import StepOptions, StepRow, WorkflowPlan

DEFAULT = "default"


_NAME = re.compile(r"^[A-Za-z0-9_.:@-]{1,100}$")


def check_queue(where: str, name: Any, *, error: type[Exception] = DefinitionError) -> str:
    """A queue name, checked: 1-100 letters, digits or any of _ . : @ - (no spaces)."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise error(
            f"{where}: invalid queue name {name!r}: use 1-100 letters, digits or any of _ . : @ - "
            "(no spaces)"
        )
    return name


def check_limit(where: str, option: str, value: Any, *, error: type[Exception]) -> int | None:
    """A concurrency limit, checked: None or an integer >= 1."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise error(f"{where}: {option} must be an integer >= 1, got {value!r}")
    return value


def check_rate(where: str, rate: Any) -> Rate | None:
    if rate is None or isinstance(rate, Rate):
        return rate
    raise ConfigError(
        f"{where}: rate must be a plait.Rate(count, per=seconds, burst=n), got {rate!r}"
    )


def make_rate(where: str, count: Any, per: Any, burst: Any) -> Rate:
    """plait.Rate(...) with its ValueError turned into a ConfigError naming the queue."""
    try:
        return Rate(count, per=per, burst=burst)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """A configured queue as stored: its limits and the state of its token bucket."""

    name: str
    concurrency: int | None = None
    rate: Rate | None = None
    bucket: Bucket | None = None  # None until the first claim counts it (a full bucket)
    updated_at: float = 0.0

    @property
    def limited(self) -> bool:
        return self.concurrency is not None or self.rate is not None

    def tokens_at(self, now: float) -> Bucket | None:
        if self.rate is None:
            return None
        if self.bucket is None:
            return Bucket.full(self.rate, now)
        return refill(self.rate, self.bucket, now)


def queue_of(options: Any) -> str:
    queue = getattr(options, "queue", None)
    return DEFAULT if queue is None else str(queue)


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


def next_token_at(queues: Mapping[str, QueueConfig], now: float) -> float | None:
    """When the earliest rate-limited queue out of tokens has one again (None: none is)."""
    times = [
        available_at(q.rate, b, now)
        for q in queues.values()
        if q.rate is not None and (b := q.tokens_at(now)) is not None and b.tokens < 1
    ]
    return min(times) if times else None


@dataclass(frozen=True, slots=True)
class Candidate:
    queue: str
    key: str | None
    key_limit: int | None


def admit(
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


def reconfigure(
    old: QueueConfig | None, name: str, concurrency: int | None, rate: Rate | None, now: float
) -> QueueConfig:
    """A queue's new configuration: the bucket keeps its tokens (counted at the old rate up to
    now, capped to the new burst), so reconfiguring never mints a burst."""
    bucket = None
    if rate is not None:
        if old is not None and old.rate is not None and old.bucket is not None:
            counted = refill(old.rate, old.bucket, now)
            bucket = Bucket(min(counted.tokens, rate.capacity), counted.updated_at)
        else:
            bucket = Bucket.full(rate, now)
    return QueueConfig(name, concurrency, rate, bucket, now)


# -- step options (`@wf.step(queue=, concurrency_key=, key_limit=)`) ---------------------------

FLOW_OPTIONS = frozenset({"queue", "concurrency_key", "key_limit"})


def flow_options(where: str, options: Mapping[str, Any]) -> tuple[str | None, Any, int | None]:
    """The queue, key callable and key limit of a step, checked."""
    queue = options.get("queue")
    if queue is not None:
        check_queue(where, queue)
    key = options.get("concurrency_key")
    limit = check_limit(where, "key_limit", options.get("key_limit"), error=DefinitionError)
    if key is not None and not callable(key):
        raise DefinitionError(
            f"{where}: concurrency_key must be a callable of run-input fields or dependency outputs"
        )
    if (key is None) != (limit is None):
        raise DefinitionError(f"{where}: concurrency_key and key_limit go together; give both")
    if key is not None:
        key_params(where, key)
    return queue, key, limit


def key_params(where: str, key: Any) -> tuple[str, ...]:
    try:
        sig = inspect.signature(key)
    except (TypeError, ValueError):
        raise DefinitionError(f"{where}: concurrency_key has no inspectable signature") from None
    names = []
    for p in sig.parameters.values():
        if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            raise DefinitionError(f"{where}: concurrency_key takes named parameters only")
        names.append(p.name)
    return tuple(names)


def check_key_params(
    where: str, key: Any, steps: Collection[str], data_deps: Collection[str]
) -> bool:
    """A key reads run-input fields and the outputs of the step's data dependencies, bound
    like the step's own parameters. True if it reads an output: it is then resolved by the
    worker that claimed the step (`_key_admission.py`), not when the run starts."""
    reads_outputs = False
    for name in key_params(where, key):
        if name in data_deps:
            reads_outputs = True
        elif name in steps:
            raise DefinitionError(
                f"{where}: concurrency_key reads step {name!r}, which is not a data dependency "
                "of this step: a key may read run-input fields and the outputs of the steps "
                "the step itself reads (take it as a parameter, or list it in deps=)"
            )
    return reads_outputs


def resolve_key(
    where: str, key: Any, value: Mapping[str, Any], outputs: Mapping[str, Any] | None = None
) -> str:
    """The key of one step of a run whose input is `value` (and, for a key that reads them,
    whose data dependencies' outputs, or their defaults, are `outputs`)."""
    from .._errors import InputError

    args = {}
    for name in key_params(where, key):
        if outputs is not None and name in outputs:
            args[name] = outputs[name]
            continue
        if name not in value:
            param = inspect.signature(key).parameters[name]
            if param.default is param.empty:
                raise InputError(f"{where}: concurrency_key needs run-input field {name!r}")
            continue
        args[name] = value[name]
    try:
        resolved = key(**args)
    except Exception as exc:
        raise InputError(f"{where}: concurrency_key raised {type(exc).__name__}: {exc}") from None
    if isinstance(resolved, bool) or not isinstance(resolved, str | int):
        raise InputError(
            f"{where}: concurrency_key must return a string or an integer, got {resolved!r}"
        )
    return str(resolved)


def flow_of_run(
    workflow: Any, plan: WorkflowPlan, steps: Sequence[StepRow], value: Any, priority: int
) -> None:
    """Set what a new run's step rows need for flow control: the run's priority added to each
    step's (and kept in its options, for the steps it spawns), and each keyed step's
    concurrency key, resolved from the run input (a key that reads dependency outputs stays
    pending: the worker that claims the step resolves it)."""
    if priority:
        for row in steps:
            row.priority += priority
            row.options = replace(row.options or StepOptions(), run_priority=priority)
    keyed = [
        s.name
        for s in plan.steps
        if s.options is not None and s.options.key_limit and not s.options.key_from_outputs
    ]
    if not keyed:
        return
    if workflow is None or workflow.fingerprint != plan.fingerprint:
        from .._errors import InputError

        raise InputError(
            f"workflow {plan.name!r} has steps with a concurrency_key ({', '.join(keyed)}): start "
            "its runs with the plait.Workflow, in a process that defines it"
        )
    rows = {row.name: row for row in steps}
    for name in keyed:
        row = rows[name]
        if row.options is None or not row.options.key_limit or row.options.key_from_outputs:
            continue  # a fork reuses this step's output (it does not run), or a pending key
        where = f"workflow {plan.name!r}, step {name!r}"
        key = resolve_key(where, workflow[name].concurrency_key, value)
        row.options = replace(row.options, key=key)


def worker_queues(queues: Iterable[str]) -> frozenset[str]:
    """The queues a worker serves (`--queues a,b`), checked."""
    if isinstance(queues, str):
        queues = [q.strip() for q in queues.split(",")]
    names = frozenset(check_queue("worker queues", q, error=ConfigError) for q in queues)
    if not names:
        raise ConfigError("worker queues: give at least one queue name")
    return names


def flow_candidate(options: StepOptions | None) -> Candidate:
    if options is None:
        return _PLAIN
    return Candidate(queue_of(options), options.key, options.key_limit)


_PLAIN = Candidate(DEFAULT, None, None)


def queue_blockers(
    rows: Sequence[StepRow], queues: Mapping[str, QueueConfig], now: float
) -> dict[str, list[str]]:
    """For ready steps held by flow control: the limits they wait on, in words (`inspect`)."""
    out: dict[str, list[str]] = {}
    for r in rows:
        if r.status.value != "ready" or (r.available_at is not None and r.available_at > now):
            continue
        why = []
        q = queues.get(queue_of(r.options))
        if q is not None and q.concurrency is not None:
            why.append(f"queue {q.name!r} runs at most {q.concurrency} at once")
        if q is not None and q.rate is not None:
            bucket = q.tokens_at(now)
            left = 0.0 if bucket is None else bucket.tokens
            rate = q.rate
            why.append(
                f"queue {q.name!r} starts at most {rate.count:g} per {rate.per:g}s "
                f"(burst {rate.capacity:g}; {left:.1f} token(s) left)"
            )
        if r.options is not None and r.options.key is not None:
            why.append(
                f"concurrency key {r.options.key!r} runs at most {r.options.key_limit} at once"
            )
        if why:
            out[r.name] = [*why, "waiting for room under these limits (or for a worker)"]
    return out
