"""Live feeds as server-sent events: a run's events, and the run-list changes.

Each is the Engine's own feed (`watch`, `watch_runs`), woken by this process's commits and the
store's pushes, never by polling faster than the Engine does. An event's `id` is where to resume
(a run event's seq; a run change's `updated_at`): a browser's EventSource sends it back as
`Last-Event-ID` when it reconnects, and nothing is lost. A comment every `HEARTBEAT` seconds
keeps proxies from closing an idle stream."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Header, Query, Request
from starlette.responses import StreamingResponse

from .. import _codec
from .._errors import InputError
from .api import Responses, engine_of, reads
from .encode import plain

router = APIRouter(prefix="/api/v1")

HEARTBEAT = 15.0
T = TypeVar("T")
_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


_RUN_END = {
    "type": "object",
    "required": ["run_id", "status"],
    "properties": {"run_id": {"type": "string"}, "status": _ref("RunStatus")},
    "additionalProperties": False,
}


def _stream(what: str, errors: tuple[int, ...], *frames: tuple[str, Any]) -> Responses:
    """The OpenAPI responses of a feed: a text/event-stream whose frames are named `event:`
    lines with a JSON `data:` line (each frame's schema in `itemSchema`), and errors before
    the stream starts."""
    items = [
        {
            "type": "object",
            "required": ["event", "data"],
            "properties": {
                "id": {"type": "string"},
                "event": {"const": kind},
                "data": {
                    "type": "string",
                    "contentMediaType": "application/json",
                    "contentSchema": schema,
                },
            },
        }
        for kind, schema in frames
    ]
    stream = {
        "description": f"Server-sent events: {what}. Comments (`: keepalive`) every "
        f"{HEARTBEAT:.0f} s while nothing happens; an `id:` to resume from (Last-Event-ID).",
        "content": {
            "text/event-stream": {
                "schema": {"type": "string", "description": "event-stream frames"},
                "itemSchema": {"oneOf": items},
            }
        },
    }
    return reads(None, *errors) | {200: stream}


def _frame(kind: str, data: Any, event_id: str | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {kind}\ndata: ".encode() + _codec.dumps(plain(data)) + b"\n\n"


async def _with_heartbeats(source: AsyncGenerator[T, None], beat: float) -> AsyncIterator[T | None]:
    """The items of `source`, and None whenever `beat` seconds pass without one."""
    pending: asyncio.Task[T] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(source))
            done, _ = await asyncio.wait({pending}, timeout=beat)
            if not done:
                yield None
                continue
            task, pending = pending, None
            try:
                yield task.result()
            except StopAsyncIteration:
                return
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
        await source.aclose()


def _resume_point(query: int | None, header: str | None, name: str) -> int | None:
    if query is not None:
        return query
    if header is None:
        return None
    try:
        value = int(header)
    except ValueError:
        raise InputError(
            f"Last-Event-ID must be the id of an event of this stream ({name})"
        ) from None
    if value < 0:
        raise InputError(f"Last-Event-ID must be >= 0, got {value}")
    return value


@router.get(
    "/runs/{run_id}/stream",
    tags=["live"],
    summary="A run's events as they are committed (SSE)",
    response_class=StreamingResponse,
    responses=_stream(
        "each event of the run (`event`), then `end` with its status when it ends",
        (404, 422),
        ("event", _ref("Event")),
        ("end", _RUN_END),
    ),
)
async def run_stream(
    request: Request,
    run_id: str,
    after_seq: Annotated[int | None, Query(ge=0, le=2**62)] = None,
    last_event_id: Annotated[str | None, Header(max_length=40)] = None,
) -> StreamingResponse:
    engine = engine_of(request)
    seq = _resume_point(after_seq, last_event_id, "a seq") or 0
    await engine.get_run_async(run_id)  # a 404 now, not a broken stream

    async def frames() -> AsyncIterator[bytes]:
        yield b"retry: 2000\n\n"
        async for event in _with_heartbeats(engine.watch_async(run_id, seq), HEARTBEAT):
            if event is None:
                yield b": keepalive\n\n"
            else:
                yield _frame("event", event, str(event.seq))
        run = await engine.get_run_async(run_id)
        yield _frame("end", {"run_id": run_id, "status": run.status})

    return StreamingResponse(frames(), media_type="text/event-stream", headers=_HEADERS)


@router.get(
    "/stream/runs",
    tags=["live"],
    summary="Runs as their status changes (SSE)",
    response_class=StreamingResponse,
    responses=_stream("a run (`run`) each time its status changes", (422,), ("run", _ref("Run"))),
)
async def runs_stream(
    request: Request,
    since: Annotated[float | None, Query(ge=0, le=1e11)] = None,
    last_event_id: Annotated[str | None, Header(max_length=40)] = None,
) -> StreamingResponse:
    engine = engine_of(request)
    start = since
    if start is None and last_event_id is not None:
        try:
            start = float(last_event_id)
        except ValueError:
            start = math.nan
        if not math.isfinite(start) or start < 0:
            raise InputError("Last-Event-ID must be the id of a run change of this stream")

    async def frames() -> AsyncIterator[bytes]:
        yield b"retry: 2000\n\n"
        async for run in _with_heartbeats(engine.watch_runs(start), HEARTBEAT):
            if run is None:
                yield b": keepalive\n\n"
            else:
                at = run.updated_at.timestamp() if run.updated_at else 0.0
                yield _frame("run", run, repr(at))

    return StreamingResponse(frames(), media_type="text/event-stream", headers=_HEADERS)
