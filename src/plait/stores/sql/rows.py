"""Records to rows and back, for the SQL stores: the column orders of the hot path's positional
queries, and the encoding of the JSON columns (edges, sinks, options, plans, events)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import fields
from typing import Any

import orjson

from ...core.blobs import Blobbing, payload_of, unframed
from ...core.rows import (
    AtEnd,
    Edge,
    EdgeKind,
    EventRow,
    Gate,
    JoinMode,
    OnExpiry,
    RecordRow,
    RunRow,
    RunStatus,
    StepOptions,
    StepPlan,
    StepRow,
    StepStatus,
    WorkflowPlan,
)

Params = dict[str, Any]

# -- records <-> rows ----------------------------------------------------------------------------

STEP_STATUS = {s.value: s for s in StepStatus}
RUN_STATUS = {s.value: s for s in RunStatus}
_EDGE_KIND = {k.value: k for k in EdgeKind}
_EDGES_CACHE: dict[str, tuple[Edge, ...]] = {}
_EDGES_CACHE_MAX = 4096
_SINKS_CACHE: dict[str, tuple[str, ...]] = {}
_EDGES_JSON_CACHE: dict[tuple[Edge, ...], str] = {}


def edges_to_json(edges: tuple[Edge, ...]) -> str:
    if not edges:
        return "[]"
    if len(edges) > 8:
        return orjson.dumps([[e.target, e.kind, e.absorbs] for e in edges]).decode()
    text = _EDGES_JSON_CACHE.get(edges)
    if text is None:
        text = orjson.dumps([[e.target, e.kind, e.absorbs] for e in edges]).decode()
        if len(_EDGES_JSON_CACHE) >= _EDGES_CACHE_MAX:
            _EDGES_JSON_CACHE.clear()
        _EDGES_JSON_CACHE[edges] = text
    return text


def edges_from_json(text: str) -> tuple[Edge, ...]:
    """Decode a `dependents` column; shapes repeat across runs, so decoded tuples are shared."""
    edges: tuple[Edge, ...] = _cached(_EDGES_CACHE, text, _decode_edges)
    return edges


def _decode_edges(text: str) -> tuple[Edge, ...]:
    if len(text) >= _STREAMED:
        edges = _stream_edges(text)
        if edges is not None:
            return edges
    return tuple(Edge(t, _EDGE_KIND[k], bool(a)) for t, k, a in orjson.loads(text))


# A column of this many characters (a fan-out of a few thousand) is read an edge at a time:
# orjson would first make every edge a list of three new objects (a 100,000-way fan-out's
# dependents: ~35 MB at once, in the worker's peak, against ~12 MB for the edges themselves)
_STREAMED = 64 << 10
# one edge as `edges_to_json` writes it; a target with an escape is left to orjson
_KINDS = "|".join(k.value for k in EdgeKind)
_EDGE = re.compile(rf'\["([^"\\]*)","({_KINDS})",(true|false)\]')


def _stream_edges(text: str) -> tuple[Edge, ...] | None:
    """The edges of a `dependents` column as `edges_to_json` writes it, parsed one by one
    without the whole JSON value in memory; None if the text is any other JSON (spaces, an
    escaped name), for orjson to read."""
    if not text.startswith("[") or not text.endswith("]"):
        return None
    kinds, edges, at, end = _EDGE_KIND, [], 1, len(text) - 1
    for m in _EDGE.finditer(text, 1, end):
        if m.start() != at:  # something between two edges that is not a comma
            return None
        edges.append(Edge(m[1], kinds[m[2]], m[3] == "true"))
        at = m.end()
        if at < end:
            if text[at] != ",":
                return None
            at += 1
    if at != end:
        return None
    return tuple(edges)


def _cached(cache: dict[str, Any], text: str, decode: Callable[[str], Any]) -> Any:
    """Decode `text` once: small JSON columns repeat across runs, so decoded values are shared."""
    value = cache.get(text)
    if value is None:
        value = decode(text)
        if len(text) < 1024:
            if len(cache) >= _EDGES_CACHE_MAX:
                cache.clear()
            cache[text] = value
    return value


# The columns of the rows the `steps` and `runs` queries select (their `step_columns` and
# `run_columns` fragments): the fields of StepRow and RunRow in order, then the blob hashes.
STEP_ROW_COLUMNS = (*(f.name for f in fields(StepRow)), "output_blob", "input_blob")
RUN_ROW_COLUMNS = (*(f.name for f in fields(RunRow)), "input_blob", "output_blob")
STEP_OUTPUT_BLOB = STEP_ROW_COLUMNS.index("output_blob")
STEP_INPUT_BLOB = STEP_ROW_COLUMNS.index("input_blob")
RUN_INPUT_BLOB = RUN_ROW_COLUMNS.index("input_blob")
RUN_OUTPUT_BLOB = RUN_ROW_COLUMNS.index("output_blob")
NO_BLOBS: Mapping[str, bytes] = {}


def step_from_row(row: Sequence[Any], blobs: Mapping[str, bytes] = NO_BLOBS) -> StepRow:
    """A StepRow from a row of the `steps` queries (STEP_ROW_COLUMNS), its payloads taken from
    `blobs` where the row names a blob."""
    (run_id, name, idx, status, unmet, dependents, optional, priority, attempt, recoveries,
     skip_reason, output, error_code, error_message, available_at, lease_token, lease_expires_at,
     worker_id, ready_at, started_at, finished_at, options, reused_from, iteration, task, input_,
     gather, code, output_blob, input_blob) = row  # fmt: skip
    if output_blob is not None:
        output = payload_of(blobs, output_blob, f"the output of step {name!r} of run {run_id!r}")
    if input_blob is not None:
        part = payload_of(blobs, input_blob, f"the input of step {name!r} of run {run_id!r}")
        input_ = part if input_ is None else unframed(input_, part)  # a frame around it
    return StepRow(
        run_id, name, idx, STEP_STATUS[status], unmet, edges_from_json(dependents), bool(optional),
        priority, attempt, recoveries, skip_reason, _bytes(output), error_code, error_message,
        available_at, lease_token, lease_expires_at, worker_id, ready_at, started_at, finished_at,
        None if options is None else options_from_json(options), reused_from, iteration, task,
        _bytes(input_), _bytes(gather), code,
    )  # fmt: skip


# Column orders of the positional hot-path queries (checked against their SQL when loaded).
STEP_COLUMNS = (
    "run_id", "name", "idx", "status", "unmet", "dependents", "optional", "priority", "attempt",
    "recoveries", "skip_reason", "output", "error_code", "error_message", "available_at",
    "lease_token", "lease_expires_at", "worker_id", "ready_at", "started_at", "finished_at",
    "options", "reused_from", "iteration", "task", "input", "gather", "code", "queue",
    "concurrency_key", "target", "output_blob", "input_blob",
)  # fmt: skip
STEP_MUTABLE = (
    "status", "unmet", "attempt", "recoveries", "skip_reason", "error_code", "error_message",
    "available_at", "lease_token", "lease_expires_at", "worker_id", "ready_at", "started_at",
    "finished_at", "iteration", "gather", "code",
)  # fmt: skip
UPDATE_STEP = (*STEP_MUTABLE, "run_id", "name")
UPDATE_STEP_CLAIMED = (
    "status", "attempt", "lease_token", "lease_expires_at", "worker_id", "started_at", "code",
    "run_id", "name",
)  # fmt: skip
UPDATE_STEP_OUTPUT = (*STEP_MUTABLE, "output", "output_blob", "run_id", "name")
UPDATE_STEP_ATTEMPT = (
    *STEP_MUTABLE, "output", "output_blob", "input", "input_blob", "run_id", "name",
)  # fmt: skip
RUN_MUTABLE = (
    "status", "unfinished", "failures", "next_seq", "error", "started_at", "finished_at",
    "next_idx",
)  # fmt: skip
# `updated_at` is set only when given (not None): when the run's status changed
UPDATE_RUN = (*RUN_MUTABLE, "updated_at", "id")
UPDATE_RUN_OUTPUT = (*RUN_MUTABLE, "updated_at", "output", "output_blob", "id")
UPDATE_RUN_COUNTERS = ("unfinished", "failures", "next_seq", "next_idx", "id")
EVENT_COLUMNS = ("run_id", "seq", "type", "step", "payload", "ts")
RECORD_WRITE = ("collection", "key", "doc", "revision", "updated_at", "run_id", "step")

# Statuses are StrEnums: drivers bind them as their text, so rows carry them as they are.


def step_insert_row(s: StepRow, blobs: Blobbing) -> tuple[Any, ...]:
    """A new step's columns (STEP_COLUMNS); `blobs` decides which payloads become blobs."""
    output, output_blob = blobs.keep(s.output)
    input_, input_blob = blobs.keep(s.input)
    return (
        s.run_id, s.name, s.idx, s.status, s.unmet, edges_to_json(s.dependents), s.optional,
        s.priority, s.attempt, s.recoveries, s.skip_reason, output, s.error_code,
        s.error_message, s.available_at, s.lease_token, s.lease_expires_at, s.worker_id,
        s.ready_at, s.started_at, s.finished_at, options_to_json(s.options), s.reused_from,
        s.iteration, s.task, input_, s.gather, s.code, *_flow_columns(s.options), output_blob,
        input_blob,
    )  # fmt: skip


# The columns of `insert_new_step`: what a step of a new run that has not run has set.
NEW_STEP_COLUMNS = (
    "run_id", "name", "idx", "status", "unmet", "dependents", "optional", "priority",
    "available_at", "ready_at", "options", "queue", "concurrency_key", "target",
)  # fmt: skip


def new_step_row(s: StepRow, edges: dict[int, str]) -> tuple[Any, ...] | None:
    """A new step's columns (NEW_STEP_COLUMNS) if it has not run (no attempt, no payload, no
    lease, no fork or spawn behind it): the other columns are their defaults. Else None.
    `edges`: the `dependents` columns made so far, by the id of their tuple (the steps of runs
    copied from one template share theirs); keep the steps alive as long as it."""
    if (
        s.attempt or s.recoveries or s.iteration or s.output is not None
        or s.input is not None or s.gather is not None or s.task is not None
        or s.reused_from is not None or s.skip_reason is not None or s.error_code is not None
        or s.error_message is not None or s.lease_token is not None
        or s.lease_expires_at is not None or s.worker_id is not None
        or s.started_at is not None or s.finished_at is not None or s.code is not None
    ):  # fmt: skip
        return None
    dependents = edges.get(id(s.dependents))
    if dependents is None:
        dependents = edges[id(s.dependents)] = edges_to_json(s.dependents)
    options = s.options
    return (
        s.run_id, s.name, s.idx, s.status, s.unmet, dependents, s.optional, s.priority,
        s.available_at, s.ready_at, None if options is None else options_to_json(options),
        *_flow_columns(options),
    )  # fmt: skip


def _flow_columns(o: StepOptions | None) -> tuple[str | None, str | None, str | None]:
    """The queue, concurrency key and target columns, which claims filter and count by (the
    options JSON holds them too)."""
    return (None, None, None) if o is None else (o.queue, o.key, o.target)


def step_reshape_row(s: StepRow) -> dict[str, Any]:
    """The columns an upgrade rewrites of a step that stays (`reshape_step`)."""
    queue, key, target = _flow_columns(s.options)
    return {
        "run_id": s.run_id, "name": s.name, "dependents": edges_to_json(s.dependents),
        "optional": s.optional, "priority": s.priority, "options": options_to_json(s.options),
        "queue": queue, "concurrency_key": key, "target": target,
    }  # fmt: skip


def step_update_row(s: StepRow) -> tuple[Any, ...]:
    """The mutable fields of a step but its output, then its key (UPDATE_STEP)."""
    return (
        s.status, s.unmet, s.attempt, s.recoveries, s.skip_reason, s.error_code, s.error_message,
        s.available_at, s.lease_token, s.lease_expires_at, s.worker_id, s.ready_at, s.started_at,
        s.finished_at, s.iteration, s.gather, s.code, s.run_id, s.name,
    )  # fmt: skip


def step_claimed_row(s: StepRow) -> tuple[Any, ...]:
    """What a claim changes of a step (`transitions.claim`), then its key (UPDATE_STEP_CLAIMED)."""
    return (
        s.status, s.attempt, s.lease_token, s.lease_expires_at, s.worker_id, s.started_at, s.code,
        s.run_id, s.name,
    )  # fmt: skip


def step_update_output_row(s: StepRow, output: bytes | None, blob: str | None) -> tuple[Any, ...]:
    """The mutable fields of a step, its output (column and blob hash), then its key
    (UPDATE_STEP_OUTPUT)."""
    return (
        s.status, s.unmet, s.attempt, s.recoveries, s.skip_reason, s.error_code, s.error_message,
        s.available_at, s.lease_token, s.lease_expires_at, s.worker_id, s.ready_at, s.started_at,
        s.finished_at, s.iteration, s.gather, s.code, output, blob, s.run_id, s.name,
    )  # fmt: skip


def step_update_attempt_row(
    s: StepRow,
    output: bytes | None,
    output_blob: str | None,
    input_: bytes | None,
    input_blob: str | None,
) -> tuple[Any, ...]:
    """The mutable fields of a step, its output and its recorded input (each a column and a
    blob hash), then its key (UPDATE_STEP_ATTEMPT)."""
    return (
        s.status, s.unmet, s.attempt, s.recoveries, s.skip_reason, s.error_code, s.error_message,
        s.available_at, s.lease_token, s.lease_expires_at, s.worker_id, s.ready_at, s.started_at,
        s.finished_at, s.iteration, s.gather, s.code, output, output_blob, input_, input_blob,
        s.run_id, s.name,
    )  # fmt: skip


def run_update_row(r: RunRow, moved: float | None) -> tuple[Any, ...]:
    """The mutable fields of a run but its output, `moved` (the time its status changed, to
    write as `updated_at`, or None: it did not), then its id (UPDATE_RUN)."""
    return (
        r.status, r.unfinished, r.failures, r.next_seq, r.error, r.started_at, r.finished_at,
        r.next_idx, moved, r.id,
    )  # fmt: skip


def run_counters_row(r: RunRow) -> tuple[Any, ...]:
    """The counters of a run, then its id (UPDATE_RUN_COUNTERS): all a claim or the end of a
    step that does not end its run changes."""
    return (r.unfinished, r.failures, r.next_seq, r.next_idx, r.id)


def run_update_output_row(
    r: RunRow, moved: float | None, output: bytes | None, blob: str | None
) -> tuple[Any, ...]:
    """As `run_update_row`, its output (column and blob hash) too (UPDATE_RUN_OUTPUT)."""
    return (
        r.status, r.unfinished, r.failures, r.next_seq, r.error, r.started_at, r.finished_at,
        r.next_idx, moved, output, blob, r.id,
    )  # fmt: skip


def event_row(e: EventRow) -> tuple[Any, ...]:
    return (e.run_id, e.seq, e.type, e.step, _dumps_payload(e.payload), e.ts)


def sinks_from_json(text: str) -> tuple[str, ...]:
    sinks: tuple[str, ...] = _cached(_SINKS_CACHE, text, lambda t: tuple(orjson.loads(t)))
    return sinks


def run_from_row(
    row: Sequence[Any], blobs: Mapping[str, bytes] = NO_BLOBS, *, with_input: bool = True
) -> RunRow:
    """A RunRow from a row of the `runs` queries (RUN_ROW_COLUMNS), its payloads taken from
    `blobs` where the row names a blob. Without `with_input` (transactions: no transition reads a run's input, nor
    is it ever rewritten), an input kept as a blob is left empty, unread."""
    (id_, workflow, version, fingerprint, status, input_, sinks, unfinished, failures, next_seq,
     output, error, created_at, started_at, finished_at, deadline, parent_run,
     forked_from, next_idx, state, name, labels, metadata, called_by, input_blob,
     output_blob) = row  # fmt: skip
    if input_blob is not None and with_input:
        input_ = payload_of(blobs, input_blob, f"the input of run {id_!r}")
    if output_blob is not None:
        output = payload_of(blobs, output_blob, f"the output of run {id_!r}")
    return RunRow(
        id_, workflow, version, fingerprint, RUN_STATUS[status], _payload(input_),
        sinks_from_json(sinks), unfinished, failures, next_seq, _bytes(output), error,
        created_at, started_at, finished_at, deadline, parent_run, forked_from, next_idx,
        _bytes(state), name, None if labels is None else orjson.loads(labels), _bytes(metadata),
        called_by,
    )  # fmt: skip


# The columns of `insert_runs` (create_runs): a run's row as `run_insert_row` makes it (its
# status last changed when it was created).
RUN_COLUMNS = (*RUN_ROW_COLUMNS, "updated_at")
# The columns of `insert_new_run`: what a run as a start makes it has set.
NEW_RUN_COLUMNS = (
    "id", "workflow", "version", "fingerprint", "status", "input", "sinks", "unfinished",
    "failures", "next_seq", "created_at", "deadline", "next_idx", "input_blob", "updated_at",
)  # fmt: skip


def new_run_row(run: RunRow, blobs: Blobbing) -> tuple[Any, ...] | None:
    """A new run's columns (NEW_RUN_COLUMNS) if it is as a start makes it (no output, error,
    times or parent): the other columns are their defaults. Else None."""
    if (
        run.output is not None or run.error is not None or run.started_at is not None
        or run.finished_at is not None or run.parent_run is not None
        or run.forked_from is not None or run.state is not None or run.name is not None
        or run.labels is not None or run.metadata is not None or run.called_by is not None
    ):  # fmt: skip
        return None
    input_, input_blob = blobs.keep(run.input)
    return (
        run.id, run.workflow, run.version, run.fingerprint, run.status,
        b"" if input_ is None else input_,  # NOT NULL: empty when it is a blob
        sinks_to_json(run.sinks), run.unfinished, run.failures, run.next_seq, run.created_at,
        run.deadline, run.next_idx, input_blob, run.created_at,
    )  # fmt: skip


def run_insert_row(run: RunRow, blobs: Blobbing) -> tuple[Any, ...]:
    """A new run's columns (RUN_COLUMNS); `blobs` decides which payloads become blobs."""
    input_, input_blob = blobs.keep(run.input)
    output, output_blob = blobs.keep(run.output)
    return (
        run.id, run.workflow, run.version, run.fingerprint, run.status,
        b"" if input_ is None else input_,  # NOT NULL: empty when it is a blob
        sinks_to_json(run.sinks), run.unfinished, run.failures, run.next_seq, output, run.error,
        run.created_at, run.started_at, run.finished_at, run.deadline, run.parent_run,
        run.forked_from, run.next_idx, run.state, run.name, labels_to_json(run.labels),
        run.metadata, run.called_by, input_blob, output_blob, run.created_at,
    )  # fmt: skip


def labels_of(text: str | None) -> dict[str, str] | None:
    """A run's labels from its `labels` column."""
    return None if text is None else dict(orjson.loads(text))


def labels_to_json(labels: Mapping[str, str] | None) -> str | None:
    """A run's `labels` column."""
    return None if not labels else orjson.dumps(dict(labels)).decode()


def label_rows(runs: Iterable[RunRow]) -> list[tuple[str, str, str]]:
    """The `run_labels` rows of new runs (`insert_run_labels`)."""
    return [(run.id, k, v) for run in runs if run.labels for k, v in run.labels.items()]


_SINKS_JSON_CACHE: dict[tuple[str, ...], str] = {}


def sinks_to_json(sinks: tuple[str, ...]) -> str:
    """A run's `sinks` column; the runs of one workflow share their sinks, so the text is too."""
    text = _SINKS_JSON_CACHE.get(sinks)
    if text is None:
        text = orjson.dumps(list(sinks)).decode()
        if len(sinks) <= 8:
            if len(_SINKS_JSON_CACHE) >= _EDGES_CACHE_MAX:
                _SINKS_JSON_CACHE.clear()
            _SINKS_JSON_CACHE[sinks] = text
    return text


def run_insert_params(run: RunRow, blobs: Blobbing) -> Params:
    input_, input_blob = blobs.keep(run.input)
    output, output_blob = blobs.keep(run.output)
    return {
        "id": run.id,
        "workflow": run.workflow,
        "version": run.version,
        "fingerprint": run.fingerprint,
        "status": run.status.value,
        "input": b"" if input_ is None else input_,  # NOT NULL: empty when it is a blob
        "sinks": orjson.dumps(list(run.sinks)).decode(),
        "unfinished": run.unfinished,
        "failures": run.failures,
        "next_seq": run.next_seq,
        "output": output,
        "error": run.error,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "deadline": run.deadline,
        "parent_run": run.parent_run,
        "forked_from": run.forked_from,
        "next_idx": run.next_idx,
        "input_blob": input_blob,
        "output_blob": output_blob,
        "state": run.state,
        "name": run.name,
        "labels": labels_to_json(run.labels),
        "metadata": run.metadata,
        "called_by": run.called_by,
    }


def event_from_row(row: Sequence[Any]) -> EventRow:
    run_id, seq, type_, step, payload, ts = row
    return EventRow(run_id, seq, type_, step, orjson.loads(payload), ts)


def plan_to_json(plan: WorkflowPlan) -> str:
    """The plan as JSON (`plan_from_json` reads it), made a step at a time into one buffer: a
    plan of 100,000 steps is never a list of 100,000 dicts as well."""
    head = orjson.dumps(
        {
            "name": plan.name,
            "version": plan.version,
            "fingerprint": plan.fingerprint,
            "created_at": plan.created_at,
            "code_changes": plan.code_changes,
            "graph": plan.graph,
        }
    )
    out = bytearray(head[:-1])
    out += b',"steps":['
    for i, s in enumerate(plan.steps):
        if i:
            out += b","
        out += orjson.dumps(
            {
                "name": s.name,
                "dependencies": [[dep, kind.value] for dep, kind in s.dependencies],
                "defaults": list(s.defaults),
                "optional": s.optional,
                "priority": s.priority,
                "inputs": [[name, required] for name, required in s.inputs],
                "options": None if s.options is None else _options_dict(s.options),
                "code": s.code,
            }
        )
    out += b"]}"
    return out.decode()


def plan_from_json(text: str | bytes) -> WorkflowPlan:
    data = orjson.loads(text)
    return WorkflowPlan(
        name=data["name"],
        version=data["version"],
        fingerprint=data["fingerprint"],
        created_at=data["created_at"],
        code_changes=data.get("code_changes", "pin"),  # plans saved before 0012: pinned
        graph=data.get("graph"),
        steps=tuple(
            StepPlan(
                name=s["name"],
                dependencies=tuple((dep, _EDGE_KIND[kind]) for dep, kind in s["dependencies"]),
                defaults=tuple(s["defaults"]),
                optional=s["optional"],
                priority=s["priority"],
                inputs=tuple((name, required) for name, required in s["inputs"]),
                options=_options_of(s.get("options")),
                code=s.get("code"),
            )
            for s in data["steps"]
        ),
    )


_OPTIONS_CACHE: dict[str, StepOptions] = {}


def options_to_json(options: StepOptions | None) -> str | None:
    return None if options is None else orjson.dumps(_options_dict(options)).decode()


def options_from_json(text: str) -> StepOptions:
    options: StepOptions = _cached(_OPTIONS_CACHE, text, lambda t: _options_of(orjson.loads(t)))
    return options


def _options_dict(o: StepOptions) -> dict[str, Any]:
    """The options that differ from the defaults, so a row stores only what matters."""
    found = {
        "delay": o.delay,
        "gate": o.gate,
        "expires_after": o.expires_after,
        "queue": o.queue,
        "key": o.key,
        "key_limit": o.key_limit,
        "key_from_outputs": o.key_from_outputs or None,
        "target": o.target,
        "run_priority": o.run_priority or None,
        "fail_fast": o.fail_fast or None,
        "at_end": o.at_end,
        "join": o.join,
        "join_timeout": o.join_timeout,
    }
    data: dict[str, Any] = {k: v for k, v in found.items() if v is not None}
    if o.reads is not None:
        data["reads"] = o.reads
    if o.refusal is not None:
        data["refusal"] = o.refusal
    if o.policed:
        data["policed"] = True
    if o.on_expiry is not OnExpiry.REJECT:
        data["on_expiry"] = o.on_expiry.value
    return data


def _options_of(data: Mapping[str, Any] | None) -> StepOptions | None:
    if data is None:
        return None
    gate = data.get("gate")
    return StepOptions(
        delay=data.get("delay"),
        gate=None if gate is None else Gate(gate),
        expires_after=data.get("expires_after"),
        on_expiry=OnExpiry(data.get("on_expiry", "reject")),
        queue=data.get("queue"),
        key=data.get("key"),
        key_limit=data.get("key_limit"),
        key_from_outputs=data.get("key_from_outputs", False),
        target=data.get("target"),
        run_priority=data.get("run_priority", 0),
        fail_fast=data.get("fail_fast", False),
        at_end=None if data.get("at_end") is None else AtEnd(data["at_end"]),
        join=None if data.get("join") is None else JoinMode(data["join"]),
        join_timeout=data.get("join_timeout"),
        reads=None if "reads" not in data else tuple((p, s) for p, s in data["reads"]),
        refusal=None if "refusal" not in data else (data["refusal"][0], data["refusal"][1]),
        policed=data.get("policed", False),
    )


def _payload(value: Any) -> bytes:
    # a run's input: never None (an Excerpt of no bytes is empty, and stays what it is)
    return b"" if value is None else value if isinstance(value, bytes) else bytes(value)


def _bytes(value: Any) -> bytes | None:
    # bytes as they come (a blob's 50 MB is not copied; an Excerpt keeps its size)
    return value if value is None or isinstance(value, bytes) else bytes(value)


def _dumps_payload(payload: Mapping[str, object]) -> str:
    try:
        return orjson.dumps(payload, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return orjson.dumps(payload, default=repr, option=orjson.OPT_NON_STR_KEYS).decode()


def record_from_row(row: Sequence[Any]) -> RecordRow:
    collection, key, doc, revision, updated_at, run_id, step = row
    return RecordRow(collection, key, bytes(doc), revision, updated_at, run_id, step)
