"""End to end: what a user times when starting runs, serving them and reading their results.

    python benchmarks/e2e.py                  # about five minutes; prints the table
    python benchmarks/e2e.py --quick          # smaller workloads, one try each (seconds)
    python benchmarks/e2e.py --out e2e.json   # also write the results as JSON
    python benchmarks/e2e.py --compare /path/to/other/src   # the same tries, alternating, on
                                                             # another tree's code (before/after)

Workloads (no-op sync steps, default settings everywhere: what is measured is plait itself):
  W1 end to end   500 runs of a 3-step chain `s1 → s2 → s3`, each started with `start()` one after
                  another, then one worker with the defaults (`run_worker(until=handles)`), then
                  each `result()` read; the clock runs from the first `start()` to the last
                  `result()` (the store opened and the workflow registered before). Steps/s =
                  1,500 / that time, next to the storage limit; the three phases are reported too,
                  and execution alone (worker start to its return) next to the limit.
  start_many      10,000 runs of W1's workflow created by one `start_many` call.
  starts/s        `start()` from 1 thread (500 starts) and from 16 threads at once (64 each):
                  concurrent starts share commits.
  waiting         500 W1 runs executed by a worker while `wait_all` waits for them in another
                  thread: the store reads it made, next to the worker's commits (one wake-up per
                  commit, not one per run).
  Storage limit   SQLite: plain sqlite3, WAL, one single-row INSERT per transaction,
                  synchronous=FULL, in the same directory; PostgreSQL: plain psycopg, one
                  100-byte INSERT + COMMIT per transaction from one connection. Measured before
                  and after the workloads; the better is used.

SQLite runs with its default durability (synchronous=FULL); PostgreSQL (the server at
PLAIT_BENCH_POSTGRES_URL, default postgresql://postgres@127.0.0.1:5432/postgres, a fresh schema
per try) when one answers. Each try runs in a fresh child process on a fresh database; the
median of the tries is reported (every try is in the results). The machine's load average
before and after is recorded: the machine may be shared, and the figures move with it.

For the combined report (benchmarks/run.py): `measure(quick, directory) -> dict` and
`table(results) -> list[str]`.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
POSTGRES_URL = os.environ.get(
    "PLAIT_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
FULL = {"w1_runs": 500, "start_many": 10_000, "one_thread": 500, "threads": 16, "per_thread": 64}
QUICK = {"w1_runs": 30, "start_many": 500, "one_thread": 30, "threads": 16, "per_thread": 4}
TARGETS = {"w1_vs_limit": 0.5, "start_many_10k_s": 0.5}


# -- workloads (each in a child process) ---------------------------------------------------------


def noop(**_: Any) -> None:
    return None


def chain() -> Any:
    import plait

    wf = plait.Workflow("e2e_chain", version="1")
    wf.add_step("s1", noop)
    wf.add_step("s2", noop, deps=["s1"])
    wf.add_step("s3", noop, deps=["s2"])
    return wf


def child_w1(url: str, runs: int) -> dict[str, Any]:
    import plait

    wf = chain()
    with plait.Engine(url) as engine:
        engine.register(wf)  # opens the store too: neither is part of the clock
        t0 = time.perf_counter()
        handles = [engine.start(wf) for _ in range(runs)]
        t1 = time.perf_counter()
        engine.run_worker(until=handles)
        t2 = time.perf_counter()
        outputs = [h.result() for h in handles]
        t3 = time.perf_counter()
    assert outputs == [{"s3": None}] * runs, "W1: a run did not complete"
    steps = 3 * runs
    return {
        "runs": runs,
        "steps": steps,
        "start_s": t1 - t0,
        "execute_s": t2 - t1,
        "results_s": t3 - t2,
        "total_s": t3 - t0,
        "steps_per_s": steps / (t3 - t0),
        "execute_steps_per_s": steps / (t2 - t1),
        "start_ms": (t1 - t0) * 1000 / runs,
        "result_ms": (t3 - t2) * 1000 / runs,
    }


def child_start_many(url: str, runs: int) -> dict[str, Any]:
    import plait

    wf = chain()
    with plait.Engine(url) as engine:
        engine.register(wf)
        if not hasattr(engine, "start_many"):
            return {"runs": runs, "missing": "start_many"}
        t0 = time.perf_counter()
        handles = engine.start_many(wf, [{}] * runs)
        elapsed = time.perf_counter() - t0
        assert len(handles) == runs
        assert len(engine.list_runs(limit=10_000).runs) == min(runs, 10_000)
    return {"runs": runs, "seconds": elapsed, "runs_per_s": runs / elapsed}


def child_starts(url: str, threads: int, per_thread: int) -> dict[str, Any]:
    import plait

    wf = chain()
    with plait.Engine(url) as engine:
        engine.register(wf)
        errors: list[BaseException] = []
        ready = threading.Barrier(threads + 1)

        def starter() -> None:
            try:
                ready.wait()
                for _ in range(per_thread):
                    engine.start(wf)
            except BaseException as exc:
                errors.append(exc)

        workers = [threading.Thread(target=starter) for _ in range(threads)]
        for w in workers:
            w.start()
        ready.wait()
        t0 = time.perf_counter()
        for w in workers:
            w.join()
        elapsed = time.perf_counter() - t0
        assert not errors, errors
    total = threads * per_thread
    return {
        "threads": threads,
        "starts": total,
        "seconds": elapsed,
        "starts_per_s": total / elapsed,
    }


def child_waiting(url: str, runs: int) -> dict[str, Any]:
    import plait

    wf = chain()
    with plait.Engine(url) as engine:
        engine.register(wf)
        if not hasattr(engine, "wait_all"):
            return {"runs": runs, "missing": "wait_all"}
        handles = [engine.start(wf) for _ in range(runs)]
        store = engine.store
        counts = {"reads": 0, "ids_read": 0, "commits": 0, "commits_ending_runs": 0}
        get_run, get_runs, complete = store.get_run, store.get_runs, store.complete

        async def one(run_id: str) -> Any:
            counts["reads"] += 1
            counts["ids_read"] += 1
            return await get_run(run_id)

        async def many(run_ids: Any) -> Any:
            counts["reads"] += 1
            counts["ids_read"] += len(run_ids)
            return await get_runs(run_ids)

        async def completing(outcomes: Any, now: float) -> Any:
            result = await complete(outcomes, now)
            counts["commits"] += 1
            counts["commits_ending_runs"] += bool(result.ended_runs)
            return result

        store.get_run, store.get_runs, store.complete = one, many, completing  # type: ignore[method-assign]
        complete_and_claim = getattr(store, "complete_and_claim", None)
        if complete_and_claim is not None:  # a worker's commits that also claim

            async def completing_and_claiming(outcomes: Any, now: float, **claim: Any) -> Any:
                result, claims = await complete_and_claim(outcomes, now, **claim)
                counts["commits"] += 1
                counts["commits_ending_runs"] += bool(result.ended_runs)
                return result, claims

            store.complete_and_claim = completing_and_claiming
        views: list[Any] = []
        waiter = threading.Thread(target=lambda: views.extend(engine.wait_all(handles)))
        t0 = time.perf_counter()
        waiter.start()
        engine.run_worker(until=handles)
        waiter.join()
        elapsed = time.perf_counter() - t0
    assert len(views) == runs and all(v.status.value == "completed" for v in views)
    return {"runs": runs, "seconds": elapsed, **counts}


def child_sqlite_limit(directory: str, seconds: float) -> dict[str, Any]:
    """The storage limit: one-row transactions per second, plain sqlite3, WAL, FULL."""
    path = os.path.join(directory, f"limit-{os.getpid()}.db")
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")
    payload = b"x" * 100
    count, t0 = 0, time.perf_counter()
    while time.perf_counter() < t0 + seconds:
        for _ in range(10):
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO t (v) VALUES (?)", (payload,))
            db.execute("COMMIT")
        count += 10
    elapsed = time.perf_counter() - t0
    db.close()
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    return {"commits": count, "seconds": elapsed, "commits_per_s": count / elapsed}


def child_postgres_limit(url: str, schema: str, seconds: float) -> dict[str, Any]:
    """The server's limit from one connection: a 100-byte INSERT and a COMMIT per transaction."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
        admin.execute(f'CREATE TABLE "{schema}".t (id bigserial PRIMARY KEY, v bytea)')
    try:
        with psycopg.connect(url) as conn:
            conn.execute(f'SET search_path TO "{schema}"')
            conn.commit()
            payload = b"x" * 100
            count, t0 = 0, time.perf_counter()
            while time.perf_counter() < t0 + seconds:
                for _ in range(10):
                    conn.execute("INSERT INTO t (v) VALUES (%s)", (payload,))
                    conn.commit()
                count += 10
            elapsed = time.perf_counter() - t0
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
    return {"commits": count, "seconds": elapsed, "commits_per_s": count / elapsed}


CHILDREN = {
    "w1": lambda a: child_w1(a[0], int(a[1])),
    "start_many": lambda a: child_start_many(a[0], int(a[1])),
    "starts": lambda a: child_starts(a[0], int(a[1]), int(a[2])),
    "waiting": lambda a: child_waiting(a[0], int(a[1])),
    "sqlite_limit": lambda a: child_sqlite_limit(a[0], float(a[1])),
    "postgres_limit": lambda a: child_postgres_limit(a[0], a[1], float(a[2])),
}


# -- orchestration -------------------------------------------------------------------------------


def _in_child(src: str | None, *args: object) -> dict[str, Any]:
    """Run one measurement in a fresh process, on the code under `src` (default: this tree's)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = src or str(HERE.parent.parent / "src")
    proc = subprocess.run(
        [sys.executable, str(HERE), "--child", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
        env=env,
    )
    if proc.returncode != 0:
        raise SystemExit(f"measurement {args} failed:\n{proc.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _postgres_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(POSTGRES_URL, connect_timeout=3):
            return True
    except Exception:
        return False


class _Stores:
    """Fresh databases: a file per try in the directory, a schema per try on PostgreSQL."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.count = 0
        self.schemas: list[str] = []

    def sqlite(self) -> str:
        self.count += 1
        return f"sqlite:///{self.directory}/e2e{os.getpid()}-{self.count}.db"

    def postgres(self) -> str:
        self.count += 1
        schema = f"plait_e2e_{os.getpid()}_{self.count}"
        self.schemas.append(schema)
        sep = "&" if "?" in POSTGRES_URL else "?"
        return f"{POSTGRES_URL}{sep}schema={schema}"

    def drop(self) -> None:
        if not self.schemas:
            return
        import psycopg

        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            for schema in self.schemas:
                admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        self.schemas.clear()


def _median(tries: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The try whose `key` is the median (the lower middle one), with every try's value."""
    ranked = sorted(tries, key=lambda t: t[key])
    chosen = dict(ranked[(len(ranked) - 1) // 2])
    chosen["tries"] = [t[key] for t in tries]
    chosen["median"] = statistics.median(t[key] for t in tries)
    return chosen


def measure(
    quick: bool,
    directory: str,
    *,
    repeat: int | None = None,
    compare: str | None = None,
    postgres: bool | None = None,
    say: Any = None,
) -> dict[str, Any]:
    """Every workload, `repeat` tries each (quick: 1), on SQLite FULL and, if a server answers,
    PostgreSQL. With `compare` (another tree's src/), each try runs on that code too, right
    before this one's, so that both meet the same minutes of a shared machine."""
    say = say or (lambda text: None)
    sizes = QUICK if quick else FULL
    tries = repeat or (1 if quick else 5)
    limit_s = 0.3 if quick else 2.0
    stores = _Stores(directory)
    codes: dict[str, str | None] = {"new": None}
    if compare:
        codes = {"old": compare, "new": None}
    postgres = _postgres_available() if postgres is None else postgres
    backends = ["sqlite"] + (["postgres"] if postgres else [])
    out: dict[str, Any] = {
        "quick": quick,
        "sizes": sizes,
        "repeat": tries,
        "load_before": os.getloadavg(),
        "backends": backends,
        "compared_with": compare,
    }

    def limits(when: str) -> dict[str, Any]:
        found = {"sqlite": _in_child(None, "sqlite_limit", directory, limit_s)}
        if postgres:
            stores.count += 1
            schema = f"plait_e2e_limit_{os.getpid()}_{stores.count}"
            found["postgres"] = _in_child(None, "postgres_limit", POSTGRES_URL, schema, limit_s)
        for backend, r in found.items():
            say(f"  storage limit ({when}), {backend}: {r['commits_per_s']:,.0f} commits/s")
        return found

    before = limits("before")
    work: dict[str, dict[str, dict[str, list[dict[str, Any]]]]] = {}
    plan = [
        ("w1", lambda url: ("w1", url, sizes["w1_runs"]), "steps_per_s"),
        ("start_many", lambda url: ("start_many", url, sizes["start_many"]), "runs_per_s"),
        ("starts_1", lambda url: ("starts", url, 1, sizes["one_thread"]), "starts_per_s"),
        (
            "starts_16",
            lambda url: ("starts", url, sizes["threads"], sizes["per_thread"]),
            "starts_per_s",
        ),
        ("waiting", lambda url: ("waiting", url, sizes["w1_runs"]), "seconds"),
    ]
    try:
        for backend in backends:
            for name, args, _ in plan:
                for _ in range(tries):
                    for code, src in codes.items():  # alternating: old, new, old, new …
                        url = stores.sqlite() if backend == "sqlite" else stores.postgres()
                        r = _in_child(src, *args(url))
                        work.setdefault(backend, {}).setdefault(name, {}).setdefault(
                            code, []
                        ).append(r)
                    stores.drop()
                say(f"  {backend} {name}: {len(codes) * tries} tries")
    finally:
        stores.drop()
    after = limits("after")
    out["load_after"] = os.getloadavg()
    out["limit"] = {
        backend: max(before[backend], after[backend], key=lambda r: r["commits_per_s"])
        for backend in before
    }
    out["limit_tries"] = {"before": before, "after": after}
    results: dict[str, Any] = {}
    for backend, named in work.items():
        limit = out["limit"][backend]["commits_per_s"]
        for name, by_code in named.items():
            key = next(k for n, _, k in plan if n == name)
            for code, runs in by_code.items():
                if any("missing" in r for r in runs):
                    chosen: dict[str, Any] = {"missing": runs[0]["missing"]}
                else:
                    chosen = _median(runs, key)
                    chosen["all"] = runs
                if name == "w1" and "missing" not in chosen:
                    chosen["vs_limit"] = chosen["steps_per_s"] / limit
                    execute = statistics.median(r["execute_steps_per_s"] for r in runs)
                    chosen["execute_median_steps_per_s"] = execute
                    chosen["execute_vs_limit"] = execute / limit
                results.setdefault(backend, {}).setdefault(name, {})[code] = chosen
    out["results"] = results
    if not quick:  # the targets are set for the full sizes
        w1 = results.get("sqlite", {}).get("w1", {}).get("new", {})
        many = results.get("sqlite", {}).get("start_many", {}).get("new", {})
        out["targets"] = {
            "e2e: W1 end to end on SQLite FULL >= 0.5x the commit limit": w1.get("vs_limit", 0)
            >= TARGETS["w1_vs_limit"],
            "e2e: start_many of 10,000 runs on SQLite FULL <= 0.5 s": many.get("seconds", 1e9)
            <= TARGETS["start_many_10k_s"],
        }
    return out


def table(results: dict[str, Any]) -> list[str]:
    """The report's lines: a row per measurement, a column per backend (old → new with
    --compare)."""
    backends = results["backends"]
    compared = results.get("compared_with") is not None
    lines = [
        "End to end (benchmarks/e2e.py): defaults (SQLite synchronous=FULL), median of "
        f"{results['repeat']} tries; load average {results['load_before'][0]:.2f} → "
        f"{results['load_after'][0]:.2f}"
        + ("; old → new code, tries alternating" if compared else ""),
        "",
        "| measurement | " + " | ".join(backends) + " |",
        "|---|" + "---|" * len(backends),
    ]

    def cell(backend: str, name: str, show: Any) -> str:
        found = results["results"].get(backend, {}).get(name, {})
        shown = []
        for code in ("old", "new") if compared else ("new",):
            r = found.get(code)
            shown.append("n/a" if r is None or "missing" in r else show(r))
        return " → ".join(shown)

    limit = results["limit"]
    rows = [
        ("storage limit: single-row commits/s", lambda b: f"{limit[b]['commits_per_s']:,.0f}"),
        (
            f"W1 end to end ({results['sizes']['w1_runs']} runs × 3 steps): steps/s, × limit",
            lambda b: cell(b, "w1", lambda r: f"{r['steps_per_s']:,.0f} ({r['vs_limit']:.2f}×)"),
        ),
        (
            "W1 phases: start() ms each / execution s / result() ms each",
            lambda b: cell(
                b,
                "w1",
                lambda r: f"{r['start_ms']:.2f} / {r['execute_s']:.2f} / {r['result_ms']:.3f}",
            ),
        ),
        (
            "W1 execution alone: steps/s, × limit",
            lambda b: cell(
                b,
                "w1",
                lambda r: f"{r['execute_median_steps_per_s']:,.0f} ({r['execute_vs_limit']:.2f}×)",
            ),
        ),
        (
            f"start_many: {results['sizes']['start_many']:,} runs, seconds",
            lambda b: cell(b, "start_many", lambda r: f"{r['seconds']:.2f}"),
        ),
        (
            "start(): starts/s from 1 thread",
            lambda b: cell(b, "starts_1", lambda r: f"{r['starts_per_s']:,.0f}"),
        ),
        (
            f"start(): starts/s from {results['sizes']['threads']} threads",
            lambda b: cell(b, "starts_16", lambda r: f"{r['starts_per_s']:,.0f}"),
        ),
        (
            "wait_all while a worker runs W1: run reads (runs read) / worker commits",
            lambda b: cell(
                b,
                "waiting",
                lambda r: f"{r['reads']} ({r['ids_read']}) / {r['commits']}",
            ),
        ),
    ]
    for label, show in rows:
        lines.append(f"| {label} | " + " | ".join(show(b) for b in backends) + " |")
    return lines


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="plait end-to-end benchmarks")
    parser.add_argument("--quick", action="store_true", help="small workloads, one try each")
    parser.add_argument("--repeat", type=int, help="tries of each measurement (default 5)")
    parser.add_argument("--dir", help="where the SQLite files go (default: a temp dir)")
    parser.add_argument("--out", help="write the results here (JSON)")
    parser.add_argument("--compare", metavar="SRC", help="also measure the code in SRC (old)")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, *rest = args.child
        print(json.dumps(CHILDREN[kind](rest)))
        return 0
    with tempfile.TemporaryDirectory(prefix="plait-e2e-", dir=args.dir) as tmp:
        results = measure(
            args.quick,
            tmp,
            repeat=args.repeat,
            compare=args.compare,
            postgres=False if args.no_postgres else None,
            say=print,
        )
    print("\n".join(table(results)))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
