"""plait: a durable DAG workflow engine. See README.md for a tour."""

from ._artifacts import Artifact, ArtifactRef
from ._blobs import BlobStats
from ._context import StepCancelled, StepContext
from ._definition import Workflow
from ._documents import Record, RecordPage, Records
from ._engine import Engine, RunHandle
from ._engine_queues import Queue
from ._errors import (
    ArtifactNotFound,
    BlobNotFound,
    ConfigError,
    DefinitionError,
    InputError,
    Permanent,
    PlaitError,
    Retryable,
    RevisionConflict,
    RunCancelled,
    RunConflict,
    RunFailed,
    RunNotFound,
    RunStateError,
    SchemaVersionError,
    StepError,
    StoreError,
    WorkflowNotFound,
)
from ._loops import Goto
from ._rate import Rate
from ._records import RunStatus, StepStatus
from ._registry import ServedWorkflow, StepTopology, Topology, WorkerInfo
from ._retry import Retry
from ._schedules import Schedule
from ._step_options import Approval
from ._tasks import Handle
from ._views import Event, Inspection, Run, RunPage, Step, Waiting, WorkflowInfo

__version__ = "0.1.0.dev0"

__all__ = [
    "Approval",
    "Artifact",
    "ArtifactNotFound",
    "ArtifactRef",
    "BlobNotFound",
    "BlobStats",
    "ConfigError",
    "DefinitionError",
    "Engine",
    "Event",
    "Goto",
    "Handle",
    "InputError",
    "Inspection",
    "Permanent",
    "PlaitError",
    "Queue",
    "Rate",
    "Record",
    "RecordPage",
    "Records",
    "Retry",
    "Retryable",
    "RevisionConflict",
    "Run",
    "RunCancelled",
    "RunConflict",
    "RunFailed",
    "RunHandle",
    "RunNotFound",
    "RunPage",
    "RunStateError",
    "RunStatus",
    "Schedule",
    "SchemaVersionError",
    "ServedWorkflow",
    "Step",
    "StepCancelled",
    "StepContext",
    "StepError",
    "StepStatus",
    "StepTopology",
    "StoreError",
    "Topology",
    "Waiting",
    "WorkerInfo",
    "Workflow",
    "WorkflowInfo",
    "WorkflowNotFound",
    "__version__",
]
