"""The worker: claim ready steps under leases, run them, commit outcomes in groups.

    claim loop ──► step tasks (async handlers on the loop, sync ones in a thread pool)
                         │ outcomes
                         ▼
                  committer: one store transaction for every outcome waiting (group commit)

Heartbeats renew the leases held; a sweeper makes steps of dead workers claimable again. A stop
(SIGTERM, Ctrl-C, stop()) ends claiming, gives in-flight steps `grace` seconds, then interrupts the
rest and releases their leases so that other workers take them at once.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import secrets
import signal
import socket
import threading
import time
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from .. import _codec
from .._errors import StepFailure, StoreError
from .._portal import wait_any
from ..core.key_admission import admit_key
from ..core.loops import INVALID_GOTO, Goto
from ..core.placement import worker_labels
from ..core.queues import worker_queues
from ..core.rows import Claim, Lease, Outcome, StepInputs, StepStatus
from ..workflow.context import StepCancelled, StepContext
from ..workflow.definition import StepDef, Workflow
from ..workflow.tasks import task_kwargs
from .handler_threads import HandlerThreads
from .idle_wait import IdleWait
from .outage import Outage
from .registry import keep_registered

if TYPE_CHECKING:
    from ..engine.engine import Engine, RunHandle

log = logging.getLogger(__name__)

COMMIT_BATCH = 512
COMMIT_LINGER = 0.002  # seconds a commit waits for more outcomes of steps still in flight
TRACEBACK_LIMIT = 32 * 1024


@dataclass(slots=True)
class _InFlight:
    claim: Claim
    ctx: StepContext
    task: asyncio.Task[None]

    @property
    def lease(self) -> Lease:
        return Lease(self.claim.run_id, self.claim.step, self.claim.token)


class Worker:
    def __init__(
        self,
        engine: Engine,
        workflows: Sequence[Workflow],
        *,
        concurrency: int,
        grace: float,
        queues: Iterable[str] | None = None,
        starvation_after: float = 30.0,
        labels: Iterable[str] = (),
    ) -> None:
        if not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be an integer >= 1, got {concurrency!r}")
        # flow control (see _queues.py): the queues served (None: all), and how long a ready
        # step may wait before it is claimed ahead of higher priorities
        self.queues = None if queues is None else worker_queues(queues)
        self.starvation_after = float(starvation_after)
        self.labels = worker_labels(labels)  # placement (see _placement.py)
        self.engine = engine
        self.store = engine.store
        self.id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.concurrency = concurrency
        self._claim_threshold = max(1, concurrency // 2)
        self.grace = grace
        self.workflows = {wf.fingerprint: wf for wf in workflows}
        self._inflight: dict[str, _InFlight] = {}  # token → step in flight
        # outcomes to commit; None (from _drain) tells the committer to stop once it has
        # committed everything queued before it
        self._outcomes: asyncio.Queue[Outcome | None] = asyncio.Queue()
        self._committer: asyncio.Task[None] | None = None
        self._slot_freed = asyncio.Event()
        self._stopping = asyncio.Event()
        self._pool = HandlerThreads(concurrency)
        self._until: set[str] | None = None
        self._done = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._next_refresh = 0.0
        self._outage = Outage(self.id)
        self._interrupted: set[str] = (
            set()
        )  # tokens of steps told to stop (run cancelled, lease lost)

    # -- control --------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop gracefully (safe to call from the loop; use `stop_threadsafe` from elsewhere)."""
        if not self._stopping.is_set():
            log.info("worker %s stopping: %d step(s) in flight", self.id, len(self._inflight))
            self._stopping.set()
            self.engine.work_ready.fire()

    def stop_threadsafe(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.stop)

    async def run(
        self, *, until: set[str] | None, timeout: float | None, handle_signals: bool
    ) -> None:
        if not self.workflows:
            raise ValueError("the worker has no workflows to serve: register at least one")
        self._until = set(until) if until is not None else None
        loop = self._loop = asyncio.get_running_loop()
        self._pool.loop = loop
        self.engine._workers.add(self)
        installed = []
        if handle_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)
                installed.append(sig)
        log.info(
            "worker %s serving %s (concurrency %d)",
            self.id,
            ", ".join(f"{w.name}@{fp}" for fp, w in self.workflows.items()),
            self.concurrency,
        )
        committer = asyncio.create_task(self._commit_loop(), name="plait-committer")
        self._committer = committer
        keeper = asyncio.create_task(self._lease_loop(), name="plait-leases")
        # registration (`plait workers`) and the scheduler, on one timer (see _registry.py)
        registry = asyncio.create_task(keep_registered(self, self._stopping), name="plait-registry")
        try:
            await self._refresh_until()
            async with asyncio.timeout(timeout):
                await self._claim_loop()
        except TimeoutError:
            raise TimeoutError(
                f"worker stopped after {timeout}s: awaited runs still unfinished"
            ) from None
        finally:
            self._stopping.set()
            await self._drain()
            committer.cancel()
            keeper.cancel()
            await asyncio.gather(committer, keeper, registry, return_exceptions=True)
            self._pool.shutdown()
            for sig in installed:
                loop.remove_signal_handler(sig)
            self.engine._workers.discard(self)
            self.engine.workers_ended.fire()
            log.info("worker %s stopped", self.id)

    # -- claiming -------------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        fingerprints = list(self.workflows)
        idle = IdleWait(self.engine)  # how to wait when nothing was claimed: _idle_wait.py
        while not self._stopping.is_set() and not self._done.is_set():
            free = self.concurrency - len(self._inflight)
            # Claim in batches: wait for half the slots unless little is in flight.
            if free <= 0 or (self._inflight and free < self._claim_threshold):
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            seen = self.engine.work_ready.generation
            seen_ended = self.engine.runs_ended.generation
            try:
                now = time.time()
                claims = await self.store.claim(
                    worker_id=self.id,
                    fingerprints=fingerprints,
                    limit=free,
                    lease=self.engine.lease,
                    now=now,
                    queues=self.queues,
                    aged_before=now - self.starvation_after,
                    labels=self.labels,
                )
                if claims:
                    idle.took_work()
                    self.engine.events_written.fire()  # step_started: watchers here see it now
                    await self._launch(claims)
                    continue
                # the next delayed step, or the next token of a rate limit that held work back
                next_at = await self.store.next_ready_at(fingerprints, after=now)
                if claims.next_token_at is not None:
                    next_at = min(next_at or math.inf, claims.next_token_at)
            except StoreError as exc:
                await self._outage.failed("claiming", exc, self._stopping)
                continue
            self._outage.recovered()
            # Nothing to do: wait for a wake-up, the next delayed step or token, or a look at
            # the store; with `until`, runs ending elsewhere wake us too (the awaited may be)
            wakers = [(self.engine.work_ready, seen)]
            if self._until is not None:
                wakers.append((self.engine.runs_ended, seen_ended))
            woken = await idle.wait(wakers, limited=claims.limited, next_at=next_at)
            ended_elsewhere = self.engine.runs_ended.generation != seen_ended
            if ended_elsewhere or (not woken and time.monotonic() >= self._next_refresh):
                # awaited runs may have been finished by other processes: look now and then
                self._next_refresh = time.monotonic() + self.engine.idle_interval
                try:
                    await self._refresh_until()
                except StoreError as exc:
                    await self._outage.failed("reading awaited runs", exc, self._stopping)

    async def _launch(self, claims: list[Claim]) -> None:
        wanted: dict[str, set[str]] = {}
        for c in claims:
            step = self.workflows[c.fingerprint].handler(c.step, c.task)
            wanted.setdefault(c.run_id, set()).update(step.data_deps)
        while True:
            try:
                inputs = await self.store.step_inputs(wanted)
                break
            except StoreError as exc:
                # the claims are ours until their leases expire; if we stop first, they are
                # recovered by another worker, their attempt not counted
                await self._outage.failed("reading step inputs", exc, self._stopping)
                if self._stopping.is_set():
                    return
        for c in claims:
            wf = self.workflows[c.fingerprint]
            ctx = StepContext(
                run_id=c.run_id,
                step=c.step,
                workflow=wf.name,
                attempt=c.attempt,
                run_input={},
                iteration=c.iteration,
                definition=wf,
                artifacts=self.engine.artifact_storage,
            )
            step = wf.handler(c.step, c.task)
            task = asyncio.create_task(self._execute(wf, step, c, ctx, inputs.get(c.run_id)))
            self._inflight[c.token] = _InFlight(c, ctx, task)

    # -- executing ------------------------------------------------------------------------------

    async def _execute(
        self, wf: Workflow, step: StepDef, claim: Claim, ctx: StepContext, inputs: StepInputs | None
    ) -> None:
        try:
            outcome = await self._attempt(wf, step, claim, ctx, inputs)
        except asyncio.CancelledError:
            if claim.token not in self._interrupted:
                return  # the worker is stopping: _drain releases the lease
            outcome = Outcome(
                claim.run_id,
                claim.step,
                claim.token,
                error_code="cancelled",
                error_message=f"step {claim.step!r} was interrupted: its run was cancelled "
                "or its lease lost",
            )
        if outcome is not None:  # None: handed back when its concurrency key was admitted
            self._outcomes.put_nowait(outcome)

    async def _attempt(
        self, wf: Workflow, step: StepDef, claim: Claim, ctx: StepContext, inputs: StepInputs | None
    ) -> Outcome | None:
        def failure(
            code: str, message: str, retryable: bool | None, tb: str | None = None
        ) -> Outcome:
            delay = wf.retry_for(step).next_try(claim.attempt, retryable)
            return Outcome(
                claim.run_id,
                claim.step,
                claim.token,
                error_code=code,
                error_message=_codec.cap_message(message),
                traceback=tb[-TRACEBACK_LIMIT:] if tb else None,
                retry_at=None if delay is None else time.time() + delay,
            )

        if inputs is None:
            return failure("run_missing", "the run's input could not be loaded", False)
        try:
            run_input = _codec.loads(inputs.run_input)
            ctx.input = run_input
            outputs: dict[str, Any] = {}
            for dep, (status, output) in inputs.dependencies.items():
                outputs[dep] = (
                    _codec.loads(output) if status is StepStatus.DONE else step.defaults.get(dep)
                )
            if step.is_task:
                kwargs = task_kwargs(step, ctx, claim.input)
            else:
                kwargs = step.build_kwargs(ctx, run_input, outputs)
        except ValidationError as exc:
            return failure("invalid_input", f"step {claim.step!r}: {exc}", False)
        try:
            if not step.condition_holds(run_input, outputs):
                return Outcome(claim.run_id, claim.step, claim.token, skipped=True)
        except Exception as exc:
            return failure(
                "condition_error",
                f"step {claim.step!r}: its when= condition raised {type(exc).__name__}: {exc}",
                False,
                traceback.format_exc(),
            )
        if claim.key_pending and (no := await admit_key(self, wf, step, claim, run_input, outputs)):
            return no.outcome  # its key read from outputs failed, or is full: _key_admission.py
        timeout = wf.timeout_for(step)
        try:
            async with asyncio.timeout(timeout):
                if step.is_async:
                    result = await step.fn(**kwargs)
                else:
                    ok, result = await self._pool.run(step.fn, kwargs)
                    if not ok:
                        raise result
        except TimeoutError:
            ctx._request_cancel()  # a sync handler keeps its thread; it should poll ctx.cancelled
            return failure(
                "timeout", f"step {claim.step!r} exceeded its timeout of {timeout}s", None
            )
        except asyncio.CancelledError:
            ctx._request_cancel()
            raise
        except StepCancelled as exc:
            return failure("cancelled", str(exc), False)
        except StepFailure as exc:
            return failure(exc.code, str(exc) or exc.code, exc.retryable, traceback.format_exc())
        except (
            KeyboardInterrupt,
            SystemExit,
        ) as exc:  # from a handler: fail the step, keep serving
            return failure(
                type(exc).__name__,
                f"handler raised {type(exc).__name__}",
                False,
                traceback.format_exc(),
            )
        except Exception as exc:
            return failure(type(exc).__name__, str(exc) or repr(exc), None, traceback.format_exc())
        spawner = ctx._spawner
        if isinstance(result, Goto):  # loop back: the store checks the target and the count
            if spawner is not None and spawner.spawned:
                message = (
                    f"step {claim.step!r} spawned steps and returned a Goto: do one or the other"
                )
                return failure(INVALID_GOTO, message, False)
            return Outcome(
                claim.run_id,
                claim.step,
                claim.token,
                goto=result.step,
                max_iterations=result.max_iterations,
                data=ctx._data(),
            )
        try:
            gather = None if spawner is None else spawner.gather(result)
            output = None if gather is not None else _codec.dumps(result)
        except StepFailure as exc:
            return failure(exc.code, str(exc), False)
        except _codec.EncodeError as exc:
            return failure(
                "unserializable_output",
                f"step {claim.step!r} returned a value that is not JSON: {exc}",
                False,
            )
        spawned = () if spawner is None else tuple(spawner.spawned)
        return Outcome(
            claim.run_id, claim.step, claim.token, output=output, spawned=spawned, gather=gather,
            data=ctx._data(),
        )  # fmt: skip

    # -- committing -----------------------------------------------------------------------------

    async def _commit_loop(self) -> None:
        stopping = False
        while not stopping:
            first = await self._outcomes.get()
            if first is None:
                return
            batch = [first]
            # Group commit: linger a moment for the other steps in flight, so that one
            # transaction (one fsync) records many outcomes.
            deadline = time.monotonic() + COMMIT_LINGER
            while len(batch) < min(COMMIT_BATCH, len(self._inflight)):
                if self._outcomes.empty():
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    try:
                        async with asyncio.timeout(left):
                            item = await self._outcomes.get()
                    except TimeoutError:
                        break
                else:
                    item = self._outcomes.get_nowait()
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            await self._commit(batch)

    async def _commit(self, batch: list[Outcome]) -> None:
        while True:
            try:
                result = await self.store.complete(batch, time.time())
                self._outage.recovered()
                break
            except StoreError as exc:
                # Unreachable, or the transaction failed: retrying is safe, as outcomes are
                # fenced by their lease (recorded once even if a lost reply hid a commit).
                await self._outage.failed(f"committing {len(batch)} outcome(s)", exc, None)
        for outcome, accepted in zip(batch, result.accepted, strict=False):
            if not accepted:
                log.warning(
                    "outcome of step %r (run %r) was fenced off: its lease was lost",
                    outcome.step,
                    outcome.run_id,
                )
        for outcome in batch:
            self._inflight.pop(outcome.token, None)
            self._interrupted.discard(outcome.token)
        self._slot_freed.set()
        self.engine._committed(result)
        if self._until is not None and result.ended_runs:
            self._until.difference_update(result.ended_runs)
            if not self._until:
                self._done.set()
                self.engine.work_ready.fire()

    async def _refresh_until(self) -> None:
        """Drop the awaited runs that have ended (here or in other processes): one read."""
        if self._until is None:
            return
        awaited = list(self._until)
        for start in range(0, len(awaited), 1000):
            batch = awaited[start : start + 1000]
            unfinished = {
                row.id for row in await self.store.get_runs(batch) if not row.status.terminal
            }
            self._until.difference_update(r for r in batch if r not in unfinished)
        if not self._until:
            self._done.set()

    # -- leases ---------------------------------------------------------------------------------

    async def _lease_loop(self) -> None:
        """Heartbeat held leases every lease/3, recover expired ones, and act on the clock
        (approvals expiring, run deadlines) when the next of those is due."""
        beat = max(self.engine.lease / 3, 0.05)
        next_beat = time.monotonic() + beat
        next_timer: float | None = time.time()  # the store's next expiry or deadline: look now
        while True:
            engine = self.engine
            seen, seen_timers = engine.runs_cancelled.generation, engine.timers_set.generation
            wait = max(next_beat - time.monotonic(), 0.0)
            if next_timer is not None:
                wait = min(wait, max(next_timer - time.time(), 0.0))
            # a cancelled run's running steps must stop at once; a new timer may come sooner
            await wait_any([(engine.runs_cancelled, seen), (engine.timers_set, seen_timers)], wait)
            cancelled = engine.runs_cancelled.generation != seen
            beat_due = time.monotonic() >= next_beat
            if beat_due:
                next_beat = time.monotonic() + beat
            now = time.time()
            timers_due = (
                beat_due
                or engine.timers_set.generation != seen_timers
                or (next_timer is not None and next_timer <= now)
            )
            try:
                if timers_due:
                    next_timer = None  # should firing fail, look again at the next beat
                    upcoming = await self.store.next_timer_at()  # a read: no write lock
                    if upcoming is not None and upcoming <= now:
                        fired = await self.store.fire_timers(now, 1000)
                        engine._committed(fired)
                        cancelled = cancelled or bool(fired.cancelled_runs)
                        upcoming = await self.store.next_timer_at()
                    # one that could not be acted on now is looked at again at the next beat
                    next_timer = upcoming if upcoming is None or upcoming > now else None
                leases = [f.lease for f in self._inflight.values()]
                if leases and (beat_due or cancelled):
                    for lost in await self.store.heartbeat(leases, engine.lease, now):
                        self._interrupt(lost)
                if beat_due:
                    recovered = await self.store.recover_expired(now, engine.max_recoveries, 1000)
                    engine._committed(recovered)
            except StoreError as exc:  # the claim loop says it once, and when it is back
                log.debug("worker %s: lease upkeep failed, will retry: %s", self.id, exc)
            except Exception:
                log.exception("worker %s: lease upkeep failed; will retry", self.id)

    def _interrupt(self, lost: Lease) -> None:
        """A held step must stop: its run was cancelled or its lease lost. An async handler is
        cancelled; a sync one sees `ctx.cancelled`. What it reports is fenced or recorded
        by the store, and schedules nothing."""
        item = self._inflight.get(lost.token)
        if item is None or lost.token in self._interrupted:
            return
        log.warning(
            "step %r (run %r) must stop: its run was cancelled or its lease lost",
            lost.step,
            lost.run_id,
        )
        self._interrupted.add(lost.token)
        item.ctx._request_cancel()
        if (
            self.workflows[item.claim.fingerprint]
            .handler(item.claim.step, item.claim.task)
            .is_async
        ):
            item.task.cancel()  # a thread cannot be stopped: a sync handler polls ctx.cancelled

    async def _drain(self) -> None:
        """Let in-flight steps finish within the grace period; release the rest."""
        tasks = [f.task for f in self._inflight.values()]
        if tasks:
            await asyncio.wait(tasks, timeout=self.grace)
        leftovers = [f for f in self._inflight.values() if not f.task.done()]
        for f in leftovers:
            f.ctx._request_cancel()
            f.task.cancel()
        if leftovers:
            await asyncio.gather(*(f.task for f in leftovers), return_exceptions=True)
        # The committer records what finished (a commit in progress is never cancelled, which
        # would lose an outcome), then stops; what did not finish is handed back.
        self._outcomes.put_nowait(None)
        if self._committer is not None:
            await asyncio.gather(self._committer, return_exceptions=True)
        unfinished = [f.lease for f in self._inflight.values()]
        if unfinished:
            try:
                await self.store.release(unfinished, time.time())
                log.info("worker %s released %d unfinished step(s)", self.id, len(unfinished))
            except Exception:
                log.exception("worker %s could not release its leases; they will expire", self.id)
            self._inflight.clear()
            self.engine.work_ready.fire()


def run_blocking(
    engine: Engine,
    *,
    concurrency: int,
    until: RunHandle | str | Iterable[RunHandle | str] | None,
    timeout: float | None,
    workflows: Sequence[Workflow] | None,
    grace: float,
    **flow: Any,
) -> None:
    """Run a worker on the engine's portal loop; SIGTERM / Ctrl-C in the main thread stop it."""
    from ..engine.engine import _run_ids

    for wf in workflows or ():
        engine.register(wf)
    engine._portal.call(engine._ready())
    worker = Worker(
        engine,
        list(workflows) if workflows else engine.registered(),
        concurrency=concurrency,
        grace=grace,
        **flow,
    )
    future = engine._portal.submit(
        worker.run(until=_run_ids(until), timeout=timeout, handle_signals=False)
    )
    in_main = threading.current_thread() is threading.main_thread()
    previous = None
    if in_main:
        previous = signal.signal(signal.SIGTERM, lambda *_: engine._portal.call_soon(worker.stop))
    try:
        while True:
            try:
                future.result()
                return
            except KeyboardInterrupt:
                engine._portal.call_soon(worker.stop)  # graceful; a second Ctrl-C waits again
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
