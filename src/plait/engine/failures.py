"""Failed steps across runs (a dead-letter view): list them, filtered and paged, and retry many
at once.

A page is read with the store's `list_failed_steps` (the latest ended first, keyset-paged by
(finished_at, run_id, name), so a page costs its size whatever the store holds; SQL walks the
partial index `steps_failed`). The cursor is opaque to callers: a version, the position and a
digest of the filters it was made for, so a cursor pasted with other filters, from another
version, or garbled is refused saying which, never silently misread.

Retrying is the single-step operator retry (`operator.retry`) for each failed step the filter
matches, newest first, each its own transaction: a step whose run changed meanwhile (cancelled,
deleted) gets the Engine's refusal as its item, and the rest go on.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
from datetime import UTC, datetime
from typing import Any

from .._errors import InputError, PlaitError, StepError
from .._runtime import Runtime
from ..core import identity
from ..core.rows import StepRow
from . import operator
from .runs import check_limit, epoch
from .views import FailedStep, FailedStepPage, FailureFilter, FailureRetry, FailureRetryItem

CURSOR_VERSION = 1
MAX_RETRY = 1000  # failed steps one retry_failures call retries at most
SAMPLE = 20  # failed steps a retry's count names


def check_filter(f: object) -> dict[str, Any]:
    """A FailureFilter checked, as the store's keyword arguments."""
    if not isinstance(f, FailureFilter):
        raise InputError(f"filter must be a plait.FailureFilter, got {type(f).__name__}")
    found: dict[str, Any] = {}
    for name in ("workflow", "step", "code"):
        value = getattr(f, name)
        if value is not None and (not isinstance(value, str) or not value or len(value) > 200):
            raise InputError(
                f"{name} must be a non-empty string of at most 200 characters, got {value!r:.80}"
            )
        found[name] = value
    found["since"] = epoch("since", f.since)
    labels = identity.check_labels("failures", f.labels)
    if labels:  # only then: a store written before labels never sees the argument
        found["labels"] = labels
    return found


def _digest(conditions: dict[str, Any]) -> str:
    text = json.dumps(conditions, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _cursor(row: StepRow, conditions: dict[str, Any]) -> str:
    doc = [CURSOR_VERSION, row.finished_at or 0.0, row.run_id, row.name, _digest(conditions)]
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")


def _position(cursor: object, conditions: dict[str, Any]) -> tuple[float, str, str]:
    """Where a cursor made by `_cursor` resumes; InputError saying what is wrong with it."""
    garbled = InputError(f"invalid cursor {cursor!r:.80}: pass the next_cursor of a previous page")
    if not isinstance(cursor, str):
        raise garbled
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        doc = json.loads(raw)
    except (ValueError, binascii.Error):
        raise garbled from None
    if not isinstance(doc, list) or not doc or isinstance(doc[0], bool):
        raise garbled
    if doc[0] != CURSOR_VERSION:
        raise InputError(
            f"cursor {cursor!r:.80} has expired: another version of plait made it; "
            "list again from the first page (no cursor)"
        )
    match doc:
        case [_, float() | int() as at, str() as run_id, str() as name, str() as digest]:
            if isinstance(at, bool) or not math.isfinite(at):
                raise garbled
        case _:
            raise garbled
    if digest != _digest(conditions):
        raise InputError(
            f"cursor {cursor!r:.80} belongs to a listing with other filters: pass the same "
            "workflow, step, code, since and labels as for its first page, or list again without it"
        )
    return float(at), run_id, name


async def failures(rt: Runtime, f: FailureFilter, limit: int, cursor: str | None) -> FailedStepPage:
    check_limit(limit)
    conditions = check_filter(f)
    before = None if cursor is None else _position(cursor, conditions)
    store = await rt.ready()
    rows = await store.list_failed_steps(**conditions, limit=limit + 1, before=before)
    more = len(rows) > limit
    rows = rows[:limit]
    workflows = {r.id: r.workflow for r in await store.get_runs({s.run_id for s in rows})}
    found = [
        FailedStep(
            run_id=s.run_id,
            workflow=workflows.get(s.run_id, "?"),
            step=s.name,
            error=StepError(s.error_code or "failed", s.error_message or ""),
            attempts=s.attempt,
            finished_at=datetime.fromtimestamp(s.finished_at, UTC) if s.finished_at else None,
            task=s.task,
        )
        for s in rows
    ]
    next_cursor = _cursor(rows[-1], conditions) if more and rows else None
    return FailedStepPage(found, next_cursor)


async def retry_failures(
    rt: Runtime, f: FailureFilter, dry_run: bool, limit: int, by: str | None
) -> FailureRetry:
    conditions = check_filter(f)
    if not isinstance(dry_run, bool):
        raise InputError(f"dry_run must be True or False, got {dry_run!r}")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_RETRY:
        raise InputError(f"limit must be an integer between 1 and {MAX_RETRY}, got {limit!r}")
    who = operator.actor(by)
    store = await rt.ready()
    rows = await store.list_failed_steps(**conditions, limit=limit + 1, before=None)
    more = len(rows) > limit
    rows = rows[:limit]
    result = FailureRetry(
        dry_run=dry_run,
        matched=len(rows),
        more=more,
        runs=len({r.run_id for r in rows}),
        sample=[f"{r.run_id}/{r.name}" for r in rows[:SAMPLE]],
    )
    if dry_run:
        return result
    for row in rows:
        try:
            await operator.retry(rt, row.run_id, row.name, who)
        except PlaitError as exc:
            result.items.append(FailureRetryItem(row.run_id, row.name, "error", str(exc)))
        else:
            result.items.append(FailureRetryItem(row.run_id, row.name, "done"))
    return result
