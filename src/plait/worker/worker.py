"""The worker: claim ready steps under leases, run them, commit outcomes in groups.

    claim loop ──► step tasks ──► a handler slot (async handlers on the loop, sync ones in a
        ▲                              │ outcomes            thread pool)
        │ claims                       ▼
        └─────────────── committer: one store transaction for every outcome waiting (group
                         commit), which also claims the next steps (`complete_and_claim`)

Two numbers bound a worker. `concurrency` handler slots: how many handlers run at once (sync
ones each on a thread). And the steps it holds, claimed and not yet committed (waiting for a
slot, running, or waiting for their commit): at least `concurrency`, and more while steps are
short, up to `PREFETCH_MAX` (`_HeldLimit`), so that commits take many outcomes and a free slot
finds a step waiting; steps long next to a commit are not hoarded from other workers. A claim
returns the inputs of the steps it took (one transaction), and the committer's transaction
claims for the room its commit makes, so a hand-off to a dependent costs one commit.

Heartbeats renew the leases held; a sweeper makes steps of dead workers claimable again. A stop
(SIGTERM, Ctrl-C, stop()) ends claiming, gives in-flight steps `grace` seconds, then interrupts the
rest and releases their leases so that other workers take them at once.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import os
import secrets
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, replace

from .. import _codec
from .._errors import StoreError
from .._portal import Broadcast, wait_any
from .._runtime import Runtime
from ..core.placement import worker_labels
from ..core.queues import worker_queues
from ..core.rows import Claim, Claims, Lease, Outcome, StepInputs
from ..core.transitions import REVISION_CONFLICT
from ..workflow.context import StepContext
from ..workflow.definition import StepDef, Workflow
from .attempt import TRACEBACK_LIMIT, attempt
from .calls import StepCalls
from .handler_threads import HandlerThreads
from .idle_wait import IdleWait
from .outage import Outage
from .registry import Beat, keep_registered, registration

log = logging.getLogger(__name__)

COMMIT_BATCH = 512
PREFETCH_MAX = 256  # steps a worker holds at most (or its concurrency, if that is more)
COMMIT_LINGER = 0.002  # seconds a commit waits for more outcomes of steps still in flight
CANCEL_WAIT = 1.0  # seconds a stopping worker waits for steps it cancelled after the grace


@dataclass(slots=True)
class _InFlight:
    claim: Claim
    ctx: StepContext
    task: asyncio.Task[None]
    started: bool = False  # it has had a handler slot (a step that never had one is handed
    # back at a stop without counting as a recovery)

    @property
    def lease(self) -> Lease:
        return Lease(self.claim.run_id, self.claim.step, self.claim.token)


class _HeldLimit:
    """How many steps a worker holds (claimed, not yet committed): its `concurrency` handler
    slots, plus as many more as keep those slots busy while the worker commits and claims.
    By Little's law that is concurrency × (commit time / handler time), both measured
    (moving averages): for short steps the most (`PREFETCH_MAX`), so that one commit records
    and claims many; for steps long next to a commit none, leaving ready steps to other
    workers. Before anything is measured, the worker holds its concurrency."""

    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        self.most = max(PREFETCH_MAX, concurrency)
        self.value = concurrency
        self._handler: float | None = None  # seconds a handler takes
        self._commit: float | None = None  # seconds a commit (and its claim) takes

    def handled(self, seconds: float) -> None:
        self._handler = _average(self._handler, seconds)
        self._update()

    def committed(self, seconds: float) -> None:
        self._commit = _average(self._commit, seconds)
        self._update()

    def _update(self) -> None:
        if self._handler is None or self._commit is None:
            return
        extra = self.concurrency * self._commit / max(self._handler, 1e-6)
        self.value = min(self.most, self.concurrency + int(extra))


class _FrozenHeap:
    """While workers run in this process, the objects that existed when the first started (the
    workflows' definitions, the modules: a 100,000-step workflow is about a million objects) are
    left out of the cyclic garbage collector's passes (`gc.freeze`): each full pass walked them
    all, some 160 ms a time, a tenth of such a run's CPU. Reference counting still frees them;
    cycles among them wait until the last worker stops (`gc.unfreeze`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running = 0

    def freeze(self) -> None:
        with self._lock:
            self._running += 1
            if self._running == 1:
                gc.freeze()

    def thaw(self) -> None:
        with self._lock:
            self._running -= 1
            if self._running == 0:
                gc.unfreeze()


_heap = _FrozenHeap()


def _average(old: float | None, new: float) -> float:
    return new if old is None else old + (new - old) / 8


class Worker:
    """One worker of a Runtime's process (see the module docstring). `scheduler`: what rides on
    the registry's timer, given this worker's id (the Engine passes its elected Scheduler)."""

    def __init__(
        self,
        rt: Runtime,
        workflows: Sequence[Workflow],
        *,
        concurrency: int,
        grace: float,
        queues: Iterable[str] | None = None,
        starvation_after: float = 30.0,
        labels: Iterable[str] = (),
        scheduler: Callable[[str], Beat] | None = None,
    ) -> None:
        if not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be an integer >= 1, got {concurrency!r}")
        # flow control (core.claiming): the queues served (None: all), and how long a ready
        # step may wait before it is claimed ahead of higher priorities
        self.queues = None if queues is None else worker_queues(queues)
        self.starvation_after = float(starvation_after)
        self.labels = worker_labels(labels)  # placement (core.placement)
        self.rt = rt
        self.store = rt.store
        self._scheduler = scheduler
        self.id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.concurrency = concurrency
        self._held = _HeldLimit(concurrency)
        self._slots = asyncio.Semaphore(concurrency)  # handler slots
        self._reserved = 0  # room the committer's claim (in flight) may fill
        # the committer's last claim took all there was: (work_ready generation before it, its
        # result), for the claim loop to wait on rather than claim again at once
        # and the generation of `_commits` that commit fired
        self._handed: tuple[int, Claims, int] | None = None
        self._commits = Broadcast()  # fired after every commit of this worker
        # code digests by handler (function, condition, key): `_code_of`
        self._code_cache: dict[tuple[object, object, object], str] = {}
        self.grace = grace
        # by every fingerprint each serves: a workflow's own, and for code_changes="deploy" the
        # pinned one its runs started before migration 12 carry (Workflow.fingerprints)
        # (and the workflows they call, `Workflow.calls`, or that their steps call: `serve`)
        self.workflows: dict[str, Workflow] = {}
        for wf in workflows:
            self.serve(wf)
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
        self._idle: IdleWait | None = None
        self._outage = Outage(self.id)
        self._interrupted: dict[str, str] = {}  # tokens of steps told to stop → why
        self._idling = False  # the claim loop waits for a wake-up or for the time

    # -- control --------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop gracefully (safe to call from the loop; use `stop_threadsafe` from elsewhere)."""
        if not self._stopping.is_set():
            log.info("worker %s stopping: %d step(s) in flight", self.id, len(self._inflight))
            self._stopping.set()
            self._slot_freed.set()  # a claim loop waiting for a free slot must see it now
            self.rt.work_ready.fire()

    def stop_threadsafe(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.stop)

    def busy(self) -> bool:
        """Steps in flight, outcomes to commit, or a claim under way (`Runtime.Stoppable`)."""
        return bool(self._inflight) or not self._outcomes.empty() or not self._idling

    async def run(
        self, *, until: set[str] | None, timeout: float | None, handle_signals: bool
    ) -> None:
        if not self.workflows:
            raise ValueError("the worker has no workflows to serve: register at least one")
        self._until = set(until) if until is not None else None
        known = await self._known_fingerprints()
        loop = self._loop = asyncio.get_running_loop()
        self._pool.loop = loop
        self._pool.on_freed = self._slot_freed.set  # a stuck thread returned: room again
        self.rt.workers.add(self)
        installed = []
        if handle_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)
                installed.append(sig)
        log.info(
            "worker %s serving %s (concurrency %d)",
            self.id,
            ", ".join(f"{w.name}@{w.fingerprint}" for w in self._served()),
            self.concurrency,
        )
        committer = asyncio.create_task(self._commit_loop(), name="plait-committer")
        self._committer = committer
        keeper = asyncio.create_task(self._lease_loop(), name="plait-leases")
        # registration (`plait workers`) and the scheduler, on one timer (worker.registry)
        info = registration(
            self.id,
            self._served(),
            labels=self.labels,
            queues=self.queues,
            concurrency=self.concurrency,
            ttl=self.rt.lease,
            now=self.rt.clock.time(),
            known=known,
        )
        beat = None if self._scheduler is None else self._scheduler(self.id)
        registry = asyncio.create_task(
            keep_registered(self.store, info, self.rt.lease, self._stopping, beat, self.rt.clock),
            name="plait-registry",
        )
        _heap.freeze()
        try:
            await self._refresh_until()
            async with asyncio.timeout(timeout):
                await self._claim_loop()
        except TimeoutError:
            raise TimeoutError(
                f"worker stopped after {timeout}s: awaited runs still unfinished"
            ) from None
        finally:
            try:
                self._stopping.set()
                await self._drain()
                committer.cancel()
                keeper.cancel()
                await asyncio.gather(committer, keeper, registry, return_exceptions=True)
                self._pool.shutdown()
                for sig in installed:
                    loop.remove_signal_handler(sig)
                self.rt.workers.discard(self)
                self.rt.workers_ended.fire()
            finally:
                _heap.thaw()  # whatever stopped the worker (a cancel during the drain, too)
            log.info("worker %s stopped", self.id)

    # -- claiming -------------------------------------------------------------------------------

    def _room(self, committing: int = 0) -> int:
        """How many more steps the worker may claim (once `committing` outcomes are in)."""
        # handler threads stuck past their timeouts beyond those the pool replaces take
        # slots too: a step claimed now would wait for a thread
        overflow = self._pool.overflow
        held = len(self._inflight) - committing + self._reserved + overflow
        # with stuck threads, no step is held beyond the slots (it would wait for a thread)
        return (self.concurrency if overflow else self._held.value) - held

    def _batch(self) -> int:
        """Claim in batches: wait for a quarter of the room the worker may hold."""
        return max(1, self._held.value // 4)

    def serve(self, workflow: Workflow) -> None:
        """Serve `workflow` too (a workflow a step calls, `ctx.call`), and those it calls."""
        if workflow.fingerprint in self.workflows:
            return
        for fp in workflow.fingerprints:
            self.workflows[fp] = workflow
        for called in workflow.calls:
            self.serve(called)

    async def _known_fingerprints(self) -> list[str]:
        """The fingerprints it serves besides its workflows' own (`Workflow.fingerprints`) that
        the store has versions of: it registers those too (`registry.registration`)."""
        try:
            return [
                fp
                for wf in self._served()
                for fp in wf.fingerprints
                if fp != wf.fingerprint and await self.store.get_workflow(wf.name, fp) is not None
            ]
        except StoreError as exc:  # registered without them; it serves them all the same
            log.warning("worker %s: could not read the versions it serves: %s", self.id, exc)
            return []

    def _served(self) -> list[Workflow]:
        """The workflows served, each once."""
        return list({id(wf): wf for wf in self.workflows.values()}.values())

    def _code_of(self, fingerprint: str, step: str, task: str | None) -> str | None:
        """The digest of the code this worker runs a claimed step with (`Workflow.code_of`),
        worked out once per handler (its function, condition and key): not per step, since a
        generated graph has 100,000 steps with one handler, and a cache by step would hold
        them all for as long as the worker serves."""
        wf = self.workflows.get(fingerprint)
        if wf is None:
            return None
        try:
            handler = wf.handler(step, task)
        except KeyError:  # a step this code does not have: its claim fails it, as before
            return None
        key = (handler.fn, handler.when, handler.concurrency_key)
        try:
            return self._code_cache[key]
        except KeyError:
            found = self._code_cache[key] = wf.code_of(step, task)
            return found
        except TypeError:  # an unhashable callable
            return wf.code_of(step, task)

    def _wants(self, claim: Claim) -> Collection[str]:
        """The dependencies whose ends a claimed step's handler reads (the claim loads them):
        read off its definition each time (no cache by step: see `_code_of`)."""
        if claim.reads:  # a spawned step bound by parameter: the outputs it reads
            return [source for _, source in claim.reads]
        return self.workflows[claim.fingerprint].handler(claim.step, claim.task).reads

    async def _claim_loop(self) -> None:
        idle = self._idle = IdleWait(self.rt)  # how to wait when nothing was claimed
        # runs ended by other commits since `until` was last looked at: an awaited run may have
        # ended while the slots were full, before this pass began (a cancel, say)
        ended_seen = self.rt.runs_ended.generation
        while not self._stopping.is_set() and not self._done.is_set():
            fingerprints = list(self.workflows)  # a step's ctx.call may add one (`serve`)
            free = self._room()
            if free <= 0 or (self._inflight and free < self._batch()):
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            seen = self.rt.work_ready.generation
            handed, self._handed = self._handed, None
            if handed is not None and handed[0] == seen and self._inflight:
                # The committer's claim took all there was, and nothing was made ready here
                # since: the next commit (of the steps in flight) claims again. Wait for it, or
                # for a wake-up, without a look at the store.
                wakers = [(self.rt.work_ready, seen), (self._commits, handed[2])]
                if self._until is not None:
                    wakers.append((self.rt.runs_ended, ended_seen))
                await wait_any(wakers, None)
                continue
            try:
                now = self.rt.clock.time()
                if handed is not None and handed[0] == seen:
                    # the committer's claim took all there was, and nothing was made ready
                    # here since: claiming again now would find nothing
                    claims = handed[1]
                else:
                    claims = await self.store.claim(
                        worker_id=self.id,
                        fingerprints=fingerprints,
                        limit=free,
                        lease=self.rt.lease,
                        now=now,
                        queues=self.queues,
                        aged_before=now - self.starvation_after,
                        labels=self.labels,
                        inputs=self._wants,
                        code=self._code_of,
                    )
                if claims:
                    self._took(claims, now)
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
            woken = True
            if self._until is None or self.rt.runs_ended.generation == ended_seen:
                wakers = [(self.rt.work_ready, seen)]
                if self._until is not None:
                    wakers.append((self.rt.runs_ended, ended_seen))
                self._idling = True
                try:
                    woken = await idle.wait(wakers, limited=claims.limited, next_at=next_at)
                finally:
                    self._idling = False
            ended_elsewhere = self.rt.runs_ended.generation != ended_seen
            if ended_elsewhere or (not woken and time.monotonic() >= self._next_refresh):
                ended_seen = self.rt.runs_ended.generation
                # awaited runs may have been finished by other processes: look now and then
                self._next_refresh = time.monotonic() + self.rt.idle_interval
                try:
                    await self._refresh_until()
                except StoreError as exc:
                    await self._outage.failed("reading awaited runs", exc, self._stopping)

    def _took(self, claims: Claims, now: float) -> None:
        if self.rt.observer is not None:
            self.rt.observer.claimed(self, claims, now)
        if self._idle is not None:
            self._idle.took_work()
        self.rt.events_written.fire()  # step_started: watchers here see it now

    async def _launch(self, claims: Claims) -> None:
        inputs = claims.inputs
        while inputs is None:  # a store that did not read them with the claim
            wanted: dict[str, set[str]] = {}
            for c in claims:
                wanted.setdefault(c.run_id, set()).update(self._wants(c))
            try:
                inputs = await self.store.step_inputs(wanted)
            except StoreError as exc:
                # the claims are ours until their leases expire; if we stop first, they are
                # recovered by another worker, their attempt not counted
                await self._outage.failed("reading step inputs", exc, self._stopping)
                if self._stopping.is_set():
                    return
        running = asyncio.get_running_loop()
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
                artifacts=self.rt.artifacts,
                worker_id=self.id,
                labels=self.labels,
                lease_expires_at=c.lease_expires_at,
            )
            ctx._caller = StepCalls(self.rt, c.run_id, c.step, running, self.serve)
            step = wf.handler(c.step, c.task)
            task = asyncio.create_task(self._execute(wf, step, c, ctx, inputs.get(c.run_id)))
            self._inflight[c.token] = _InFlight(c, ctx, task)

    # -- executing ------------------------------------------------------------------------------

    async def _execute(
        self, wf: Workflow, step: StepDef, claim: Claim, ctx: StepContext, inputs: StepInputs | None
    ) -> None:
        try:
            async with self._slots:  # a handler slot
                item = self._inflight.get(claim.token)
                if item is not None:
                    item.started = True
                began = time.monotonic()
                outcome = await attempt(
                    wf, step, claim, ctx, inputs,
                    threads=self._pool, admit_key=self._admit_key, error_limit=self.rt.error_limit,
                    clock=self.rt.clock, blob_threshold=self.store.blob_threshold,
                )  # fmt: skip
                self._held.handled(time.monotonic() - began)
        except asyncio.CancelledError:
            if claim.token not in self._interrupted:
                return  # the worker is stopping: _drain releases the lease
            outcome = Outcome(
                claim.run_id,
                claim.step,
                claim.token,
                error_code="cancelled",
                error_message=f"step {claim.step!r} was interrupted: "
                f"{self._interrupted[claim.token]}",
            )
        except (KeyboardInterrupt, SystemExit):
            raise  # not the handler's (attempt keeps those): the process is going down
        except BaseException as exc:
            # attempt turns whatever the handler raises into an outcome; this is plait failing
            # around it. The step fails rather than holding its slot (and lease) forever.
            log.exception("step %r (run %r) could not be run", claim.step, claim.run_id)
            outcome = Outcome(
                claim.run_id,
                claim.step,
                claim.token,
                error_code=type(exc).__name__,
                error_message=_codec.cap_message(
                    f"plait could not run step {claim.step!r}: {type(exc).__name__}: {exc}",
                    self.rt.error_limit,
                ),
                traceback="".join(traceback.format_exception(exc))[-TRACEBACK_LIMIT:],
            )
        if outcome is not None:  # None: handed back when its concurrency key was admitted
            self._outcomes.put_nowait(outcome)

    async def _admit_key(self, claim: Claim, key: str) -> bool:
        """Have the store admit a claimed step under the key resolved for it (`attempt`): True
        to run it; False if it was handed back or is no longer ours (its slot is then free)."""
        while True:
            try:
                result = await self.store.admit_key(
                    claim.run_id, claim.step, claim.token, key, self.rt.clock.time()
                )
                break
            except StoreError as exc:
                await self._outage.failed("admitting a concurrency key", exc, self._stopping)
                if self._stopping.is_set():
                    return False  # still in flight: the stopping worker hands it back
        self._outage.recovered()
        self.rt.committed(result)
        if result.accepted == [True]:
            return True
        self._inflight.pop(claim.token, None)  # handed back, or no longer ours
        self._slot_freed.set()
        return False

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
        claims: Claims | None = None
        while True:
            began, now = time.monotonic(), self.rt.clock.time()
            # the room this commit makes (and any left) is claimed in its transaction
            room = self._room(committing=len(batch))
            claiming = (
                room >= self._batch() and not self._stopping.is_set() and not self._done.is_set()
            )
            try:
                if claiming:
                    self._reserved += room
                    seen = self.rt.work_ready.generation
                    try:
                        result, claims = await self.store.complete_and_claim(
                            batch,
                            now,
                            worker_id=self.id,
                            fingerprints=list(self.workflows),
                            limit=room,
                            lease=self.rt.lease,
                            queues=self.queues,
                            aged_before=now - self.starvation_after,
                            labels=self.labels,
                            inputs=self._wants,
                            code=self._code_of,
                        )
                    finally:
                        self._reserved -= room
                    # it took all there was: no claim at once (but a retry later: the claim
                    # loop reads when it is due)
                    if len(claims) < room and all(o.retry_at is None for o in batch):
                        limits = Claims(limited=claims.limited, next_token_at=claims.next_token_at)
                        self._handed = (seen, limits, self._commits.generation + 1)
                else:
                    result = await self.store.complete(batch, now)
                self._outage.recovered()
                self._held.committed(time.monotonic() - began)
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
        if self.rt.observer is not None:
            reported = batch
            if result.conflicted:  # successes the store failed: a record's revision moved
                failed = set(result.conflicted)
                reported = [
                    replace(o, error_code=REVISION_CONFLICT) if o.token in failed else o
                    for o in batch
                ]
            self.rt.observer.committed(self, reported, result.accepted, self.rt.clock.time())
        for outcome in batch:
            self._inflight.pop(outcome.token, None)
            self._interrupted.pop(outcome.token, None)
        if claims and self._stopping.is_set():  # claimed as the worker began to stop
            await self._release([Lease(c.run_id, c.step, c.token) for c in claims], None)
        elif claims:
            self._took(claims, now)
            await self._launch(claims)  # their inputs came with them
        self._slot_freed.set()
        self._commits.fire()
        self.rt.committed(result)
        if self._until is not None and result.ended_runs:
            self._until.difference_update(result.ended_runs)
            if not self._until:
                self._done.set()
                self.rt.work_ready.fire()

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
        beat = max(self.rt.lease / 3, 0.05)
        clock = self.rt.clock
        # the first beat is at once: steps whose leases expired while no worker ran (their
        # worker died) are recovered as a worker starts, not a beat later
        next_beat = clock.monotonic()
        next_timer: float | None = clock.time()  # the store's next expiry or deadline: look now
        while True:
            rt = self.rt
            seen, seen_timers = rt.runs_cancelled.generation, rt.timers_set.generation
            until_beat = max(next_beat - clock.monotonic(), 0.0)
            until_timer = None if next_timer is None else max(next_timer - clock.time(), 0.0)
            # a cancelled run's running steps must stop at once; a new timer may come sooner
            await clock.wait_any(
                [(rt.runs_cancelled, seen), (rt.timers_set, seen_timers)],
                until_timer,
                upkeep=until_beat,
            )
            cancelled = rt.runs_cancelled.generation != seen
            beat_due = clock.monotonic() >= next_beat
            if beat_due:
                next_beat = clock.monotonic() + beat
            now = clock.time()
            timers_due = (
                beat_due
                or rt.timers_set.generation != seen_timers
                or (next_timer is not None and next_timer <= now)
            )
            try:
                if timers_due:
                    next_timer = None  # should firing fail, look again at the next beat
                    upcoming = await self.store.next_timer_at()  # a read: no write lock
                    if upcoming is not None and upcoming <= now:
                        fired = await self.store.fire_timers(now, 1000)
                        rt.committed(fired)
                        cancelled = cancelled or bool(fired.cancelled_runs)
                        upcoming = await self.store.next_timer_at()
                    # one that could not be acted on now is looked at again at the next beat
                    next_timer = upcoming if upcoming is None or upcoming > now else None
                leases = [f.lease for f in self._inflight.values()]
                if leases and (beat_due or cancelled):
                    lost = await self.store.heartbeat(leases, rt.lease, now)
                    held = {lease.token for lease in leases} - {lease.token for lease in lost}
                    for token in held:
                        if (item := self._inflight.get(token)) is not None:
                            item.ctx._renewed(now + rt.lease)
                    if lost:  # rare: one read says why, for the step's record and the log
                        ended = {r.id for r in await self.store.get_runs({x.run_id for x in lost})
                                 if r.status.terminal}  # fmt: skip
                        for lease in lost:
                            self._interrupt(lease, ended=lease.run_id in ended)
                if beat_due:
                    recovered = await self.store.recover_expired(now, rt.max_recoveries, 1000)
                    rt.committed(recovered)
                    if rt.observer is not None and recovered.expired:
                        rt.observer.expired(self, recovered.expired)
            except StoreError as exc:  # the claim loop says it once, and when it is back
                log.debug("worker %s: lease upkeep failed, will retry: %s", self.id, exc)
            except Exception:
                log.exception("worker %s: lease upkeep failed; will retry", self.id)

    def _interrupt(self, lost: Lease, *, ended: bool) -> None:
        """A held step must stop: its run ended (cancelled, or past its deadline), or its lease
        was lost (it expired: another worker may run the step). An async handler is cancelled;
        a sync one sees `ctx.cancelled`. What it reports is fenced or recorded by the store,
        and schedules nothing."""
        item = self._inflight.get(lost.token)
        if item is None or lost.token in self._interrupted:
            return
        why = (
            "its run ended (cancelled, or past its deadline)"
            if ended
            else "its lease was lost (it expired before this worker renewed it)"
        )
        log.warning("step %r (run %r) must stop: %s", lost.step, lost.run_id, why)
        self._interrupted[lost.token] = why
        item.ctx._request_cancel()
        if (
            not item.started
            or self.workflows[item.claim.fingerprint]
            .handler(item.claim.step, item.claim.task)
            .is_async
        ):
            item.task.cancel()  # a thread cannot be stopped: a sync handler polls ctx.cancelled

    async def _drain(self) -> None:
        """Let in-flight steps finish within the grace period; release the rest (those that
        never had a handler slot at once, without counting it as a recovery)."""
        await asyncio.sleep(0)  # steps launched just now with a slot free take it: they start
        unstarted = [f for f in self._inflight.values() if not f.started]
        for f in unstarted:
            f.task.cancel()
        if unstarted:
            await asyncio.wait([f.task for f in unstarted])
            await self._release([f.lease for f in unstarted if not f.started], None)
        tasks = [f.task for f in self._inflight.values()]
        if tasks:
            await asyncio.wait(tasks, timeout=self.grace)
        leftovers = [f for f in self._inflight.values() if not f.task.done()]
        for f in leftovers:
            f.ctx._request_cancel()
            f.task.cancel()
        if leftovers:
            # a handler may catch its cancellation and go on: it is not waited for past a moment
            _, deaf = await asyncio.wait([f.task for f in leftovers], timeout=CANCEL_WAIT)
            for f in leftovers:
                if f.task in deaf:
                    log.warning(
                        "step %r (run %r) did not stop when cancelled: released all the same",
                        f.claim.step,
                        f.claim.run_id,
                    )
        # The committer records what finished (a commit in progress is never cancelled, which
        # would lose an outcome), then stops; what did not finish is handed back.
        self._outcomes.put_nowait(None)
        if self._committer is not None:
            await asyncio.gather(self._committer, return_exceptions=True)
        await self._release([f.lease for f in self._inflight.values()], self.rt.max_recoveries)

    async def _release(self, leases: list[Lease], max_recoveries: int | None) -> None:
        """Hand steps back to other workers (None: they never started, nothing is counted)."""
        if not leases:
            return
        try:
            await self.store.release(leases, self.rt.clock.time(), max_recoveries)
            log.info("worker %s released %d unfinished step(s)", self.id, len(leases))
        except Exception:
            log.exception("worker %s could not release its leases; they will expire", self.id)
        for lease in leases:
            self._inflight.pop(lease.token, None)
        self.rt.work_ready.fire()
