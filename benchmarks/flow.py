"""The overhead of flow control on W1: the same workload with its steps in one configured queue.

    python benchmarks/flow.py            # SQLite FULL and memory, 5 alternating tries (~1 min)
    python benchmarks/flow.py --quick    # 2 tries, a smoke test

W1 (500 runs of a 3-step chain, no-op steps, one worker process, concurrency 64) is measured
without flow control, then with every step in queue `bench` configured with
`concurrency=10_000` (a limit that never binds, so what is measured is the cost of obeying it:
reading the queue, counting its running steps under the flow lock, at every claim) and, as a
third variant, `rate=Rate(1e9)` besides (a token bucket read and written at every claim). Tries
alternate between the variants so that drifts of a shared machine hit all alike; the best and
the median are kept. The storage limit (single-row commits/s, synchronous=FULL) is measured in
the same run. Target: with one configured queue, W1 within 20 % of W1 without.

Results go to benchmarks/results.json under "flow" (the other keys are kept).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from run import RESULTS, _git_commit, machine, measure_commits, noop

RUNS = 500
CONCURRENCY = 64
VARIANTS = ("plain", "queue", "queue+rate")
TARGET = 0.20  # at most 20 % slower with one configured queue


def _chain(queue: str | None) -> Any:
    import plait

    wf = plait.Workflow("bench_chain", version="1")
    options = {} if queue is None else {"queue": queue}
    wf.add_step("s1", noop, **options)
    wf.add_step("s2", noop, deps=["s1"], **options)
    wf.add_step("s3", noop, deps=["s2"], **options)
    return wf


def measure(url: str, variant: str) -> dict[str, Any]:
    import plait

    wf = _chain(None if variant == "plain" else "bench")
    with plait.Engine(url) as engine:
        engine.register(wf)
        if variant != "plain":
            rate = plait.Rate(1e9) if variant == "queue+rate" else None
            engine.configure_queue("bench", concurrency=10_000, rate=rate)
        handles = [engine.start(wf, run_id=f"r{i}") for i in range(RUNS)]
        t0 = time.perf_counter()
        engine.run_worker(concurrency=CONCURRENCY, until=handles)
        executed = time.perf_counter() - t0
        assert all(engine.get_run(h.id).status.value == "completed" for h in handles)
    return {"variant": variant, "execute_s": executed, "steps_per_s": 3 * RUNS / executed}


def _in_child(*args: object) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"measurement {args} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="plait flow-control overhead on W1")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeat", type=int)
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        url, variant = args.child
        print(json.dumps(measure(url, variant)))
        return 0
    repeat = args.repeat or (2 if args.quick else 5)
    info = machine()
    load_before = os.getloadavg()
    print(f"machine: {info['nproc']} CPU(s), {info['cpu']}; load average {load_before[0]:.2f}")
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="plait-flow-") as tmp:
        limit = measure_commits(tmp, "FULL", 1.0 if args.quick else 3.0)
        print(f"  storage limit, synchronous=FULL: {limit['commits_per_s']:,.0f} commits/s")
        counter = iter(range(10**6))
        for store in ("sqlite_full", "memory"):
            tries: dict[str, list[float]] = {v: [] for v in VARIANTS}
            for _ in range(repeat):
                for variant in VARIANTS:
                    url = (
                        "memory://" if store == "memory" else f"sqlite:///{tmp}/b{next(counter)}.db"
                    )
                    r = _in_child(url, variant)
                    tries[variant].append(r["steps_per_s"])
            results[store] = tries
    load_after = os.getloadavg()
    print()
    print(f"W1 ({RUNS} runs x 3-step chain, concurrency {CONCURRENCY}), steps/s, best of {repeat}")
    print(f"  {'store':12s} {'variant':11s} {'best':>8s} {'median':>8s} {'vs plain':>9s}")
    summary: dict[str, Any] = {}
    for store, tries in results.items():
        plain = max(tries["plain"])
        for variant, values in tries.items():
            best = max(values)
            ratio = best / plain
            summary[f"{store}/{variant}"] = {
                "best": best,
                "median": statistics.median(values),
                "tries": sorted(values),
                "vs_plain": ratio,
            }
            print(
                f"  {store:12s} {variant:11s} {best:>8,.0f} {statistics.median(values):>8,.0f} "
                f"{ratio:>8.2f}x"
            )
    met = summary["sqlite_full/queue"]["vs_plain"] >= 1 - TARGET
    print(f"\n  target W1 with one configured queue within 20 % of W1 (sqlite FULL): "
          f"{'met' if met else 'MISSED'}")  # fmt: skip
    out = Path(args.out)
    previous = json.loads(out.read_text()) if out.exists() else {}
    previous["flow"] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "commit": _git_commit(),
        "machine": info,
        "load_average": {"before": load_before, "after": load_after},
        "storage_limit_full": limit,
        "runs": RUNS,
        "concurrency": CONCURRENCY,
        "w1": summary,
        "target_met": met,
    }
    out.write_text(json.dumps(previous, indent=2) + "\n")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
