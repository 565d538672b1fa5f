"""What the mutating routes accept: pydantic models, so that a wrong type is a 422 naming the
field before the Engine is called, and the OpenAPI document describes every body. Unknown
fields are refused (a typo is not silently ignored), and numbers and booleans are taken as
they are, never converted ("dry_run": 0 or "false" is a 422, not a guess)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat

from ..engine.bulk import MAX_BULK
from ..engine.failures import MAX_RETRY

Text = Field(default=None, max_length=2000)
When = Field(default=None, description="an ISO 8601 date-time (naive: UTC) or epoch seconds")


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


Name = Field(min_length=1, max_length=200)


class PolicyBody(Body):
    """A run's own approval policy (it replaces the workflow's for that run)."""

    mode: Literal["auto", "ask", "deny"] = Field(
        default="ask",
        description="auto: steps run; ask: each waits for an approval; deny: each fails",
    )
    allow: list[Annotated[str, Name]] = Field(
        default_factory=list, max_length=1000, description="steps (a file's: actions) that run"
    )
    block: list[Annotated[str, Name]] = Field(
        default_factory=list, max_length=1000, description="steps (a file's: actions) that fail"
    )


class StartBody(Body):
    workflow: str = Field(min_length=1, max_length=200)
    input: Any = None
    run_id: str | None = Field(default=None, max_length=200)
    priority: int = Field(default=0, ge=-1_000_000, le=1_000_000, strict=True)
    name: str | None = Field(default=None, max_length=200, description="a human name")
    labels: dict[str, str] | None = Field(
        default=None, max_length=32, description="string labels, which run lists filter by"
    )
    metadata: dict[str, Any] | None = Field(default=None, description="kept with the run")
    if_exists: Literal["check", "return"] = Field(
        default="check",
        description="a run_id that exists: check (that run if its input is the same, else "
        "409) or return (that run, whatever its input)",
    )
    approval_policy: PolicyBody | None = Field(
        default=None,
        description="the run's own approval policy, by step name (a workflow file's: by "
        "action), replacing the workflow's; the workflow must be defined in the server",
    )


class CancelBody(Body):
    reason: str | None = Text


class ApproveBody(Body):
    note: str | None = Text


class RejectBody(Body):
    reason: str | None = Text


class SignalBody(Body):
    payload: Any = None


class AnnotateBody(Body):
    type: str = Field(
        pattern=r"^[A-Za-z][A-Za-z0-9_.\-]{0,63}$",
        description="the event's type, stored as `user.<type>`",
    )
    payload: Any = None


class ForkBody(Body):
    from_step: str = Field(min_length=1, max_length=200)
    input: Any = None
    overrides: dict[str, Any] | None = None
    new_run_id: str | None = Field(default=None, max_length=200)


class FilterBody(Body):
    workflow: str | None = Field(default=None, max_length=200)
    status: str | None = Field(default=None, max_length=20)
    created_from: datetime | float | None = When
    created_to: datetime | float | None = When
    text: str | None = Field(default=None, max_length=200)
    labels: dict[str, str] | None = Field(
        default=None, max_length=32, description="runs having every one of these labels"
    )


class BulkBody(Body):
    action: Literal["cancel", "pause", "resume", "retry", "delete"]
    run_ids: list[str] | None = Field(default=None, max_length=MAX_BULK)
    filter: FilterBody | None = None
    dry_run: bool = Field(default=True, strict=True)  # a bulk call only counts unless told to
    limit: int = Field(default=MAX_BULK, ge=1, le=MAX_BULK, strict=True)
    reason: str | None = Text


class FailureRetryBody(Body):
    workflow: str | None = Field(default=None, min_length=1, max_length=200)
    step: str | None = Field(default=None, min_length=1, max_length=200)
    code: str | None = Field(default=None, min_length=1, max_length=200)
    since: datetime | StrictFloat | None = When  # strict: `false` is not epoch 0
    dry_run: bool = Field(default=True, strict=True)  # it only counts unless told to
    limit: int = Field(default=MAX_RETRY, ge=1, le=MAX_RETRY, strict=True)


class RateBody(Body):
    count: float = Field(gt=0, le=1e9, strict=True)
    per: float = Field(default=1.0, gt=0, le=1e9, strict=True)
    burst: float | None = Field(default=None, gt=0, le=1e9, strict=True)


class QueueBody(Body):
    concurrency: int | None = Field(default=None, ge=1, le=1_000_000, strict=True)
    rate: RateBody | None = None


class ScheduleBody(Body):
    workflow: str = Field(min_length=1, max_length=200)
    cron: str = Field(min_length=1, max_length=200)
    input: Any = None
    timezone: str = Field(default="UTC", max_length=100)
    catch_up: Literal["skip", "run_once"] = "skip"
