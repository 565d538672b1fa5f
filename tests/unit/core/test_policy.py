"""`core.policy`: a run's approval policy resolved into a plan's step options, against a small
reference model of fluxor's rules (block first, then allow, then the mode; names
case-insensitive; a step's own gate kept, the workflow policy's replaced)."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from plait.core.policy import (
    BLOCKED,
    DENIED,
    Policy,
    Subject,
    of_events,
    police,
    started_with,
)
from plait.core.rows import (
    EdgeKind,
    EventRow,
    Gate,
    OnExpiry,
    StepOptions,
    StepPlan,
    WorkflowPlan,
)

NAMES = ["fetch", "Charge", "mail.send", "close"]
names = st.sampled_from(NAMES)
cased = names.map(str.upper) | names | names.map(str.lower)

# a step's options before the run's policy: none, its own approval, a signal, the workflow
# policy's approval gate, the workflow policy's refusal, or a delay
OWN = {
    "none": (None, False),
    "own_approval": (StepOptions(gate=Gate.APPROVAL, expires_after=5.0), False),
    "signal": (StepOptions(gate=Gate.SIGNAL), False),
    "policy_approval": (StepOptions(gate=Gate.APPROVAL), True),
    "policy_refusal": (StepOptions(refusal=(DENIED, "the workflow's")), False),
    "delay": (StepOptions(delay=3.0), False),
}


def _plan(kinds: list[str]) -> tuple[WorkflowPlan, dict[str, Subject]]:
    steps, subjects = [], {}
    for i, kind in enumerate(kinds):
        options, policy_gate = OWN[kind]
        name = f"s{i}"
        deps = ((f"s{i - 1}", EdgeKind.DATA),) if i else ()
        steps.append(StepPlan(name, deps, options=options))
        if kind != "signal":  # no policy is about a signal
            subjects[name] = Subject(NAMES[i % len(NAMES)], "action", policy_gate)
    return WorkflowPlan("wf", "1", "f" * 16, tuple(steps)), subjects


@given(
    mode=st.sampled_from(["auto", "ask", "deny"]),
    allow=st.lists(cased, max_size=3),
    block=st.lists(cased, max_size=2),
    kinds=st.lists(st.sampled_from(sorted(OWN)), min_size=1, max_size=8),
)
def test_police_follows_the_reference_rules(
    mode: str, allow: list[str], block: list[str], kinds: list[str]
) -> None:
    policy = Policy.of(mode, allow, block, 60.0, OnExpiry.APPROVE, "run")
    plan, subjects = _plan(kinds)
    policed = police(plan, policy, subjects)
    assert (policed.name, policed.fingerprint) == (plan.name, plan.fingerprint)
    for before, after, kind in zip(plan.steps, policed.steps, kinds, strict=True):
        assert (after.name, after.dependencies) == (before.name, before.dependencies)
        subject = subjects.get(before.name)
        if subject is None:
            assert after == before  # not the policy's business
            continue
        name = subject.name.lower()
        own_gate = kind in ("own_approval", "signal")
        options = after.options or StepOptions()
        refused = name in {b.lower() for b in block} or (
            mode == "deny" and name not in {a.lower() for a in allow}
        )
        if refused:  # it fails as soon as it may run, and asks no one first
            assert options.refusal is not None
            assert options.refusal[0] == (BLOCKED if name in {b.lower() for b in block} else DENIED)
            assert "the run's approval_policy" in options.refusal[1]
            assert (options.gate, options.expires_after) == (None, None)
        else:
            assert options.refusal is None  # the workflow's refusal is replaced too
            if mode == "ask" and name not in {a.lower() for a in allow} and not own_gate:
                assert (options.gate, options.expires_after, options.on_expiry) == (
                    Gate.APPROVAL,
                    60.0,
                    OnExpiry.APPROVE,
                )
            elif not own_gate:
                assert options.gate is None  # the workflow policy's gate is gone
        if own_gate and not refused:  # a step's own approval is kept as it is
            assert before.options is not None
            assert (options.gate, options.expires_after) == (
                before.options.gate,
                before.options.expires_after,
            )
        if kind == "delay":
            assert options.delay == 3.0
        assert options.policed  # the run's verdict: no refusal of the definition applies


def test_an_auto_policy_only_marks_the_steps_it_judged() -> None:
    plan, subjects = _plan(["none", "delay", "own_approval", "signal"])
    policed = police(plan, Policy.of("auto"), subjects)
    for before, after in zip(plan.steps, policed.steps, strict=True):
        if before.name not in subjects:
            assert after == before
            continue
        assert after.options is not None and after.options.policed
        assert replace(after.options, policed=False) == (before.options or StepOptions())


@given(
    mode=st.sampled_from(["auto", "ask", "deny"]),
    allow=st.lists(cased, max_size=3),
    block=st.lists(cased, max_size=3),
    expires=st.none() | st.floats(min_value=0.5, max_value=1e6),
    on_expiry=st.sampled_from(list(OnExpiry)),
)
def test_the_first_event_records_the_policy_and_gives_it_back(
    mode: str, allow: list[str], block: list[str], expires: float | None, on_expiry: OnExpiry
) -> None:
    policy = Policy.of(mode, allow, block, expires, on_expiry, "run")
    started = EventRow("r", 1, "run_started", None, {"workflow": "wf"}, 0.0)
    waiting = EventRow("r", 2, "step_waiting", "s0", {}, 0.0)
    events = started_with([started, waiting], policy)
    assert events[1] == waiting and events[0].payload["workflow"] == "wf"
    assert of_events(events) == policy
    assert of_events([started, waiting]) is None
    assert of_events([]) is None
    assert of_events([replace(events[0], type="step_waiting")]) is None


def test_refusals_say_whose_policy_and_why() -> None:
    run = Policy.of("deny", allow=["Fetch"], block=["CLOSE"], whose="run")
    assert run.refusal("close", "action") == (
        BLOCKED,
        "action 'close' is blocked by the run's approval_policy",
    )
    assert run.refusal("charge", "step") == (
        DENIED,
        "step 'charge' is not allowed by the run's approval_policy (mode deny: only the steps "
        "under allow run)",
    )
    assert run.refusal("FETCH") is None
    assert Policy.of("ask", allow=["a"]).asks("b") and not Policy.of("ask", ["A"]).asks("a")


def test_every_store_codec_keeps_a_refusal() -> None:
    from plait.stores import nats_codec
    from plait.stores.sql.rows import options_from_json, options_to_json

    options = StepOptions(delay=1.0, refusal=(BLOCKED, "step 'x' is blocked"), policed=True)
    assert options_from_json(options_to_json(options) or "") == options
    assert nats_codec.decode(StepOptions, nats_codec.encode(options)) == options
    assert "refusal" not in (options_to_json(StepOptions(delay=1.0)) or "")
    assert "policed" not in (options_to_json(StepOptions(delay=1.0)) or "")
