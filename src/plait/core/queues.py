"""Queues and concurrency keys: what is configured, checked and resolved. Pure.

Every step belongs to a queue (`@wf.step(queue="emails")`; `default` otherwise). A queue that
was configured (`engine.configure_queue`) is stored, so every worker process obeys the same
limits, and they can change at run time: its `concurrency` (running steps at most) and its
`rate` (a token bucket whose state is stored with the queue, so a restart neither refills nor
loses tokens; reconfiguring keeps its tokens, `reconfigure`).

A step with `concurrency_key=` and `key_limit=` runs only while fewer than `key_limit` running
steps share its key, across queues. A key of run-input fields is resolved at `start`
(`flow_of_run`); one that reads dependency outputs is *pending* until the worker that claimed
the step resolves it (`resolve_key`) and the store admits it (`transitions.admit_key`).

How a claim applies these limits, in which order it takes steps, and without starvation: the
claim policy, `core.claiming`.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from .._errors import ConfigError, DefinitionError, InputError
from .rate import Bucket, Rate, refill
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


MAX_LIMIT = 2**31 - 1  # a concurrency limit is stored in a 32-bit INTEGER (PostgreSQL)


def check_limit(where: str, option: str, value: Any, *, error: type[Exception]) -> int | None:
    """A concurrency limit, checked: None or an integer from 1 to MAX_LIMIT."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LIMIT:
        raise error(f"{where}: {option} must be an integer >= 1 and <= {MAX_LIMIT}, got {value!r}")
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
    worker that claimed the step, not when the run starts."""
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
