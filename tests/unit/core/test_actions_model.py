"""Property test of operator actions (`plait.core.actions`) mixed with worker transitions.

Random DAGs; random interleavings of claims, successes, failures (with and without retry), lease
expiries, and cancel / pause / resume / retry of failed steps. After every operation the run's
counters must agree with its steps (they are kept incrementally, never recounted), and at the end
a run that is not cancelled must still be able to finish: resumed and served, it ends, with every
step ended. The memory store applies the transitions, copying rows in and out like a database.
"""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import plait
from plait.core import actions
from plait.core.cascade import fails_run, new_run
from plait.core.rows import Claim, Outcome, RunStatus, StepStatus
from plait.stores.memory import MemoryStore

NOW = 1_000_000.0
TERMINAL = {StepStatus.DONE, StepStatus.FAILED, StepStatus.SKIPPED, StepStatus.CANCELLED}


def _noop(**_: Any) -> None:
    return None


@st.composite
def workflows(draw: st.DrawFn) -> plait.Workflow:
    size = draw(st.integers(2, 7))
    wf = plait.Workflow("prop")
    for i in range(size):
        deps = draw(st.lists(st.sampled_from(range(i)), unique=True, max_size=3)) if i else []
        names = [f"s{d}" for d in deps]
        defaults = {n: None for n in names if draw(st.booleans()) and draw(st.booleans())}
        after_any = [n for n in names if n not in defaults and draw(st.integers(0, 4)) == 0]
        data = [n for n in names if n not in after_any]
        wf.add_step(
            f"s{i}",
            _noop,
            data,
            after_any=after_any,
            defaults=defaults,
            optional=draw(st.integers(0, 4)) == 0,
        )
    return wf


OPERATIONS = st.lists(
    st.tuples(
        st.sampled_from(
            ["claim", "ok", "fail", "fail_retry", "expire", "cancel", "pause", "resume", "retry"]
        ),
        st.integers(0, 6),
    ),
    max_size=40,
)


class Harness:
    def __init__(self, wf: plait.Workflow) -> None:
        self.plan = wf.plan()
        self.store = MemoryStore()
        self.now = NOW
        self.held: list[Claim] = []
        run, steps, events = new_run(self.plan, "r", b"{}", NOW)
        asyncio.run(self.store.create_run(run, steps, events))

    def tick(self) -> float:
        self.now += 1
        return self.now

    def do(self, op: str, pick: int) -> None:
        s = self.store
        if op == "claim":
            got = asyncio.run(
                s.claim(
                    worker_id="w",
                    fingerprints=[self.plan.fingerprint],
                    limit=2,
                    lease=30,
                    now=self.tick(),
                )
            )
            self.held += got
        elif op in ("ok", "fail", "fail_retry") and self.held:
            c = self.held.pop(pick % len(self.held))
            if op == "ok":
                outcome = Outcome(c.run_id, c.step, c.token, output=b"1")
            else:
                retry_at = self.now + 2 if op == "fail_retry" else None
                outcome = Outcome(
                    c.run_id, c.step, c.token, error_code="E", error_message="x", retry_at=retry_at
                )
            asyncio.run(s.complete([outcome], self.tick()))
        elif op == "expire" and self.held:
            self.held.pop(pick % len(self.held))  # its worker died: the lease runs out
            asyncio.run(s.recover_expired(self.tick() + 60, max_recoveries=10, limit=100))
            self.now += 60
        elif op in ("cancel", "pause", "resume"):
            action = getattr(actions, op)
            options = {"reason": None} if op == "cancel" else {}
            asyncio.run(s.apply(lambda txn: action(txn, "r", by="prop", **options), self.tick()))
        elif op == "retry":
            failed = [x.name for x in self.steps() if x.status is StepStatus.FAILED]
            if failed:
                name = failed[pick % len(failed)]
                result = asyncio.run(
                    s.apply(lambda txn: actions.retry(txn, "r", name, by="prop"), self.tick())
                )
                event("retry refused" if result.refusal else "retried")

    def steps(self) -> list[Any]:
        return asyncio.run(self.store.get_steps("r"))

    def check(self) -> None:
        run = asyncio.run(self.store.get_run("r"))
        assert run is not None
        steps = {x.name: x for x in self.steps()}
        unfinished = [x for x in steps.values() if x.status not in TERMINAL]
        assert run.unfinished == len(unfinished), (run, steps)
        failures = [x for x in steps.values() if x.status in TERMINAL and fails_run(x)]
        assert run.failures == len(failures), (run, steps)
        upstream: dict[str, list[str]] = {}
        for x in steps.values():
            for e in x.dependents:
                upstream.setdefault(e.target, []).append(x.name)
        for x in steps.values():
            if x.status is StepStatus.PENDING:
                waiting_on = [
                    u for u in upstream.get(x.name, []) if steps[u].status not in TERMINAL
                ]
                assert x.unmet == len(waiting_on) > 0, (x, waiting_on)
        if run.status is RunStatus.CANCELLED:
            assert not any(
                x.status in (StepStatus.PENDING, StepStatus.READY) for x in steps.values()
            )
        if run.status in (RunStatus.COMPLETED, RunStatus.FAILED):
            assert not unfinished
            assert (run.status is RunStatus.FAILED) == bool(failures)
        seqs = [e.seq for e in asyncio.run(self.store.get_events("r", 0, None))]
        assert seqs == list(range(1, len(seqs) + 1))

    def finish(self) -> None:
        """Serve the run to its end: resume it, let every held step succeed, claim the rest."""
        run = asyncio.run(self.store.get_run("r"))
        assert run is not None
        if run.status in (RunStatus.PAUSING, RunStatus.PAUSED):
            self.do("resume", 0)
        for _ in range(100):
            while self.held:
                self.do("ok", 0)
            self.now += 10  # past every retry's time
            self.do("claim", 0)
            self.check()
            if not self.held:
                break
        run = asyncio.run(self.store.get_run("r"))
        assert run is not None and run.status.terminal, run
        assert all(x.status in TERMINAL for x in self.steps())


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(workflows(), OPERATIONS)
def test_counters_stay_true_and_runs_can_always_finish(
    wf: plait.Workflow, operations: list[tuple[str, int]]
) -> None:
    h = Harness(wf)
    for op, pick in operations:
        h.do(op, pick)
        h.check()
    h.finish()
