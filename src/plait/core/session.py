"""Session state: one JSON object per run that its steps change with `ctx.state.set` and
`ctx.state.append` (`workflow.state`), and read when they start. Pure.

The changes of an attempt travel with its successful outcome (`StepData.state`) and are applied
here, in the transaction that commits the success, to the state the run has at that moment. That
transaction holds the run row (locked on PostgreSQL; SQLite and the memory store write one
transaction at a time), so successes apply their changes one after the other, in commit order:

- `set` is last-writer-wins per key, in commit order;
- `append` never loses: two steps appending to one list in parallel both land, in the order
  their successes committed.

A failed attempt sends no changes, so they vanish with it. An append onto a key that holds
something other than a list (another step set it after this attempt read the state) fails the
attempt with code `state_conflict` (retryable, as a record's revision conflict: the retry reads
the new state); a state that would grow past `STATE_LIMIT` fails it with `state_too_large`.
Either way nothing of the attempt is committed. Each change is an event `state_changed`
(`op`, `key`, `value`, and the step), so the run's log holds the state's history.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import _codec
from .rows import RunRow, StateChange
from .txn import Txn

STATE_CONFLICT = "state_conflict"
STATE_TOO_LARGE = "state_too_large"
STATE_LIMIT = 1 << 20  # bytes of JSON a run's session state may hold
CHANGED = "state_changed"  # the event of one change


class SessionConflict(Exception):
    """The changes of an attempt cannot be applied: `code` says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def decode(data: bytes | None) -> dict[str, Any]:
    """A run's session state as a dict ({} when it has none)."""
    if not data:
        return {}
    doc = _codec.loads(data)
    return doc if isinstance(doc, dict) else {}


def apply(doc: dict[str, Any], changes: Sequence[StateChange], step: str) -> None:
    """Apply `changes` to `doc` in place; SessionConflict if an append finds no list."""
    for change in changes:
        value = _codec.loads(change.value)
        if change.op == "set":
            doc[change.key] = value
            continue
        held = doc.get(change.key)
        if held is None:
            doc[change.key] = [value]
        elif isinstance(held, list):
            held.append(value)
        else:
            raise SessionConflict(
                STATE_CONFLICT,
                f"step {step!r} appended to session state key {change.key!r}, which another "
                f"step set to a {_kind(held)} before this attempt committed; nothing of this "
                "attempt was committed",
            )


def changed(run: RunRow, changes: Sequence[StateChange], step: str) -> bytes:
    """The run's state with `changes` applied, as JSON; SessionConflict if they cannot be."""
    doc = decode(run.state)
    apply(doc, changes, step)
    data = _codec.dumps(doc)
    if len(data) > STATE_LIMIT:
        raise SessionConflict(
            STATE_TOO_LARGE,
            f"step {step!r} would make the session state of run {run.id!r} {len(data)} bytes "
            f"of JSON, over its limit of {STATE_LIMIT}; nothing of this attempt was committed "
            "(keep large data in records or artifacts, and their keys in the state)",
        )
    return data


def commit(txn: Txn, run: RunRow, step: str, changes: Sequence[StateChange], state: bytes) -> None:
    """Write the new state (`changed`) to the run, one `state_changed` event per change."""
    run.state = state
    txn.changed_states.add(run.id)
    for change in changes:
        txn.emit(run, CHANGED, step, op=change.op, key=change.key,
                 value=_codec.loads(change.value))  # fmt: skip


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "mapping"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return type(value).__name__
