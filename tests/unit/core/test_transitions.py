"""Example-based tests of the state machine: cases the property test checks only in bulk."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import orjson

from plait.core.cascade import FAN_OUT_CHUNK, new_run
from plait.core.claiming import unclaimed_ready
from plait.core.rows import (
    EdgeKind,
    EventRow,
    Outcome,
    RunRow,
    RunStatus,
    StepPlan,
    StepRow,
    StepStatus,
    WorkflowPlan,
)
from plait.core.transitions import claim, complete
from plait.core.txn import Need, Transition, Txn, drive

RUN = "r"
Op = Callable[[Txn], Transition]


class Rows:
    """The smallest store: rows in dicts, copies per transaction."""

    def __init__(self, *steps: StepPlan) -> None:
        plan = WorkflowPlan("w", "1", "fp", steps)
        run, rows, events = new_run(plan, RUN, b'{"x": 1}', 0.0)
        self.run: RunRow = run
        self.steps: dict[str, StepRow] = {s.name: s for s in rows}
        self.events: list[EventRow] = list(events)
        self.loaded = 0

    def load(self, txn: Txn, need: Need) -> None:
        self.loaded += len(need.steps)
        txn.add_run(need.run_id, dataclasses.replace(self.run) if need.run_id == RUN else None)
        for n in need.steps:
            row = self.steps.get(n) if need.run_id == RUN else None
            txn.add_step(need.run_id, n, dataclasses.replace(row) if row else None)

    def do(self, now: float, *ops: Op) -> Txn:
        txn = Txn(now)
        for op in ops:
            drive(op(txn), self.load, txn)
        self.steps.update({name: row for (_, name), row in txn.changed_steps.items()})
        self.run = txn.changed_runs.get(RUN, self.run)
        self.events.extend(txn.events)
        return txn

    def claim(self, name: str, now: float = 0.0) -> str:
        token = f"t-{name}-{len(self.events)}"
        txn = self.do(now, lambda t: claim(t, RUN, name, token=token, worker_id="w", lease=30))
        assert [c.step for c in txn.claims] == [name]
        return token

    def complete(self, name: str, token: str, now: float = 0.0, **outcome: object) -> Txn:
        result = Outcome(RUN, name, token, **outcome)  # type: ignore[arg-type]  # test helper
        return self.do(now, lambda t: complete(t, result))

    def types(self) -> list[str]:
        return [e.type for e in self.events]


def step(
    name: str, *deps: tuple[str, EdgeKind], defaults: tuple[str, ...] = (), optional: bool = False
) -> StepPlan:
    return StepPlan(name, tuple(deps), defaults=defaults, optional=optional)


def test_a_skip_cascades_down_a_long_chain_without_recursion() -> None:
    n = 50_000
    rows = Rows(step("s0"), *(step(f"s{i}", (f"s{i - 1}", EdgeKind.AFTER)) for i in range(1, n)))
    token = rows.claim("s0")
    rows.loaded = 0
    rows.complete("s0", token, error_code="Boom", error_message="boom")
    assert rows.loaded == n  # each step loaded once: no step's rows read again down the chain
    assert rows.steps[f"s{n - 1}"].status is StepStatus.SKIPPED
    assert rows.steps[f"s{n - 1}"].skip_reason == f"dependency 's{n - 2}' skipped"
    assert rows.run.status is RunStatus.FAILED
    assert rows.run.error == "step 's0' failed: boom"
    assert rows.run.failures == n
    assert rows.types().count("step_skipped") == n - 1
    assert rows.types()[-1] == "run_failed"


def test_completion_loads_only_the_step_and_its_dependents() -> None:
    others = [step(f"o{i}") for i in range(100)]
    rows = Rows(step("a"), step("b", ("a", EdgeKind.DATA)), *others)
    token = rows.claim("a")
    rows.loaded = 0
    rows.complete("a", token, output=b"1")
    assert rows.loaded == 2  # a, then b: never the 100 unrelated steps
    assert rows.steps["b"].status is StepStatus.READY


def test_defaults_absorb_after_any_waits_after_cascades() -> None:
    rows = Rows(
        step("a"),
        step("with_default", ("a", EdgeKind.DATA), defaults=("a",)),
        step("after", ("a", EdgeKind.AFTER)),
        step("any", ("a", EdgeKind.AFTER_ANY)),
        step("data", ("a", EdgeKind.DATA)),
    )
    rows.complete("a", rows.claim("a"), error_code="Permanent", error_message="no")
    status = {n: s.status for n, s in rows.steps.items()}
    assert status == {
        "a": StepStatus.FAILED,
        "with_default": StepStatus.READY,
        "after": StepStatus.SKIPPED,
        "any": StepStatus.READY,
        "data": StepStatus.SKIPPED,
    }
    assert rows.steps["data"].skip_reason == "dependency 'a' failed"


def test_run_output_is_the_sinks_outputs_and_optional_failures_do_not_fail_it() -> None:
    rows = Rows(step("a"), step("b", ("a", EdgeKind.DATA)), step("opt", optional=True))
    rows.complete("opt", rows.claim("opt"), error_code="Boom", error_message="x")
    assert rows.run.status is RunStatus.RUNNING
    rows.complete("a", rows.claim("a"), output=b'{"n": 1}')
    txn = rows.complete("b", rows.claim("b"), output=b"[1, 2]")
    assert txn.result.ended_runs == [RUN]
    assert rows.run.status is RunStatus.COMPLETED
    assert orjson.loads(rows.run.output or b"") == {"b": [1, 2], "opt": None}
    assert rows.types()[-1] == "run_completed"


def test_claim_waits_for_available_at_and_an_active_run() -> None:
    rows = Rows(step("a"))
    token = rows.claim("a", now=1.0)
    rows.complete(
        "a", token, now=1.0, error_code="E", error_message="m", traceback="tb", retry_at=5.0
    )
    retrying = rows.events[-1]
    assert retrying.type == "step_retrying"
    assert retrying.payload == {
        "step": "a",
        "retry_at": 5.0,
        "attempt": 1,
        "code": "E",
        "message": "m",
        "traceback": "tb",
        "duration": 0.0,
    }
    txn = rows.do(4.9, lambda t: claim(t, RUN, "a", token="x", worker_id="w", lease=1))
    assert txn.claims == [] and txn.events == []
    rows.run.status = RunStatus.CANCELLED
    txn = rows.do(5.0, lambda t: claim(t, RUN, "a", token="x", worker_id="w", lease=1))
    assert txn.claims == []
    rows.run.status = RunStatus.RUNNING
    assert rows.claim("a", now=5.0)
    assert rows.steps["a"].attempt == 2


def test_ignored_outcomes_say_why() -> None:
    rows = Rows(step("a"))
    token = rows.claim("a")
    rows.complete("a", "wrong")
    assert rows.events[-1].payload == {"step": "a", "reason": "lease lost", "succeeded": True}
    rows.complete("a", token, output=b"1")
    rows.complete("a", token, error_code="Late")
    assert rows.events[-1].type == "step_outcome_ignored"
    assert rows.events[-1].payload == {"step": "a", "reason": "step is done", "succeeded": False}
    assert rows.steps["a"].output == b"1"


def test_outcome_for_an_unknown_step_or_run_is_refused_quietly() -> None:
    rows = Rows(step("a"))
    txn = rows.do(
        0.0,
        lambda t: complete(t, Outcome(RUN, "ghost", "t")),
        lambda t: complete(t, Outcome("other-run", "a", "t")),
    )
    assert txn.result.accepted == [False, False]
    assert txn.events == []


class Releasing(Rows):
    """A store that loads rows, as the SQL stores do: a released step is written back and
    forgotten (`Need.release`). It counts the steps a transaction held at most."""

    def __init__(self, *steps: StepPlan) -> None:
        super().__init__(*steps)
        self.most_held = 0
        self.released: list[str] = []
        self.largest_need = 0

    def load(self, txn: Txn, need: Need) -> None:
        self.largest_need = max(self.largest_need, len(need.steps))
        if need.release:
            self.released.extend(need.release)
            keys = txn.releasable(need.run_id, need.release)
            self.steps.update({n: s for (_, n), s in txn.changed_steps.items() if (RUN, n) in keys})
            txn.forget(keys)
        super().load(txn, need)
        self.most_held = max(self.most_held, len(txn.steps))


def fan_out(width: int, **root: object) -> Releasing:
    leaves = [step(f"l{i}", ("root", EdgeKind.DATA)) for i in range(width)]
    sink = step("sink", *((f"l{i}", EdgeKind.AFTER) for i in range(width)))
    return Releasing(StepPlan("root", (), **root), *leaves, sink)  # type: ignore[arg-type]


def test_a_big_fan_out_readies_its_dependents_a_chunk_at_a_time() -> None:
    width = 2 * FAN_OUT_CHUNK + 500
    rows = fan_out(width)
    token = rows.claim("root")

    txn = rows.complete("root", token, output=b"1")

    assert rows.largest_need <= FAN_OUT_CHUNK and rows.most_held <= FAN_OUT_CHUNK + 1
    assert sorted(rows.released) == sorted(f"l{i}" for i in range(width))
    assert all(rows.steps[f"l{i}"].status is StepStatus.READY for i in range(width))
    assert txn.result.readied == width and unclaimed_ready(txn, []) == width
    assert rows.steps["sink"].unmet == width and rows.run.unfinished == width + 1


def test_a_small_fan_out_releases_nothing() -> None:
    rows = fan_out(FAN_OUT_CHUNK)
    rows.complete("root", rows.claim("root"), output=b"1")
    assert rows.released == [] and rows.steps["l0"].status is StepStatus.READY


def test_a_big_fan_out_skipped_by_a_failure_ends_the_run_through_released_chunks() -> None:
    width = FAN_OUT_CHUNK + 10
    rows = fan_out(width)
    token = rows.claim("root")

    rows.complete("root", token, error_code="Boom", error_message="no")

    assert all(rows.steps[f"l{i}"].status is StepStatus.SKIPPED for i in range(width))
    assert rows.steps["sink"].status is StepStatus.SKIPPED
    assert rows.run.status is RunStatus.FAILED and rows.run.unfinished == 0
    assert rows.types().count("step_skipped") == width + 1
