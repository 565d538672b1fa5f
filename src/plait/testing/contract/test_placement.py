"""Placement on every store: `target=` steps go only to workers with that label,
`colocate_with=` steps only to the worker that ran the other step, `ctx.spawn(colocate=True)`
children only to the spawning worker; a worker that may not run a step never claims it (so no
attempt is spent), and `inspect` says when no live worker can take a ready step (test_registry.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

import plait
from plait.core.rows import Outcome


@pytest.fixture
def engine(store_url: str) -> Iterator[plait.Engine]:
    with plait.Engine(store_url, lease=5.0) as eng:
        yield eng


def placed() -> plait.Workflow:
    wf = plait.Workflow("placed")

    @wf.step(target="gpu")
    def train(n: int) -> int:
        return n

    @wf.step(colocate_with="train")
    def evaluate(train: int) -> int:
        return train

    return wf


async def claim(engine: plait.Engine, wf: plait.Workflow, worker: str, *labels: str) -> list[str]:
    claims = await engine.store.claim(
        worker_id=worker,
        fingerprints=[wf.fingerprint],
        limit=10,
        lease=30.0,
        now=time.time(),
        labels=labels,
    )
    for c in claims:
        await engine.store.complete([Outcome(c.run_id, c.step, c.token, output=b"1")], time.time())
    return [c.step for c in claims]


async def test_steps_go_only_where_they_are_placed(engine: plait.Engine) -> None:
    wf = placed()
    await engine.start_async(wf, {"n": 1}, run_id="r")
    assert await claim(engine, wf, "w1", "cpu", "eu") == []  # no gpu label
    assert await claim(engine, wf, "w1") == []
    [train] = [s for s in await engine.store.get_steps("r") if s.name == "train"]
    assert (train.status, train.attempt) == (plait.StepStatus.READY, 0)  # no attempt spent
    assert await claim(engine, wf, "w2", "gpu") == ["train"]
    assert await claim(engine, wf, "w3", "gpu") == []  # evaluate: only where train ran
    assert await claim(engine, wf, "w2") == ["evaluate"]
    assert (await engine.get_run_async("r")).status is plait.RunStatus.COMPLETED


async def test_colocated_children_run_on_the_spawning_worker(engine: plait.Engine) -> None:
    wf = plait.Workflow("fan")

    @wf.task
    def part(x: int) -> int:
        return x * 2

    @wf.step
    def root(ctx: plait.StepContext) -> list[plait.Handle]:
        return [ctx.spawn(part, input=i, colocate=True) for i in range(3)]

    run = await engine.start_async(wf, run_id="fan")
    await engine.run_worker_async(until=run, timeout=20)
    assert await run.result_async(timeout=5) == {"root": [0, 2, 4]}
    steps = await engine.store.get_steps("fan")
    [parent] = [s for s in steps if s.name == "root"]
    children = [s for s in steps if s.task == "part"]
    assert len(children) == 3
    for child in children:
        assert child.options is not None and child.options.target == "@" + str(parent.worker_id)
        assert child.worker_id == parent.worker_id


def test_bad_placement_is_refused() -> None:
    wf = plait.Workflow("bad")
    cases = [
        ({"target": "big gpu"}, "invalid label 'big gpu': use 1-100 letters, digits"),
        ({"target": ""}, "invalid label ''"),
        ({"target": "gpu", "colocate_with": "x"}, "give target= or colocate_with=, not both"),
        ({"colocate_with": 3}, "colocate_with must name a step, got 3"),
    ]
    for options, message in cases:
        with pytest.raises(plait.DefinitionError, match=message):
            wf.step(name="s", **options)(lambda: None)  # type: ignore[arg-type]  # on purpose
    other = plait.Workflow("other")
    other.step(name="s", colocate_with="ghost")(lambda: None)
    with pytest.raises(plait.DefinitionError, match="ghost"):
        other.plan()


async def test_bad_worker_labels_are_refused(engine: plait.Engine) -> None:
    with pytest.raises(plait.ConfigError) as info:
        await engine.run_worker_async(labels=["g p u"], workflows=[placed()], timeout=1)
    assert str(info.value) == (
        "worker labels: invalid label 'g p u': use 1-100 letters, digits, '_', '.' or '-' "
        "(no spaces)"
    )


async def test_a_colocated_child_is_never_claimed_by_another_worker(engine: plait.Engine) -> None:
    from plait.core.rows import Spawn

    wf = plait.Workflow("fan2")

    @wf.task
    def part(x: int) -> int:
        return x

    @wf.step
    def root() -> None:
        return None

    await engine.start_async(wf, run_id="r")
    now = time.time()
    [c] = await engine.store.claim(
        worker_id="w1", fingerprints=[wf.fingerprint], limit=5, lease=30.0, now=now
    )
    child = Spawn(name="root.part-0", task="part", input=b"1", colocate=True)
    spawned = Outcome(c.run_id, c.step, c.token, output=b"null", spawned=(child,))
    await engine.store.complete([spawned], now)
    assert await claim(engine, wf, "w2", "gpu") == []
    assert await claim(engine, wf, "w1") == ["root.part-0"]
