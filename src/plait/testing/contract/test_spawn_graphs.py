"""Dynamic graphs on every store: spawned steps that read other handles' outputs and upstream
workflow steps' outputs (`input=handle`, `inputs=`), take literal arguments (`args=`), and run
detached from their parent (`join=False`); each misuse refused with `invalid_spawn` and nothing of
the attempt committed; retry and fork of such runs; and `ctx.run_labels`."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import plait


@pytest.fixture
def engine(store_url: str) -> Iterator[plait.Engine]:
    with plait.Engine(store_url, lease=5.0) as eng:
        yield eng


def finish(engine: plait.Engine, handle: plait.RunHandle) -> plait.RunHandle:
    engine.run_worker(until=handle, timeout=60, concurrency=4)
    return handle


def steps(engine: plait.Engine, run_id: str) -> dict[str, plait.Step]:
    return {s.name: s for s in engine.steps(run_id)}


def graph(spawning: Callable[..., Any]) -> plait.Workflow:
    """fetch -> fan (which spawns as `spawning` says) -> after; tasks double, add, tally."""
    wf = plait.Workflow("graphs")
    broke: list[str] = []  # input fail_tally: "once" fails its first call, True every call

    @wf.task
    def double(x: int) -> int:
        return 2 * x

    @wf.task
    def add(a: int, b: dict[str, int], n: int = 0) -> int:
        return a + b["v"] + n

    @wf.task
    def tally(ctx: plait.StepContext, x: int) -> dict[str, Any]:
        fail = ctx.input.get("fail_tally")
        if fail is True or (fail == "once" and not broke):
            broke.append(ctx.step)
            raise plait.Permanent("tally broke")
        return {"x": x, "labels": dict(ctx.run_labels)}

    @wf.step
    def fetch() -> dict[str, int]:
        return {"v": 10}

    @wf.step
    def fan(ctx: plait.StepContext, fetch: dict[str, int]) -> Any:
        return spawning(ctx, double=double, add=add, tally=tally)

    @wf.step
    def after(fan: Any) -> Any:
        return fan

    return wf


def chain(ctx: plait.StepContext, *, double: Any, add: Any, tally: Any) -> Any:
    h1 = ctx.spawn(double, input=3)
    h2 = ctx.spawn(double, input=h1)  # 12: h1's output is its input
    h3 = ctx.spawn(add, inputs={"a": h2, "b": "fetch"}, args={"n": 5})  # 12 + 10 + 5
    ctx.spawn(tally, name="audit", input=h3, join=False)
    return [h2, h3]


def test_spawned_steps_read_handles_and_upstream_steps_and_detached_ones_run_on(
    engine: plait.Engine,
) -> None:
    wf = graph(chain)
    run = finish(engine, engine.start(wf, {}, labels={"team": "core"}))

    assert run.result() == {"after": [12, 27]}
    got = steps(engine, run.id)
    assert got["fan/add-0"].input == {"n": 5, "a": 12, "b": {"v": 10}}  # what it received
    assert got["fan/double-1"].input == 6  # given h1's output whole: recorded as it is
    audit = got["fan/audit"]
    assert (audit.status, audit.output, audit.parent) == (
        plait.StepStatus.DONE,
        {"x": 27, "labels": {"team": "core"}},
        "fan",
    )
    assert got["fan"].joining == 0 and got["fan"].output == [12, 27]


def test_a_parent_whose_children_are_all_detached_ends_with_its_own_output_first(
    engine: plait.Engine,
) -> None:
    release = threading.Event()
    wf = plait.Workflow("detached")

    @wf.task
    def slow(x: int) -> int:
        assert release.wait(30)
        return x + 1

    @wf.step
    def parent(ctx: plait.StepContext) -> str:
        ctx.spawn(slow, input=1, join=False)
        return "mine"

    @wf.step
    def next_(parent: str) -> str:
        return parent + "!"

    run = engine.start(wf, {})
    seen: dict[str, Any] = {}

    def watch() -> None:  # the parent and its dependent end while the child still runs
        seen["next"] = engine.wait_step(run.id, "next_", timeout=30)
        seen["run"] = engine.get_run(run.id).status
        release.set()

    watcher = threading.Thread(target=watch)
    watcher.start()
    finish(engine, run)
    watcher.join(30)
    assert seen == {"next": "mine!", "run": plait.RunStatus.RUNNING}
    assert run.result() == {"next_": "mine!"}  # not the detached step's: it is no sink
    assert steps(engine, run.id)["parent/slow-0"].output == 2


def test_a_failed_detached_step_fails_the_run_and_a_retry_completes_it(
    engine: plait.Engine,
) -> None:
    wf = graph(chain)
    run = finish(engine, engine.start(wf, {"fail_tally": "once"}))

    with pytest.raises(plait.RunFailed):
        run.result()
    got = steps(engine, run.id)
    assert got["fan"].status is plait.StepStatus.DONE  # its parent does not fail with it
    assert got["after"].status is plait.StepStatus.DONE
    audit = got["fan/audit"]
    assert audit.status is plait.StepStatus.FAILED and audit.error is not None
    assert audit.error.code == "Permanent"

    engine.retry(run.id, "fan/audit")
    finish(engine, run)
    assert run.result() == {"after": [12, 27]}
    assert steps(engine, run.id)["fan/audit"].output == {"x": 27, "labels": {}}


def test_an_optional_detached_step_that_fails_does_not_fail_the_run(engine: plait.Engine) -> None:
    def spawning(ctx: plait.StepContext, *, double: Any, add: Any, tally: Any) -> Any:
        ctx.spawn(tally, input=1, join=False, optional=True)
        return "ok"

    run = finish(engine, engine.start(graph(spawning), {"fail_tally": True}))
    assert run.result() == {"after": "ok"}
    assert steps(engine, run.id)["fan/tally-0"].status is plait.StepStatus.FAILED


def test_a_step_reading_a_failed_handle_is_skipped_and_fails_the_run(engine: plait.Engine) -> None:
    def spawning(ctx: plait.StepContext, *, double: Any, add: Any, tally: Any) -> Any:
        h = ctx.spawn(tally, input=1, join=False)
        ctx.spawn(double, input=h, join=False)
        return "ok"

    run = finish(engine, engine.start(graph(spawning), {"fail_tally": True}))
    with pytest.raises(plait.RunFailed):
        run.result()
    skipped = steps(engine, run.id)["fan/double-0"]
    assert (skipped.status, skipped.skip_reason) == (
        plait.StepStatus.SKIPPED,
        "dependency 'fan/tally-0' failed",
    )


def test_a_fork_of_a_run_with_detached_steps_reruns_them_from_their_parent(
    engine: plait.Engine,
) -> None:
    wf = graph(chain)
    first = finish(engine, engine.start(wf, {}))
    assert first.result() == {"after": [12, 27]}

    below = finish(engine, engine.fork(first.id, "after"))  # the parent is reused, as it ended
    assert below.result() == {"after": [12, 27]}
    assert "fan/audit" not in steps(engine, below.id)

    again = finish(engine, engine.fork(first.id, "fan"))  # the parent runs again, and spawns
    assert again.result() == {"after": [12, 27]}
    audit = steps(engine, again.id)["fan/audit"]
    assert (audit.status, audit.output) == (plait.StepStatus.DONE, {"x": 27, "labels": {}})


def _refused(engine: plait.Engine, spawning: Callable[..., Any]) -> str:
    run = finish(engine, engine.start(graph(spawning), {}))
    got = steps(engine, run.id)
    fan = got["fan"]
    assert fan.status is plait.StepStatus.FAILED and fan.error is not None
    assert fan.error.code == "invalid_spawn"
    assert not [n for n in got if n.startswith("fan/")]  # nothing of the attempt committed
    return fan.error.message


@pytest.mark.parametrize(
    ("spawning", "message"),
    [
        (
            lambda ctx, **t: ctx.spawn(t["double"], input=plait.Handle("fan/ghost")),
            "ctx.spawn('double') in step 'fan': input= reads Handle('fan/ghost'), which is not a "
            "handle of a step this step spawned (in this attempt, before this one)",
        ),
        (
            lambda ctx, **t: ctx.spawn(t["add"], inputs={"a": 1, "b": "fetch"}),
            "ctx.spawn('add') in step 'fan': inputs= binds 'a' to 1: give a handle of a step "
            "this step spawned, or the name of a workflow step",
        ),
        (
            lambda ctx, **t: ctx.spawn(t["add"], inputs={"a": "nope", "b": "fetch"}),
            "ctx.spawn('add') in step 'fan': inputs= binds 'a' to step 'nope', which workflow "
            "'graphs' does not have",
        ),
        (
            lambda ctx, **t: ctx.spawn(t["add"], inputs={"a": "after", "b": "fetch"}),
            "ctx.spawn('add') in step 'fan': inputs= binds 'a' to step 'after', which depends "
            "on step 'fan': the spawned step would wait for a step that waits for it (a cycle)",
        ),
        (
            lambda ctx, **t: ctx.spawn(t["add"], inputs={"a": "fan", "b": "fetch"}),
            "ctx.spawn('add') in step 'fan': inputs= binds 'a' to step 'fan', which is this "
            "step: the spawned step would wait for a step that waits for it (a cycle)",
        ),
        (
            lambda ctx, **t: ctx.spawn(t["double"], input=2, inputs={"x": "fetch"}),
            "ctx.spawn('double') in step 'fan': parameter 'x' is given both by input= and by "
            "inputs=: give it once",
        ),
        (
            lambda ctx, **t: ctx.spawn(t["add"], inputs={"b": "fetch"}, args={"b": {}, "a": 1}),
            "ctx.spawn('add') in step 'fan': parameter 'b' is given both by inputs= and by "
            "args=: give it once",
        ),
        (
            lambda ctx, **t: ctx.spawn(t["add"], inputs={"b": "fetch"}),
            "ctx.spawn('add') in step 'fan': parameter(s) 'a' of the task are not given: bind "
            "them with input=, inputs= or args=",
        ),
        (
            lambda ctx, **t: ctx.spawn(t["add"], args={"a": 1, "b": {}, "zz": 2}),
            "ctx.spawn('add') in step 'fan': args= names parameter 'zz', which the task does "
            "not have (its parameters besides ctx: 'a', 'b', 'n')",
        ),
        (
            lambda ctx, **t: ctx.spawn(t["add"], args={"a": object(), "b": {}}),
            "ctx.spawn('add') in step 'fan': its arguments are not JSON",
        ),
        (
            lambda ctx, **t: ctx.spawn(t["double"], input=1, join="no"),
            "ctx.spawn('double') in step 'fan': join must be True or False, got 'no'",
        ),
        (
            lambda ctx, **t: ctx.spawn(t["double"], input=1, join=False),
            "step 'fan' returned the handle of 'fan/double-0', spawned with join=False: a step "
            "gathers the outputs of the steps it joins only",
        ),
    ],
    ids=[
        "unknown-handle",
        "not-a-source",
        "unknown-step",
        "cycle",
        "itself",
        "input-and-inputs",
        "inputs-and-args",
        "unbound",
        "unknown-param",
        "not-json",
        "bad-join",
        "gather-detached",
    ],
)
def test_a_bad_spawn_is_refused_saying_why_and_commits_nothing(
    engine: plait.Engine, spawning: Callable[..., Any], message: str
) -> None:
    assert _refused(engine, spawning).startswith(message)


def test_a_workflow_step_that_is_not_upstream_is_refused(engine: plait.Engine) -> None:
    wf = plait.Workflow("sideways")

    @wf.task
    def use(x: Any) -> Any:
        return x

    @wf.step
    def side() -> int:
        return 1

    @wf.step
    def fan(ctx: plait.StepContext) -> str:
        ctx.spawn(use, inputs={"x": "side"})
        return "no"

    run = finish(engine, engine.start(wf, {}))
    refused = steps(engine, run.id)["fan"]
    assert refused.error is not None and refused.error.code == "invalid_spawn"
    assert refused.error.message.startswith(
        "ctx.spawn('use') in step 'fan': inputs= binds 'x' to step 'side', which is not "
        "upstream of step 'fan': a spawned step reads the outputs of workflow steps that the "
        "spawning step depends on (directly or not), which have ended"
    )
    assert "fan/use-0" not in steps(engine, run.id)


def test_run_labels_are_read_only_and_empty_without_labels(engine: plait.Engine) -> None:
    wf = plait.Workflow("labels")

    @wf.step
    def look(ctx: plait.StepContext) -> dict[str, Any]:
        try:
            ctx.run_labels["x"] = "y"  # type: ignore[index]  # what the test checks
        except TypeError:
            writable = False
        else:
            writable = True
        return {"labels": dict(ctx.run_labels), "writable": writable}

    labelled = finish(engine, engine.start(wf, {}, labels={"env": "prod", "team": "a"}))
    assert labelled.result() == {
        "look": {"labels": {"env": "prod", "team": "a"}, "writable": False}
    }
    plain = finish(engine, engine.start(wf, {}))
    assert plain.result() == {"look": {"labels": {}, "writable": False}}


def test_a_big_output_given_whole_to_a_spawned_step_shares_its_blob(store_url: str) -> None:
    url = f"{store_url}{'&' if '?' in store_url else '?'}blob_threshold=500"
    wf = plait.Workflow("shared")

    @wf.task
    def make(n: int) -> str:
        return "b" * n

    @wf.task
    def measure(text: str) -> int:
        return len(text)

    @wf.step
    def fan(ctx: plait.StepContext) -> plait.Handle:
        return ctx.spawn(measure, input=ctx.spawn(make, input=1000))

    with plait.Engine(url, lease=5.0) as engine:
        run = finish(engine, engine.start(wf, {}))
        assert run.result() == {"fan": 1000}
        assert steps(engine, run.id)["fan/measure-0"].input == "b" * 1000
        # make's output and measure's recorded input: one blob of 1,002 bytes, two references
        assert engine.blob_stats() == plait.BlobStats(blobs=1, bytes=1002, references=2)


def test_a_fork_from_a_detached_step_names_the_step_that_spawned_it(engine: plait.Engine) -> None:
    first = finish(engine, engine.start(graph(chain), {}))
    with pytest.raises(plait.InputError) as raised:
        engine.fork(first.id, "fan/audit")
    assert str(raised.value) == (
        f"cannot fork run {first.id!r} from step 'fan/audit': it was spawned while the run ran, "
        "and a fork runs the workflow's own steps; fork from 'fan', the workflow step that "
        "spawned it"
    )


def test_replay_calls_a_bound_spawned_step_with_what_it_received(engine: plait.Engine) -> None:
    wf = graph(chain)
    run = finish(engine, engine.start(wf, {}))
    replayed = engine.replay(run.id, "fan/add-0", workflow=wf)
    assert (replayed.status, replayed.output, replayed.changed) == ("done", 27, False)
    whole = engine.replay(run.id, "fan/double-1", workflow=wf)  # given h1's output whole
    assert (whole.status, whole.output, whole.changed) == ("done", 12, False)


def test_cancelling_a_run_cancels_its_detached_steps(engine: plait.Engine) -> None:
    release = threading.Event()
    wf = plait.Workflow("cancel_detached")

    @wf.task
    def hold(x: int) -> int:
        assert release.wait(30)
        return x

    @wf.task
    def later(x: int) -> int:
        return x

    @wf.step
    def parent(ctx: plait.StepContext) -> str:
        h = ctx.spawn(hold, input=1, join=False)
        ctx.spawn(later, input=h, join=False)
        return "mine"

    run = engine.start(wf, {})

    def cancel_once_held() -> None:
        assert engine.wait_step(run.id, "parent", timeout=30) == "mine"
        engine.cancel(run.id)
        release.set()

    canceller = threading.Thread(target=cancel_once_held)
    canceller.start()
    finish(engine, run)
    canceller.join(30)
    assert engine.get_run(run.id).status is plait.RunStatus.CANCELLED
    got = steps(engine, run.id)
    assert got["parent/later-0"].status is plait.StepStatus.CANCELLED  # it waited on hold
    assert got["parent/hold-0"].status.terminal


def test_a_parent_ending_at_its_first_success_cancels_a_detached_reader_of_the_rest(
    engine: plait.Engine,
) -> None:
    wf = plait.Workflow("first_detached")

    @wf.task
    def quick() -> str:
        return "quick"

    @wf.task
    def never(ctx: plait.StepContext) -> str:
        raise plait.Permanent("never")

    @wf.task
    def reader(x: str) -> str:
        return x

    @wf.step(join="first")
    def race(ctx: plait.StepContext) -> None:
        slow = ctx.spawn(never, not_before=datetime.now(UTC) + timedelta(hours=1))
        ctx.spawn(quick)
        ctx.spawn(reader, input=slow, join=False)  # it would wait for a step the join cancels

    run = finish(engine, engine.start(wf, {}))
    assert run.result() == {"race": "quick"}
    got = steps(engine, run.id)
    assert got["race/never-0"].status is plait.StepStatus.CANCELLED
    assert got["race/reader-0"].status is plait.StepStatus.CANCELLED
