"""The REST API, under /api/v1: one route per Engine operation, its errors the Engine's own
(`app.status_of` gives their status). Lists are keyset-paged: pass `next_cursor` back as
`cursor`; a page holds at most `MAX_LIMIT` items (more is a 422, never silently trimmed).

Each route says what it answers (`reads`, `acts`: its model in responses.py and the statuses
of its errors), for the OpenAPI document only: the answer itself is encode.JSON, sent as it
is, not validated again."""

from __future__ import annotations

import re
import time
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Security
from fastapi.security import APIKeyHeader, HTTPBearer
from starlette.responses import StreamingResponse

from .._errors import ConfigError, InputError
from ..core.identity import parse_label
from ..core.rate import Rate
from ..engine.engine import Engine
from ..engine.views import FailureFilter, RunFilter
from ..workflow.options import ApprovalPolicy
from . import responses as A
from . import views
from .bodies import (
    AnnotateBody,
    ApproveBody,
    BulkBody,
    CancelBody,
    FailureRetryBody,
    ForkBody,
    QueueBody,
    RejectBody,
    ScheduleBody,
    SignalBody,
    StartBody,
)
from .encode import JSON, plain
from .errors import NotFound

router = APIRouter(prefix="/api/v1")

MAX_LIMIT = 500
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"items per page, 1-{MAX_LIMIT}")]
Cursor = Annotated[str | None, Query(max_length=500, description="next_cursor of a previous page")]
When = Annotated[
    datetime | float | None,
    Query(description="an ISO 8601 date-time (naive: UTC) or epoch seconds"),
]
_ARTIFACT_ID = re.compile(r"[0-9a-f]{32}")

# what each error status means, the same on every route that can answer it
ERRORS = {
    400: "The body is not valid JSON (MalformedJSON).",
    401: "A call that changes state came without the token header (Unauthorized).",
    403: "The token is wrong (Forbidden).",
    404: "It names a run, step, workflow, queue, schedule, document, artifact or blob that "
    "does not exist.",
    409: "The run's (or schedule's) state does not allow it, or the id is taken.",
    422: "Invalid input: a parameter or a body field (ValidationError, with `details`), or "
    "a value the Engine refuses (InputError, ConfigError, CronError).",
    503: "The store cannot be reached (StoreError).",
}
Responses = dict[int | str, dict[str, Any]]


TOKEN_HEADER = "X-Plait-Token"  # noqa: S105  # a header name, not a secret
# The token, as the document says it: either header. They only document it (auto_error off):
# app.py's guard checks it, before any route, for every call that changes state.
TOKEN = [
    Security(APIKeyHeader(
        name=TOKEN_HEADER, scheme_name="token", auto_error=False,
        description="the server's token; a server without one takes any value",
    )),
    Security(HTTPBearer(
        scheme_name="bearer", auto_error=False, description="the server's token, as a bearer"
    )),
]  # fmt: skip


def reads(model: type[A.Answer] | None, *errors: int, status: int = 200) -> Responses:
    """The OpenAPI responses of a route: `model` at `status`, `Error` at each error status
    (and 503, which any route can answer)."""
    out: Responses = {}
    if model is not None:
        out[status] = {"model": model, "description": f"Success: {model.__name__}."}
    for code in (*errors, 503):
        out[code] = {"model": A.Error, "description": ERRORS[code]}
    return out


def acts(model: type[A.Answer], *errors: int, status: int = 200) -> Responses:
    """`reads`, for a route that changes state: it needs the token (401, 403)."""
    return reads(model, 401, 403, *errors, status=status)


_DOWNLOAD = {
    "description": "The artifact's bytes, to download, whatever type the step declared.",
    "content": {
        "application/octet-stream": {
            "schema": {"type": "string", "contentMediaType": "application/octet-stream"}
        }
    },
    "headers": {
        "Content-Disposition": {
            "description": "attachment; its name, as safe ASCII",
            "required": True,
            "schema": {"type": "string"},
        },
        "X-Plait-SHA256": {
            "description": "the SHA-256 of the bytes, in hex",
            "required": True,
            "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        },
    },
}
_BLOB = {
    "description": "The payload as stored: its JSON bytes, unchanged.",
    "content": {
        "application/json": {
            "schema": {"title": "Payload", "description": "any JSON value: a step's payload"}
        }
    },
}


def engine_of(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def actor(request: Request) -> str:
    """Who acts, for the run's log: the API and the caller's address (never the token)."""
    client = request.client.host if request.client else "unknown"
    return f"api@{client}"


# -- runs ----------------------------------------------------------------------------------------


def labels_of(texts: list[str]) -> dict[str, str] | None:
    """`label=key=value` query parameters as labels (None: none); InputError for a bad one."""
    labels: dict[str, str] = {}
    for text in texts:
        key, value = parse_label(text)
        if key in labels:
            raise InputError(f"label {key!r} is given twice")
        labels[key] = value
    return labels or None


@router.get(
    "/runs", tags=["runs"], summary="List runs, newest first", responses=reads(A.RunPage, 422)
)
async def list_runs(
    request: Request,
    workflow: Annotated[str | None, Query(max_length=200)] = None,
    status: Annotated[str | None, Query(max_length=20)] = None,
    created_from: When = None,
    created_to: When = None,
    q: Annotated[
        str | None, Query(max_length=200, description="text in run id, name or error")
    ] = None,
    label: Annotated[
        list[str] | None,
        Query(max_length=32, description="key=value: runs with every label given"),
    ] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
    count: bool = False,
) -> JSON:
    engine = engine_of(request)
    labels = labels_of(label or [])
    as_of = time.time()  # before the read: a change after it is in the read or after as_of
    page = await engine.list_runs_async(
        workflow=workflow,
        status=status,
        created_from=created_from,
        created_to=created_to,
        text=q,
        labels=labels,
        limit=limit,
        cursor=cursor,
    )
    body: dict[str, Any] = {"runs": page.runs, "next_cursor": page.next_cursor, "as_of": as_of}
    if count:
        where = RunFilter(workflow, status, created_from, created_to, q, labels)
        body["count"] = await engine.count_runs_async(where)
    return JSON(body)


@router.post(
    "/runs",
    tags=["runs"],
    summary="Start a run of a workflow the store knows (200: its run_id existed, that run)",
    status_code=201,
    responses={
        **acts(A.Run, 400, 404, 409, 422, status=201),
        200: {"model": A.Run, "description": "Success: the run of that run_id, which existed."},
    },
    dependencies=TOKEN,
)
async def start_run(request: Request, body: StartBody) -> JSON:
    engine = engine_of(request)
    policy = None
    if body.approval_policy is not None:
        p = body.approval_policy
        policy = ApprovalPolicy(p.mode, allow=p.allow, block=p.block)
    handle = await engine.start_async(
        body.workflow, body.input, run_id=body.run_id, priority=body.priority, name=body.name,
        labels=body.labels, metadata=body.metadata, if_exists=body.if_exists,
        approval_policy=policy,
    )  # fmt: skip
    return JSON(await engine.get_run_async(handle.id), status_code=201 if handle.created else 200)


@router.get("/runs/{run_id}", tags=["runs"], summary="A run", responses=reads(A.Run, 404, 422))
async def get_run(request: Request, run_id: str) -> JSON:
    return JSON(await engine_of(request).get_run_async(run_id))


@router.get(
    "/runs/{run_id}/steps",
    tags=["runs"],
    summary="A run's steps in definition order",
    responses=reads(A.StepList, 404, 422),
)
async def get_steps(request: Request, run_id: str) -> JSON:
    return JSON({"steps": await engine_of(request).steps_async(run_id)})


@router.get(
    "/runs/{run_id}/steps/{step}",
    tags=["runs"],
    summary="One step: its inputs, output, error, attempts, events, artifacts, and why it waits",
    responses=reads(A.StepDetail, 404, 422),
)
async def get_step(request: Request, run_id: str, step: str) -> JSON:
    return JSON(await views.step_detail(engine_of(request), run_id, step))


@router.get(
    "/runs/{run_id}/events",
    tags=["runs"],
    summary="A run's events after a seq",
    responses=reads(A.EventPage, 404, 422),
)
async def get_events(
    request: Request,
    run_id: str,
    after_seq: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
) -> JSON:
    events = await engine_of(request).events_async(run_id, after_seq, limit)
    return JSON({"events": events, "last_seq": events[-1].seq if events else after_seq})


@router.get(
    "/runs/{run_id}/inspect",
    tags=["runs"],
    summary="Counts per status and what waits on what",
    responses=reads(A.Inspection, 404, 422),
)
async def inspect_run(request: Request, run_id: str) -> JSON:
    seen = await engine_of(request).inspect_async(run_id)
    return JSON({"run": seen.run, "counts": seen.counts, "blockers": seen.blockers,
                 "duration": seen.duration, "notes": seen.notes})  # fmt: skip


@router.get(
    "/runs/{run_id}/graph",
    tags=["runs"],
    summary="A run's DAG, laid out, fan-outs grouped",
    responses=reads(A.Graph, 404, 422),
)
async def get_graph(
    request: Request,
    run_id: str,
    expand: Annotated[list[str] | None, Query(max_length=20)] = None,
) -> JSON:
    return JSON(await views.graph(engine_of(request), run_id, set(expand or ())))


@router.get(
    "/runs/{run_id}/timeline",
    tags=["runs"],
    summary="One bar per attempt: queued, then ran",
    responses=reads(A.Timeline, 404, 422),
)
async def get_timeline(request: Request, run_id: str) -> JSON:
    return JSON(await views.timeline(engine_of(request), run_id))


@router.get(
    "/runs/{run_id}/artifacts",
    tags=["data"],
    summary="The artifacts a run's steps saved",
    responses=reads(A.ArtifactList, 404, 422),
)
async def get_artifacts(request: Request, run_id: str) -> JSON:
    return JSON({"artifacts": await engine_of(request).artifacts_async(run_id)})


@router.get(
    "/runs/{run_a}/diff/{run_b}",
    tags=["history"],
    summary="Two runs compared step by step",
    responses=reads(A.Diff, 404, 422),
)
async def diff_runs(request: Request, run_a: str, run_b: str) -> JSON:
    return JSON({"steps": await engine_of(request).diff_async(run_a, run_b)})


# -- operator actions ----------------------------------------------------------------------------


@router.post(
    "/runs/{run_id}/cancel",
    tags=["operator"],
    summary="Cancel a run",
    responses=acts(A.Run, 400, 404, 409, 422),
    dependencies=TOKEN,
)
async def cancel_run(request: Request, run_id: str, body: CancelBody | None = None) -> JSON:
    reason = body.reason if body else None
    return JSON(await engine_of(request).cancel_async(run_id, reason, by=actor(request)))


@router.post(
    "/runs/{run_id}/pause",
    tags=["operator"],
    summary="Pause a run",
    responses=acts(A.Run, 404, 409, 422),
    dependencies=TOKEN,
)
async def pause_run(request: Request, run_id: str) -> JSON:
    return JSON(await engine_of(request).pause_async(run_id, by=actor(request)))


@router.post(
    "/runs/{run_id}/resume",
    tags=["operator"],
    summary="Resume a paused run",
    responses=acts(A.Run, 404, 409, 422),
    dependencies=TOKEN,
)
async def resume_run(request: Request, run_id: str) -> JSON:
    return JSON(await engine_of(request).resume_async(run_id, by=actor(request)))


@router.post(
    "/runs/{run_id}/resume-failed",
    tags=["operator"],
    summary="Run a failed or cancelled run again (its failed, cancelled and skipped steps)",
    responses=acts(A.Run, 404, 409, 422),
    dependencies=TOKEN,
)
async def resume_failed_run(request: Request, run_id: str) -> JSON:
    return JSON(await engine_of(request).resume_failed_async(run_id, by=actor(request)))


@router.post(
    "/runs/{run_id}/steps/{step}/retry",
    tags=["operator"],
    summary="Retry a failed step",
    responses=acts(A.Run, 404, 409, 422),
    dependencies=TOKEN,
)
async def retry_step(request: Request, run_id: str, step: str) -> JSON:
    engine = engine_of(request)
    await views.known_step(engine, run_id, step)
    return JSON(await engine.retry_async(run_id, step, by=actor(request)))


@router.post(
    "/runs/{run_id}/steps/{step}/approve",
    tags=["operator"],
    summary="Approve a waiting step",
    responses=acts(A.Step, 400, 404, 409, 422),
    dependencies=TOKEN,
)
async def approve_step(
    request: Request, run_id: str, step: str, body: ApproveBody | None = None
) -> JSON:
    engine = engine_of(request)
    await views.known_step(engine, run_id, step)
    note = body.note if body else None
    return JSON(await engine.approve_async(run_id, step, by=actor(request), note=note))


@router.post(
    "/runs/{run_id}/steps/{step}/reject",
    tags=["operator"],
    summary="Reject a waiting step",
    responses=acts(A.Step, 400, 404, 409, 422),
    dependencies=TOKEN,
)
async def reject_step(
    request: Request, run_id: str, step: str, body: RejectBody | None = None
) -> JSON:
    engine = engine_of(request)
    await views.known_step(engine, run_id, step)
    reason = body.reason if body else None
    return JSON(await engine.reject_async(run_id, step, reason=reason, by=actor(request)))


@router.post(
    "/runs/{run_id}/signals/{name}",
    tags=["operator"],
    summary="Deliver a signal",
    responses=acts(A.Signalled, 400, 404, 409, 422),
    dependencies=TOKEN,
)
async def send_signal(request: Request, run_id: str, name: str, body: SignalBody) -> JSON:
    engine = engine_of(request)
    await views.known_step(engine, run_id, name)
    counted = await engine.signal_async(run_id, name, body.payload, by=actor(request))
    return JSON({"delivered": counted})


@router.post(
    "/runs/{run_id}/events",
    tags=["operator"],
    summary="Append an event to a run's log (user.<type>)",
    responses=acts(A.Annotated, 400, 404, 422),
    dependencies=TOKEN,
)
async def annotate_run(request: Request, run_id: str, body: AnnotateBody) -> JSON:
    engine = engine_of(request)
    await engine.annotate_async(run_id, body.type, body.payload, by=actor(request))
    return JSON({"run_id": run_id, "type": f"user.{body.type}"})


@router.post(
    "/runs/{run_id}/fork",
    tags=["history"],
    summary="Fork a run from a step",
    status_code=201,
    responses=acts(A.Run, 400, 404, 409, 422, status=201),
    dependencies=TOKEN,
)
async def fork_run(request: Request, run_id: str, body: ForkBody) -> JSON:
    engine = engine_of(request)
    handle = await engine.fork_async(
        run_id, body.from_step, body.input, body.overrides,
        new_run_id=body.new_run_id, by=actor(request),
    )  # fmt: skip
    return JSON(await engine.get_run_async(handle.id), status_code=201)


@router.delete(
    "/runs/{run_id}",
    tags=["operator"],
    summary="Delete a finished run",
    responses=acts(A.Deleted, 404, 409, 422),
    dependencies=TOKEN,
)
async def delete_run(request: Request, run_id: str, force: bool = False) -> JSON:
    await engine_of(request).delete_run_async(run_id, force=force)
    return JSON({"deleted": run_id})


@router.post(
    "/bulk",
    tags=["operator"],
    summary="One action on many runs (dry run by default)",
    responses=acts(A.BulkResult, 400, 422),
    dependencies=TOKEN,
)
async def bulk(request: Request, body: BulkBody) -> JSON:
    where = None
    if body.filter is not None:
        f = body.filter
        where = RunFilter(f.workflow, f.status, f.created_from, f.created_to, f.text, f.labels)
    result = await engine_of(request).bulk_async(
        body.action,
        run_ids=body.run_ids,
        filter=where,
        dry_run=body.dry_run,
        limit=body.limit,
        by=actor(request),
        reason=body.reason,
    )
    return JSON(result)


@router.get(
    "/waiting",
    tags=["operator"],
    summary="Steps waiting for an approval or a signal",
    responses=reads(A.WaitingList, 404, 422),
)
async def waiting(
    request: Request,
    limit: Limit = 100,
    run_id: Annotated[
        str | None, Query(max_length=500, description="only this run's waiting steps")
    ] = None,
) -> JSON:
    engine = engine_of(request)
    return JSON({"waiting": await engine.list_waiting_async(limit=limit, run_id=run_id)})


@router.get(
    "/failed-steps",
    tags=["runs"],
    summary="Failed steps across runs, latest first",
    responses=reads(A.FailedStepPage, 422),
)
async def failed_steps(
    request: Request,
    workflow: Annotated[str | None, Query(max_length=200)] = None,
    step: Annotated[str | None, Query(max_length=200)] = None,
    code: Annotated[str | None, Query(max_length=200)] = None,
    since: When = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> JSON:
    page = await engine_of(request).failures_async(
        workflow=workflow, step=step, code=code, since=since, limit=limit, cursor=cursor
    )
    return JSON({"steps": page.steps, "next_cursor": page.next_cursor})


@router.post(
    "/failed-steps/retry",
    tags=["operator"],
    summary="Retry the failed steps a filter matches (dry run by default)",
    responses=acts(A.FailureRetry, 400, 422),
    dependencies=TOKEN,
)
async def retry_failed_steps(request: Request, body: FailureRetryBody) -> JSON:
    where = FailureFilter(body.workflow, body.step, body.code, body.since)
    result = await engine_of(request).retry_failures_async(
        where, dry_run=body.dry_run, limit=body.limit, by=actor(request)
    )
    return JSON(result)


# -- data ----------------------------------------------------------------------------------------


@router.get(
    "/artifacts/{artifact_id}",
    tags=["data"],
    summary="Download an artifact's bytes",
    response_class=StreamingResponse,
    responses=reads(None, 404, 422) | {200: _DOWNLOAD},
)
async def download_artifact(request: Request, artifact_id: str) -> StreamingResponse:
    if not _ARTIFACT_ID.fullmatch(artifact_id):
        raise InputError(f"an artifact id is 32 lowercase hex digits, got {artifact_id!r:.80}")
    engine = engine_of(request)
    opened = await engine.open_artifact_async(artifact_id)
    meta = await views.artifact_meta(engine, artifact_id)

    def chunks() -> Any:
        with opened:
            while chunk := opened.read(1 << 16):
                yield chunk

    # the user's name goes into the header as a quoted, ASCII-only token: never a path
    shown = re.sub(r"[^A-Za-z0-9._-]", "_", meta.name)[:100] or "artifact"
    headers = {
        "Content-Disposition": f'attachment; filename="{shown}"',
        "Content-Length": str(meta.size),
        "X-Plait-SHA256": meta.sha256,
    }
    # served as bytes to download, whatever type the step declared: never rendered here
    return StreamingResponse(chunks(), media_type="application/octet-stream", headers=headers)


@router.get(
    "/blobs/{sha256}",
    tags=["data"],
    summary="A payload kept as a blob, by its SHA-256",
    response_class=StreamingResponse,
    responses=reads(None, 404, 422) | {200: _BLOB},
)
async def get_blob(request: Request, sha256: str) -> StreamingResponse:
    data = await engine_of(request).get_blob_async(sha256)
    return StreamingResponse(iter([data]), media_type="application/json")


@router.get(
    "/records/{collection}",
    tags=["data"],
    summary="Documents of a collection, by key",
    responses=reads(A.RecordPage, 422),
)
async def list_records(
    request: Request,
    collection: str,
    prefix: Annotated[str, Query(max_length=1000)] = "",
    after: Annotated[str | None, Query(max_length=1000)] = None,
    limit: Limit = 100,
) -> JSON:
    page = await engine_of(request).records(collection).list_async(prefix, after=after, limit=limit)
    return JSON({"records": page.items, "next_after": page.next_after})


@router.get(
    "/records/{collection}/{key}",
    tags=["data"],
    summary="One document",
    responses=reads(A.Document, 404, 422),
)
async def get_record(request: Request, collection: str, key: str) -> JSON:
    found = await engine_of(request).records(collection).get_async(key)
    if found is None:
        raise NotFound(f"no document {key!r} in collection {collection!r}")
    doc, revision = found
    return JSON({"key": key, "doc": doc, "revision": revision})


@router.get(
    "/states/{collection}",
    tags=["data"],
    summary="Workflow-state documents, by id",
    responses=reads(A.StatePage, 422),
)
async def list_states(
    request: Request,
    collection: str,
    phase: Annotated[str | None, Query(max_length=100)] = None,
    prefix: Annotated[str, Query(max_length=1000)] = "",
    after: Annotated[str | None, Query(max_length=1000)] = None,
    limit: Limit = 100,
) -> JSON:
    states = engine_of(request).states(collection)
    page = await states.list_async(phase, prefix=prefix, after=after, limit=limit)
    return JSON({"states": page.items, "next_after": page.next_after})


@router.get(
    "/states/{collection}/{state_id}",
    tags=["data"],
    summary="One workflow-state document",
    responses=reads(A.StateDoc, 404, 422),
)
async def get_state(request: Request, collection: str, state_id: str) -> JSON:
    found = await engine_of(request).states(collection).get_async(state_id)
    if found is None:
        raise NotFound(f"no state {state_id!r} in collection {collection!r}")
    return JSON(found)


# -- workflows, workers, queues, schedules -------------------------------------------------------


@router.get(
    "/workflows",
    tags=["workers"],
    summary="Workflow versions the store knows",
    responses=reads(A.WorkflowList),
)
async def workflows(request: Request) -> JSON:
    return JSON({"workflows": await engine_of(request).workflows_async()})


@router.get(
    "/workflows/{name}/topology",
    tags=["workers"],
    summary="Which workers can run which steps",
    responses=reads(A.Topology, 404, 422),
)
async def topology(
    request: Request,
    name: str,
    fingerprint: Annotated[str | None, Query(max_length=100)] = None,
) -> JSON:
    engine = engine_of(request)
    if not any(w.name == name for w in await engine.workflows_async()):
        raise NotFound(f"unknown workflow {name!r}: no version of it is registered in the store")
    return JSON((await engine.topology_async(name, fingerprint=fingerprint)).as_dict())


@router.get(
    "/workers",
    tags=["workers"],
    summary="Workers sharing this store",
    responses=reads(A.WorkerList, 422),
)
async def workers(request: Request, include_dead: bool = False) -> JSON:
    found = await engine_of(request).workers_async(include_dead=include_dead)
    return JSON({"workers": [{**plain(w), "live": w.live} for w in found]})


@router.get(
    "/queues",
    tags=["queues"],
    summary="Configured queues, with their backlog",
    responses=reads(A.QueueList),
)
async def list_queues(request: Request) -> JSON:
    return JSON({"queues": await views.queues(engine_of(request))})


@router.get(
    "/queues/{name}",
    tags=["queues"],
    summary="One configured queue",
    responses=reads(A.Queue, 404, 422),
)
async def get_queue(request: Request, name: str) -> JSON:
    for queue in await engine_of(request).queues_async():
        if queue.name == name:
            return JSON(queue)
    raise NotFound(f"no queue named {name!r} is configured")


@router.put(
    "/queues/{name}",
    tags=["queues"],
    summary="Set a queue's limits",
    responses=acts(A.Queue, 400, 422),
    dependencies=TOKEN,
)
async def set_queue(request: Request, name: str, body: QueueBody) -> JSON:
    rate = None
    if body.rate is not None:
        try:
            rate = Rate(body.rate.count, body.rate.per, body.rate.burst)
        except ValueError as exc:
            raise ConfigError(f"queue {name!r}: {exc}") from None
    queue = await engine_of(request).configure_queue_async(
        name, concurrency=body.concurrency, rate=rate
    )
    return JSON(queue)


@router.get(
    "/schedules", tags=["schedules"], summary="Every schedule", responses=reads(A.ScheduleList)
)
async def list_schedules(request: Request) -> JSON:
    return JSON({"schedules": await engine_of(request).schedules_async()})


async def _schedule(engine: Engine, name: str) -> Any:
    for schedule in await engine.schedules_async():
        if schedule.name == name:
            return schedule
    raise NotFound(f"no schedule named {name!r}")


@router.get(
    "/schedules/{name}",
    tags=["schedules"],
    summary="One schedule",
    responses=reads(A.Schedule, 404, 422),
)
async def get_schedule(request: Request, name: str) -> JSON:
    return JSON(await _schedule(engine_of(request), name))


@router.put(
    "/schedules/{name}",
    tags=["schedules"],
    summary="Add or replace a schedule",
    responses=acts(A.Schedule, 400, 404, 409, 422),
    dependencies=TOKEN,
)
async def put_schedule(request: Request, name: str, body: ScheduleBody) -> JSON:
    schedule = await engine_of(request).schedule_async(
        name, body.workflow, cron=body.cron, input=body.input,
        timezone=body.timezone, catch_up=body.catch_up,
    )  # fmt: skip
    return JSON(schedule)


@router.post(
    "/schedules/{name}/pause",
    tags=["schedules"],
    summary="Pause a schedule",
    responses=acts(A.Schedule, 404, 409, 422),
    dependencies=TOKEN,
)
async def pause_schedule(request: Request, name: str) -> JSON:
    engine = engine_of(request)
    await _schedule(engine, name)
    return JSON(await engine.pause_schedule_async(name))


@router.post(
    "/schedules/{name}/resume",
    tags=["schedules"],
    summary="Resume a schedule",
    responses=acts(A.Schedule, 404, 409, 422),
    dependencies=TOKEN,
)
async def resume_schedule(request: Request, name: str) -> JSON:
    engine = engine_of(request)
    await _schedule(engine, name)
    return JSON(await engine.resume_schedule_async(name))


@router.delete(
    "/schedules/{name}",
    tags=["schedules"],
    summary="Delete a schedule",
    responses=acts(A.Deleted, 404, 422),
    dependencies=TOKEN,
)
async def delete_schedule(request: Request, name: str) -> JSON:
    if not await engine_of(request).delete_schedule_async(name):
        raise NotFound(f"no schedule named {name!r}")
    return JSON({"deleted": name})
