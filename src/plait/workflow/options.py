"""Step options that make a step wait: delays, approval gates, signals. Pure.

They become the `StepOptions` stored with each step, which the state machine acts on: a step with
a gate goes to `waiting` instead of `ready` when its dependencies are met, and a delayed step is
`ready` but not claimable before its time (`available_at`), which is durable: a restarted worker
does not restart the clock.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from .._errors import DefinitionError, PlaitError
from ..core.policy import BLOCKED, DENIED, MODES, Policy
from ..core.retry import Retry
from ..core.rows import Gate, OnExpiry, StepOptions


def handler_options(
    where: str, fn: Any, options: dict[str, Any], known: frozenset[str]
) -> tuple[Retry | None, int]:
    """The checks a step's and a task's options share: a callable handler, only `known`
    options, a plait.Retry and an integer priority. Returns (retry, priority)."""
    if not callable(fn):
        raise DefinitionError(f"{where}: handler must be callable, got {fn!r}")
    unknown = set(options) - known
    if unknown:
        raise DefinitionError(
            f"{where}: unknown option(s) {sorted(unknown)}; known: {sorted(known)}"
        )
    retry = options.get("retry")
    if retry is not None and not isinstance(retry, Retry):
        raise DefinitionError(f"{where}: retry must be a plait.Retry, got {retry!r}")
    priority = options.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise DefinitionError(f"{where}: priority must be an integer, got {priority!r}")
    return retry, priority


def flag(where: str, option: str, value: Any) -> bool:
    """A yes-or-no option, checked: True or False (not "yes", 1 or None)."""
    if value is not True and value is not False:
        raise DefinitionError(f"{where}: {option} must be True or False, got {value!r}")
    return value


def wait_limit(where: str, option: str, value: Any) -> float | None:
    """How long a caller waits (`result(timeout=)`, `run_worker(timeout=)`), checked: None for
    no limit, else a finite number of seconds >= 0 (0: look once). InputError otherwise."""
    from .._errors import InputError

    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < math.inf:
        raise InputError(
            f"{where}: {option} must be None (no limit) or a finite number of seconds >= 0, "
            f"got {value!r}"
        )
    return value


def seconds(
    where: str, option: str, value: Any, *, error: type[PlaitError] = DefinitionError
) -> float | None:
    """A duration given as seconds or a timedelta, checked: positive and finite."""
    if value is None:
        return None
    if hasattr(value, "total_seconds"):
        value = value.total_seconds()
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise error(
            f"{where}: {option} must be a positive number of seconds or a timedelta, got {value!r}"
        )
    return float(value)


@dataclass(frozen=True)
class Approval:
    """An approval gate: `@wf.step(approval=plait.Approval(expires_after=3600))`.

    When its dependencies are met the step waits in `waiting` until `engine.approve(...)` (it
    then runs) or `engine.reject(...)` (it fails with code `rejected`). Undecided for
    `expires_after` (seconds or a timedelta), it is decided by `on_expiry`: "reject" (the
    default) or "approve". `approval=True` is an approval without expiry.
    """

    expires_after: Any = None
    on_expiry: str = "reject"


def gate_options(where: str, options: dict[str, Any]) -> StepOptions | None:
    """The StepOptions of `delay=` and `approval=`, checked; None when neither is given."""
    delay = seconds(where, "delay", options.get("delay"))
    approval = options.get("approval")
    if approval is None or approval is False:
        return StepOptions(delay=delay) if delay is not None else None
    if approval is True:
        approval = Approval()
    if not isinstance(approval, Approval):
        raise DefinitionError(
            f"{where}: approval must be True or a plait.Approval(...), got {approval!r}"
        )
    try:
        on_expiry = OnExpiry(approval.on_expiry)
    except ValueError:
        raise DefinitionError(
            f"{where}: on_expiry must be 'reject' or 'approve', got {approval.on_expiry!r}"
        ) from None
    return StepOptions(
        delay=delay,
        gate=Gate.APPROVAL,
        expires_after=seconds(where, "expires_after", approval.expires_after),
        on_expiry=on_expiry,
    )


SIGNAL = StepOptions(gate=Gate.SIGNAL)

POLICY_MODES = MODES  # run every action; ask for approval; refuse
ACTION_BLOCKED = BLOCKED  # the code of a step whose action the policy blocks
ACTION_DENIED = DENIED  # the code of a step whose action a `deny` policy does not allow


@dataclass(frozen=True)
class ApprovalPolicy:
    """Which steps run, wait for a person's approval, or fail, by name (case-insensitive):
    `plait.Workflow(..., approval_policy=plait.ApprovalPolicy("ask", allow=[...]))`, a
    workflow file's `approval_policy:` (where the names are the steps' actions; in Python,
    the steps' names), or one run's `engine.start(..., approval_policy=...)` (which replaces
    the workflow's for that run). A name under `block` fails its step (code
    `action_blocked`, without retry); one under `allow` runs; any other follows `mode`:
    "auto" runs it, "ask" (the default) makes its step wait for an approval
    (`expires_after`, `on_expiry` as `plait.Approval`'s), "deny" fails its step (code
    `action_denied`). A step's own `approval=` is kept as it is."""

    mode: str = "ask"
    allow: Collection[str] = ()
    block: Collection[str] = ()
    expires_after: Any = None
    on_expiry: str = "reject"

    def __post_init__(self) -> None:
        where = "approval_policy"
        if self.mode not in POLICY_MODES:
            raise DefinitionError(
                f"{where}: unknown mode {self.mode!r}; modes: auto (every action runs), ask "
                "(each step waits for an approval, but the allowed actions), deny (only the "
                "allowed actions run)"
            )
        for key in ("allow", "block"):
            names = getattr(self, key)
            if isinstance(names, str) or not all(isinstance(n, str) and n for n in names):
                raise DefinitionError(f"{where}: {key} must be a list of names, got {names!r}")
            object.__setattr__(self, key, frozenset(n.lower() for n in names))
        gate_options(where, {"approval": self.approval})  # checks expires_after, on_expiry

    @property
    def approval(self) -> Approval:
        """The approval gate of a step the policy asks about."""
        return Approval(self.expires_after, self.on_expiry)

    def rule(self, whose: str = "workflow") -> Policy:
        """The policy as the state machine applies it (`core.policy`)."""
        gate = gate_options("approval_policy", {"approval": self.approval})
        assert gate is not None
        return Policy.of(
            self.mode, self.allow, self.block, gate.expires_after, gate.on_expiry, whose
        )

    def refusal(self, name: str, what: str = "action") -> tuple[str, str] | None:
        """(code, message) if a step whose action (or step) is `name` must fail, else None."""
        return self.rule().refusal(name, what)

    def asks(self, name: str) -> bool:
        """Whether a step whose action (or step) is `name` waits for an approval first."""
        return self.rule().asks(name)


def approval_policy(
    where: str, value: Any, *, error: type[PlaitError] = DefinitionError
) -> ApprovalPolicy | None:
    """`approval_policy=`: None, a mode ("auto", "ask", "deny") or a plait.ApprovalPolicy."""
    if value is None or isinstance(value, ApprovalPolicy):
        return value
    if isinstance(value, str):
        try:
            return ApprovalPolicy(value)
        except DefinitionError as exc:
            raise error(f"{where}: {exc}") from None
    raise error(
        f"{where}: approval_policy must be 'auto', 'ask', 'deny' or a plait.ApprovalPolicy, "
        f"got {value!r}"
    )


def awaits_signal() -> None:
    """The handler of a signal step: never called, its output is the signal's payload."""
    raise AssertionError("a signal step is never run")  # pragma: no cover
