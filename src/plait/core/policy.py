"""Approval policies: which steps run, wait for a person's approval, or fail, by name. Pure.

A policy (fluxor's) has a mode, `auto` (every step runs), `ask` (each step waits for an
approval) or `deny` (each step fails), and two lists of names matched case-insensitively: a
name under `block` fails its step whatever the mode, one under `allow` runs. The name is a
step's action (a workflow file's steps), or its name (a Python workflow's steps); steps that call
no action (signals, sub-workflow calls) are no policy's business.

A workflow's policy (`Workflow(approval_policy=)`, a file's `approval_policy:`) is resolved when
the workflow is defined: its steps' options carry it. A run's (`start(approval_policy=)`)
replaces the workflow's for that run: `police` resolves it into the plan the run's rows are made
of, so every step row carries its own verdict (`StepOptions.gate` for an approval,
`StepOptions.refusal` for a refusal: the worker fails such a step unrun) and every store keeps
it with no schema of its own. The run's first event (`run_started`) records the policy, so that
what is made from the run later (a fork, a child run it calls) gets the same.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from typing import Any

from .rows import EventRow, Gate, OnExpiry, StepOptions, StepPlan, WorkflowPlan

MODES = ("auto", "ask", "deny")  # run every action; ask for approval; refuse
BLOCKED = "action_blocked"  # the code of a step whose action the policy blocks
DENIED = "action_denied"  # the code of a step whose action a `deny` policy does not allow
EVENT_KEY = "approval_policy"  # where the run's first event records the run's policy


@dataclass(frozen=True, slots=True)
class Policy:
    """A policy, checked: `whose` ("workflow" or "run") says in refusals whose it is."""

    mode: str = "ask"
    allow: frozenset[str] = frozenset()
    block: frozenset[str] = frozenset()
    expires_after: float | None = None
    on_expiry: OnExpiry = OnExpiry.REJECT
    whose: str = "workflow"

    @classmethod
    def of(
        cls,
        mode: str,
        allow: Collection[str] = (),
        block: Collection[str] = (),
        expires_after: float | None = None,
        on_expiry: OnExpiry = OnExpiry.REJECT,
        whose: str = "workflow",
    ) -> Policy:
        """A policy whose names are matched case-insensitively (the caller checked them)."""
        return cls(
            mode,
            frozenset(n.lower() for n in allow),
            frozenset(n.lower() for n in block),
            expires_after,
            on_expiry,
            whose,
        )

    def refusal(self, name: str, what: str = "action") -> tuple[str, str] | None:
        """(code, message) if a step whose action (or step) is `name` must fail, else None."""
        lower = name.lower()
        if lower in self.block:
            return BLOCKED, f"{what} {name!r} is blocked by the {self.whose}'s approval_policy"
        if self.mode == "deny" and lower not in self.allow:
            return (
                DENIED,
                f"{what} {name!r} is not allowed by the {self.whose}'s approval_policy "
                f"(mode deny: only the {what}s under allow{':' if what == 'action' else ''} "
                "run)",
            )
        return None

    def asks(self, name: str) -> bool:
        """Whether a step whose action (or step) is `name` waits for an approval first."""
        return self.mode == "ask" and name.lower() not in self.allow

    def as_json(self) -> dict[str, Any]:
        """The policy as the run's first event records it (`of_json` reads it back)."""
        data: dict[str, Any] = {
            "mode": self.mode,
            "allow": sorted(self.allow),
            "block": sorted(self.block),
        }
        if self.expires_after is not None:
            data["expires_after"] = self.expires_after
        if self.on_expiry is not OnExpiry.REJECT:
            data["on_expiry"] = self.on_expiry.value
        return data

    @classmethod
    def of_json(cls, data: Mapping[str, Any], whose: str = "run") -> Policy:
        return cls.of(
            data["mode"],
            data.get("allow", ()),
            data.get("block", ()),
            data.get("expires_after"),
            OnExpiry(data.get("on_expiry", "reject")),
            whose,
        )


@dataclass(frozen=True, slots=True)
class Subject:
    """What a policy judges one step of a plan by: the name it matches (an action or the
    step's name), the word refusals use for it ("action" or "step"), and whether the step's
    approval gate is the workflow policy's doing (a run's policy replaces it) rather than the
    step's own (kept whatever the policy)."""

    name: str
    what: str = "step"
    policy_gate: bool = False


def police(plan: WorkflowPlan, policy: Policy, subjects: Mapping[str, Subject]) -> WorkflowPlan:
    """The plan of a run whose own `policy` replaces its workflow's: each step in `subjects`
    has the workflow policy's gate and refusal taken away, then this policy's verdict put in
    its options: a refusal (and no approval gate, even its own: a refused step asks no one);
    or, for a step the policy asks about and that has no gate of its own, an approval gate
    with the policy's expiry; and `policed`, so that the worker applies no refusal of the
    workflow's definition to it. Steps not in `subjects` are unchanged."""
    return replace(plan, steps=tuple(_policed(s, policy, subjects.get(s.name)) for s in plan.steps))


def _policed(step: StepPlan, policy: Policy, subject: Subject | None) -> StepPlan:
    if subject is None:
        return step
    options = step.options
    if options is not None and subject.policy_gate and options.gate is Gate.APPROVAL:
        options = replace(options, gate=None, expires_after=None, on_expiry=OnExpiry.REJECT)
    if options is not None and options.refusal is not None:
        options = replace(options, refusal=None)
    refusal = policy.refusal(subject.name, subject.what)
    if refusal is not None:  # it fails as soon as it may run: no one is asked first
        options = replace(
            options or StepOptions(),
            refusal=refusal,
            gate=None,
            expires_after=None,
            on_expiry=OnExpiry.REJECT,
        )
    elif policy.asks(subject.name) and (options is None or options.gate is None):
        options = replace(
            options or StepOptions(),
            gate=Gate.APPROVAL,
            expires_after=policy.expires_after,
            on_expiry=policy.on_expiry,
        )
    # the run's verdict, not the workflow's: its worker applies no refusal of the definition
    options = replace(options or StepOptions(), policed=True)
    return replace(step, options=options)


def started_with(events: list[EventRow], policy: Policy) -> list[EventRow]:
    """A new run's events, its first (`run_started`) recording the run's policy."""
    first = events[0]
    payload = {**first.payload, EVENT_KEY: policy.as_json()}
    return [replace(first, payload=payload), *events[1:]]


def of_events(events: list[EventRow]) -> Policy | None:
    """The run's policy its first event recorded, or None (the workflow's applies)."""
    if not events or events[0].type != "run_started":
        return None
    data = events[0].payload.get(EVENT_KEY)
    return None if not isinstance(data, Mapping) else Policy.of_json(data)
