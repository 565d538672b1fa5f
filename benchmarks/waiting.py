"""What a waiting worker costs a SQLite file: its store calls per second, held and idle.

    python benchmarks/waiting.py              # two 30 s windows
    python benchmarks/waiting.py --window 5   # a smoke test

Two variants, each on a fresh database file:
- "held": the queue `solo` (concurrency 1) holds one step of a two-step run, claimed by a
  second Engine (its own connection, as another process would be) that never completes it:
  the worker finds the other step held back by the limit;
- "idle": nothing to do at all.

A worker (default `poll_interval` 0.25 s, `sweep_interval` 5 s) serves for a warm-up of 2 s,
then its store calls are counted, by operation, for `window` seconds. A claim is a write
transaction (`BEGIN IMMEDIATE`: the file's write lock); `change_counter` is a read of
`PRAGMA data_version` (`plait.worker.idle_wait`). The other writes (`recover_expired` every lease/3,
the registration's `put_record`) are the lease loop's and the registry's, the same in both.
Results go to benchmarks/results.json under "waiting" (the other keys are kept).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import plait  # noqa: E402
from plait.stores.protocol import Store  # noqa: E402
from run import RESULTS, _git_commit, machine  # noqa: E402

WRITES = ("claim", "recover_expired", "put_record", "complete", "heartbeat", "fire_timers")


def held_workflow() -> plait.Workflow:
    wf = plait.Workflow("held")

    @wf.step(queue="solo")
    def first() -> str:
        return "first"

    @wf.step(queue="solo")
    def second() -> str:
        return "second"

    return wf


async def measure(variant: str, window: float) -> dict[str, Any]:
    wf = held_workflow()
    url = f"sqlite:///{tempfile.mkdtemp(prefix='plait_wait_')}/plait.db"
    async with plait.Engine(url) as other:
        await other.register_async(wf)
        await other.configure_queue_async("solo", concurrency=1)
        if variant == "held":
            await other.start_async(wf, run_id="held")
            taken = await other.store.claim(
                worker_id="other", fingerprints=[wf.fingerprint], limit=1, lease=3600,
                now=time.time(),
            )  # fmt: skip
            assert len(taken) == 1
        engine = plait.Engine(url)
        await engine.register_async(wf)
        await engine._rt.ready()
        calls: collections.Counter[str] = collections.Counter()
        counting = False
        names = [n for n, f in vars(Store).items() if asyncio.iscoroutinefunction(f)]
        for name in [*names, "change_counter"]:
            if name in ("open", "close") or not hasattr(engine.store, name):
                continue

            def counted(original: Any, name: str) -> Any:
                async def call(*args: Any, **kwargs: Any) -> Any:
                    if counting:
                        calls[name] += 1
                    return await original(*args, **kwargs)

                return call

            setattr(engine.store, name, counted(getattr(engine.store, name), name))
        worker = asyncio.ensure_future(engine.run_worker_async(concurrency=2))
        await asyncio.sleep(2.0)  # warm-up: start-up, registration, the first looks
        counting = True
        await asyncio.sleep(window)
        counting = False
        engine.stop_workers()
        await worker
        await engine.close_async()
    writes = sum(n for name, n in calls.items() if name in WRITES)
    return {
        "window_s": window,
        "calls": dict(sorted(calls.items())),
        "claims_per_s": round(calls["claim"] / window, 2),
        "change_counter_reads_per_s": round(calls["change_counter"] / window, 2),
        "write_transactions_per_s": round(writes / window, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=float, default=30.0, help="seconds counted per variant")
    parser.add_argument("--out", default=str(RESULTS), help="results file (its 'waiting' key)")
    args = parser.parse_args()
    results = {variant: asyncio.run(measure(variant, args.window)) for variant in ("held", "idle")}
    for variant, r in results.items():
        print(
            f"{variant:5}  claims/s {r['claims_per_s']:6.2f}  counter reads/s "
            f"{r['change_counter_reads_per_s']:6.2f}  write transactions/s "
            f"{r['write_transactions_per_s']:6.2f}   {r['calls']}"
        )
    out = Path(args.out)
    stored = json.loads(out.read_text()) if out.exists() else {}
    stored["waiting"] = {"commit": _git_commit(), "machine": machine(), "variants": results}
    out.write_text(json.dumps(stored, indent=2) + "\n")


if __name__ == "__main__":
    main()
