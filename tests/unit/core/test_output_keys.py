"""Property test of keys read from step outputs (`_key_admission.py`), on the memory store.

Random interleavings of several workers' claims, admissions and completions of runs `up → down`,
where `down`'s key is `up`'s output: at no moment do more than `key_limit` steps of one key hold
an admission (run their handler), no admission is lost or doubled, a step handed back never
spends an attempt, and every run completes once the interleaving ends and the rest is drained.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import plait
from plait.core.rows import Claim, Outcome, StepStatus

KEYS = ["a", "b", "c"]


def workflow(limit: int) -> plait.Workflow:
    wf = plait.Workflow("updown")

    @wf.step
    def up(key: str) -> str:
        return key

    @wf.step(concurrency_key=lambda up: up, key_limit=limit)
    def down(up: str) -> str:
        return up

    return wf


class Workers:
    """What the workers hold: claims not yet admitted, and admitted steps (handlers running)."""

    def __init__(self, engine: plait.Engine, wf: plait.Workflow, keys: dict[str, str]) -> None:
        self.store = engine.store
        self.wf = wf
        self.keys = keys  # run id → the key its `up` step outputs
        self.pending: list[Claim] = []
        self.running: list[Claim] = []  # `up` steps, and admitted `down` steps
        self.limit = wf["down"].options.key_limit if wf["down"].options else None
        self.now = time.time() + 1.0  # after the runs started: their steps are ready

    def admitted(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for c in self.running:
            if c.step == "down":
                counts[self.keys[c.run_id]] = counts.get(self.keys[c.run_id], 0) + 1
        return counts

    async def claim(self, limit: int) -> None:
        claims = await self.store.claim(
            worker_id="w", fingerprints=[self.wf.fingerprint], limit=limit, lease=1e6, now=self.now
        )
        for c in claims:
            assert c.attempt == 1  # a step handed back was claimed again without an attempt
            assert not (c.step == "up" and c.key_pending)
            (self.pending if c.key_pending else self.running).append(c)

    async def admit(self, index: int) -> None:
        c = self.pending.pop(index)
        result = await self.store.admit_key(
            c.run_id, c.step, c.token, self.keys[c.run_id], self.now
        )
        if result.accepted == [True]:
            self.running.append(c)

    async def complete(self, index: int) -> None:
        c = self.running.pop(index)
        output = orjson.dumps(self.keys[c.run_id])
        result = await self.store.complete([Outcome(c.run_id, c.step, c.token, output)], self.now)
        assert result.accepted == [True]

    def check(self) -> None:
        assert all(n <= (self.limit or 0) for n in self.admitted().values()), self.admitted()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    limit=st.integers(1, 2),
    keys=st.lists(st.sampled_from(KEYS), min_size=1, max_size=6),
    data=st.data(),
)
def test_admissions_never_exceed_a_key_limit(limit: int, keys: list[str], data: Any) -> None:
    asyncio.run(_exercise(limit, keys, data))


async def _exercise(limit: int, keys: list[str], data: Any) -> None:
    wf = workflow(limit)
    async with plait.Engine("memory://") as engine:
        runs = {f"r{i}": key for i, key in enumerate(keys)}
        for run_id, key in runs.items():
            await engine.start_async(wf, {"key": key}, run_id=run_id)
        workers = Workers(engine, wf, runs)
        for _ in range(40):
            moves = ["claim"]
            if workers.pending:
                moves.append("admit")
            if workers.running:
                moves.append("complete")
            move = data.draw(st.sampled_from(moves))
            if move == "claim":
                await workers.claim(data.draw(st.integers(1, 3)))
            elif move == "admit":
                await workers.admit(data.draw(st.integers(0, len(workers.pending) - 1)))
            else:
                await workers.complete(data.draw(st.integers(0, len(workers.running) - 1)))
            workers.check()
        for _ in range(10 * len(keys) + 10):  # drain: admit, then complete, then claim
            if workers.pending:
                await workers.admit(0)
            elif workers.running:
                await workers.complete(0)
            else:
                await workers.claim(3)
                if not workers.pending and not workers.running:
                    break
            workers.check()
        for run_id in runs:
            steps = {s.name: s for s in await engine.steps_async(run_id)}
            assert steps["down"].status is StepStatus.DONE, (run_id, steps["down"])
            assert steps["down"].attempts == 1  # handing back spends no attempt
            assert steps["down"].output == runs[run_id]
