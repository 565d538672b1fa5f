"""Property tests of the state machine (`plait.core.transitions`) against a small reference model.

The model below is written from DESIGN §3.2-3.4, not from `_transitions`: it keeps every step's
status in a dict and, after each operation, re-evaluates readiness of the whole graph until
nothing changes (the real machine keeps counters and touches only dependents). A tiny in-test
store hands each transition copies of the rows it asks for, so a change that a transition forgets
to mark as changed is lost, as in a database, and the test notices.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import plait
from plait.core.cascade import fails_run, new_run
from plait.core.rows import (
    EdgeKind,
    EventRow,
    Outcome,
    RunRow,
    RunStatus,
    StepRow,
)
from plait.core.transitions import claim, complete, recover, release
from plait.core.txn import Need, Transition, Txn, drive

RUN = "run-1"
TERMINAL_EVENTS = {"step_completed": "done", "step_failed": "failed", "step_skipped": "skipped"}
RUN_END_EVENTS = {"run_completed", "run_failed"}
TERMINAL = {"done", "failed", "skipped", "cancelled"}
# a step whose attempts ended without an outcome more than max_recoveries times, by how the last
# ended: its lease expired, or a stopping worker released it
GAVE_UP = {"lease_expired", "abandoned"}


# -- the workflow under test ---------------------------------------------------------------------


@dataclass(frozen=True)
class Behaviour:
    """What a step's handler does on attempt n (1-based)."""

    kind: str  # "ok" | "permanent" (plait.Permanent) | "always" (ValueError) | "flaky"
    failures: int = 0  # flaky: fails this many attempts, then succeeds
    retryable: bool | None = None  # flaky: None (ordinary exception) or True (plait.Retryable)

    def attempt(self, n: int) -> tuple[bool, str | None, bool | None]:
        """(succeeded, error code, retryable) of attempt `n`."""
        if self.kind == "ok" or (self.kind == "flaky" and n > self.failures):
            return True, None, None
        if self.kind == "permanent":
            return False, "Permanent", False
        if self.kind == "always":
            return False, "ValueError", None
        return False, "Retryable" if self.retryable else "ValueError", self.retryable


@dataclass(frozen=True)
class Spec:
    names: tuple[str, ...]
    deps: tuple[dict[str, EdgeKind], ...]  # per step: dependency -> kind (earlier steps only)
    defaults: tuple[frozenset[str], ...]
    optional: tuple[bool, ...]
    budget: tuple[int, ...]
    delay: tuple[float, ...]
    behaviour: tuple[Behaviour, ...]
    max_recoveries: int

    def dependents(self, name: str) -> list[str]:
        return [n for n, d in zip(self.names, self.deps, strict=True) if name in d]


def _handler(**kwargs: Any) -> None:
    """Every generated step uses this handler; the harness plays the worker, never calls it."""


def build_workflow(spec: Spec) -> plait.Workflow:
    wf = plait.Workflow("model")
    for i, name in enumerate(spec.names):
        deps = spec.deps[i]
        wf.add_step(
            name,
            _handler,
            deps=[d for d, k in deps.items() if k is EdgeKind.DATA],
            after=[d for d, k in deps.items() if k is EdgeKind.AFTER],
            after_any=[d for d, k in deps.items() if k is EdgeKind.AFTER_ANY],
            defaults={d: {"default": d} for d in spec.defaults[i]},
            optional=spec.optional[i],
            retry=plait.Retry(attempts=spec.budget[i], delay=spec.delay[i], jitter=0.0),
        )
    return wf


behaviours = st.one_of(
    st.just(Behaviour("ok")),
    st.just(Behaviour("permanent")),
    st.just(Behaviour("always")),
    st.builds(
        Behaviour,
        st.just("flaky"),
        st.integers(1, 4),
        st.sampled_from([None, True]),
    ),
)


@st.composite
def specs(draw: st.DrawFn) -> Spec:
    n = draw(st.integers(1, 12))
    names = tuple(f"s{i}" for i in range(n))
    deps: list[dict[str, EdgeKind]] = []
    defaults: list[frozenset[str]] = []
    for i in range(n):
        kinds = draw(
            st.lists(
                st.sampled_from([None, None, EdgeKind.DATA, EdgeKind.AFTER, EdgeKind.AFTER_ANY]),
                min_size=i,
                max_size=i,
            )
        )
        d = {names[j]: k for j, k in enumerate(kinds) if k is not None}
        absorbable = sorted(x for x, k in d.items() if k is not EdgeKind.AFTER_ANY)
        chosen = draw(st.lists(st.sampled_from(absorbable), unique=True)) if absorbable else []
        deps.append(d)
        defaults.append(frozenset(chosen))
    return Spec(
        names=names,
        deps=tuple(deps),
        defaults=tuple(defaults),
        optional=tuple(draw(st.lists(st.booleans(), min_size=n, max_size=n))),
        budget=tuple(draw(st.lists(st.integers(1, 4), min_size=n, max_size=n))),
        delay=tuple(draw(st.lists(st.sampled_from([0.0, 1.0, 4.0]), min_size=n, max_size=n))),
        behaviour=tuple(draw(st.lists(behaviours, min_size=n, max_size=n))),
        max_recoveries=draw(st.integers(0, 2)),
    )


# -- the reference model -------------------------------------------------------------------------


@dataclass
class MStep:
    status: str = "pending"
    available_at: float | None = None
    token: str | None = None
    lease_expires: float | None = None
    attempts: int = 0  # attempts whose outcome was accepted
    claims: int = 0
    recoveries: int = 0  # lease expiries
    releases: int = 0  # hand-backs by stopping workers (both count toward max_recoveries)
    retries: int = 0
    output: bytes | None = None
    error_code: str | None = None


@dataclass
class Model:
    """DESIGN §3.2-3.4, stated as plainly as possible."""

    spec: Spec
    steps: dict[str, MStep] = field(default_factory=dict)
    run_status: str = "pending"
    # what the operations of the current transaction are expected to produce
    events: Counter[tuple[str, str | None]] = field(default_factory=Counter)
    touched: set[str] = field(default_factory=set)
    accepted: list[bool] = field(default_factory=list)
    claimed: list[tuple[str, int, str, float]] = field(default_factory=list)
    readied: int = 0
    ended: bool = False

    def __post_init__(self) -> None:
        self.steps = {n: MStep() for n in self.spec.names}
        self.settle(now=0.0)
        self.begin()

    def begin(self) -> None:
        self.events, self.touched, self.accepted, self.claimed = Counter(), set(), [], []
        self.readied, self.ended = 0, False

    def deps(self, name: str) -> dict[str, EdgeKind]:
        return self.spec.deps[self.spec.names.index(name)]

    def doomed(self, name: str) -> list[str]:
        """Dependencies whose end skips `name`: data/after, not done, no default."""
        i = self.spec.names.index(name)
        return [
            d
            for d, kind in self.spec.deps[i].items()
            if kind is not EdgeKind.AFTER_ANY
            and self.steps[d].status != "done"
            and d not in self.spec.defaults[i]
        ]

    def claimable(self, name: str, now: float) -> bool:
        s = self.steps[name]
        return (
            self.run_status in ("pending", "running")
            and s.status == "ready"
            and s.available_at is not None
            and s.available_at <= now
        )

    def run_fails(self) -> list[str]:
        return [
            n
            for i, n in enumerate(self.spec.names)
            if not self.spec.optional[i] and self.steps[n].status in ("failed", "skipped")
        ]

    def _terminal(self, name: str) -> None:
        self.touched.update(self.spec.dependents(name))

    def settle(self, now: float) -> None:
        """Re-evaluate readiness of every pending step until nothing changes; end the run."""
        changed = True
        while changed:
            changed = False
            for name in self.spec.names:
                s = self.steps[name]
                if s.status != "pending":
                    continue
                if not all(self.steps[d].status in TERMINAL for d in self.deps(name)):
                    continue
                changed = True
                if self.doomed(name):
                    s.status = "skipped"
                    self.events["step_skipped", name] += 1
                    self._terminal(name)
                else:
                    s.status, s.available_at = "ready", now
                    self.readied += 1
        if self.run_status in ("pending", "running") and all(
            s.status in TERMINAL for s in self.steps.values()
        ):
            self.run_status = "failed" if self.run_fails() else "completed"
            self.events[f"run_{self.run_status}", None] += 1
            self.touched.update(n for n in self.spec.names if not self.spec.dependents(n))
            self.ended = True

    # operations, each applied as the store applies it (in transaction order)

    def claim(self, name: str, token: str, lease: float, now: float) -> None:
        self.touched.add(name)
        if not self.claimable(name, now):
            return
        s = self.steps[name]
        s.status, s.token, s.lease_expires = "running", token, now + lease
        s.claims += 1
        self.run_status = "running"
        self.events["step_started", name] += 1
        self.claimed.append((name, s.attempts + 1, token, now + lease))

    def complete(self, name: str, token: str, now: float) -> Outcome | None:
        """The outcome the handler produces now, or None when `token` is stale (it is ignored)."""
        self.touched.add(name)
        s = self.steps[name]
        if s.status != "running" or s.token != token:
            self.accepted.append(False)
            self.events["step_outcome_ignored", name] += 1
            return None
        self.accepted.append(True)
        s.attempts += 1
        s.token = s.lease_expires = None
        i = self.spec.names.index(name)
        ok, code, retryable = self.spec.behaviour[i].attempt(s.attempts)
        if ok:
            s.status, s.output = "done", _output(name, s.attempts)
            self.events["step_completed", name] += 1
            self._terminal(name)
        elif retryable is not False and s.attempts < self.spec.budget[i]:
            # DESIGN §3.2: delay × backoff^(attempt-1), capped; these policies use the
            # default backoff (2) and max_delay (60) and no jitter
            s.status = "ready"
            s.available_at = now + min(self.spec.delay[i] * 2 ** (s.attempts - 1), 60.0)
            s.retries += 1
            self.readied += 1
            self.events["step_retrying", name] += 1
        else:
            s.status, s.error_code = "failed", code
            self.events["step_failed", name] += 1
            self._terminal(name)
        self.settle(now)
        return None

    def recover(self, name: str, now: float) -> None:
        self.touched.add(name)
        s = self.steps[name]
        if s.status != "running" or s.lease_expires is None or s.lease_expires > now:
            return
        s.recoveries += 1
        s.token = s.lease_expires = None
        if s.recoveries + s.releases > self.spec.max_recoveries:
            s.status, s.error_code = "failed", "lease_expired"
            self.events["step_failed", name] += 1
            self._terminal(name)
            self.settle(now)
        else:
            s.status, s.available_at = "ready", now
            self.readied += 1
            self.events["step_lease_expired", name] += 1

    def release(self, name: str, token: str, now: float) -> None:
        self.touched.add(name)
        s = self.steps[name]
        if s.status != "running" or s.token != token:
            return
        s.token = s.lease_expires = None
        s.releases += 1
        if s.recoveries + s.releases > self.spec.max_recoveries:  # it hangs every worker
            s.status, s.error_code = "failed", "abandoned"
            self.events["step_failed", name] += 1
            self._terminal(name)
            self.settle(now)
        else:
            s.status, s.available_at = "ready", now
            self.readied += 1
            self.events["step_released", name] += 1


def _output(name: str, attempt: int) -> bytes:
    return orjson.dumps({"step": name, "attempt": attempt})


def final_statuses(spec: Spec, lease_killed: set[str]) -> dict[str, tuple[str, int | None]]:
    """Each step's end (status, accepted attempts), computed in one pass in topological order,
    with no reference to any interleaving: the order of claims must not change outcomes."""
    out: dict[str, tuple[str, int | None]] = {}
    for i, name in enumerate(spec.names):
        doomed = [
            d
            for d, kind in spec.deps[i].items()
            if kind is not EdgeKind.AFTER_ANY and out[d][0] != "done" and d not in spec.defaults[i]
        ]
        b, budget = spec.behaviour[i], spec.budget[i]
        if doomed:
            out[name] = ("skipped", 0)
        elif name in lease_killed:
            out[name] = ("failed", None)
        elif b.kind == "ok":
            out[name] = ("done", 1)
        elif b.kind == "permanent":
            out[name] = ("failed", 1)
        elif b.kind == "always":
            out[name] = ("failed", budget)
        elif b.failures < budget:
            out[name] = ("done", b.failures + 1)
        else:
            out[name] = ("failed", budget)
    return out


# -- a tiny store ----------------------------------------------------------------------------------


class TinyStore:
    """Rows in dicts; each transaction works on copies of the rows it loads."""

    def __init__(self, run: RunRow, steps: list[StepRow], events: list[EventRow]) -> None:
        self.run = run
        self.steps = {s.name: s for s in steps}
        self.events = list(events)
        self.loaded: set[str] = set()

    def load(self, txn: Txn, need: Need) -> None:
        assert need.run_id == RUN
        self.loaded.update(need.steps)
        txn.add_run(RUN, dataclasses.replace(self.run))
        for name in need.steps:
            row = self.steps.get(name)
            txn.add_step(RUN, name, dataclasses.replace(row) if row else None)

    def transact(self, now: float, ops: list[Callable[[Txn], Transition]]) -> Txn:
        txn = Txn(now)
        self.loaded = set()
        for op in ops:
            drive(op(txn), self.load, txn)
        # a loaded row that was changed must have been marked as changed
        for (_, name), row in txn.steps.items():
            if row is not None and (RUN, name) not in txn.changed_steps:
                assert row == self.steps[name], f"{name} changed without txn.touch()"
        loaded_run = txn.runs.get(RUN)
        if loaded_run is not None and RUN not in txn.changed_runs:
            assert loaded_run == self.run, "run changed but not marked as changed"
        for (_, name), row in txn.changed_steps.items():
            self.steps[name] = row
        if RUN in txn.changed_runs:
            self.run = txn.changed_runs[RUN]
        self.events.extend(txn.events)
        return txn


# -- the property --------------------------------------------------------------------------------


@dataclass
class Lease:
    step: str
    token: str
    attempt: int


class Worker:
    """Plays the worker: holds leases, runs (pretends to run) handlers, reports outcomes."""

    def __init__(self, spec: Spec, model: Model) -> None:
        self.spec, self.model = spec, model
        self.held: dict[str, Lease] = {}  # step -> the lease held on it
        self.stale: list[Lease] = [Lease(n, "never-issued", 1) for n in spec.names]
        self.noise = 8  # stale completions and no-op operations still allowed
        self._tokens = (f"tok-{i}" for i in itertools.count())
        self.policies = {
            n: plait.Retry(attempts=spec.budget[i], delay=spec.delay[i], jitter=0.0)
            for i, n in enumerate(spec.names)
        }

    def choices(self, now: float) -> list[tuple[str, Any]]:
        model, out = self.model, []
        out.extend(("claim", n) for n in self.spec.names if model.claimable(n, now))
        for name, lease in self.held.items():
            out.append(("complete", lease))
            out.append(("recover", lease))  # a no-op unless its lease has expired by `now`
            if model.steps[name].releases < 2:
                out.append(("release", lease))
        if self.noise > 0:
            out.extend(("stale", lease) for lease in self.stale[-4:])
            out.extend(("noclaim", n) for n in self.spec.names[:3] if not model.claimable(n, now))
            out.extend(("badrelease", lease) for lease in self.held.values())
        return out

    def apply(
        self, kind: str, arg: Any, data: st.DataObject, now: float
    ) -> Callable[[Txn], Transition]:
        """Apply one operation to the model and to the worker; return it for the store."""
        model = self.model
        if kind in ("stale", "noclaim", "badrelease"):
            self.noise -= 1
        if kind in ("claim", "noclaim"):
            name, token = arg, next(self._tokens)
            lease_len = data.draw(st.sampled_from([5.0, 20.0]), label="lease")
            model.claim(name, token, lease_len, now)
            if model.claimed and model.claimed[-1][2] == token:
                self.held[name] = Lease(name, token, model.claimed[-1][1])
            return lambda txn: claim(txn, RUN, name, token=token, worker_id="w1", lease=lease_len)
        lease: Lease = arg
        if kind == "complete":
            del self.held[lease.step]
            self.stale.append(lease)  # a later completion with this token is a duplicate
            model.complete(lease.step, lease.token, now)
            outcome = self.outcome(lease, now)
            return lambda txn: complete(txn, outcome)
        if kind == "stale":
            model.complete(lease.step, lease.token, now)
            outcome = self.outcome(lease, now, forced=data.draw(st.booleans(), label="ok"))
            return lambda txn: complete(txn, outcome)
        if kind == "recover":
            model.recover(lease.step, now)
            if model.steps[lease.step].token != lease.token:
                del self.held[lease.step]
                self.stale.append(lease)
            max_recoveries = self.spec.max_recoveries
            return lambda txn: recover(txn, RUN, lease.step, max_recoveries)
        if kind == "release":
            model.release(lease.step, lease.token, now)
            del self.held[lease.step]
            self.stale.append(lease)
            max_recoveries = self.spec.max_recoveries
            return lambda txn: release(txn, RUN, lease.step, lease.token, max_recoveries)
        assert kind == "badrelease"
        model.release(lease.step, "wrong-" + lease.token, now)
        wrong, max_recoveries = "wrong-" + lease.token, self.spec.max_recoveries
        return lambda txn: release(txn, RUN, lease.step, wrong, max_recoveries)

    def outcome(self, lease: Lease, now: float, forced: bool | None = None) -> Outcome:
        """What the worker reports after attempt `lease.attempt`; it decides `retry_at` with the
        step's policy, as the real worker does. `forced` sets the outcome of a stale report."""
        if forced is None:
            i = self.spec.names.index(lease.step)
            succeeded, code, retryable = self.spec.behaviour[i].attempt(lease.attempt)
        else:
            succeeded, code, retryable = forced, None if forced else "Stale", None
        if succeeded:
            return Outcome(RUN, lease.step, lease.token, output=_output(lease.step, lease.attempt))
        delay = self.policies[lease.step].next_try(lease.attempt, retryable)
        return Outcome(
            RUN,
            lease.step,
            lease.token,
            error_code=code,
            error_message=f"attempt {lease.attempt} failed",
            traceback="Traceback ...",
            retry_at=None if delay is None else now + delay,
        )


def check_step_rows(store: TinyStore, model: Model) -> None:
    for name, m in model.steps.items():
        row = store.steps[name]
        assert row.status.value == m.status, (name, row.status, m.status)
        expected_attempt = m.attempts + (1 if m.status == "running" else 0)
        if m.error_code in GAVE_UP:  # the attempt that hung is the one recorded
            expected_attempt = m.attempts + 1
        assert row.attempt == expected_attempt, (name, row.attempt, expected_attempt)
        assert row.recoveries == m.recoveries + m.releases, name
        if m.status == "running":
            assert row.lease_token == m.token
        else:
            assert row.lease_token is None and row.lease_expires_at is None
        if m.status == "ready":
            assert row.available_at == m.available_at, name
        if m.status == "done":
            assert row.output == m.output
        if m.status == "failed":
            assert row.error_code == m.error_code
        if m.status == "skipped":
            reason = row.skip_reason or ""
            assert any(repr(d) in reason for d in model.doomed(name)), (name, reason)
    assert store.run.status.value == model.run_status


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(spec=specs(), data=st.data())
def test_state_machine_matches_model(spec: Spec, data: st.DataObject) -> None:
    plan = build_workflow(spec).plan()
    assert [s.name for s in plan.steps] == list(spec.names)
    now = 0.0
    store = TinyStore(*new_run(plan, RUN, b"{}", now))
    model = Model(spec)
    worker = Worker(spec, model)
    check_step_rows(store, model)

    for _ in range(2_000):
        if model.run_status not in ("pending", "running") and not worker.held:
            break
        now += data.draw(st.sampled_from([0.0, 0.0, 1.0, 5.0, 30.0]), label="clock")
        model.begin()
        ops: list[Callable[[Txn], Transition]] = []
        size = data.draw(st.integers(1, 3), label="batch size")  # >1: a group commit
        while len(ops) < size and (choices := worker.choices(now)):
            kind, arg = data.draw(st.sampled_from(choices), label="operation")
            ops.append(worker.apply(kind, arg, data, now))
        if not ops:  # nothing to do before some retry's delay has passed
            waiting = [s.available_at for s in model.steps.values() if s.status == "ready"]
            assert waiting, "no step can make progress, yet the run has not ended"
            now = max(now, min(a for a in waiting if a is not None))
            continue
        txn = store.transact(now, ops)
        if len(ops) > 1:
            event("group commit")
        if sum(e.type == "step_outcome_ignored" for e in txn.events):
            event("stale outcome ignored")

        assert Counter((e.type, e.step) for e in txn.events) == model.events
        assert txn.result.accepted == model.accepted
        claims = [(c.step, c.attempt, c.token, c.lease_expires_at) for c in txn.claims]
        assert claims == model.claimed
        assert txn.result.readied == model.readied
        assert txn.result.ended_runs == ([RUN] if model.ended else [])
        assert store.loaded <= model.touched, f"loaded {store.loaded - model.touched} needlessly"
        check_step_rows(store, model)
        assert all(c.fingerprint == plan.fingerprint for c in txn.claims)
    else:
        pytest.fail("the run did not end")

    # late and duplicate completions after the end change nothing but the log
    before = {n: dataclasses.replace(r) for n, r in store.steps.items()}
    for lease in worker.stale[-3:]:
        outcome = worker.outcome(lease, now, forced=True)
        txn = store.transact(now, [lambda txn, o=outcome: complete(txn, o)])
        assert txn.result.accepted == [False]
        assert [e.type for e in txn.events] == ["step_outcome_ignored"]
    assert store.steps == before

    check_final(spec, store, model)
    # what this example exercised (see --hypothesis-show-statistics)
    for m in model.steps.values():
        event(f"step {m.status}" + (f" ({m.error_code})" if m.error_code else ""))
        if m.recoveries:
            event("lease recovered")
        if m.releases:
            event("lease released")
        if m.recoveries and m.releases:
            event("lease recovered and released")
    event(f"run {model.run_status}")


def check_final(spec: Spec, store: TinyStore, model: Model) -> None:
    # outcomes do not depend on the interleaving
    killed = {n for n, s in model.steps.items() if s.error_code in GAVE_UP}
    expected = final_statuses(spec, killed)
    for i, name in enumerate(spec.names):
        row, m = store.steps[name], model.steps[name]
        status, attempts = expected[name]
        assert row.status.value == status, (name, row.status, status)
        if attempts is not None:
            assert m.attempts == attempts, name
        assert m.attempts <= spec.budget[i]
        # every claim ends in exactly one of: an accepted outcome, a lease expiry, a release
        assert m.claims == m.attempts + m.recoveries + m.releases
        if status == "skipped":
            assert m.claims == 0

    failing = [n for n in spec.names if fails_run(store.steps[n])]
    assert sorted(failing) == sorted(model.run_fails())
    assert store.run.failures == len(failing)
    sinks = [n for n in spec.names if not spec.dependents(n)]
    if failing:
        assert store.run.status is RunStatus.FAILED
        assert store.run.output is None
        assert any(repr(n) in (store.run.error or "") for n in failing), store.run.error
    else:
        assert store.run.status is RunStatus.COMPLETED
        assert orjson.loads(store.run.output or b"") == {
            n: orjson.loads(store.steps[n].output or b"") if expected[n][0] == "done" else None
            for n in sinks
        }
    assert store.run.unfinished == 0

    check_event_log(spec, store.events, model)


def check_event_log(spec: Spec, events: list[EventRow], model: Model) -> None:
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert events[0].type == "run_started"
    ends = [i for i, e in enumerate(events) if e.type in RUN_END_EVENTS]
    assert len(ends) == 1
    assert events[ends[0]].type == f"run_{model.run_status}"
    assert all(e.type == "step_outcome_ignored" for e in events[ends[0] + 1 :])

    per_step: dict[str, Counter[str]] = {n: Counter() for n in spec.names}
    terminal_at: dict[str, int] = {}
    for i, e in enumerate(events):
        if e.step is not None:
            assert e.payload.get("step") == e.step
            per_step[e.step][e.type] += 1
        if e.type in TERMINAL_EVENTS:
            assert e.step not in terminal_at, f"two terminal events for {e.step}"
            terminal_at[e.step] = i
            assert TERMINAL_EVENTS[e.type] == model.steps[e.step].status
        if e.type == "step_started":  # a step runs only once all its dependencies ended
            for dep in spec.deps[spec.names.index(e.step)]:
                assert terminal_at.get(dep, len(events)) < i, (e.step, dep)
    assert set(terminal_at) == set(spec.names)
    assert max(terminal_at.values()) < ends[0]
    for name, counts in per_step.items():
        m = model.steps[name]
        assert counts["step_started"] == m.claims
        assert counts["step_retrying"] == m.retries
        expired = 1 if m.error_code == "lease_expired" else 0
        assert counts["step_lease_expired"] == m.recoveries - expired
        abandoned = 1 if m.error_code == "abandoned" else 0
        assert counts["step_released"] == m.releases - abandoned
