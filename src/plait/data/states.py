"""Workflow-state documents: one typed document per id in a named collection, each carrying a
phase, an iteration count and its limit, a JSON context, an error and its times, changed only by
compare-and-set on its revision (semstreams' StateManager, without its lost updates):

    orders = engine.states("orders")
    s = orders.create("o-42", "received", context={"total": 99}, max_iterations=3)
    s = orders.transition("o-42", "paying", expected_revision=s.revision)  # or RevisionConflict
    s = orders.increment_iteration("o-42")      # StateError past max_iterations
    s = orders.complete("o-42")                 # or fail("o-42", "card declined"): it has ended
    page = orders.list(phase="paying", limit=100)   # by id, then page.next_after

Every change reads the document and writes it over the revision read. With `expected_revision=n`
the change is made only if the document is at revision n (else RevisionConflict, and nothing is
written); without, a concurrent writer's change is never lost: the change is read again and
applied on top, as often as needed. `create` refuses an id that exists. A document that has
ended (`complete`, `fail`) refuses every change but `delete` (StateError).

Where they live: a state collection `C` is the records collection `plait.states.C` (reserved,
so `engine.records` cannot write there). Records already give every store revisions that never
repeat, conditional writes, tombstones, paging by key and gc, so states need no table, no
migration and no store operation of their own, and any store with records has them. The cost: a
`list` filtered by phase reads the collection's documents in key order until it has a page
(phase is not indexed), fine for the thousands of documents this is for.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .. import _codec
from .._errors import InputError, RevisionConflict, StateError, StateNotFound
from .._portal import blocking
from ..core.rows import PAGE_LIMIT, RecordRow
from .records import KEY_LIMIT, check_collection, check_revision

if TYPE_CHECKING:
    from .._portal import Portal
    from ..stores import Store

PREFIX = "plait.states."  # a state collection C is the records collection plait.states.C
PHASE_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]{0,99}")
COMPLETED, FAILED = "completed", "failed"  # the phases `complete` and `fail` end a document in
# how often a change without an expected revision is read and applied again when another writer
# came first (each retry means that writer succeeded: the system as a whole makes progress)
CHANGE_ATTEMPTS = 100


def check_id(state_id: object) -> str:
    if not isinstance(state_id, str):
        raise InputError(f"a state id must be a string, got {type(state_id).__name__} {state_id!r}")
    if not state_id or len(state_id) > KEY_LIMIT or "\x00" in state_id:
        shown = state_id if len(state_id) <= 80 else state_id[:80] + "…"
        raise InputError(
            f"invalid state id {shown!r}: an id is 1-{KEY_LIMIT} characters, without NUL"
        )
    return state_id


def check_phase(phase: object, *, setting: bool = True) -> str:
    """The phase, or InputError saying what a phase may be. `setting`: the phase is to be set
    by `create` or `transition`, which may not end a document (`complete` and `fail` do)."""
    if not isinstance(phase, str) or not PHASE_RE.fullmatch(phase):
        raise InputError(
            f"invalid phase {phase!r}: a phase is 1-100 letters, digits, '_', '.' or '-', "
            "starting with a letter"
        )
    if setting and phase in (COMPLETED, FAILED):
        how = "complete(id)" if phase == COMPLETED else "fail(id, error)"
        raise InputError(
            f"phase {phase!r} ends a state document: use {how}, which also sets completed_at"
        )
    return phase


def check_max_iterations(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InputError(
            f"max_iterations must be None (no limit) or an integer >= 0, got {value!r}"
        )
    return value


def check_context(context: object) -> dict[str, Any]:
    if context is None:
        return {}
    if not isinstance(context, dict):
        raise InputError(
            f"a state's context must be a JSON object (a dict), got {type(context).__name__}"
        )
    try:
        _codec.dumps(context)
    except _codec.EncodeError as exc:
        raise InputError(f"a state's context must be JSON: {exc}") from None
    return context


def _time(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


def _epoch(when: datetime | None) -> float | None:
    return None if when is None else when.timestamp()


@dataclass(frozen=True, slots=True)
class State:
    """A workflow-state document, as `engine.states(collection)` returns it. `revision` is the
    one to pass as `expected_revision` to change it; `completed_at` is set once it has ended
    (phase `completed`, or `failed` with `error`); `max_iterations` None means no limit."""

    id: str
    phase: str
    iteration: int
    max_iterations: int | None
    context: dict[str, Any]
    error: str | None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    revision: int

    @property
    def ended(self) -> bool:
        """True once `complete` or `fail` ended it: it then refuses every change but delete."""
        return self.completed_at is not None

    def doc(self) -> dict[str, Any]:
        """What is stored (and what `plait states show --json` prints, with id and revision)."""
        return {
            "phase": self.phase,
            "iteration": self.iteration,
            "max_iterations": self.max_iterations,
            "context": self.context,
            "error": self.error,
            "created_at": _epoch(self.created_at),
            "updated_at": _epoch(self.updated_at),
            "completed_at": _epoch(self.completed_at),
        }

    @classmethod
    def from_row(cls, row: RecordRow) -> State:
        d = _codec.loads(row.doc)
        created = _time(d["created_at"])
        updated = _time(d["updated_at"])
        assert created is not None and updated is not None
        return cls(
            id=row.key,
            phase=d["phase"],
            iteration=d["iteration"],
            max_iterations=d["max_iterations"],
            context=d["context"],
            error=d["error"],
            created_at=created,
            updated_at=updated,
            completed_at=_time(d["completed_at"]),
            revision=row.revision,
        )


@dataclass(frozen=True, slots=True)
class StatePage:
    """One page of `States.list`: documents by id, and the id to pass as `after` for the next
    page (None when this is the last)."""

    items: list[State]
    next_after: str | None


class States:
    """The workflow-state documents of one collection: `engine.states("orders")`. Every method
    has an async twin (`create_async`, …)."""

    def __init__(self, store: Store, portal: Portal, ready: Any, collection: str) -> None:
        self.collection = check_collection(collection)
        self._records = PREFIX + collection
        self._store = store
        self._portal = portal
        self._ready = ready  # the engine's: opens the store on first use

    def __repr__(self) -> str:
        return f"States({self.collection!r})"

    def _row(self, state: State, now: float) -> RecordRow:
        return RecordRow(self._records, state.id, _codec.dumps(state.doc()), 0, now)

    def _not_found(self, state_id: str) -> StateNotFound:
        return StateNotFound(
            f"no state {state_id!r} in collection {self.collection!r}: create it first "
            f"(engine.states({self.collection!r}).create), or check the id"
        )

    def _ended(self, s: State, doing: str) -> StateError:
        assert s.completed_at is not None
        how = f"failed: {s.error}" if s.phase == FAILED else s.phase
        return StateError(
            f"state {s.id!r} of collection {self.collection!r} has ended ({how}, at "
            f"{s.completed_at.isoformat()}): it cannot {doing}; delete it or create another"
        )

    async def create_async(
        self,
        state_id: str,
        phase: str = "created",
        *,
        context: dict[str, Any] | None = None,
        max_iterations: int | None = None,
    ) -> State:
        """Create a document at iteration 0 (revision 1); RevisionConflict if the id exists
        (a second create never overwrites the first). `max_iterations`: how many times
        `increment_iteration` may count (None: no limit)."""
        state_id = check_id(state_id)
        phase = check_phase(phase)
        limit = check_max_iterations(max_iterations)
        ctx = check_context(context)
        await self._ready()
        now = time.time()
        at = _time(now)
        assert at is not None
        state = State(state_id, phase, 0, limit, ctx, None, at, at, None, 0)
        written, revision = await self._store.put_record(self._row(state, now), 0)
        if not written:
            raise RevisionConflict(self.collection, state_id, 0, revision, what="state")
        return replace(state, revision=revision)

    create = blocking(create_async)

    async def get_async(self, state_id: str) -> State | None:
        """The document, or None if there is no document of that id."""
        state_id = check_id(state_id)
        await self._ready()
        row = await self._store.get_record(self._records, state_id)
        return None if row is None else State.from_row(row)

    get = blocking(get_async)

    async def _change(
        self,
        state_id: str,
        expected_revision: int | None,
        change: Callable[[State, datetime], State],
    ) -> State:
        """Read, change, write over the revision read: the one way every change is made."""
        state_id = check_id(state_id)
        expected = check_revision(expected_revision)
        if expected == 0:
            raise InputError("expected_revision=0 means 'create only': use create()")
        await self._ready()
        for _ in range(CHANGE_ATTEMPTS):
            row = await self._store.get_record(self._records, state_id)
            if row is None:
                raise self._not_found(state_id)
            current = State.from_row(row)
            if expected is not None and current.revision != expected:
                raise RevisionConflict(
                    self.collection, state_id, expected, current.revision, what="state"
                )
            now = time.time()
            at = _time(now)
            assert at is not None
            changed = change(current, at)
            written, revision = await self._store.put_record(
                self._row(changed, now), current.revision
            )
            if written:
                return replace(changed, revision=revision)
            if revision == 0:
                raise self._not_found(state_id)  # deleted meanwhile
            if expected is not None:
                raise RevisionConflict(self.collection, state_id, expected, revision, what="state")
        raise StateError(
            f"state {state_id!r} of collection {self.collection!r}: other writers changed it "
            f"{CHANGE_ATTEMPTS} times while this change was being made; try again"
        )

    async def transition_async(
        self,
        state_id: str,
        phase: str,
        *,
        context: dict[str, Any] | None = None,
        expected_revision: int | None = None,
    ) -> State:
        """Move the document to `phase` (any phase but `completed` and `failed`, which
        `complete` and `fail` set), replacing its context if `context` is given.
        StateNotFound, RevisionConflict, StateError if it has ended."""
        phase = check_phase(phase)
        ctx = None if context is None else check_context(context)

        def to_phase(s: State, now: datetime) -> State:
            if s.ended:
                raise self._ended(s, f"move to phase {phase!r}")
            return replace(
                s, phase=phase, context=s.context if ctx is None else ctx, updated_at=now
            )

        return await self._change(state_id, expected_revision, to_phase)

    transition = blocking(transition_async)

    async def increment_iteration_async(
        self, state_id: str, *, expected_revision: int | None = None
    ) -> State:
        """Count one more iteration; StateError if that would pass `max_iterations` (nothing is
        written: complete or fail it instead), or if it has ended."""

        def increment(s: State, now: datetime) -> State:
            if s.ended:
                raise self._ended(s, "increment its iteration")
            if s.max_iterations is not None and s.iteration >= s.max_iterations:
                raise StateError(
                    f"state {s.id!r} of collection {self.collection!r} is at iteration "
                    f"{s.iteration} of max_iterations {s.max_iterations}: increment_iteration "
                    "refused; complete or fail it instead"
                )
            return replace(s, iteration=s.iteration + 1, updated_at=now)

        return await self._change(state_id, expected_revision, increment)

    increment_iteration = blocking(increment_iteration_async)

    async def complete_async(self, state_id: str, *, expected_revision: int | None = None) -> State:
        """End the document in phase `completed` (completed_at set); StateError if it has
        ended already."""

        def end(s: State, now: datetime) -> State:
            if s.ended:
                raise self._ended(s, "complete")
            return replace(s, phase=COMPLETED, updated_at=now, completed_at=now)

        return await self._change(state_id, expected_revision, end)

    complete = blocking(complete_async)

    async def fail_async(
        self, state_id: str, error: str, *, expected_revision: int | None = None
    ) -> State:
        """End the document in phase `failed` with `error` (a non-empty message); StateError if
        it has ended already."""
        if not isinstance(error, str) or not error.strip():
            raise InputError(f"fail() needs an error message (a non-empty string), got {error!r}")
        message = _codec.cap_message(error)

        def end(s: State, now: datetime) -> State:
            if s.ended:
                raise self._ended(s, "fail")
            return replace(s, phase=FAILED, error=message, updated_at=now, completed_at=now)

        return await self._change(state_id, expected_revision, end)

    fail = blocking(fail_async)

    async def delete_async(self, state_id: str, *, expected_revision: int | None = None) -> None:
        """Delete the document (ended or not). StateNotFound if there is none; with
        `expected_revision`, only that revision is deleted (else RevisionConflict)."""
        state_id = check_id(state_id)
        expected = check_revision(expected_revision)
        if expected == 0:
            raise InputError("expected_revision=0 means 'create only': it cannot delete")
        await self._ready()
        deleted, revision = await self._store.delete_record(self._records, state_id, expected)
        if deleted:
            return
        if revision == 0:
            raise self._not_found(state_id)
        assert expected is not None
        raise RevisionConflict(self.collection, state_id, expected, revision, what="state")

    delete = blocking(delete_async)

    async def list_async(
        self,
        phase: str | None = None,
        *,
        prefix: str = "",
        after: str | None = None,
        limit: int = 100,
    ) -> StatePage:
        """The documents (in `phase`, if given) whose id starts with `prefix`, by id, from the
        first id after `after`; at most `limit` (1-1000) of them, with the `after` of the next
        page."""
        if phase is not None:
            check_phase(phase, setting=False)
        if not isinstance(prefix, str) or len(prefix) > KEY_LIMIT or "\x00" in prefix:
            raise InputError(
                f"prefix must be a string of at most {KEY_LIMIT} characters without NUL, "
                f"got {prefix!r}"
            )
        if after is not None:
            check_id(after)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= PAGE_LIMIT:
            raise InputError(f"limit must be an integer from 1 to {PAGE_LIMIT}, got {limit!r}")
        await self._ready()
        chunk = limit + 1 if phase is None else PAGE_LIMIT
        items: list[State] = []
        cursor, more = after or "", False
        while not more:
            rows = await self._store.list_records(self._records, prefix, cursor, chunk)
            for row in rows:
                state = State.from_row(row)
                if phase is not None and state.phase != phase:
                    continue
                if len(items) == limit:
                    more = True
                    break
                items.append(state)
            if len(rows) < chunk:
                break
            cursor = rows[-1].key
        return StatePage(items, items[-1].id if more else None)

    list = blocking(list_async)
