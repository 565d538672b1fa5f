"""One exception tree for everything plait raises.

PlaitError
├── DefinitionError        a workflow definition is wrong (cycle, unknown step, duplicate…)
│   └── DeclarationError   a YAML workflow file is wrong, at file:line:col and a path
├── InputError             a run's input is not what its steps need
├── ConfigError            a queue was configured with a bad value (also a ValueError)
├── WorkflowNotFound       start() named a workflow nobody registered
├── RunNotFound            an operation named a run id that does not exist
├── RunConflict            a run id is already used by a different workflow, or input
├── RunFailed              result(): the run ended failed (`.failures`: step → StepError)
├── RunCancelled           result(): the run was cancelled
├── StepFailed             wait_step(): the step ended failed (`.error`: its StepError)
├── StepSkipped            wait_step(): the step was skipped (`.reason`)
├── StepCancelled          wait_step(): the step was cancelled; also ctx.check_cancelled()
├── RunStateError          an operation the run's current state does not allow
├── RevisionConflict       records, states: a write expected another revision of the document
├── StateNotFound          states: no workflow-state document has that id in the collection
├── StateError             states: a change the document's state does not allow (ended, at max)
├── ArtifactNotFound       no artifact has that id (or its file is gone or damaged)
├── BlobNotFound           no blob has that hash (never stored, or removed by gc)
├── StoreError             the store cannot be opened or used
│   └── SchemaVersionError the database belongs to a newer plait, or is not plait's
└── StepError-raising helpers for handlers (not PlaitError subclasses of each other):
    Retryable / Permanent  raised inside a step to choose retry behaviour and an error code
    ChildFailed            raised by ctx.call: the sub-workflow's run failed or was cancelled
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class PlaitError(Exception):
    """Base class of every error plait raises."""


class DefinitionError(PlaitError):
    """A workflow definition is invalid. The message names the step and the problem; fix the code."""


class DeclarationError(DefinitionError):
    """A declarative (YAML) workflow file is wrong: its syntax, a key, a type, a reference, an
    expression. The message starts with `file:line:col: path:` and says what to change;
    `file`, `line`, `column` (1-based) and `path` ("steps.charge.retry.attempts") say the same
    to programs. Nothing was loaded. Where a file holds several mistakes found in the same
    pass (several steps, say), `errors` lists them all, this one first, and the message ends
    with how many more there are; `detail` is this mistake's own message."""

    def __init__(self, message: str, *, file: str, line: int, column: int, path: str) -> None:
        super().__init__(message)
        self.detail = message
        self.file, self.line, self.column, self.path = file, line, column, path
        self.errors: list[DeclarationError] = [self]


class InputError(PlaitError):
    """A run's input is not a JSON object, misses a field a step needs, or fails a field's type.

    Nothing was written; correct the input and start again. From `start_many`, `index` says
    which of its inputs or run ids it is about (its message starts `inputs[i]: ` or
    `run_ids[i]: `).
    """

    index: int | None = None


class ConfigError(PlaitError, ValueError):
    """A queue was configured with a bad value (a limit below 1, a name with spaces, a rate that
    is not a plait.Rate); the message names the queue and the value. Nothing was stored."""


class WorkflowNotFound(PlaitError):
    """No workflow of that name is registered with this engine or in the store."""


class RunNotFound(PlaitError):
    """No run has that id in this store."""


class RunConflict(PlaitError):
    """The run id is already used by a run of another workflow, or by a run of the same
    workflow with a different input (`start(..., if_exists="return")` takes that run as it
    is); choose another id. `run_id` names it (None when the message is the only word on it); from `start_many`, `index` says
    which of its inputs it is (its message starts `inputs[i]: `)."""

    run_id: str | None = None
    index: int | None = None

    @classmethod
    def taken(cls, run_id: str, used_by: str, wanted: str) -> RunConflict:
        """Run id `run_id`, wanted for a run of workflow `wanted`, is a run of `used_by`."""
        exc = cls(
            f"run id {run_id!r} is already used by a run of workflow {used_by!r}, "
            f"not {wanted!r}; choose another run id"
        )
        exc.run_id = run_id
        return exc

    @classmethod
    def input_differs(cls, run_id: str, workflow: str) -> RunConflict:
        """Run id `run_id` is a run of `workflow` started with another input."""
        exc = cls(
            f"run id {run_id!r} is already a run of workflow {workflow!r} with a different "
            "input; choose another run id, or pass if_exists='return' to get that run as it is"
        )
        exc.run_id = run_id
        return exc


class StoreError(PlaitError):
    """The store could not be opened or used (path not writable, server down, …)."""


class SchemaVersionError(StoreError):
    """The database is not a plait database, or was written by a newer plait. It was left untouched."""


@dataclass(frozen=True, slots=True)
class StepError:
    """How a step failed: a short code (the exception class name unless given) and a message."""

    code: str
    message: str


class RunFailed(PlaitError):
    """The run ended `failed`. `.failures` maps each failed step to its StepError; `.code` is
    "deadline_exceeded" for a run that passed its deadline, else "step_failed"."""

    def __init__(
        self,
        run_id: str,
        failures: dict[str, StepError],
        *,
        code: str | None = None,
        error: str | None = None,
    ) -> None:
        self.run_id = run_id
        self.failures = failures
        self.code = code or "step_failed"
        detail = "; ".join(f"{name}: [{e.code}] {e.message}" for name, e in failures.items())
        if code is not None:
            detail = f"[{code}] {error or code}" + (f"; {detail}" if detail else "")
        super().__init__(f"run {run_id!r} failed: {detail or error or 'no step failure recorded'}")


class RunStateError(PlaitError):
    """An operation that the run's current state does not allow; the message says the state and
    when the operation is allowed. Nothing was changed."""


class RevisionConflict(PlaitError):
    """A record's `put` or `delete` expected a revision the document no longer has (another
    writer came first), or `expected_revision=0` found it already exists. Nothing was written:
    read the document again (`get`) and retry with its current revision."""

    def __init__(
        self, collection: str, key: str, expected: int, actual: int, *, what: str = "record"
    ) -> None:
        self.collection = collection
        self.key = key
        self.expected = expected
        self.actual = actual  # 0: the document does not exist
        now = "does not exist" if actual == 0 else f"is at revision {actual}"
        wanted = "to create it (expected_revision=0)" if expected == 0 else f"revision {expected}"
        super().__init__(
            f"{what} {key!r} of collection {collection!r} {now}, but the write expected "
            f"{wanted}; nothing was written. Read it again and retry."
        )


class StateNotFound(PlaitError):
    """No workflow-state document (`engine.states(collection)`) has that id: it was never
    created, or was deleted. Create it first, or check the id and the collection."""


class StateError(PlaitError):
    """A workflow-state document refused a change its state does not allow: it has ended
    (`complete` or `fail`), or `increment_iteration` would pass its `max_iterations`. Nothing
    was written; the message says the document's phase, iteration and limit."""


class ArtifactNotFound(PlaitError):
    """No artifact has that id in this store, or its file is missing or damaged (the message
    says which)."""


class BlobNotFound(PlaitError):
    """No blob has that hash in this store: it was never stored, or `gc` removed it after its
    last reference went (or the string is not a SHA-256 hash at all; the message says which)."""


class RunCancelled(PlaitError):
    """The run was cancelled before it finished."""

    def __init__(self, run_id: str, reason: str | None = None) -> None:
        self.run_id = run_id
        self.reason = reason
        super().__init__(f"run {run_id!r} was cancelled" + (f": {reason}" if reason else ""))


class StepFailure(Exception):
    """Base of the exceptions a handler raises to control how its failure is recorded."""

    retryable: bool | None = None

    def __init__(
        self,
        message: str = "",
        *,
        code: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code or type(self).__name__
        if details is not None and not isinstance(details, Mapping):
            raise TypeError(
                f"{type(self).__name__}(details=...) must be a mapping (a JSON object), "
                f"got {type(details).__name__}"
            )
        # a JSON object kept with the error (`step_failed`/`step_retrying` events, runs show)
        self.details = None if details is None else dict(details)


class Retryable(StepFailure):
    """Raise in a step to fail this attempt and retry while the retry policy has attempts left.
    `code` is the error code recorded (default "Retryable"); `details` a JSON object recorded
    with the error."""

    retryable = True


class Permanent(StepFailure):
    """Raise in a step to fail it now, without retrying, whatever attempts remain. `code` is the
    error code recorded (default "Permanent"); `details` a JSON object recorded with the error
    (shown by `plait runs show RUN --step STEP` and in the step's events)."""

    retryable = False


class ChildFailed(StepFailure, PlaitError):
    """A sub-workflow called with `ctx.call` / `ctx.call_async` ended without an output: its run
    failed or was cancelled. Raised by the call in the calling step; uncaught, it fails that
    step with the child's error code (`code`: the code of the child's first failed step,
    "cancelled" for a cancelled run) and a message naming the child run. Not retried (the
    call would return the same ended run again); catch it to handle the child's failure.
    `run_id` is the child run's id, `status` how it ended ("failed" or "cancelled")."""

    retryable = False

    def __init__(self, message: str, *, code: str, run_id: str, status: str) -> None:
        super().__init__(message, code=code)
        self.run_id = run_id
        self.status = status


class _StepEnded(PlaitError):
    """A step waited for (`engine.wait_step`, `RunHandle.step(name).result()`) ended without
    an output. `run_id` and `step` name it; `error` is how it failed (a StepError, or None);
    `reason` says why it was skipped or cancelled, where that is known."""

    def __init__(
        self,
        message: str,
        *,
        run_id: str | None = None,
        step: str | None = None,
        error: StepError | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.step = step
        self.error = error
        self.reason = reason


class StepFailed(_StepEnded):
    """The step waited for ended `failed`; `error` is its StepError (code and message)."""


class StepSkipped(_StepEnded):
    """The step waited for was `skipped` (a dependency failed, or its condition was false);
    `reason` says why."""


class StepCancelled(_StepEnded):
    """The step waited for was `cancelled` (its run was cancelled or ended first); `reason`
    says why, `error` is the error its interrupted attempt reported, if any.

    Also raised inside a handler by `ctx.check_cancelled()`, when the step's run was cancelled
    or its lease lost: the worker records the attempt as cancelled."""
