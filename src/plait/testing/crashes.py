"""Crash exploration: a workflow run many times, its worker crashing at each durable write.

    effects = plait.testing.SideEffects()       # the outside world, as the steps' code sees it

    @wf.step()
    def charge(ctx: plait.StepContext, order: dict) -> str:
        effects.apply("charge", f"{ctx.run_id}:charge")   # the provider's idempotency key
        return "charged"

    plait.testing.explore_crashes(wf, {"order": {...}}, effects=effects)

How a crash is simulated, in one process: each run is on a `TestEngine` (memory store, virtual
clock). Its worker reaches the store through a wrapper that counts the durable writes of the
run: each claim that takes steps, each commit of outcomes (`complete`, `complete_and_claim`)
and each admission of a concurrency key. A schedule names one write and a side of it:

- `before:N`: the worker dies as it makes write N (a commit of outcomes or an admission; a
  crash before a claim would change nothing, so it is not explored): the write is not made;
- `after:N`: the write is made and the worker dies before it learns so;
- `twice:STEP`: nothing dies, but STEP's code is called twice for its one attempt (a step is
  delivered at least once: a second delivery must do no harm).

A worker that dies is frozen: every store call it makes from then on never returns, as a
killed process's would not; its tasks are then cancelled and its event loop stopped (a handler
already running in one of its threads may still finish, its outcome lost). The test moves the virtual clock past the lease
and starts a fresh worker, which recovers the dead one's steps at once and finishes the run.

Each schedule's run is then held against the run without crashes: it must end with the same
status and output, each step's outcome must be recorded exactly once (one `step_completed`
event for a step that completed, with the same output), and no kind of `SideEffects` may have
happened more often than without crashes (an effect made with a key it was made with already is
not made again: a key that is the same at each attempt makes an effect at most once). A
schedule that breaks one of these is printed and raised (`CrashesFound`) with what broke;
`schedules=["before:3"]` runs that one again.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._errors import InputError
from ..core.rows import Claims, Outcome
from ..engine.engine import Engine
from ..worker.worker import Worker
from ..workflow.definition import Workflow
from .clock import TestEngine, VirtualClock
from .mocks import with_mocks

RUN_ID = "explored"
DEFAULT_LEASE = 30.0


class CrashesFound(AssertionError):
    """Some crash schedules broke the workflow's run (`explore_crashes`): the message names each
    schedule and what broke; `failures` maps each schedule to its problems."""

    def __init__(self, message: str, failures: dict[str, list[str]]) -> None:
        super().__init__(message)
        self.failures = failures


class SideEffects:
    """The outside world as a workflow's code reaches it, for `explore_crashes`: `apply(kind,
    key)` is a call made with an idempotency key (a payment provider's, say). Like such a
    provider, it makes an effect once per key: True when it made it, False when that key had
    made it already. Thread-safe (sync steps run in threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._made: dict[str, list[str]] = {}
        self._keys: set[tuple[str, str]] = set()

    def apply(self, kind: str, key: str) -> bool:
        if not isinstance(kind, str) or not isinstance(key, str):
            raise InputError(
                f"SideEffects.apply takes a kind and a key, both strings, got {kind!r}, {key!r}"
            )
        with self._lock:
            if (kind, key) in self._keys:
                return False
            self._keys.add((kind, key))
            self._made.setdefault(kind, []).append(key)
            return True

    def made(self) -> dict[str, list[str]]:
        """The effects made, by kind: their keys, in order."""
        with self._lock:
            return {kind: list(keys) for kind, keys in self._made.items()}

    def clear(self) -> None:
        with self._lock:
            self._made.clear()
            self._keys.clear()


@dataclass
class _Writes:
    """The durable writes of one run, counted across its workers; where the first one dies."""

    crash: tuple[str, int] | None
    labels: list[str] = field(default_factory=list)

    def count(self, label: str) -> int:
        self.labels.append(label)
        return len(self.labels) - 1


class _CrashingStore:
    """A worker's way to the run's store, which dies at the schedule's write (module docstring).
    Every other call passes through."""

    def __init__(self, inner: Any, writes: _Writes, *, armed: bool) -> None:
        self._inner = inner
        self._writes = writes
        self._armed = armed
        self.dead = False
        self.crashed = threading.Event()

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._inner, name)
        if self.dead and callable(found):
            return self._frozen
        return found

    async def _frozen(self, *args: Any, **kwargs: Any) -> Any:
        await asyncio.Event().wait()  # a dead worker's call never returns

    def _dies_at(self, side: str, index: int) -> bool:
        return self._armed and self._writes.crash == (side, index)

    async def _die(self) -> Any:
        self.dead = True
        self.crashed.set()
        return await self._frozen()

    async def open(self) -> None:  # the run's store is open already, and outlives this worker
        return None

    async def close(self) -> None:
        return None

    def subscribe(self, **callbacks: Any) -> None:
        return None

    async def claim(self, **options: Any) -> Claims:
        if self.dead:
            return await self._frozen()  # type: ignore[no-any-return]  # it never returns
        claims: Claims = await self._inner.claim(**options)
        if claims:
            index = self._writes.count(f"claim of {_steps(c.step for c in claims)}")
            if self._dies_at("after", index):
                return await self._die()  # type: ignore[no-any-return]  # it never returns
        return claims

    async def complete(self, outcomes: Sequence[Outcome], now: float) -> Any:
        label = f"commit of the outcome of {_steps(o.step for o in outcomes)}"
        return await self._write(label, lambda: self._inner.complete(outcomes, now))

    async def complete_and_claim(
        self, outcomes: Sequence[Outcome], now: float, **options: Any
    ) -> Any:
        label = f"commit of the outcome of {_steps(o.step for o in outcomes)} (and a claim)"
        return await self._write(
            label, lambda: self._inner.complete_and_claim(outcomes, now, **options)
        )

    async def admit_key(self, run_id: str, step: str, token: str, key: str, now: float) -> Any:
        label = f"admission of step {step!r} under key {key!r}"
        return await self._write(
            label, lambda: self._inner.admit_key(run_id, step, token, key, now)
        )

    async def _write(self, label: str, make: Callable[[], Awaitable[Any]]) -> Any:
        if self.dead:
            return await self._frozen()
        index = self._writes.count(label)
        if self._dies_at("before", index):
            return await self._die()
        result = await make()
        if self._dies_at("after", index):
            return await self._die()
        return result


def _steps(names: Any) -> str:
    return ", ".join(repr(n) for n in names)


@dataclass
class _Seen:
    """What one run ended as."""

    status: str
    output: Any
    steps: dict[str, tuple[str, Any]]  # name → (status, output)
    completions: dict[str, int]  # name → step_completed events
    effects: dict[str, list[str]]
    writes: list[str]
    crashed: int  # workers that died


def explore_crashes(
    wf: Workflow,
    input: Any = None,
    *,
    mocks: Mapping[str, Any] | None = None,
    effects: SideEffects | None = None,
    schedules: Sequence[str] | None = None,
    lease: float = DEFAULT_LEASE,
    timeout: float = 60.0,
) -> list[str]:
    """Run `wf` with `input` once without crashes, then once per crash schedule, and check each
    against the first (see the module docstring). `mocks`: as `plait.testing.run`'s.
    `effects`: the SideEffects the workflow's code makes (cleared before each run).
    `schedules`: only these ("before:N", "after:N", "twice:STEP"). `timeout`: real seconds
    for each run. The schedules run; `CrashesFound` (printed too) if any broke the run."""
    if not isinstance(wf, Workflow):
        raise InputError(f"explore_crashes takes a plait.Workflow, got {wf!r}")
    if effects is not None and not isinstance(effects, SideEffects):
        raise InputError(f"effects= takes a plait.testing.SideEffects, got {effects!r}")
    mocks = dict(mocks or {})
    mocked = with_mocks(wf, mocks)
    baseline = _run_once(mocked, input, None, effects, lease, timeout)
    names = [f"after:{i}" for i in range(len(baseline.writes))]
    names += [f"before:{i}" for i, w in enumerate(baseline.writes) if not w.startswith("claim")]
    names.sort(key=lambda n: (int(n.split(":")[1]), n.startswith("after")))
    names += [f"twice:{s.name}" for s in mocked.steps if not s.is_signal]
    if schedules is not None:
        unknown = [s for s in schedules if s not in names]
        if unknown:
            raise InputError(
                f"schedules= names {', '.join(repr(s) for s in unknown)}, which this run does "
                f"not have; it has: {', '.join(names)}"
            )
        names = [n for n in names if n in schedules]
    failures: dict[str, list[str]] = {}
    described: dict[str, str] = {}
    for name in names:
        side, _, what = name.partition(":")
        if side == "twice":
            workflow = with_mocks(wf, {**mocks, what: _twice(mocked[what].fn)})
            seen = _run_once(workflow, input, None, effects, lease, timeout)
            described[name] = f"step {what!r} delivered twice"
        else:
            index = int(what)
            seen = _run_once(mocked, input, (side, index), effects, lease, timeout)
            described[name] = f"worker crashed {side} write {index} ({baseline.writes[index]})"
        problems = _compare(baseline, seen)
        if problems:
            failures[name] = problems
    if failures:
        lines = [
            f"explore_crashes: {len(failures)} of {len(names)} crash schedules broke the run of "
            f"workflow {wf.name!r}:"
        ]
        for name, problems in failures.items():
            lines.append(f"  schedule {name}: {described[name]}")
            lines.extend(f"    {problem}" for problem in problems)
        lines.append(
            f"run one again with explore_crashes(..., schedules=[{next(iter(failures))!r}])"
        )
        message = "\n".join(lines)
        print(message)
        raise CrashesFound(message, failures)
    return names


def _twice(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A handler that calls `fn` twice for each call (the first result is dropped)."""
    if inspect.iscoroutinefunction(fn):

        async def twice_async(**kwargs: Any) -> Any:
            await fn(**kwargs)
            return await fn(**kwargs)

        return twice_async

    def twice(**kwargs: Any) -> Any:
        fn(**kwargs)
        return fn(**kwargs)

    return twice


def _compare(expected: _Seen, seen: _Seen) -> list[str]:
    problems = []
    if (seen.status, seen.output) != (expected.status, expected.output):
        problems.append(
            f"the run ended {seen.status} with output {seen.output!r}; without crashes, "
            f"{expected.status} with {expected.output!r}"
        )
    for name, (status, output) in expected.steps.items():
        got = seen.steps.get(name)
        if got is not None and got != (status, output):
            problems.append(
                f"step {name!r} ended {got[0]} with output {got[1]!r}; without crashes, "
                f"{status} with {output!r}"
            )
        done = seen.completions.get(name, 0)
        if done != expected.completions.get(name, 0):
            problems.append(
                f"step {name!r}'s outcome was recorded {done} time(s); without crashes, "
                f"{expected.completions.get(name, 0)}"
            )
    for kind in sorted({*expected.effects, *seen.effects}):
        made, once = seen.effects.get(kind, []), expected.effects.get(kind, [])
        if len(made) > len(once):
            problems.append(
                f"side effect {kind!r} happened {len(made)} times (keys {', '.join(made)}); "
                f"without crashes, {len(once)}: its key is not the same at each attempt"
            )
    return problems


def _run_once(
    wf: Workflow,
    input: Any,
    crash: tuple[str, int] | None,
    effects: SideEffects | None,
    lease: float,
    timeout: float,
) -> _Seen:
    if effects is not None:
        effects.clear()
    clock = VirtualClock()
    writes = _Writes(crash)
    crashed = 0
    with TestEngine(clock=clock, lease=lease) as home:
        home.start(wf, input, run_id=RUN_ID)
        began = time.monotonic()
        while True:
            worker = TestEngine(clock=clock, lease=lease)
            store = _CrashingStore(home.store, writes, armed=crashed == 0)
            _use_store(worker, store)
            left = max(timeout - (time.monotonic() - began), 0.001)
            future = worker._portal.submit(
                worker.run_worker_async(
                    until=RUN_ID, concurrency=1, workflows=[wf], grace=0.0, timeout=left
                )
            )
            future.add_done_callback(_setter(store.crashed))
            if not store.crashed.wait(left + 5):
                raise TimeoutError(f"explore_crashes: a run did not end within {timeout}s")
            if store.dead:
                crashed += 1
                _abandon(worker, clock)
                clock.advance(seconds=lease + 1)  # its leases expire; the next worker recovers
                continue
            try:
                future.result()
            finally:
                worker.close()
            break
        run = home.get_run(RUN_ID)
        steps = {s.name: (str(s.status), s.output) for s in home.steps(RUN_ID)}
        completions: dict[str, int] = {}
        for event in home.events(RUN_ID):
            if event.type == "step_completed" and event.step is not None:
                completions[event.step] = completions.get(event.step, 0) + 1
    return _Seen(
        str(run.status),
        run.output,
        steps,
        completions,
        effects.made() if effects is not None else {},
        writes.labels,
        crashed,
    )


def _setter(event: threading.Event) -> Callable[[object], None]:
    return lambda _: event.set()


def _use_store(engine: Engine, store: _CrashingStore) -> None:
    """Point a fresh engine (nothing opened yet) at the run's store, through the wrapper."""
    rt = engine._rt
    rt.store = store  # a Store by delegation (its `clock` too: the run's store has it)


def _abandon(engine: TestEngine, clock: VirtualClock) -> None:
    """End a dead worker's engine: its tasks, hanging in store calls, are cancelled until none
    is left (each cancellation may meet another hanging call in a `finally`), then its loop
    stops. Nothing it does reaches the store any more."""
    clock.detach(id(engine))
    for worker in list(engine._rt.workers):
        if isinstance(worker, Worker):
            worker._pool.shutdown()  # its handler threads end once idle
    with contextlib.suppress(Exception):
        engine._portal.call(_cancel_all())
    engine._portal.close()


async def _cancel_all(rounds: int = 100) -> None:
    me = asyncio.current_task()
    for _ in range(rounds):
        tasks = [t for t in asyncio.all_tasks() if t is not me]
        if not tasks:
            return
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks, timeout=0.05)
