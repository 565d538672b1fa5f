"""What a running step can see and do: `ctx: plait.StepContext`."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import os

    from ..core.rows import ArtifactRow, RecordWrite, StepData, UserEvent
    from ..data.artifacts import ArtifactRef, ArtifactStorage

    # a running step's context spawns tasks of its Workflow: the one import cycle of the
    # workflow wing, kept to type hints here and a function-local import in _spawning
    from .definition import Workflow
    from .tasks import Handle, Spawner

from .._errors import ChildFailed, StepCancelled
from .session import SessionState

logger = logging.getLogger("plait.step")
NO_LABELS: Mapping[str, str] = MappingProxyType({})  # a run started without labels
OMITTED: Any = type("Omitted", (), {"__repr__": lambda self: "<omitted>"})()  # no input= given


@dataclass(frozen=True, slots=True)
class CallEnd:
    """Where a sub-workflow run called by `ctx.call` is: `status` is its run status; `output`
    its output (a completed run's); `code` and `message` its error (an ended run's)."""

    status: str
    output: Any = None
    code: str | None = None
    message: str | None = None


class Caller(Protocol):
    """What a worker gives a running step's context to call workflows with: `call` starts the
    run `child_id` of `workflow` with `input`, linked to the step, unless it exists (then it is
    that run), and says where it is. Async, on the worker's loop (`loop`)."""

    loop: asyncio.AbstractEventLoop

    async def call(self, workflow: Workflow, child_id: str, input: Any) -> CallEnd: ...


class CallWaits(BaseException):
    """Raised by `ctx.call` when the child run has not ended: the attempt ends here and the
    step waits for it without a worker (`core.calls`). A BaseException, so that a handler's
    `except Exception` lets it through; a handler must not swallow it."""

    def __init__(self, child_id: str) -> None:
        super().__init__(child_id)
        self.child_id = child_id


# a child run's id is its caller's run id, step, iteration and call number (a spawned step's
# '/' made ':', which no step name has); past the longest run id (200), or with a character a
# run id cannot have, a digest of that instead
_RUN_ID = re.compile(r"^[A-Za-z0-9_.:@\-]{1,200}$")


def child_run_id(run_id: str, step: str, iteration: int, n: int) -> str:
    """The id of the `n`-th (from 1) run a step's handler calls on its `iteration`-th pass:
    the same on every attempt, so that a re-run of the step finds its children."""
    found = f"{run_id}.{step.replace('/', ':')}.{iteration}.{n}"
    if _RUN_ID.fullmatch(found):
        return found
    digest = hashlib.sha256(found.encode()).hexdigest()[:32]
    return f"{run_id[:100]}.call-{digest}"


@dataclass(frozen=True, slots=True)
class CaughtError:
    """The failure a catching step handles (`ctx.error`): the step that failed, and the code
    and message of its error."""

    step: str
    code: str | None
    message: str | None

    def to_dict(self) -> dict[str, str | None]:
        return {"step": self.step, "code": self.code, "message": self.message}


class StepContext:
    """Handed to a step that declares a parameter annotated `plait.StepContext` (or named `ctx`)."""

    __slots__ = (
        "_artifact_names", "_artifact_storage", "_artifacts", "_caller", "_calls", "_cancelled",
        "_definition", "_events", "_lease", "_lock", "_log", "_records", "_run_labels", "_spawner",
        "_state", "attempt", "error", "input", "iteration", "labels", "run_id", "step",
        "worker_id", "workflow",
    )  # fmt: skip

    def __init__(
        self,
        *,
        run_id: str,
        step: str,
        workflow: str,
        attempt: int,
        run_input: Mapping[str, Any],
        iteration: int = 0,
        definition: Workflow | None = None,
        artifacts: ArtifactStorage | None = None,
        worker_id: str | None = None,
        labels: Iterable[str] = (),
        lease_expires_at: float | None = None,
        run_labels: Mapping[str, str] | None = None,
    ) -> None:
        self.run_id = run_id
        self.step = step
        self.workflow = workflow
        self.attempt = attempt  # 1 for the first attempt
        self.iteration = iteration  # 0 on the first pass; a plait.Goto back through it adds 1
        self.input = run_input
        # a catching step (`catches=`, `at_end="failed"`): the failure it handles; else None
        self.error: CaughtError | None = None
        self.worker_id = worker_id  # the worker running it (None: a replay or a unit test)
        self.labels = frozenset(labels)  # that worker's labels (`plait worker --labels`)
        self._lease = lease_expires_at
        # set once by the worker (any thread), read by the handler (a flag: a threading.Event
        # per step was a tenth of a no-op step's cost, and nothing waits on it)
        self._cancelled = False
        self._run_labels: Mapping[str, str] = (
            NO_LABELS if not run_labels else MappingProxyType(dict(run_labels))
        )
        self._lock = threading.Lock()
        self._definition = definition  # for the tasks it may spawn
        self._spawner: Spawner | None = None
        self._records: list[RecordWrite] = []  # ctx.record: sent with the success only
        self._artifacts: list[ArtifactRow] = []  # ctx.save_artifact: idem
        self._events: list[UserEvent] = []  # ctx.emit: idem
        self._artifact_storage = artifacts  # None: held in memory, never kept (replay)
        self._artifact_names: set[str] = set()
        self._state = SessionState(step=step)  # the run's session state: the worker loads it
        self._caller: Caller | None = None  # starts and reads sub-workflow runs: the worker's
        self._calls = 0  # ctx.call made by this attempt so far (they number the child runs)
        self._log: _StepLogger | None = None  # made when first used

    @property
    def log(self) -> _StepLogger:
        """A logger whose records carry the run id, the step and the attempt."""
        if self._log is None:
            extra = {"run_id": self.run_id, "step": self.step, "attempt": self.attempt}
            self._log = _StepLogger(logger, extra)
        return self._log

    @property
    def lease_expires_at(self) -> datetime | None:
        """When this attempt's lease expires unless the worker renews it (it does, every third
        of the lease, while the step runs): past it, another worker may take the step over.
        None outside a worker (a replay, a unit test)."""
        lease = self._lease
        return None if lease is None else datetime.fromtimestamp(lease, UTC)

    @property
    def run_labels(self) -> Mapping[str, str]:
        """The labels the run was started with (`start(..., labels=)`), read-only; empty if
        none. Loaded with the claim, in the read that loads the step's inputs."""
        return self._run_labels

    def _load_labels(self, labels: Mapping[str, str] | None) -> None:
        self._run_labels = NO_LABELS if not labels else MappingProxyType(dict(labels))

    def _renewed(self, lease_expires_at: float) -> None:
        self._lease = lease_expires_at

    @property
    def state(self) -> SessionState:
        """The run's session state, one JSON object per run: `get(key, default)`, `set(key,
        value)`, `append(key, value)`. It holds what the successes committed before this step
        started, plus this attempt's own changes; the changes are committed with this attempt's
        success only, in commit order (`set`: the last success wins; `append`: none is lost)."""
        return self._state

    def _load_state(self, data: bytes | None) -> None:
        self._state = SessionState(data, step=self.step)

    @property
    def cancelled(self) -> bool:
        """True once the worker asks this step to stop (timeout, lease lost, shutdown, cancel)."""
        return self._cancelled

    def check_cancelled(self) -> None:
        """Raise `StepCancelled` if the step should stop; call it between units of work."""
        if self._cancelled:
            raise StepCancelled(
                f"step {self.step!r} of run {self.run_id!r} was asked to stop",
                run_id=self.run_id,
                step=self.step,
            )

    def spawn(
        self,
        fn: Callable[..., Any] | str,
        *,
        name: str | None = None,
        input: Any = OMITTED,
        inputs: Mapping[str, Handle | str] | None = None,
        args: Mapping[str, Any] | None = None,
        after: Iterable[Handle] = (),
        not_before: datetime | None = None,
        optional: bool | None = None,
        priority: int | None = None,
        colocate: bool = False,
        join: bool = True,
    ) -> Handle:
        """Add a step running task `fn` (`@wf.task`) to this run, once this step succeeds.

        What the task receives: `input` binds its first parameter (after ctx) to a JSON
        value, or, given a handle, to that spawned step's output; `inputs` binds parameters
        by name to outputs, each of a handle or of a workflow step named by a string (one
        upstream of this step, so done); `args` binds parameters by name to JSON values. The
        new step waits for the handles it reads (and is skipped if one does not end done).

        `name` (default `<task>-<n>`) must be unique among this step's spawns; `after` orders
        it after other handles of this step; `not_before` delays it; `colocate=True` runs it
        on this worker. `join=True`: this step ends when the steps it spawned have (return
        handles to gather their outputs); `join=False` detaches it: this step ends with its
        own output, the spawned step runs on, and the run ends when it has (its failure
        fails the run unless it is optional). A misuse fails this step with code
        `invalid_spawn`, nothing of the attempt committed."""
        return self._spawning().spawn(
            fn,
            name=name,
            input=input,
            inputs=inputs,
            args=args,
            join=join,
            after=after,
            not_before=not_before,
            optional=optional,
            priority=priority,
            colocate=colocate,
        )

    def map(self, fn: Callable[..., Any] | str, items: Iterable[Any]) -> list[Handle]:
        """Spawn task `fn` once per item (the item is its input); return the handles, in order."""
        return self._spawning().map(fn, items)

    def call(self, workflow: Workflow, input: Any = None) -> Any:
        """Run `workflow` as a sub-workflow with `input` and return its run's output ({sink:
        output}). The first time, this starts a child run (linked to this run and step: its id
        is `<run>.<step>.<iteration>.<n>`, n counting this handler's calls) and ends the attempt
        here: the step waits for the child without holding a worker, and runs again, from the
        top, when it ends; this call then returns at once (a handler is replayed up to its
        next call, so what it does before a call must be safe to repeat, as for a retry).
        A child that failed or was cancelled raises `plait.ChildFailed` (its code is the
        child's error code). For sync handlers; in an async handler, `await ctx.call_async`."""
        caller = self._calling()
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is caller.loop:
            raise RuntimeError(
                "ctx.call blocks: in an async handler, use `await ctx.call_async(...)`"
            )
        child_id = self._next_child()
        future = asyncio.run_coroutine_threadsafe(
            caller.call(workflow, child_id, input), caller.loop
        )
        return self._returned(child_id, future.result())

    async def call_async(self, workflow: Workflow, input: Any = None) -> Any:
        """`call` for async handlers."""
        caller = self._calling()
        child_id = self._next_child()
        return self._returned(child_id, await caller.call(workflow, child_id, input))

    def _calling(self) -> Caller:
        if self._caller is None:
            raise RuntimeError(
                "this StepContext cannot call workflows: only a step run by a worker can"
            )
        return self._caller

    def _next_child(self) -> str:
        with self._lock:
            self._calls += 1
            n = self._calls
        return child_run_id(self.run_id, self.step, self.iteration, n)

    def _returned(self, child_id: str, end: CallEnd) -> Any:
        if end.status == "completed":
            return end.output
        if end.status in ("failed", "cancelled"):
            code = end.code or ("cancelled" if end.status == "cancelled" else "failed")
            raise ChildFailed(
                f"sub-workflow run {child_id!r} {end.status}: {end.message or code}",
                code=code,
                run_id=child_id,
                status=end.status,
            )
        raise CallWaits(child_id)

    def record(
        self, collection: str, key: str, doc: Any, *, expected_revision: int | None = None
    ) -> None:
        """Write JSON document `doc` under `key` in `collection` (see `engine.records`), in the
        transaction that records this step's success: never if this attempt fails, once if it
        succeeds. A later write of the same key in the same step wins (revision +1 each).

        `expected_revision` is checked in that transaction: n writes only over revision n, 0
        only if there is no document. If the document has another revision then, the attempt
        fails with code `revision_conflict` (retryable: the step's Retry policy applies) and
        nothing of it is committed: no record, artifact, spawn or output."""
        from ..data.records import record_write

        self._records.append(record_write(collection, key, doc, expected_revision))

    def emit(self, type: str, payload: Any = None) -> None:
        """Append an event to the run's log (`engine.events`, `watch`, `plait runs events`),
        committed with this attempt's success, in order, before its `step_completed`: an
        attempt that fails leaves none, as it leaves no record. Stored as `user.<type>` (so it
        never collides with plait's own types), with `step`, `attempt` and `data` (the
        payload) in its payload. `type`: 1-64 letters, digits, '_', '-' or '.', from a letter;
        `payload`: any JSON value of at most 64 KiB. InputError for either, raised here."""
        from ..core.user_events import user_event

        event = user_event(type, payload)
        with self._lock:
            self._events.append(event)

    def save_artifact(
        self,
        name: str,
        data_or_path: bytes | bytearray | memoryview | str | os.PathLike[str],
        content_type: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> ArtifactRef:
        """Save a file of this step: `data_or_path` is its content (bytes-like) or the path of a
        file to copy (str or os.PathLike: to save text, pass `text.encode()`). The bytes are
        written now; the artifact becomes visible (`engine.artifacts(run_id)`) only if this
        attempt succeeds. `name` is 1-255 characters without '/', '\\' or control characters,
        once per attempt; `content_type` defaults to a guess from the name; `metadata` is a JSON
        object. InputError for bad input (nothing is saved). In an async handler, prefer
        `await ctx.save_artifact_async(...)`, which copies on a thread."""
        from .._errors import InputError
        from ..core.rows import ArtifactRow
        from ..data.artifacts import (
            DatabaseStorage,
            check_content_type,
            check_name,
            encode_metadata,
            new_artifact_id,
        )

        check_name(name)
        content_type = check_content_type(content_type, name)
        encoded = encode_metadata(metadata, name)
        with self._lock:
            if name in self._artifact_names:
                raise InputError(
                    f"artifact {name!r} was already saved by this attempt of step {self.step!r}: "
                    "an attempt saves each name once (choose another name)"
                )
            self._artifact_names.add(name)
        storage = self._artifact_storage or DatabaseStorage()
        artifact_id = new_artifact_id()
        try:
            path, size, sha256, kept = storage.put(artifact_id, data_or_path, name)
        except BaseException:
            with self._lock:
                self._artifact_names.discard(name)
            raise
        row = ArtifactRow(
            id=artifact_id, run_id=self.run_id, step=self.step, name=name, size=size,
            sha256=sha256, content_type=content_type, path=path, metadata=encoded,
            created_at=time.time(), data=kept,
        )  # fmt: skip
        with self._lock:
            self._artifacts.append(row)
        from ..data.artifacts import ArtifactRef

        return ArtifactRef(row.id, name, size, sha256, content_type, storage.uri(row))

    async def save_artifact_async(
        self,
        name: str,
        data_or_path: bytes | bytearray | memoryview | str | os.PathLike[str],
        content_type: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> ArtifactRef:
        """`save_artifact` for async handlers: the copy runs on a thread, not the event loop."""
        import asyncio

        return await asyncio.to_thread(
            self.save_artifact, name, data_or_path, content_type, metadata
        )

    def _data(self) -> StepData | None:
        """What this attempt wrote besides its output, to send with its success."""
        changes = self._state._take()
        if not self._records and not self._artifacts and not changes and not self._events:
            return None
        from ..core.rows import StepData

        return StepData(tuple(self._records), tuple(self._artifacts), changes, tuple(self._events))

    def _spawning(self) -> Spawner:
        if self._spawner is None:
            if self._definition is None:
                raise RuntimeError("this StepContext cannot spawn: it belongs to no workflow")
            from .tasks import Spawner  # the workflow wing's one cycle (see the imports above)

            self._spawner = Spawner(self._definition, self.step, self.iteration)
        return self._spawner

    def _request_cancel(self) -> None:
        self._cancelled = True

    def __repr__(self) -> str:
        return f"StepContext(run_id={self.run_id!r}, step={self.step!r}, attempt={self.attempt})"


class _StepLogger(logging.LoggerAdapter[logging.Logger]):
    """Stamps every record with the run id and step, as structured `extra` fields."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs["extra"] = {**(self.extra or {}), **kwargs.get("extra", {})}
        return msg, kwargs
