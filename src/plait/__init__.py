"""plait: a durable DAG workflow engine. See README.md for a tour."""

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
from .core.blobs import BlobStats
from .core.loops import Goto
from .core.rate import Rate
from .core.retry import Retry
from .core.rows import RunStatus, StepStatus
from .core.topology import ServedWorkflow, StepTopology, Topology, WorkerInfo
from .data.artifacts import Artifact, ArtifactRef
from .data.records import Record, RecordPage, Records
from .engine.engine import Engine, RunHandle
from .engine.schedules import Schedule
from .engine.views import (
    BulkItem,
    BulkResult,
    Event,
    FailedStep,
    FailedStepPage,
    Inspection,
    Queue,
    Run,
    RunFilter,
    RunPage,
    Step,
    Waiting,
    WorkflowInfo,
)
from .workflow.context import StepCancelled, StepContext
from .workflow.definition import Workflow
from .workflow.options import Approval
from .workflow.tasks import Handle

__version__ = "0.1.0.dev0"

__all__ = [
    "Approval",
    "Artifact",
    "ArtifactNotFound",
    "ArtifactRef",
    "BlobNotFound",
    "BlobStats",
    "BulkItem",
    "BulkResult",
    "ConfigError",
    "DefinitionError",
    "Engine",
    "Event",
    "FailedStep",
    "FailedStepPage",
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
    "RunFilter",
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
