"""Big runs (issue 14, target 5): defining, starting and executing root → N → sink.

    python benchmarks/big.py                      # N = 10,000 and 100,000, defaults (minutes)
    python benchmarks/big.py --quick              # N = 2,000 (seconds; CI through run.py)
    python benchmarks/big.py --sizes 1000000      # once, by hand: growth to a million steps
    python benchmarks/big.py --compare /other/src # that tree too, alternating with this one

A workload module of run.py (`measure`, `table`). Each size runs in a fresh child process on a
fresh SQLite file (default durability, FULL) with the default settings a user gets:

  define    N + 2 `add_step` calls and `plan()` (the fingerprint): root → s0…s{N-1} → sink,
            the leaves reading root's output, the sink `after=` all of them
  start     `engine.start(wf, {})`: the workflow registered and the run's N + 2 steps created
  execute   `engine.run_worker(until=run)` in another fresh process (as a worker process:
            it defines the workflow too, untimed), one worker, default concurrency
  memory    peak RSS (VmHWM) of the starting process after defining and after starting, and
            of the worker process (its definition included), in MB

Targets: defining 100,000 steps ≤ 1 s; root → 100,000 → sink executes in ≤ 8 s with a peak
≤ 150 MB during execution; time and memory grow linearly (t(100k)/t(10k) ≤ 12 for each
phase). The figures are reported, never asserted.
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

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent))
from common import RESULTS, SRC, git_commit, load_average, machine, update_results  # noqa: E402

SIZES = [10_000, 100_000]
QUICK_SIZES = [2_000]
TRIES, QUICK_TRIES = 2, 1
PHASES = ("define", "start", "execute")


def child(url: str, n: int, phase: str) -> dict[str, Any]:
    """One phase of a try, in this (fresh) process: "start" defines root -> n -> sink and
    starts a run of it (as a program that starts runs does); "work" defines it and serves it
    until the run ends (as a worker process does)."""
    import plait

    def peak() -> float:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM"))

    def root() -> int:
        return 1

    def leaf(root: int) -> None:
        return None

    def sink() -> None:
        return None

    plait.Workflow, plait.Engine  # noqa: B018  (imported on first use: not in the timings)
    out: dict[str, Any] = {"n": n, "rss_mb": {"before": peak()}, "seconds": {}}
    t0 = time.perf_counter()
    wf = plait.Workflow("big", version="1")
    wf.add_step("root", root)
    names = [f"s{i}" for i in range(n)]
    for name in names:
        wf.add_step(name, leaf, ("root",))
    wf.add_step("sink", sink, after=names)
    wf.plan()
    t1 = time.perf_counter()
    del names
    with plait.Engine(url) as engine:
        if phase == "start":
            out["seconds"]["define"] = t1 - t0
            out["rss_mb"]["define"] = peak()
            engine.start(wf, {}, run_id="big")
            out["seconds"]["start"] = time.perf_counter() - t1
            out["rss_mb"]["start"] = peak()
            return out
        t2 = time.perf_counter()
        engine.run_worker(until="big", workflows=[wf])
        out["seconds"]["execute"] = time.perf_counter() - t2
        out["rss_mb"]["execute"] = peak()  # the worker process's peak, its definition included
        status = engine.get_run("big").status.value
    if status != "completed":
        raise RuntimeError(f"the run ended {status}")
    return out


def _try(src: Path, n: int, directory: Path) -> dict[str, Any]:
    directory.mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": str(src), "PLAIT_LOG_LEVEL": "warning"}
    url = f"sqlite:///{directory / 'big.db'}"
    found: dict[str, Any] = {"seconds": {}, "rss_mb": {}}
    for phase in ("start", "work"):
        proc = subprocess.run(
            [sys.executable, str(HERE), "--child", url, str(n), phase],
            env=env,
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"big.py child (n={n}, {phase}) failed: {proc.stderr[-3000:]}")
        part = json.loads(proc.stdout.strip().splitlines()[-1])
        found["seconds"].update(part["seconds"])
        found["rss_mb"].update(part["rss_mb"])
    return found


def measure(
    quick: bool,
    directory: str,
    sources: dict[str, Path] | None = None,
    sizes: list[int] | None = None,
    tries: int | None = None,
) -> dict[str, Any]:
    sources = sources or {"src": SRC}
    sizes = sizes or (QUICK_SIZES if quick else SIZES)
    tries = tries or (QUICK_TRIES if quick else TRIES)
    raw: dict[str, dict[int, list[dict[str, Any]]]] = {
        label: {n: [] for n in sizes} for label in sources
    }
    k = 0
    for _ in range(tries):  # trees alternate try by try, so that they share the minutes
        for n in sizes:
            for label, src in sources.items():
                k += 1
                raw[label][n].append(_try(src, n, Path(directory) / str(k)))
    out: dict[str, Any] = {"tries": tries, "sizes": sizes, "sources": {}}
    for label, src in sources.items():
        rows: dict[str, Any] = {}
        for n in sizes:
            runs = raw[label][n]
            rows[str(n)] = {
                "seconds": {p: statistics.median(r["seconds"][p] for r in runs) for p in PHASES},
                "rss_mb": {
                    p: statistics.median(r["rss_mb"][p] for r in runs) for p in ("before", *PHASES)
                },
                "tries": runs,
            }
        result: dict[str, Any] = {"src": str(src), "sizes": rows, "targets": {}}
        big = rows.get("100000")
        if big is not None:
            result["targets"] = {
                "defining 100,000 steps <= 1 s": big["seconds"]["define"] <= 1.0,
                "root -> 100,000 -> sink executes in <= 8 s": big["seconds"]["execute"] <= 8.0,
                "peak RSS during execution <= 150 MB": big["rss_mb"]["execute"] <= 150,
            }
            small = rows.get("10000")
            if small is not None:
                result["targets"]["linear: t(100k) / t(10k) <= 12 in every phase"] = all(
                    big["seconds"][p] <= 12 * small["seconds"][p] for p in PHASES
                )
        out["sources"][label] = result
    return out


def table(results: dict[str, Any]) -> list[str]:
    lines = [
        "big runs: root -> N -> sink, SQLite FULL, defaults, one worker; seconds and peak RSS "
        f"(MB) of a fresh process, median of {results['tries']} tries"
    ]
    for label, r in results["sources"].items():
        if len(results["sources"]) > 1:
            lines.append(f"  {label}: {r['src']}")
        lines.append(
            f"  {'N':>9s} {'define':>8s} {'start':>8s} {'execute':>8s} {'steps/s':>9s}"
            f" {'RSS defined':>12s} {'started':>8s} {'executing':>10s}"
        )
        for n, row in r["sizes"].items():
            s, m = row["seconds"], row["rss_mb"]
            rate = (int(n) + 2) / s["execute"] if s["execute"] else 0.0
            lines.append(
                f"  {int(n):9,d} {s['define']:8.2f} {s['start']:8.2f} {s['execute']:8.2f}"
                f" {rate:9,.0f} {m['define']:12.0f} {m['start']:8.0f} {m['execute']:10.0f}"
            )
        for target, ok in r["targets"].items():
            lines.append(f"  target {target}: {'met' if ok else 'MISSED'}")
    return lines


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N = 2,000, one try")
    parser.add_argument("--sizes", type=int, nargs="+", help="the Ns to run (default 10k 100k)")
    parser.add_argument("--tries", type=int, help="tries per size and tree")
    parser.add_argument("--compare", metavar="SRC", help="another src/ tree, alternating")
    parser.add_argument("--no-save", action="store_true", help="do not update results.json")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), args.child[2])))
        return 0
    sources = {"src": SRC}
    if args.compare:
        sources = {"before": Path(args.compare).resolve(), "after": SRC}
    load = load_average()
    with tempfile.TemporaryDirectory() as directory:
        results = measure(args.quick, directory, sources, args.sizes, args.tries)
    results.update(commit=git_commit(), machine=machine(), load=[load, load_average()])
    print("\n".join(table(results)))
    if not args.no_save and not args.quick:
        update_results(RESULTS, {"big": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
