"""plait: a durable DAG workflow engine. See README.md for a tour."""

from ._context import StepCancelled, StepContext
from ._definition import Workflow
from ._errors import (
    DefinitionError,
    InputError,
    Permanent,
    PlaitError,
    Retryable,
    RunCancelled,
    RunConflict,
    RunFailed,
    RunNotFound,
    SchemaVersionError,
    StepError,
    StoreError,
    WorkflowNotFound,
)
from ._records import RunStatus, StepStatus
from ._retry import Retry

__version__ = "0.1.0.dev0"

__all__ = [
    "DefinitionError",
    "InputError",
    "Permanent",
    "PlaitError",
    "Retry",
    "Retryable",
    "RunCancelled",
    "RunConflict",
    "RunFailed",
    "RunNotFound",
    "RunStatus",
    "SchemaVersionError",
    "StepCancelled",
    "StepContext",
    "StepError",
    "StepStatus",
    "StoreError",
    "Workflow",
    "WorkflowNotFound",
    "__version__",
]
