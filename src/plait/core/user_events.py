"""Events users add to a run's log: `ctx.emit(type, payload)` from a step, committed with its
attempt's success, and `engine.annotate(run_id, type, payload)` from outside, an operator
action of its own transaction.

A user's type is stored as `user.<type>`, so it never collides with plait's own event types
(none of which has a dot). Its payload is any JSON value, kept under `data` in the event's
payload (next to `step` and `attempt`, or `by`), so that none of its keys can shadow those.
Events are not blobs: an encoded payload is at most `MAX_PAYLOAD` bytes.
"""

from __future__ import annotations

import re

from .. import _codec
from .._errors import InputError
from .rows import USER_EVENT_PREFIX, UserEvent
from .txn import Transition, Txn, need

PREFIX = USER_EVENT_PREFIX
MAX_PAYLOAD = 64 * 1024  # bytes of JSON
_TYPE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")


def check_type(type_: object) -> str:
    """A user's event type, checked: 1-64 letters, digits, '_', '-' or '.', from a letter."""
    if not isinstance(type_, str) or not _TYPE.fullmatch(type_):
        raise InputError(
            "an event type is 1-64 letters, digits, '_', '-' or '.', starting with a letter "
            f"(it is stored as '{PREFIX}<type>'), got {type_!r}"
        )
    return type_


def check_payload(type_: str, payload: object) -> object:
    """The payload as plain JSON (what a store keeps and a reader gets back), checked."""
    try:
        encoded = _codec.dumps(payload)
    except _codec.EncodeError as exc:
        raise InputError(f"event {type_!r}: payload is not JSON: {exc}") from None
    if len(encoded) > MAX_PAYLOAD:
        raise InputError(
            f"event {type_!r}: payload is {len(encoded)} bytes of JSON, more than the "
            f"{MAX_PAYLOAD} an event may hold (keep large data in a record or an artifact)"
        )
    return _codec.loads(encoded)


def user_event(type_: object, payload: object) -> UserEvent:
    """An event to emit, checked (InputError naming the problem)."""
    checked = check_type(type_)
    return UserEvent(checked, check_payload(checked, payload))


def annotate(txn: Txn, run_id: str, *, event: UserEvent, by: str) -> Transition:
    """Append a user's event to a run's log, whatever the run's status."""
    yield from need(txn, run_id)
    run = txn.runs.get(run_id)
    if run is None:
        txn.result.refusal = f"run {run_id!r} does not exist"
        return
    txn.emit(run, PREFIX + event.type, None, by=by, data=event.payload)
