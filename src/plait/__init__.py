"""plait: a durable DAG workflow engine. See README.md for a tour."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._errors import (
    ArtifactNotFound,
    BlobNotFound,
    ChildFailed,
    ConfigError,
    DeclarationError,
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
    StateError,
    StateNotFound,
    StepCancelled,
    StepError,
    StepFailed,
    StepSkipped,
    StoreError,
    WorkflowNotFound,
)

# The exceptions above are imported with the package; every other public name on first use (PEP
# 562), so that `import plait` costs a few milliseconds and a program or a command pays only for
# what it uses (the Engine brings asyncio and the stores, a Workflow pydantic). The first
# `plait.X` imports X's module and keeps X here: later look-ups are plain attribute reads. The
# imports below say the same to type checkers; a test checks that they and `_LAZY` agree.
if TYPE_CHECKING:
    from .core.blobs import BlobStats
    from .core.loops import Goto
    from .core.rate import Rate
    from .core.retry import Retry
    from .core.rows import RunStatus, StepStatus
    from .core.topology import ServedWorkflow, StepTopology, Topology, WorkerInfo
    from .data.artifacts import Artifact, ArtifactRef
    from .data.records import Record, RecordPage, Records
    from .data.states import State, StatePage, States
    from .declare.actions import action
    from .declare.loader import load, loads
    from .engine.doctor import DoctorCheck
    from .engine.engine import Engine, RunHandle
    from .engine.schedules import Schedule
    from .engine.views import (
        BulkItem,
        BulkResult,
        Event,
        FailedStep,
        FailedStepPage,
        FailureFilter,
        FailureRetry,
        FailureRetryItem,
        Inspection,
        Queue,
        Run,
        RunFilter,
        RunPage,
        Step,
        Waiting,
        WorkflowInfo,
    )
    from .stores import register_store
    from .stores.protocol import Store
    from .workflow.context import CaughtError, StepContext
    from .workflow.definition import Workflow
    from .workflow.options import Approval, ApprovalPolicy
    from .workflow.session import SessionState
    from .workflow.tasks import Handle

_LAZY: dict[str, str] = {
    "BlobStats": ".core.blobs",
    "Goto": ".core.loops",
    "DoctorCheck": ".engine.doctor",
    "Rate": ".core.rate",
    "Retry": ".core.retry",
    "RunStatus": ".core.rows",
    "StepStatus": ".core.rows",
    "ServedWorkflow": ".core.topology",
    "StepTopology": ".core.topology",
    "Topology": ".core.topology",
    "WorkerInfo": ".core.topology",
    "Artifact": ".data.artifacts",
    "ArtifactRef": ".data.artifacts",
    "Record": ".data.records",
    "RecordPage": ".data.records",
    "Records": ".data.records",
    "action": ".declare.actions",
    "load": ".declare.loader",
    "loads": ".declare.loader",
    "State": ".data.states",
    "StatePage": ".data.states",
    "States": ".data.states",
    "Engine": ".engine.engine",
    "Store": ".stores.protocol",
    "register_store": ".stores",
    "RunHandle": ".engine.engine",
    "Schedule": ".engine.schedules",
    "BulkItem": ".engine.views",
    "BulkResult": ".engine.views",
    "Event": ".engine.views",
    "FailedStep": ".engine.views",
    "FailedStepPage": ".engine.views",
    "FailureFilter": ".engine.views",
    "FailureRetry": ".engine.views",
    "FailureRetryItem": ".engine.views",
    "Inspection": ".engine.views",
    "Queue": ".engine.views",
    "Run": ".engine.views",
    "RunFilter": ".engine.views",
    "RunPage": ".engine.views",
    "Step": ".engine.views",
    "Waiting": ".engine.views",
    "WorkflowInfo": ".engine.views",
    "CaughtError": ".workflow.context",
    "StepContext": ".workflow.context",
    "Workflow": ".workflow.definition",
    "SessionState": ".workflow.session",
    "Approval": ".workflow.options",
    "ApprovalPolicy": ".workflow.options",
    "Handle": ".workflow.tasks",
}

__version__ = "0.1.0.dev0"

__all__ = [
    "Approval",
    "ApprovalPolicy",
    "Artifact",
    "ArtifactNotFound",
    "ArtifactRef",
    "BlobNotFound",
    "BlobStats",
    "BulkItem",
    "BulkResult",
    "CaughtError",
    "ChildFailed",
    "ConfigError",
    "DeclarationError",
    "DefinitionError",
    "DoctorCheck",
    "Engine",
    "Event",
    "FailedStep",
    "FailedStepPage",
    "FailureFilter",
    "FailureRetry",
    "FailureRetryItem",
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
    "SessionState",
    "State",
    "StateError",
    "StateNotFound",
    "StatePage",
    "States",
    "Step",
    "StepCancelled",
    "StepContext",
    "StepError",
    "StepFailed",
    "StepSkipped",
    "StepStatus",
    "StepTopology",
    "Store",
    "StoreError",
    "Topology",
    "Waiting",
    "WorkerInfo",
    "Workflow",
    "WorkflowInfo",
    "WorkflowNotFound",
    "__version__",
    "action",
    "load",
    "loads",
    "register_store",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
