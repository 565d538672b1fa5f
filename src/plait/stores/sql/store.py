"""The Store protocol for the SQL stores, written once over two primitives each store provides:
`_fetch` (one named query, rows back) and `_transact` (a program of `stores.sql.programs` run in one
transaction). A store adds connections, transactions, errors and wake-ups; the rest is here."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import orjson

from ..._clock import REAL, Clock
from ..._errors import StoreError
from ...core.blobs import BlobStats, check_hash, check_put
from ...core.queues import QueueConfig
from ...core.rate import Rate
from ...core.rows import (
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
)
from ...core.txn import Action
from ..protocol import InputsWanted, NewRun
from .artifact_rows import artifact_from_row
from .ops import Program, execute, fetch
from .programs import Programs, RunsTaken, SQLTxn, queue_from_row
from .queries import Queries
from .rows import event_from_row, plan_from_json, plan_to_json, record_from_row

T = TypeVar("T")
Wakes = Callable[[T], Iterable[str]]  # what a committed result wakes: "ready", "ended"

_NO_LIMIT = 2**62
CLAIM_PATIENCE = 2.0  # seconds a claim that finds only runs held by others keeps trying
TAKEN_RETRIES = 8  # create_runs: careful tries while other transactions create the same ids


def wakes_of(txn: SQLTxn) -> Iterable[str]:
    """Steps became ready, a queue's or a key's slot was freed, runs ended: what other
    processes' workers and waiters care about."""
    if txn.result.readied:
        yield "ready"
    if txn.result.slot_freed:
        yield "freed"
    if txn.result.ended_runs:
        yield "ended"
    if txn.result.cancelled_runs:
        yield "cancelled"


def _wakes_of_pair(pair: tuple[SQLTxn, SQLTxn]) -> Iterable[str]:
    return wakes_of(pair[0])


def _claims(txn: SQLTxn) -> Claims:
    return Claims(
        txn.claims, limited=txn.limited, next_token_at=txn.next_token_at, inputs=txn.inputs
    )


def _reconfigured(_config: QueueConfig) -> Iterable[str]:
    return ("ready",)


def _created(result: tuple[RunRow, bool]) -> Iterable[str]:
    return ("ready",) if result[1] else ()


def _created_many(results: list[tuple[RunRow, bool]]) -> Iterable[str]:
    return ("ready",) if any(created for _, created in results) else ()


def _filter_params(
    workflow: str | None,
    status: RunStatus | None,
    created_from: float | None,
    created_to: float | None,
    text: str | None,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "workflow": workflow,
        "status": status.value if status is not None else None,
        "created_from": created_from,
        "created_to": created_to,
        "text": text.lower() if text else None,
        "labels": orjson.dumps(dict(labels)).decode() if labels else None,
        "label_count": len(labels) if labels else 0,
    }


class SQLStore:
    clock: Clock = REAL
    _queries: Queries
    _programs: Programs
    # A hopeful create_runs counts its inserted runs (a round trip on a pipelining driver);
    # False: it does not, and a taken id fails its transaction on a unique key (`_transact`'s
    # `unique_is_taken` turns that into RunsTaken)
    _count_new_runs = True

    async def _fetch(self, query: str, params: Mapping[str, Any]) -> list[Any]:
        """The rows of one named query (a plain read)."""
        raise NotImplementedError

    async def _transact(
        self,
        what: str,
        program: Callable[[], Program[T]],
        *,
        write: bool = True,
        lease_only: bool = False,
        wakes: Wakes[T] | None = None,
        unique_is_taken: bool = False,
    ) -> T:
        """Run a program in one transaction. `program` makes a fresh one, so the store may run
        it again (a lost connection, a deadlock). `lease_only`: it writes only leases (claims,
        heartbeats); `wakes`: what its result should wake in other processes;
        `unique_is_taken`: a unique key violated raises RunsTaken (a hopeful create_runs)."""
        raise NotImplementedError

    # -- definitions

    async def save_workflow(self, plan: WorkflowPlan) -> None:
        known, query = self._queries["workflow_known"], self._queries["save_workflow"]

        def program() -> Program[None]:
            # a version already saved (every worker's start, every later start) is not made
            # into JSON again: 100,000 steps' worth
            if (yield from fetch(known, {"fingerprint": plan.fingerprint})):
                return
            params = {
                "fingerprint": plan.fingerprint,
                "name": plan.name,
                "version": plan.version,
                "created_at": plan.created_at,
                "plan": plan_to_json(plan),
            }
            yield from execute(query, params)

        await self._transact("save workflow", program)

    async def get_workflow(self, name: str, fingerprint: str | None = None) -> WorkflowPlan | None:
        if fingerprint is None:
            rows = await self._fetch("get_latest_workflow", {"name": name})
        else:
            rows = await self._fetch("get_workflow", {"name": name, "fingerprint": fingerprint})
        return plan_from_json(rows[0][0]) if rows else None

    async def list_workflows(self) -> list[WorkflowPlan]:
        return [plan_from_json(row[0]) for row in await self._fetch("list_workflows", {})]

    async def workflow_known(self, fingerprint: str) -> bool:
        return bool(await self._fetch("workflow_known", {"fingerprint": fingerprint}))

    # -- runs

    async def create_run(
        self, run: RunRow, steps: Sequence[StepRow], events: Sequence[EventRow]
    ) -> tuple[RunRow, bool]:
        return await self._transact(
            f"create run {run.id!r}",
            lambda: self._programs.create_run(run, steps, events),
            wakes=_created,
        )

    async def create_runs(self, runs: Sequence[NewRun]) -> list[tuple[RunRow, bool]]:
        if not runs:
            return []
        what = f"create {len(runs)} runs"
        counted = self._count_new_runs
        try:  # hopeful: the ids are new (as they nearly always are)
            return await self._transact(
                what,
                lambda: self._programs.create_runs(runs, False, counted),
                wakes=_created_many,
                unique_is_taken=not counted,
            )
        except RunsTaken:
            pass
        for _ in range(TAKEN_RETRIES):
            try:  # careful: read the runs of these ids first, insert the others
                return await self._transact(
                    what, lambda: self._programs.create_runs(runs, True), wakes=_created_many
                )
            except RunsTaken:  # PostgreSQL: another transaction created one meanwhile
                continue
        raise StoreError(f"{what}: other transactions kept creating runs of the same ids")

    async def _read_runs(
        self, query: str, params: Mapping[str, Any], excerpt: int | None = None
    ) -> list[RunRow]:
        what = query.replace("_", " ")
        return await self._transact(
            what, lambda: self._programs.blobs.read_runs(query, params, excerpt), write=False
        )

    async def _read_steps(
        self, query: str, params: Mapping[str, Any], excerpt: int | None = None
    ) -> list[StepRow]:
        what = query.replace("_", " ")
        return await self._transact(
            what, lambda: self._programs.blobs.read_steps(query, params, excerpt), write=False
        )

    async def get_run(self, run_id: str, *, excerpt: int | None = None) -> RunRow | None:
        rows = await self._read_runs("get_run", {"id": run_id}, excerpt)
        return rows[0] if rows else None

    async def get_runs(self, run_ids: Collection[str]) -> list[RunRow]:
        if not run_ids:
            return []
        params = {"id_list": self._queries.dialect.list_param(run_ids)}
        return await self._read_runs("get_runs", params)

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
        params: dict[str, Any] = {
            **_filter_params(workflow, status, created_from, created_to, text, labels),
            "limit": limit,
            # always a keyset range (from +inf for the first page), so that a page deep in a
            # long list is an index range scan, as fast as the first
            "before_at": before[0] if before is not None else math.inf,
            "before_id": before[1] if before is not None else "",
        }
        if workflow is None:
            query = "list_runs"
        elif status is None:
            query = "list_runs_of_workflow"
        else:
            query = "list_runs_of_workflow_status"
        return await self._read_runs(query, params, excerpt)

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
        params = _filter_params(workflow, status, created_from, created_to, text, labels)
        rows = await self._fetch("count_runs", params)
        return int(rows[0][0])

    async def list_run_changes(
        self, after: tuple[float, str], limit: int
    ) -> list[tuple[float, str]]:
        params = {"after_at": after[0], "after_id": after[1], "limit": limit}
        return [(float(at), run_id) for at, run_id in await self._fetch("list_run_changes", params)]

    async def step_backlog(self, now: float) -> list[tuple[str, StepStatus, int, float | None]]:
        rows = await self._fetch("step_backlog", {"now": now})
        return [
            (q, StepStatus(status), int(n), None if oldest is None else float(oldest))
            for q, status, n, oldest in rows
        ]

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
        params = {
            "workflow": workflow,
            "step": step,
            "code": code,
            "since": since,
            "labels": orjson.dumps(dict(labels)).decode() if labels else None,
            "label_count": len(labels) if labels else 0,
            "limit": limit,
            "before_at": before[0] if before is not None else None,
            "before_run": before[1] if before is not None else None,
            "before_name": before[2] if before is not None else None,
        }
        return await self._read_steps("list_failed_steps", params)

    async def get_steps(self, run_id: str, *, excerpt: int | None = None) -> list[StepRow]:
        return await self._read_steps("get_steps", {"run_id": run_id}, excerpt)

    async def get_events(self, run_id: str, after_seq: int, limit: int | None) -> list[EventRow]:
        params = {
            "run_id": run_id,
            "after_seq": after_seq,
            "limit": _NO_LIMIT if limit is None else limit,
        }
        return [event_from_row(row) for row in await self._fetch("get_events", params)]

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
        if not fingerprints or limit <= 0:
            return Claims(inputs=None if inputs is None else {})
        chosen = list(fingerprints)
        deadline = time.monotonic() + CLAIM_PATIENCE
        pause = 0.001
        while True:
            txn = await self._transact(
                "claim",
                lambda: self._programs.claim(
                    worker_id,
                    chosen,
                    limit,
                    lease,
                    now,
                    queues,
                    aged_before,
                    labels,
                    inputs,
                    code=code,
                ),
                lease_only=True,
            )
            if txn.claims or not txn.busy or time.monotonic() >= deadline:
                return _claims(txn)
            # every candidate's run was held by another transaction for a moment: try again
            # (returning nothing would idle the worker until its next wake-up)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.02)

    async def configure_queue(
        self, name: str, concurrency: int | None, rate: Rate | None, now: float
    ) -> QueueConfig:
        return await self._transact(
            "configure a queue",
            lambda: self._programs.configure_queue(name, concurrency, rate, now),
            wakes=_reconfigured,  # raised limits: held workers elsewhere look again
        )

    async def list_queues(self) -> list[QueueConfig]:
        rows = await self._fetch("get_queues", {})
        return [queue_from_row(row) for row in rows]

    async def step_inputs(self, wanted: Mapping[str, Collection[str]]) -> dict[str, StepInputs]:
        if not wanted:
            return {}
        return await self._transact(
            "read step inputs", lambda: self._programs.step_inputs(wanted), write=False
        )

    async def complete(self, outcomes: Sequence[Outcome], now: float) -> CommitResult:
        if not outcomes:
            return CommitResult()
        txn = await self._transact(
            "complete", lambda: self._programs.complete(outcomes, now), wakes=wakes_of
        )
        return txn.result

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
        if not fingerprints or limit <= 0:
            empty = Claims(inputs=None if inputs is None else {})
            return await self.complete(outcomes, now), empty
        chosen = list(fingerprints)

        def claim(done: SQLTxn) -> Program[SQLTxn]:
            # made once the completions are written: its clock (the steps' start, the rate
            # limits' refill) reads the time of the claim, not of the commit's start
            return self._programs.claim(
                worker_id, chosen, limit, lease, self.clock.time(), queues, aged_before, labels,
                inputs, session=False, code=code, shared=done,
            )  # fmt: skip

        done, taken = await self._transact(
            "complete and claim",
            lambda: self._programs.complete_and_claim(outcomes, now, claim),
            wakes=_wakes_of_pair,
        )
        return done.result, _claims(taken)

    async def heartbeat(self, leases: Sequence[Lease], lease: float, now: float) -> list[Lease]:
        if not leases:
            return []
        return await self._transact(
            "heartbeat", lambda: self._programs.heartbeat(leases, now + lease), lease_only=True
        )

    async def release(
        self, leases: Sequence[Lease], now: float, max_recoveries: int | None
    ) -> CommitResult:
        if not leases:
            return CommitResult()
        txn = await self._transact(
            "release", lambda: self._programs.release(leases, now, max_recoveries), wakes=wakes_of
        )
        return txn.result

    async def admit_key(
        self, run_id: str, step: str, token: str, key: str, now: float
    ) -> CommitResult:
        txn = await self._transact(
            "admit a concurrency key",
            lambda: self._programs.admit_key(run_id, step, token, key, now),
            wakes=wakes_of,
        )
        return txn.result

    async def recover_expired(self, now: float, max_recoveries: int, limit: int) -> CommitResult:
        txn = await self._transact(
            "recover expired leases",
            lambda: self._programs.recover_expired(now, max_recoveries, limit),
            wakes=wakes_of,
        )
        return txn.result

    async def apply(self, action: Action, now: float) -> CommitResult:
        txn = await self._transact(
            "operator action", lambda: self._programs.apply(action, now), wakes=wakes_of
        )
        return txn.result

    async def fire_timers(self, now: float, limit: int) -> CommitResult:
        txn = await self._transact(
            "fire timers", lambda: self._programs.fire_timers(now, limit), wakes=wakes_of
        )
        return txn.result

    async def next_timer_at(self) -> float | None:
        rows = await self._fetch("next_timer_at", {})
        return float(rows[0][0]) if rows and rows[0][0] is not None else None

    async def list_waiting(self, limit: int) -> list[StepRow]:
        return await self._read_steps("list_waiting", {"limit": limit})

    async def next_ready_at(
        self, fingerprints: Collection[str], after: float | None = None
    ) -> float | None:
        if not fingerprints:
            return None
        params = {
            "fingerprint_list": self._queries.dialect.list_param(fingerprints),
            "after": -math.inf if after is None else after,
        }
        rows = await self._fetch("next_ready_at", params)
        return float(rows[0][0]) if rows and rows[0][0] is not None else None

    # -- records

    async def get_record(self, collection: str, key: str) -> RecordRow | None:
        rows = await self._fetch("get_record", {"collection": collection, "key": key})
        return record_from_row(rows[0]) if rows else None

    async def put_record(self, row: RecordRow, expected_revision: int | None) -> tuple[bool, int]:
        return await self._transact(
            f"write record {row.key!r} of {row.collection!r}",
            lambda: self._programs.put_record(row, expected_revision),
        )

    async def delete_record(
        self, collection: str, key: str, expected_revision: int | None
    ) -> tuple[bool, int]:
        return await self._transact(
            f"delete record {key!r} of {collection!r}",
            lambda: self._programs.delete_record(collection, key, expected_revision),
        )

    async def purge_record_tombstones(self, older_than: float) -> int:
        return await self._transact(
            "purge deleted records' tombstones",
            lambda: self._programs.purge_record_tombstones(older_than),
        )

    async def list_records(
        self, collection: str, prefix: str, after: str, limit: int
    ) -> list[RecordRow]:
        params = {
            "collection": collection,
            "prefix": prefix,
            "prefix_length": len(prefix),
            "after": after,
            "limit": limit,
        }
        return [record_from_row(row) for row in await self._fetch("list_records", params)]

    # -- artifacts

    async def list_artifacts(self, run_id: str) -> list[ArtifactRow]:
        rows = await self._fetch("list_artifacts", {"run_id": run_id})
        return [artifact_from_row(row) for row in rows]

    async def get_artifact(self, artifact_id: str) -> ArtifactRow | None:
        rows = await self._fetch("get_artifact", {"id": artifact_id})
        return artifact_from_row(rows[0]) if rows else None

    async def known_artifacts(self, artifact_ids: Collection[str]) -> set[str]:
        if not artifact_ids:
            return set()
        params = {"id_list": self._queries.dialect.list_param(artifact_ids)}
        return {row[0] for row in await self._fetch("known_artifacts", params)}

    # -- deleting

    async def delete_run(self, run_id: str) -> bool:
        return await self._transact(
            f"delete run {run_id!r}", lambda: self._programs.delete_run(run_id)
        )

    # -- blobs (`core.blobs`)

    async def put_blob(self, sha256: str, data: bytes, now: float) -> None:
        check_put(sha256, data)
        await self._transact(
            f"store blob {sha256}", lambda: self._programs.blobs.put(sha256, data, now)
        )

    async def get_blob(self, sha256: str) -> bytes:
        check_hash(sha256)
        return await self._transact(
            f"read blob {sha256}", lambda: self._programs.blobs.get(sha256), write=False
        )

    async def blob_stats(self) -> BlobStats:
        return await self._transact(
            "count blobs", lambda: self._programs.blobs.stats(), write=False
        )

    async def gc_blobs(self, older_than: float) -> int:
        return await self._transact(
            "remove unreferenced blobs", lambda: self._programs.blobs.gc(older_than)
        )
