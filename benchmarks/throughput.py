"""Throughput of the worker and the store on SQLite and `memory://`, next to the storage limit.

    python benchmarks/throughput.py            # alone (a few minutes); benchmarks/run.py runs it too
    python benchmarks/throughput.py --quick    # smaller workloads, one try each: a smoke test
    python benchmarks/throughput.py --repeat 5 --dir /path/on/the/disk/to/test

Workloads (no-op sync steps, so what is measured is plait itself):
  W1  500 runs of a 3-step chain: run creation rate, then steps/s from worker start until every
      run has ended (one worker process; several concurrencies, the best is reported).
  W2  one run of root → N parallel steps → sink (`wf.add_step`), N = 1,000 / 10,000 / 100,000:
      start (insert) time, execution time, steps/s, and t(100k) / t(10k).
  W2s the same fan-out spawned at run time: a step `ctx.map`s a task over N = 10,000 items and
      returns the handles (its output gathers theirs), then a sink; reported next to W2.
  Storage limit: single-row commits per second of plain sqlite3 (WAL) with synchronous=FULL and
      NORMAL, in the same directory as the stores, before and after the workloads.

Each measurement runs in a fresh child process (`--child`) on a fresh database file. `measure`
and `table` are what benchmarks/run.py calls; alone, the lines are printed and the results
written under the "throughput" key of the results file. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import RESULTS, best, update_results  # noqa: E402

W1_RUNS = 500
W1_CONCURRENCIES = (16, 64, 256)
W2_SIZES = (1_000, 10_000, 100_000)
W2_CONCURRENCY = 64
TARGETS = {
    "w1_steps_per_s": 5_000,
    "w2_10k_seconds": 3.0,
    "w2_ratio_100k_10k": 12.0,
    "w2s_vs_w2": 1.5,  # spawned fan-out of 10,000 within 1.5x the static one
}


# -- workloads (run in a child process) ----------------------------------------------------------


def noop(**_: Any) -> None:
    return None


def _chain() -> Any:
    import plait

    wf = plait.Workflow("bench_chain", version="1")
    wf.add_step("s1", noop)
    wf.add_step("s2", noop, deps=["s1"])
    wf.add_step("s3", noop, deps=["s2"])
    return wf


def _fan(n: int) -> Any:
    import plait

    wf = plait.Workflow(f"bench_fan_{n}", version="1")
    wf.add_step("root", noop)
    names = [f"leaf{i}" for i in range(n)]
    for name in names:
        wf.add_step(name, noop, deps=["root"])
    wf.add_step("sink", noop, deps=names)
    return wf


def item(x: int) -> int:
    return x


def _spawned_fan(n: int) -> Any:
    import plait

    wf = plait.Workflow(f"bench_spawn_{n}", version="1")
    wf.task(item)

    @wf.step
    def root(ctx: plait.StepContext) -> list[plait.Handle]:
        return ctx.map(item, range(n))

    @wf.step
    def sink(root: list[int]) -> int:
        return len(root)

    return wf


def _ended(engine: Any, run_ids: list[str]) -> bool:
    return all(engine.get_run(r).status.value == "completed" for r in run_ids)


def measure_w1(url: str, runs: int, concurrency: int) -> dict[str, Any]:
    import plait

    wf = _chain()
    with plait.Engine(url) as engine:
        engine.register(wf)
        t0 = time.perf_counter()
        handles = [engine.start(wf, run_id=f"r{i}") for i in range(runs)]
        created = time.perf_counter() - t0
        t1 = time.perf_counter()
        engine.run_worker(concurrency=concurrency, until=handles)
        executed = time.perf_counter() - t1
        assert _ended(engine, [h.id for h in handles]), "W1: not every run completed"
    steps = 3 * runs
    return {
        "runs": runs,
        "concurrency": concurrency,
        "create_s": created,
        "runs_per_s": runs / created,
        "execute_s": executed,
        "steps": steps,
        "steps_per_s": steps / executed,
    }


def measure_w2(url: str, n: int, concurrency: int, spawned: bool = False) -> dict[str, Any]:
    import plait

    t0 = time.perf_counter()
    wf = _spawned_fan(n) if spawned else _fan(n)
    wf.plan()
    defined = time.perf_counter() - t0
    with plait.Engine(url) as engine:
        t1 = time.perf_counter()
        engine.register(wf)
        registered = time.perf_counter() - t1
        t2 = time.perf_counter()
        handle = engine.start(wf, run_id="fan")
        started = time.perf_counter() - t2
        t3 = time.perf_counter()
        engine.run_worker(concurrency=concurrency, until=handle)
        executed = time.perf_counter() - t3
        assert _ended(engine, [handle.id]), "W2: the run did not complete"
        if spawned:
            assert handle.result() == {"sink": n}, "W2s: the gathered output is wrong"
    steps = n + 2
    return {
        "n": n,
        "concurrency": concurrency,
        "define_s": defined,
        "register_s": registered,
        "start_s": started,
        "execute_s": executed,
        "steps": steps,
        "steps_per_s": steps / executed,
    }


def measure_commits(directory: str, synchronous: str, seconds: float) -> dict[str, Any]:
    """The storage limit: one-row transactions per second, plain sqlite3 in WAL mode."""
    path = os.path.join(directory, f"limit-{synchronous.lower()}.db")
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute(f"PRAGMA synchronous = {synchronous}")
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")
    payload = b"x" * 100
    count = 0
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while time.perf_counter() < deadline:
        for _ in range(20):
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO t (v) VALUES (?)", (payload,))
            db.execute("COMMIT")
        count += 20
    elapsed = time.perf_counter() - t0
    db.close()
    return {
        "synchronous": synchronous,
        "commits": count,
        "seconds": elapsed,
        "commits_per_s": count / elapsed,
    }


def child(argv: list[str]) -> None:
    kind, *rest = argv
    if kind == "w1":
        url, runs, conc = rest
        out = measure_w1(url, int(runs), int(conc))
    elif kind in ("w2", "w2s"):
        url, n, conc = rest
        out = measure_w2(url, int(n), int(conc), spawned=kind == "w2s")
    elif kind == "commits":
        directory, synchronous, seconds = rest
        out = measure_commits(directory, synchronous, float(seconds))
    else:
        raise SystemExit(f"unknown measurement {kind!r}")
    print(json.dumps(out))


# -- orchestration -------------------------------------------------------------------------------


def _in_child(*args: object, timeout: float = 1800) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"measurement {args} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(quick: bool, directory: str, repeat: int | None = None) -> dict[str, Any]:
    """Every measurement above, each in a child process, databases under `directory`. Quick:
    100 W1 runs at concurrency 64, W2 at 1,000 and 10,000, W2s at 1,000, one try each."""
    repeat = repeat or (1 if quick else 3)
    runs = 100 if quick else W1_RUNS
    concurrencies = (64,) if quick else W1_CONCURRENCIES
    sizes = (1_000, 10_000) if quick else W2_SIZES
    spawned_sizes = (1_000,) if quick else (10_000,)
    limit_seconds = 1.0 if quick else 3.0
    counter = iter(range(10**6))

    def fresh(options: str = "") -> str:
        return f"sqlite:///{directory}/bench{next(counter)}.db{options}"

    def limit(when: str) -> dict[str, dict[str, Any]]:
        out = {}
        for s in ("FULL", "NORMAL"):
            r = _in_child("commits", directory, s, limit_seconds)
            os.remove(os.path.join(directory, f"limit-{s.lower()}.db"))
            print(f"  storage limit ({when}), synchronous={s}: {r['commits_per_s']:,.0f} commits/s")
            out[s] = r
        return out

    print(f"  databases in {directory}; each measurement x{repeat}, best kept (median recorded)")
    limit_runs = [limit("before")]

    w1: dict[str, list[dict[str, Any]]] = {}
    variants = (("sqlite_full", ""), ("sqlite_normal", "?synchronous=normal"), ("memory", None))
    for label, options in variants:
        w1[label] = []
        for conc in concurrencies:
            tries = []
            for _ in range(repeat):
                url = "memory://" if options is None else fresh(options)
                tries.append(_in_child("w1", url, runs, conc))
            r = best(tries, "steps_per_s")
            w1[label].append(r)
            print(
                f"  W1 {label:13s} concurrency {conc:3d}: create {r['runs_per_s']:7,.0f} runs/s, "
                f"execute {r['steps_per_s']:7,.0f} steps/s ({r['execute_s']:.2f}s; "
                f"median {r['median']:,.0f})"
            )

    w2: list[dict[str, Any]] = []
    for n in sizes:
        tries = [
            _in_child("w2", fresh(), n, W2_CONCURRENCY) for _ in range(repeat if n <= 10_000 else 1)
        ]
        r = best(tries, "steps_per_s")
        w2.append(r)
        print(
            f"  W2 N={n:7,d}: define {r['define_s']:.2f}s, register {r['register_s']:.2f}s, "
            f"start {r['start_s']:.2f}s, execute {r['execute_s']:.2f}s, "
            f"{r['steps_per_s']:,.0f} steps/s"
        )
    w2s: list[dict[str, Any]] = []
    for n in spawned_sizes:
        tries = [_in_child("w2s", fresh(), n, W2_CONCURRENCY) for _ in range(repeat)]
        r = best(tries, "steps_per_s")
        w2s.append(r)
        print(
            f"  W2s N={n:6,d} (spawned): execute {r['execute_s']:.2f}s, "
            f"{r['steps_per_s']:,.0f} steps/s (median {r['median']:,.0f})"
        )
    limit_runs.append(limit("after"))

    # the limit is the better of the two measurements (the disk is shared and its speed varies)
    limits = {
        s: max((lr[s] for lr in limit_runs), key=lambda r: r["commits_per_s"])
        for s in ("FULL", "NORMAL")
    }
    top = {label: max(rows, key=lambda r: r["steps_per_s"]) for label, rows in w1.items()}
    by_n = {r["n"]: r for r in w2}
    summary: dict[str, Any] = {
        "w1_best_full": top["sqlite_full"],
        "w1_best_normal": top["sqlite_normal"],
        "w1_best_memory": top["memory"],
        "w1_full_vs_limit": top["sqlite_full"]["steps_per_s"] / limits["FULL"]["commits_per_s"],
        "w1_normal_vs_limit": top["sqlite_normal"]["steps_per_s"]
        / limits["NORMAL"]["commits_per_s"],
    }
    if 10_000 in by_n and 100_000 in by_n:
        summary["w2_ratio_100k_10k"] = by_n[100_000]["execute_s"] / by_n[10_000]["execute_s"]
        summary["w2_ratio_100k_10k_total"] = (
            by_n[100_000]["start_s"] + by_n[100_000]["execute_s"]
        ) / (by_n[10_000]["start_s"] + by_n[10_000]["execute_s"])
    targets = {
        "W1 >= 5,000 steps/s (sqlite FULL)": top["sqlite_full"]["steps_per_s"]
        >= TARGETS["w1_steps_per_s"],
    }
    if 10_000 in by_n:
        targets["W2 N=10,000 execute <= 3 s"] = (
            by_n[10_000]["execute_s"] <= TARGETS["w2_10k_seconds"]
        )
    spawned_10k = next((r for r in w2s if r["n"] == 10_000), None)
    if spawned_10k is not None and 10_000 in by_n:
        summary["w2s_vs_w2_10k"] = spawned_10k["execute_s"] / by_n[10_000]["execute_s"]
        targets["W2s (spawned) N=10,000 within 1.5x of W2"] = (
            summary["w2s_vs_w2_10k"] <= TARGETS["w2s_vs_w2"]
        )
    if "w2_ratio_100k_10k" in summary:
        targets["W2 t(100k)/t(10k) <= 12"] = (
            summary["w2_ratio_100k_10k"] <= TARGETS["w2_ratio_100k_10k"]
        )
    return {
        "repeat": repeat,
        "storage_limit": limits,
        "storage_limit_runs": limit_runs,
        "w1": w1,
        "w2": w2,
        "w2s": w2s,
        "summary": summary,
        "targets": targets,
    }


def table(results: dict[str, Any]) -> list[str]:
    limits, limit_runs = results["storage_limit"], results["storage_limit_runs"]
    w1, w2, w2s = results["w1"], results["w2"], results["w2s"]
    summary = results["summary"]
    top = {label: max(rows, key=lambda r: r["steps_per_s"]) for label, rows in w1.items()}
    lines = ["storage limit: plain sqlite3, WAL, one single-row transaction at a time"]
    for s, r in limits.items():
        all_ = ", ".join(f"{lr[s]['commits_per_s']:,.0f}" for lr in limit_runs)
        lines.append(
            f"  synchronous={s:6s} {r['commits_per_s']:>9,.0f} commits/s   (before, after: {all_})"
        )
    lines.append("")
    tried = ", ".join(str(r["concurrency"]) for r in w1["sqlite_full"])
    lines.append(f"W1: {top['sqlite_full']['runs']} runs x 3-step chain, one worker process")
    lines.append(f"    best concurrency of {tried} shown")
    lines.append(
        f"  {'store':14s} {'conc':>5s} {'create s':>9s} {'runs/s':>7s} {'exec s':>7s} "
        f"{'steps/s':>8s} {'median':>8s} {'vs limit':>9s}"
    )
    for label, row in top.items():
        lim = {"sqlite_full": limits["FULL"], "sqlite_normal": limits["NORMAL"]}.get(label)
        ratio = f"{row['steps_per_s'] / lim['commits_per_s']:.2f}x" if lim else "-"
        lines.append(
            f"  {label:14s} {row['concurrency']:>5d} {row['create_s']:>9.2f} {row['runs_per_s']:>7,.0f} "
            f"{row['execute_s']:>7.2f} {row['steps_per_s']:>8,.0f} {row['median']:>8,.0f} {ratio:>9s}"
        )
    lines.append("")
    lines.append(f"W2: root -> N parallel -> sink (sqlite FULL, concurrency {W2_CONCURRENCY})")
    lines.append(
        f"  {'N':>8s} {'define s':>9s} {'register s':>11s} {'start s':>8s} {'exec s':>7s} {'steps/s':>8s}"
    )
    for r in w2:
        lines.append(
            f"  {r['n']:>8,d} {r['define_s']:>9.2f} {r['register_s']:>11.2f} {r['start_s']:>8.2f} "
            f"{r['execute_s']:>7.2f} {r['steps_per_s']:>8,.0f}"
        )
    if "w2_ratio_100k_10k" in summary:
        lines.append(
            f"  t(100k)/t(10k): execute {summary['w2_ratio_100k_10k']:.1f}x, "
            f"start+execute {summary['w2_ratio_100k_10k_total']:.1f}x"
        )
    lines.append("")
    lines.append(
        "W2s: the same fan-out spawned at run time (a step ctx.maps N items, gathers, sink)"
    )
    static = {r["n"]: r for r in w2}
    for r in w2s:
        same = static.get(r["n"])
        ratio = f"{r['execute_s'] / same['execute_s']:.2f}x W2" if same else "-"
        lines.append(f"  {r['n']:>8,d} {'':>9s} {'':>11s} {'':>8s} {r['execute_s']:>7.2f} "
                     f"{r['steps_per_s']:>8,.0f}   {ratio}")  # fmt: skip
    lines.append("")
    for name, ok in results["targets"].items():
        lines.append(f"  target {name}: {'met' if ok else 'MISSED'}")
    return lines


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="plait throughput on SQLite and memory://")
    parser.add_argument("--quick", action="store_true", help="smaller workloads (smoke test)")
    parser.add_argument(
        "--repeat", type=int, help="repetitions of each measurement (default 3, quick 1)"
    )
    parser.add_argument("--dir", help="where the database files go (default: a temp dir)")
    parser.add_argument("--out", default=str(RESULTS), help="results file (its 'throughput' key)")
    parser.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child)
        return 0
    with tempfile.TemporaryDirectory(prefix="plait-bench-", dir=args.dir) as tmp:
        results = measure(args.quick, tmp, args.repeat)
    print("\n".join(["", *table(results)]))
    update_results(args.out, {"throughput": results})
    print(f"\nwritten to {args.out} (key 'throughput')")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
