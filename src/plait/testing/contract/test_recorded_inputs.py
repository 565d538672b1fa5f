"""Recorded inputs, on every store: what each step's handler received is kept with the step
(`Step.input`): a static step's arguments by parameter (its context left out), from every
attempt that reported an outcome, failed ones included; a spawned step's input. Replay calls a
step with what it received; a fork's reused steps keep theirs; big ones are blobs, let go with
their run."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import plait
from plait.core.rows import Excerpt

DEADLINE = 30.0


@pytest.fixture
def engine(store_url: str) -> Iterator[plait.Engine]:
    with plait.Engine(store_url, lease=5.0) as eng:
        yield eng


def chain(default: int = 3) -> plait.Workflow:
    wf = plait.Workflow("recorded", retry=plait.Retry(attempts=2, delay=0.0, jitter=0.0))

    @wf.step()
    def fetch(n: int) -> dict[str, Any]:
        return {"items": list(range(n))}

    @wf.step()
    def scale(ctx: plait.StepContext, fetch: dict[str, Any], factor: int = default) -> int:
        if ctx.attempt == 1:
            raise plait.Retryable("first attempt fails")
        return factor * len(fetch["items"])

    @wf.step()
    def fan(scale: int, ctx: plait.StepContext) -> list[Any]:
        return ctx.map(double, [scale, scale + 1])

    @wf.task()
    def double(x: int) -> int:
        return 2 * x

    return wf


def ran(engine: plait.Engine, wf: plait.Workflow, data: Any) -> str:
    run = engine.start(wf, data)
    engine.run_worker(until=run, timeout=DEADLINE)
    assert engine.get_run(run.id).status is plait.RunStatus.COMPLETED
    return run.id


def test_each_step_records_what_its_handler_received(engine: plait.Engine) -> None:
    run_id = ran(engine, chain(), {"n": 2})
    inputs = {s.name: s.input for s in engine.steps(run_id)}
    assert inputs["fetch"] == {"n": 2}
    assert inputs["scale"] == {"fetch": {"items": [0, 1]}, "factor": 3}  # a default too
    assert inputs["fan"] == {"scale": 6}
    spawned = sorted(v for k, v in inputs.items() if k not in ("fetch", "scale", "fan"))
    assert spawned == [6, 7]  # a spawned step's input, as spawned


def test_a_failed_attempt_records_its_input(engine: plait.Engine) -> None:
    wf = plait.Workflow("fails")

    @wf.step()
    def boom(n: int, label: str = "x") -> None:
        raise plait.Permanent("no")

    run = engine.start(wf, {"n": 5})
    engine.run_worker(until=run, timeout=DEADLINE)
    (step,) = engine.steps(run.id)
    assert step.status is plait.StepStatus.FAILED and step.input == {"n": 5, "label": "x"}


def test_replay_calls_the_step_with_what_it_received(engine: plait.Engine) -> None:
    run_id = ran(engine, chain(default=3), {"n": 2})
    # the new code's default would give 14: the recorded argument (3) is what replay passes
    replay = engine.replay(run_id, "scale", workflow=chain(default=7))
    assert replay.output == 6 and not replay.changed


def test_a_fork_s_reused_steps_keep_their_inputs(engine: plait.Engine) -> None:
    run_id = ran(engine, chain(), {"n": 2})
    fork = engine.fork(run_id, "fan")
    engine.run_worker(until=fork, timeout=DEADLINE)
    inputs = {s.name: s.input for s in engine.steps(fork.id)}
    assert inputs["fetch"] == {"n": 2} and inputs["scale"]["factor"] == 3
    assert inputs["fan"] == {"scale": 6}


def test_an_input_over_the_blob_threshold_is_recorded_as_a_blob(store_url: str) -> None:
    """A static step's big input is recorded: the biggest output it holds is kept as that
    output's own blob, the rest of it in its row (a spawned step given an output whole shares
    its blob too: test_spawn_graphs)."""
    url = f"{store_url}{'&' if '?' in store_url else '?'}blob_threshold=500"
    wf = plait.Workflow("big_input")
    wf.add_step("make", lambda n: "b" * n)
    wf.add_step("size", lambda make: len(make))
    with plait.Engine(url, lease=5.0) as engine:
        run_id = ran(engine, wf, {"n": 1000})
        steps = {s.name: s for s in engine.steps(run_id)}
        assert steps["make"].input == {"n": 1000} and steps["size"].input == {"make": "b" * 1000}
        # make's output, which size's recorded input {"make": ...} shares (the rest in its row)
        assert engine.blob_stats() == plait.BlobStats(blobs=1, bytes=1002, references=2)
        assert engine.replay(run_id, "size").output == 1000
        small = ran(engine, wf, {"n": 400})  # its input is 411 bytes: recorded
        assert {s.name: s.input for s in engine.steps(small)}["size"] == {"make": "b" * 400}


def test_a_big_recorded_input_reads_back_whole_elsewhere_cut_and_forked(
    durable_backend: Any, tmp_path: Any
) -> None:
    """Read by another engine (from storage, not this process's memory), cut (what `plait runs
    show` reads), and carried by a fork: the input that shares an output's blob is whole."""
    url = durable_backend.url(tmp_path)
    url = f"{url}{'&' if '?' in url else '?'}blob_threshold=500"
    wf = plait.Workflow("big_input_read")
    wf.add_step("make", lambda n: "b" * n)
    wf.add_step("size", lambda make, k=7: len(make) + k)
    whole = {"make": "b" * 1000, "k": 7}
    with plait.Engine(url, lease=5.0) as engine:
        run_id = ran(engine, wf, {"n": 1000})
    with plait.Engine(url, lease=5.0) as engine:
        assert {s.name: s.input for s in engine.steps(run_id)}["size"] == whole
        seen = {s.name: s.input for s in engine.inspect(run_id, excerpt=8).steps}
        cut = seen["size"]
        assert isinstance(cut, Excerpt) and bytes(cut) == b'{"make":'
        assert cut.size == len(b'{"make":"' + b"b" * 1000 + b'","k":7}')
        engine.register(wf)
        fork = engine.fork(run_id, "size")
        engine.run_worker(until=fork, timeout=DEADLINE)
        assert fork.result() == {"size": 1007}
        assert {s.name: s.input for s in engine.steps(fork.id)}["size"] == whole
        assert engine.blob_stats() == plait.BlobStats(blobs=1, bytes=1002, references=4)
