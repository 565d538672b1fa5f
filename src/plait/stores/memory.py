"""An in-memory store: for tests and experiments. Same rules as the durable stores, no durability.

Each transaction works on copies of the rows it loads and writes them back only when it ends
without error, so a failing transition leaves nothing half-applied, as in a database.
"""

from __future__ import annotations

import dataclasses
import secrets
import threading
from collections.abc import Callable, Collection, Coroutine, Mapping, Sequence
from typing import Any, TypeVar

from .._clock import REAL, Clock
from .._errors import RunConflict
from .._portal import run_to_end
from ..core.blobs import BlobStats, check_hash, check_put, missing
from ..core.claiming import (
    admit_candidates,
    blocked,
    charge,
    claim_time,
    dispatchable,
    flow_candidate,
    frees_room,
    order,
    token_wait,
    unclaimed_ready,
)
from ..core.durability import Durability, in_memory
from ..core.gates import expire_approval, pass_deadline
from ..core.identity import matches
from ..core.placement import may_run
from ..core.queues import QueueConfig, queue_of, reconfigure
from ..core.rate import Rate
from ..core.rows import (
    TOMBSTONE,
    ArtifactRow,
    Claims,
    CodeOf,
    CommitResult,
    EventRow,
    Lease,
    Outcome,
    RecordRow,
    RunRow,
    RunStatus,
    StepInputs,
    StepRow,
    StepStatus,
    WorkflowPlan,
    excerpt_of,
)
from ..core.transitions import admit_key, claim, complete, recover, release
from ..core.txn import Action, Need, Transition, Txn, drive
from .memory_blobs import MemoryBlobs, threshold_of_url
from .protocol import InputsWanted, NewRun

T = TypeVar("T")


def _matches(
    r: RunRow,
    workflow: str | None,
    status: RunStatus | None,
    created_from: float | None,
    created_to: float | None,
    text: str | None,
    labels: Mapping[str, str] | None = None,
) -> bool:
    return (
        (workflow is None or r.workflow == workflow)
        and (status is None or r.status == status)
        and (created_from is None or r.created_at >= created_from)
        and (created_to is None or r.created_at < created_to)
        and (
            not text
            or text.lower() in r.id.lower()
            or text.lower() in (r.name or "").lower()
            or text.lower() in (r.error or "").lower()
        )
        and matches(r.labels, labels)
    )


class MemoryStore:
    capabilities: frozenset[str] = frozenset({"direct"})
    clock: Clock = REAL

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self.blob_threshold = threshold_of_url(url)
        self.blobs = MemoryBlobs(self.blob_threshold)
        self._lock = threading.Lock()
        self._workflows: dict[str, WorkflowPlan] = {}
        self._runs: dict[str, RunRow] = {}
        self._run_updated: dict[str, float] = {}  # when each run's status last changed
        self._steps: dict[str, dict[str, StepRow]] = {}
        self._events: dict[str, list[EventRow]] = {}
        self._ready: dict[tuple[str, str], None] = {}  # index of ready steps, in insertion order
        self._running: dict[tuple[str, str], None] = {}
        self._waiting: dict[tuple[str, str], None] = {}
        self._queues: dict[str, QueueConfig] = {}
        self._records: dict[tuple[str, str], RecordRow] = {}
        self._artifacts: dict[str, dict[str, ArtifactRow]] = {}  # run → id → artifact
        self._artifact_runs: dict[str, str] = {}  # artifact id → its run

    async def open(self) -> None:
        return None

    def direct(self, call: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run `call()` on the caller's thread (`CallsDirect`): this store's methods are plain
        functions under its lock, and await nothing."""
        return run_to_end(call())

    def subscribe(
        self,
        *,
        ready: Callable[[], None],
        ended: Callable[[], None],
        cancelled: Callable[[], None],
        live: Callable[[bool], None],
    ) -> None:
        """No push: other processes' changes are seen by polling."""

    async def close(self) -> None:
        return None

    # -- definitions

    async def save_workflow(self, plan: WorkflowPlan) -> None:
        with self._lock:
            self._workflows.setdefault(plan.fingerprint, plan)

    async def get_workflow(self, name: str, fingerprint: str | None = None) -> WorkflowPlan | None:
        with self._lock:
            if fingerprint is not None:
                plan = self._workflows.get(fingerprint)
                return plan if plan is not None and plan.name == name else None
            versions = [p for p in self._workflows.values() if p.name == name]
            return versions[-1] if versions else None

    async def list_workflows(self) -> list[WorkflowPlan]:
        with self._lock:
            return list(self._workflows.values())

    async def workflow_known(self, fingerprint: str) -> bool:
        with self._lock:
            return fingerprint in self._workflows

    # -- runs

    async def create_run(
        self, run: RunRow, steps: Sequence[StepRow], events: Sequence[EventRow]
    ) -> tuple[RunRow, bool]:
        with self._lock:
            existing = self._runs.get(run.id)
            if existing is not None:
                return dataclasses.replace(existing), False
            self._insert_run(run, steps, events)
            return dataclasses.replace(run), True

    async def create_runs(self, runs: Sequence[NewRun]) -> list[tuple[RunRow, bool]]:
        with self._lock:
            taken: dict[str, RunRow] = {}  # ids that exist, or come earlier in `runs`
            for run, _, _ in runs:
                existing = self._runs.get(run.id) or taken.get(run.id)
                if existing is not None and existing.workflow != run.workflow:
                    raise RunConflict.taken(run.id, existing.workflow, run.workflow)
                taken.setdefault(run.id, run)
            results: list[tuple[RunRow, bool]] = []
            for run, steps, events in runs:
                existing = self._runs.get(run.id)
                if existing is not None:
                    results.append((dataclasses.replace(existing), False))
                else:
                    self._insert_run(run, steps, events)
                    results.append((dataclasses.replace(run), True))
            return results

    def _insert_run(
        self, run: RunRow, steps: Sequence[StepRow], events: Sequence[EventRow]
    ) -> None:
        self._runs[run.id] = stored = dataclasses.replace(run)
        self._run_updated[run.id] = run.created_at
        stored.input = self.blobs.keep((run.id, "", "input"), run.input, run.created_at) or b""
        stored.output = self.blobs.keep((run.id, "", "output"), run.output, run.created_at)
        self._steps[run.id] = {}
        for step in steps:
            self._put_step(self.blobs.kept_step(dataclasses.replace(step), None, run.created_at))
        self._events[run.id] = list(events)

    async def get_run(self, run_id: str, *, excerpt: int | None = None) -> RunRow | None:
        with self._lock:
            run = self._runs.get(run_id)
            return _run_excerpt(dataclasses.replace(run), excerpt) if run else None

    async def get_runs(self, run_ids: Collection[str]) -> list[RunRow]:
        with self._lock:
            return [dataclasses.replace(self._runs[r]) for r in run_ids if r in self._runs]

    async def list_runs(
        self,
        *,
        workflow: str | None,
        status: RunStatus | None,
        limit: int,
        before: tuple[float, str] | None,
        created_from: float | None = None,
        created_to: float | None = None,
        text: str | None = None,
        excerpt: int | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> list[RunRow]:
        with self._lock:
            rows = [
                r
                for r in self._runs.values()
                if _matches(r, workflow, status, created_from, created_to, text, labels)
                and (before is None or (r.created_at, r.id) < before)
            ]
        rows.sort(key=lambda r: (r.created_at, r.id), reverse=True)
        return [_run_excerpt(dataclasses.replace(r), excerpt) for r in rows[:limit]]

    async def count_runs(
        self,
        *,
        workflow: str | None,
        status: RunStatus | None,
        created_from: float | None = None,
        created_to: float | None = None,
        text: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> int:
        with self._lock:
            return sum(
                1
                for r in self._runs.values()
                if _matches(r, workflow, status, created_from, created_to, text, labels)
            )

    async def list_run_changes(
        self, after: tuple[float, str], limit: int
    ) -> list[tuple[float, str]]:
        with self._lock:
            found = [(at, r) for r, at in self._run_updated.items() if (at, r) > after]
        found.sort()
        return found[:limit]

    async def step_backlog(self, now: float) -> list[tuple[str, StepStatus, int, float | None]]:
        counts: dict[tuple[str, StepStatus], list[Any]] = {}
        with self._lock:
            for index in (self._ready, self._running, self._waiting):
                for run_id, name in index:
                    s = self._steps[run_id][name]
                    queue = (s.options.queue if s.options else None) or "default"
                    entry = counts.setdefault((queue, s.status), [0, None])
                    entry[0] += 1
                    since = s.available_at if s.available_at is not None else s.ready_at
                    if s.status is StepStatus.READY and since is not None and since <= now:
                        entry[1] = since if entry[1] is None else min(entry[1], since)
        return [(q, status, n, oldest) for (q, status), (n, oldest) in counts.items()]

    async def list_failed_steps(
        self,
        *,
        workflow: str | None,
        limit: int,
        before: tuple[float, str, str] | None,
        step: str | None = None,
        code: str | None = None,
        since: float | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> list[StepRow]:
        with self._lock:
            found = [
                s
                for run_id, steps in self._steps.items()
                if (workflow is None or self._runs[run_id].workflow == workflow)
                and matches(self._runs[run_id].labels, labels)
                for s in steps.values()
                if s.status is StepStatus.FAILED
                and (before is None or (s.finished_at or 0.0, s.run_id, s.name) < before)
                and (step is None or s.name == step)
                and (code is None or s.error_code == code)
                and (since is None or (s.finished_at or 0.0) >= since)
            ]
            found.sort(key=lambda s: (s.finished_at or 0.0, s.run_id, s.name), reverse=True)
            return [dataclasses.replace(s) for s in found[:limit]]

    async def get_steps(self, run_id: str, *, excerpt: int | None = None) -> list[StepRow]:
        with self._lock:
            steps = self._steps.get(run_id, {})
            found = sorted((dataclasses.replace(s) for s in steps.values()), key=lambda s: s.idx)
        if excerpt is not None:
            for step in found:
                step.output = excerpt_of(step.output, excerpt)
                step.input = excerpt_of(step.input, excerpt)
        return found

    async def get_events(self, run_id: str, after_seq: int, limit: int | None) -> list[EventRow]:
        with self._lock:
            events = [e for e in self._events.get(run_id, ()) if e.seq > after_seq]
        return events[:limit] if limit is not None else events

    # -- workers

    async def claim(
        self,
        *,
        worker_id: str,
        fingerprints: Collection[str],
        limit: int,
        lease: float,
        now: float,
        queues: Collection[str] | None = None,
        aged_before: float | None = None,
        labels: Collection[str] = (),
        inputs: InputsWanted | None = None,
        code: CodeOf | None = None,
    ) -> Claims:
        with self._lock:
            return self._claim(
                worker_id,
                fingerprints,
                limit,
                lease,
                now,
                queues,
                aged_before,
                labels,
                inputs,
                code,
            )

    async def complete_and_claim(
        self,
        outcomes: Sequence[Outcome],
        now: float,
        *,
        worker_id: str,
        fingerprints: Collection[str],
        limit: int,
        lease: float,
        queues: Collection[str] | None = None,
        aged_before: float | None = None,
        labels: Collection[str] = (),
        inputs: InputsWanted | None = None,
        code: CodeOf | None = None,
    ) -> tuple[CommitResult, Claims]:
        with self._lock:
            txn = self._complete(outcomes, now)
            claims = self._claim(
                worker_id,
                fingerprints,
                limit,
                lease,
                now,
                queues,
                aged_before,
                labels,
                inputs,
                code,
            )
            txn.result.readied = unclaimed_ready(txn, claims)
            return txn.result, claims

    def _claim(
        self,
        worker_id: str,
        fingerprints: Collection[str],
        limit: int,
        lease: float,
        now: float,
        queues: Collection[str] | None,
        aged_before: float | None,
        labels: Collection[str],
        inputs: InputsWanted | None,
        code: CodeOf | None = None,
    ) -> Claims:
        if limit <= 0:
            return Claims(inputs=None if inputs is None else {})
        limited = {n: q for n, q in self._queues.items() if q.limited}
        now = claim_time(limited, now)  # never before a bucket's last charge
        queue_running: dict[str, int] = {}
        key_running: dict[str, int] = {}
        for r, n in self._running:
            options = self._steps[r][n].options
            queue_running[queue_of(options)] = queue_running.get(queue_of(options), 0) + 1
            if options is not None and options.key is not None:
                key_running[options.key] = key_running.get(options.key, 0) + 1
        held = set(blocked(limited, queue_running, now))
        held_found: set[str] = set()  # blocked queues that hold back work for this claim
        candidates = []
        for key in self._ready:
            step = self._steps[key[0]][key[1]]
            run = self._runs[key[0]]
            queue = queue_of(step.options)
            if (
                run.fingerprint in fingerprints
                and dispatchable(run.status, step.attempt)
                and (step.available_at is None or step.available_at <= now)
                and (queues is None or queue in queues)
                and self._placeable(step, worker_id, labels)
            ):
                if queue in held:
                    held_found.add(queue)
                else:
                    candidates.append(step)
        candidates = order(candidates, aged_before)
        chosen, buckets = admit_candidates(
            [flow_candidate(s.options) for s in candidates],
            limited,
            queue_running,
            key_running,
            now,
            limit,
        )
        txn = Txn(now)
        for step in (candidates[i] for i in chosen):
            token = secrets.token_hex(16)
            self._run(
                txn,
                claim(
                    txn,
                    step.run_id,
                    step.name,
                    token=token,
                    worker_id=worker_id,
                    lease=lease,
                    code=code,
                ),
            )
        claimed = [queue_of(self._steps[c.run_id][c.step].options) for c in txn.claims]
        for name, bucket in charge(limited, buckets, claimed, now).items():
            self._set_queue(dataclasses.replace(self._queues[name], bucket=bucket))
        self._write(txn)
        if txn.claims:
            found = None
            if inputs is not None:
                wanted: dict[str, set[str]] = {}
                for c in txn.claims:
                    wanted.setdefault(c.run_id, set()).update(inputs(c))
                found = self._step_inputs(wanted)
            return Claims(txn.claims, inputs=found)
        return Claims(
            limited=bool(held_found) or len(chosen) < min(limit, len(candidates)),
            next_token_at=token_wait(limited, queue_running, held_found, now),
            inputs=None if inputs is None else {},
        )

    def _placeable(self, step: StepRow, worker_id: str, labels: Collection[str]) -> bool:
        target = None if step.options is None else step.options.target
        colocated = None
        if target is not None and target.startswith("="):
            other = self._steps[step.run_id].get(target[1:])
            colocated = None if other is None else other.worker_id
        return may_run(target, worker_id, labels, colocated)

    async def configure_queue(
        self, name: str, concurrency: int | None, rate: Rate | None, now: float
    ) -> QueueConfig:
        with self._lock:
            config = reconfigure(self._queues.get(name), name, concurrency, rate, now)
            self._set_queue(config)
            return config

    def _set_queue(self, config: QueueConfig) -> None:
        """Store a queue's limits and token bucket (the NATS store's replica commits them)."""
        self._queues[config.name] = config

    async def list_queues(self) -> list[QueueConfig]:
        with self._lock:
            return sorted(self._queues.values(), key=lambda q: q.name)

    async def step_inputs(self, wanted: Mapping[str, Collection[str]]) -> dict[str, StepInputs]:
        with self._lock:
            return self._step_inputs(wanted)

    def _step_inputs(self, wanted: Mapping[str, Collection[str]]) -> dict[str, StepInputs]:
        out: dict[str, StepInputs] = {}
        for run_id, names in wanted.items():
            run = self._runs.get(run_id)
            if run is None:
                continue
            steps = self._steps[run_id]
            deps = {n: (steps[n].status, steps[n].output) for n in names if n in steps}
            errors = {
                n: (steps[n].error_code, steps[n].error_message)
                for n in deps
                if steps[n].status is StepStatus.FAILED
            }
            out[run_id] = StepInputs(run.input, deps, run.state, errors, run.labels)
        return out

    async def complete(self, outcomes: Sequence[Outcome], now: float) -> CommitResult:
        with self._lock:
            return self._complete(outcomes, now).result

    def _complete(self, outcomes: Sequence[Outcome], now: float) -> Txn:
        txn = Txn(now)
        for outcome in outcomes:
            self._run(txn, complete(txn, outcome))
        slotted = [n for n, q in self._queues.items() if q.concurrency is not None]
        txn.result.slot_freed = frees_room(txn.ended_attempts, slotted)
        self._write(txn)
        return txn

    async def heartbeat(self, leases: Sequence[Lease], lease: float, now: float) -> list[Lease]:
        lost = []
        with self._lock:
            for h in leases:
                step = self._steps.get(h.run_id, {}).get(h.step)
                if (
                    step is None
                    or step.status is not StepStatus.RUNNING
                    or step.lease_token != h.token
                    or self._runs[h.run_id].status.terminal
                ):
                    lost.append(h)
                else:
                    step.lease_expires_at = now + lease
        return lost

    async def release(
        self, leases: Sequence[Lease], now: float, max_recoveries: int | None
    ) -> CommitResult:
        with self._lock:
            txn = Txn(now)
            for h in leases:
                self._run(txn, release(txn, h.run_id, h.step, h.token, max_recoveries))
            self._write(txn)
            return txn.result

    async def admit_key(
        self, run_id: str, step: str, token: str, key: str, now: float
    ) -> CommitResult:
        with self._lock:
            running = sum(
                1
                for r, n in self._running
                if (options := self._steps[r][n].options) is not None and options.key == key
            )
            txn = Txn(now)
            self._run(txn, admit_key(txn, run_id, step, token, key, running))
            slotted = [n for n, q in self._queues.items() if q.concurrency is not None]
            txn.result.slot_freed = frees_room(txn.ended_attempts, slotted)
            self._write(txn)
            return txn.result

    async def recover_expired(self, now: float, max_recoveries: int, limit: int) -> CommitResult:
        with self._lock:
            expired = [
                key
                for key in self._running
                if (exp := self._steps[key[0]][key[1]].lease_expires_at) is not None and exp <= now
            ][:limit]
            txn = Txn(now)
            for run_id, name in expired:
                self._run(txn, recover(txn, run_id, name, max_recoveries))
            self._write(txn)
            return txn.result

    async def apply(self, action: Action, now: float) -> CommitResult:
        with self._lock:
            txn = Txn(now)
            self._run(txn, action(txn))
            self._write(txn)
            return txn.result

    async def fire_timers(self, now: float, limit: int) -> CommitResult:
        with self._lock:
            expired = [key for key, at in self._wait_expiries() if at <= now][:limit]
            late = [r for r, at in self._deadlines() if at <= now][:limit]
            txn = Txn(now)
            for run_id, name in expired:
                self._run(txn, expire_approval(txn, run_id, name))
            for run_id in late:
                self._run(txn, pass_deadline(txn, run_id))
            self._write(txn)
            return txn.result

    async def durability(self) -> Durability:
        return in_memory()

    async def next_timer_at(self) -> float | None:
        with self._lock:
            times = [at for _, at in self._wait_expiries()] + [at for _, at in self._deadlines()]
        return min(times) if times else None

    def _wait_expiries(self) -> list[tuple[tuple[str, str], float]]:
        found = [(k, self._steps[k[0]][k[1]].available_at) for k in self._waiting]
        return sorted(((k, at) for k, at in found if at is not None), key=lambda x: x[1])

    def _deadlines(self) -> list[tuple[str, float]]:
        found = [(r.id, r.deadline) for r in self._runs.values() if not r.status.terminal]
        return sorted(((r, at) for r, at in found if at is not None), key=lambda x: x[1])

    async def list_waiting(self, limit: int) -> list[StepRow]:
        with self._lock:
            waiting = (self._steps[r][n] for r, n in self._waiting)
            steps = [dataclasses.replace(s) for s in waiting if not s.joining]
        return sorted(steps, key=lambda s: (s.ready_at or 0.0, s.run_id, s.name))[:limit]

    async def next_ready_at(
        self, fingerprints: Collection[str], after: float | None = None
    ) -> float | None:
        with self._lock:
            times = [
                s.available_at or 0.0
                for key in self._ready
                if (s := self._steps[key[0]][key[1]]) is not None
                and self._runs[key[0]].fingerprint in fingerprints
                and dispatchable(self._runs[key[0]].status, s.attempt)
                and (after is None or (s.available_at or 0.0) > after)
            ]
        return min(times) if times else None

    # -- records

    async def get_record(self, collection: str, key: str) -> RecordRow | None:
        with self._lock:
            row = self._records.get((collection, key))
        return None if row is None or row.doc == TOMBSTONE else row

    async def put_record(self, row: RecordRow, expected_revision: int | None) -> tuple[bool, int]:
        with self._lock:
            old = self._records.get((row.collection, row.key))
            last = 0 if old is None else old.revision  # a tombstone's too: never repeated
            revision = 0 if old is None or old.doc == TOMBSTONE else last
            if expected_revision is not None and expected_revision != revision:
                return False, revision
            self._records[(row.collection, row.key)] = dataclasses.replace(
                row, revision=last + 1, run_id=None, step=None
            )
            return True, last + 1

    async def delete_record(
        self, collection: str, key: str, expected_revision: int | None
    ) -> tuple[bool, int]:
        with self._lock:
            old = self._records.get((collection, key))
            revision = 0 if old is None or old.doc == TOMBSTONE else old.revision
            if not revision or (expected_revision is not None and expected_revision != revision):
                return False, revision
            self._records[(collection, key)] = RecordRow(
                collection, key, TOMBSTONE, revision + 1, self.clock.time()
            )
            return True, revision

    async def purge_record_tombstones(self, older_than: float) -> int:
        with self._lock:
            old = [
                k
                for k, r in self._records.items()
                if r.doc == TOMBSTONE and r.updated_at < older_than
            ]
            for k in old:
                del self._records[k]
        return len(old)

    async def list_records(
        self, collection: str, prefix: str, after: str, limit: int
    ) -> list[RecordRow]:
        with self._lock:
            rows = [
                r
                for (c, k), r in self._records.items()
                if c == collection and k.startswith(prefix) and k > after and r.doc != TOMBSTONE
            ]
        return sorted(rows, key=lambda r: r.key)[:limit]

    # -- artifacts

    async def list_artifacts(self, run_id: str) -> list[ArtifactRow]:
        with self._lock:
            rows = list(self._artifacts.get(run_id, {}).values())
        return sorted(rows, key=lambda a: (a.created_at, a.id))

    async def get_artifact(self, artifact_id: str) -> ArtifactRow | None:
        with self._lock:
            run_id = self._artifact_runs.get(artifact_id)
            return None if run_id is None else self._artifacts[run_id][artifact_id]

    async def known_artifacts(self, artifact_ids: Collection[str]) -> set[str]:
        with self._lock:
            return {a for a in artifact_ids if a in self._artifact_runs}

    # -- deleting

    async def delete_run(self, run_id: str) -> bool:
        with self._lock:
            run = self._runs.get(run_id)
            if run is None or not run.status.terminal:
                return False
            del self._runs[run_id]
            self._run_updated.pop(run_id, None)
            steps = list(self._steps.pop(run_id, {}))
            self.blobs.forget_run(run_id, steps)
            for name in steps:
                for index in (self._ready, self._running, self._waiting):
                    index.pop((run_id, name), None)
            self._events.pop(run_id, None)
            for artifact in self._artifacts.pop(run_id, {}).values():
                del self._artifact_runs[artifact.id]
                if artifact.path is None:  # kept in the database: one reference to its blob
                    self.blobs.refs({artifact.sha256: -1})
            return True

    # -- blobs (`core.blobs`)

    async def put_blob(self, sha256: str, data: bytes, now: float) -> None:
        check_put(sha256, data)
        with self._lock:
            self.blobs.put(sha256, data, now)

    async def get_blob(self, sha256: str) -> bytes:
        check_hash(sha256)
        with self._lock:
            data = self.blobs.get(sha256)
        if data is None:
            raise missing(sha256)
        return data

    async def blob_stats(self) -> BlobStats:
        with self._lock:
            return self.blobs.stats()

    async def gc_blobs(self, older_than: float) -> int:
        with self._lock:
            return self.blobs.gc(older_than)

    def blob_refs(self, deltas: Mapping[str, int]) -> set[str]:
        """Under the store's lock, inside a write: add `deltas[hash]` to the reference counts
        of blobs the store has; the hashes found (the SQL stores' `Programs.blob_refs`)."""
        return self.blobs.refs(deltas)

    # -- transactions on copies

    def _load(self, txn: Txn, need: Need) -> None:
        run = self._runs.get(need.run_id)
        txn.add_run(need.run_id, dataclasses.replace(run) if run else None)
        steps = self._steps.get(need.run_id, {})
        if need.all_steps:
            for name, row in steps.items():
                txn.add_step(need.run_id, name, dataclasses.replace(row))
        for name in need.steps:
            step = steps.get(name)
            txn.add_step(need.run_id, name, dataclasses.replace(step) if step else None)
        for key in need.records:  # under the store's lock until the write: no one moves them
            record = self._records.get(key)
            if record is not None:
                txn.add_record(key, record.revision, record.doc != TOMBSTONE)

    def _run(self, txn: Txn, transition: Transition) -> None:
        drive(transition, self._load, txn)

    def _write(self, txn: Txn) -> None:
        for run_id, name in txn.dropped_steps:  # an upgrade's: never started, no payload
            self._steps[run_id].pop(name, None)
            for index in (self._ready, self._running, self._waiting):
                index.pop((run_id, name), None)
        for step in txn.new_steps.values():
            self._put_step(self.blobs.kept_step(step, None, txn.now))
        for step in txn.changed_steps.values():
            before = self._steps[step.run_id].get(step.name)
            self._put_step(self.blobs.kept_step(step, before, txn.now))
        for run in txn.changed_runs.values():
            if self._runs[run.id].status is not run.status:
                self._run_updated[run.id] = txn.now
            if self._runs[run.id].output is not run.output:
                run.output = self.blobs.keep((run.id, "", "output"), run.output, txn.now)
            self._runs[run.id] = run
        for event in txn.events:
            self._events[event.run_id].append(event)
        for run_id, step_name, data in txn.data:
            for write in data.records:
                old = self._records.get((write.collection, write.key))
                self._records[(write.collection, write.key)] = RecordRow(
                    write.collection, write.key, write.doc,
                    1 if old is None else old.revision + 1, txn.now, run_id, step_name,
                )  # fmt: skip
            for artifact in data.artifacts:
                if artifact.path is None and artifact.data is not None:  # in the database
                    self.blobs.refer(artifact.sha256, artifact.data, txn.now)
                    artifact = dataclasses.replace(artifact, data=None)
                self._artifacts.setdefault(run_id, {})[artifact.id] = artifact
                self._artifact_runs[artifact.id] = run_id

    def _put_step(self, step: StepRow) -> None:
        key = (step.run_id, step.name)
        self._steps[step.run_id][step.name] = step
        self._ready.pop(key, None)
        self._running.pop(key, None)
        self._waiting.pop(key, None)
        if step.status is StepStatus.READY:
            self._ready[key] = None
        elif step.status is StepStatus.RUNNING:
            self._running[key] = None
        elif step.status is StepStatus.WAITING:
            self._waiting[key] = None


def _run_excerpt(run: RunRow, excerpt: int | None) -> RunRow:
    """`run` with its payloads cut to `excerpt` bytes (Store.get_run)."""
    if excerpt is not None:
        run.input = excerpt_of(run.input, excerpt)
        run.output = excerpt_of(run.output, excerpt)
    return run
