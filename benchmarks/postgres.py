"""plait on PostgreSQL: 1, 2 and 4 worker processes, next to the server's own limit.

    python benchmarks/postgres.py            # everything (about four minutes)
    python benchmarks/postgres.py --quick    # smaller workloads, shorter windows (under a minute)

The server is $PLAIT_BENCH_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/postgres);
every measurement gets a fresh schema (the idle one a fresh database), dropped afterwards. Workers
are child processes (`--child worker ...`) that open the store, print "ready", wait for "go",
serve, and exit on "stop". Measured: the server's one-row commits/s from 1 and 4 connections; W1
and W2 with 1, 2 and 4 processes (time from "go" to the last run's finished_at), again after an
ANALYZE; the hand-off latency between two processes; an idle worker's transactions/s. The table
is printed and written to benchmarks/results.json under "postgres" (SQLite's results are kept).
See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run import RESULTS, _best, _chain, _fan, _git_commit, machine  # noqa: E402

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
TERMINAL = "('completed', 'failed', 'cancelled')"


def with_options(url: str, **options: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in options]
    return urlunsplit(parts._replace(query=urlencode(query + list(options.items()))))


def stamp(**_: Any) -> float:
    return time.time()  # when the handler ran, kept as the step's output


def _long_chain(n: int) -> Any:
    import plait

    wf = plait.Workflow(f"bench_long_chain_{n}", version="1")
    wf.add_step("c0", stamp)
    for i in range(1, n):
        wf.add_step(f"c{i}", stamp, deps=[f"c{i - 1}"])
    return wf


SHAPES = {"chain": lambda n: _chain(), "fan": _fan, "long": _long_chain}


# -- children ------------------------------------------------------------------------------------


def child_limit(url: str, schema: str, seconds: float) -> dict[str, Any]:
    import psycopg

    conn = psycopg.connect(url)  # not autocommit: the INSERT opens a transaction, commit() ends it
    conn.execute(f'SET search_path TO "{schema}"')
    conn.commit()
    payload = b"x" * 100
    print("ready", flush=True)
    sys.stdin.readline()
    count, t0 = 0, time.perf_counter()
    while time.perf_counter() < t0 + seconds:
        for _ in range(10):
            conn.execute("INSERT INTO t (v) VALUES (%s)", (payload,))
            conn.commit()
        count += 10
    elapsed = time.perf_counter() - t0
    conn.close()
    return {"commits": count, "seconds": elapsed}


def child_worker(url: str, shape: str, n: int, conc: int, until: str) -> dict[str, Any]:
    """Serve until the runs `until` ("#N": r0..rN-1, else comma-separated ids) end, or forever
    if it is empty; exit on "stop". An idle worker (empty `until`) records its store calls."""
    import plait

    wf = SHAPES[shape](n)
    ids = [f"r{i}" for i in range(int(until[1:]))] if until[:1] == "#" else until.split(",")
    calls: list[tuple[float, str]] = []
    engine = plait.Engine(url)
    engine.register(wf)  # opens the store: schema check, pool, LISTEN
    if not until:
        _count_calls(engine.store, calls)
    print("ready", flush=True)
    sys.stdin.readline()
    cpu0, t0 = sum(os.times()[:2]), time.monotonic()
    stop = threading.Event()

    def stopper() -> None:
        sys.stdin.readline()
        stop.set()
        engine.stop_workers()

    threading.Thread(target=stopper, daemon=True).start()
    tuned = {"concurrency": conc} if conc else {}  # 0: the defaults (benchmarks/pgcycle.py)
    engine.run_worker(**tuned, until=ids if until else None)
    out = {
        "pid": os.getpid(),
        "cpu_s": sum(os.times()[:2]) - cpu0,
        "served_s": time.monotonic() - t0,
    }
    out["calls"] = [(round(t - t0, 4), what) for t, what in calls]
    stop.wait(600)  # keep the connections: their server processes' CPU is read before "stop"
    engine.close()
    return out


def _count_calls(store: Any, calls: list[tuple[float, str]]) -> None:
    """Record every store call, and every statement sent (BEGIN and COMMIT included)."""
    import psycopg

    def wrap(owner: Any, name: str, label: str) -> None:
        original = getattr(owner, name)

        async def counted(*args: Any, **kwargs: Any) -> Any:
            calls.append((time.monotonic(), label))
            return await original(*args, **kwargs)

        setattr(owner, name, counted)

    for name in ("claim", "next_ready_at", "recover_expired", "heartbeat", "get_run", "complete"):
        wrap(store, name, f"call:{name}")
    wrap(psycopg.AsyncCursor, "execute", "statements")
    wrap(psycopg.AsyncCursor, "executemany", "statements")
    transaction = psycopg.AsyncConnection.transaction

    def counted_transaction(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.extend([(time.monotonic(), "statements")] * 2)  # BEGIN, COMMIT
        return transaction(self, *args, **kwargs)

    psycopg.AsyncConnection.transaction = counted_transaction  # type: ignore[method-assign]


def child(argv: list[str]) -> None:
    kind, *rest = argv
    if kind == "limit":
        out = child_limit(rest[0], rest[1], float(rest[2]))
    elif kind == "worker":
        url, shape, n, conc, until = rest
        out = child_worker(url, shape, int(n), int(conc), until)
    else:
        raise SystemExit(f"unknown child {kind!r}")
    print(json.dumps(out), flush=True)


# -- orchestration -------------------------------------------------------------------------------


class Procs:
    """Child processes released together: each prints "ready", waits for "go", then "stop"."""

    def __init__(self, *argvs: list[Any]) -> None:
        script = str(Path(__file__).resolve())
        pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
        command = [sys.executable, script, "--child"]
        self.procs = [subprocess.Popen([*command, *map(str, a)], text=True, **pipes) for a in argvs]
        for p in self.procs:
            assert p.stdout is not None and p.stderr is not None
            line = p.stdout.readline()
            if line.strip() != "ready":
                self.kill()
                raise SystemExit(f"a child did not start: {line}{p.stderr.read()[-4000:]}")

    def say(self, word: str) -> float:
        t = time.time()
        for p in self.procs:
            if p.poll() is None and p.stdin is not None:
                p.stdin.write(word + "\n")
                p.stdin.flush()
        return t

    def finish(self) -> list[dict[str, Any]]:
        self.say("stop")
        outs = []
        for p in self.procs:
            stdout, stderr = p.communicate(timeout=120)
            if p.returncode != 0:
                raise SystemExit(f"a child failed ({p.returncode}):\n{stderr[-4000:]}")
            outs.append(json.loads(stdout.strip().splitlines()[-1]))
        return outs

    def kill(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def pg_cpu() -> dict[str, float]:
    """CPU seconds used so far by each live process of the PostgreSQL server (from /proc)."""
    out, tick = {}, os.sysconf("SC_CLK_TCK")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        if stat[stat.index("(") + 1 : stat.rindex(")")].startswith("postgres"):
            fields = stat[stat.rindex(")") + 2 :].split()
            out[pid] = (int(fields[11]) + int(fields[12])) / tick
    return out


def machine_busy() -> tuple[int, int]:
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    return sum(values) - values[3] - values[4], sum(values)


class Bench:
    def __init__(self, url: str) -> None:
        import psycopg

        self.url = url
        self.db = psycopg.connect(url, autocommit=True)
        self.own_pid = str(self.one("SELECT pg_backend_pid()")[0])  # not counted as server CPU
        self.count = 0

    def one(self, query: str, *params: Any) -> Any:
        return self.db.execute(query, params).fetchone()

    def schema(self) -> str:
        self.count += 1
        name = f"plait_bench_{os.getpid()}_{self.count}"
        self.db.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        return name

    def drop(self, schema: str) -> None:
        self.db.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

    def limit(self, conns: int, seconds: float) -> dict[str, Any]:
        schema = self.schema()
        self.db.execute(f'CREATE SCHEMA "{schema}"')
        self.db.execute(f'CREATE TABLE "{schema}".t (id bigserial PRIMARY KEY, v bytea)')
        try:
            procs = Procs(*(["limit", self.url, schema, seconds] for _ in range(conns)))
            procs.say("go")
            outs = procs.finish()
        finally:
            self.drop(schema)
        commits = sum(o["commits"] for o in outs)
        rate = commits / max(o["seconds"] for o in outs)
        return {"connections": conns, "commits": commits, "commits_per_s": rate}

    def serve(self, schema: str, shape: str, n: int, procs: int, conc: int, until: str) -> Any:
        """Release `procs` workers and wait until the runs `until` have ended (polling)."""
        url = with_options(self.url, schema=schema)
        workers = Procs(*(["worker", url, shape, n, conc, until] for _ in range(procs)))
        if until[:1] == "#":
            done = f'SELECT count(*) = 0 FROM "{schema}".runs WHERE status NOT IN {TERMINAL}'
        else:
            done = f"SELECT status IN {TERMINAL} FROM \"{schema}\".runs WHERE id = '{until}'"
        deadlocks = "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
        try:
            cpu0, busy0, dead0 = pg_cpu(), machine_busy(), self.one(deadlocks)[0]
            t0 = workers.say("go")
            while not self.one(done)[0]:
                if time.time() > t0 + 600:
                    raise SystemExit(f"{shape} x{procs}: not done after 600 s")
                time.sleep(0.05)
            cpu1, busy1 = pg_cpu(), machine_busy()
            outs = workers.finish()
        except BaseException:
            workers.kill()
            raise
        # server CPU: processes alive at the end (the workers' connections still are)
        server = sum(v - cpu0.get(p, 0.0) for p, v in cpu1.items() if p != self.own_pid)
        busy = (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1])
        cpu = sum(o["cpu_s"] for o in outs)
        time.sleep(0.2)  # the workers' backends report their deadlocks when they exit
        dead = self.one(deadlocks)[0] - dead0  # the database's: other clients' would count too
        out = {"t0": t0, "server_cpu_s": server, "worker_cpu_s": cpu, "machine_busy": busy}
        return {**out, "deadlocks": dead}

    def w1(self, procs: int, conc: int, runs: int) -> dict[str, Any]:
        schema = self.schema()
        try:
            created = asyncio.run(_create_runs(with_options(self.url, schema=schema), runs))
            r = self.serve(schema, "chain", 0, procs, conc, f"#{runs}")
            end, done = self.one(
                "SELECT max(finished_at), count(*) FILTER (WHERE status = 'completed') "
                f'FROM "{schema}".runs'
            )
            shares = self.db.execute(
                f'SELECT count(*) FROM "{schema}".steps GROUP BY worker_id ORDER BY 1 DESC'
            ).fetchall()
        finally:
            self.drop(schema)
        assert done == runs, f"W1: {done} of {runs} runs completed"
        steps = 3 * runs
        out = {"procs": procs, "concurrency": conc, "runs": runs, **created}
        out["steps_per_worker"] = [s[0] for s in shares]
        return {**out, **_timing(r, end, steps)}

    def w2(self, procs: int, n: int, conc: int, analyze: bool = False) -> dict[str, Any]:
        schema = self.schema()
        try:
            t = time.perf_counter()
            wf = _fan(n)
            wf.plan()
            define = time.perf_counter() - t
            start = asyncio.run(_start(with_options(self.url, schema=schema), wf, "fan"))
            if analyze:  # planner statistics, as autovacuum would gather them later on
                self.db.execute(f'ANALYZE "{schema}".steps, "{schema}".runs')
            r = self.serve(schema, "fan", n, procs, conc, "fan")
            end, status = self.one(
                f"SELECT finished_at, status FROM \"{schema}\".runs WHERE id = 'fan'"
            )
        finally:
            self.drop(schema)
        assert status == "completed", f"W2: the run is {status}"
        out = {"procs": procs, "n": n, "concurrency": conc, "analyzed": analyze}
        return {**out, "define_s": define, "start_s": start, **_timing(r, end, n + 2)}

    def handoff(self, length: int) -> dict[str, Any]:
        """One chain, 2 worker processes: from a step's finished_at (written just before its
        completion commits) to its dependent's started_at (the claim) and to its handler."""
        schema = self.schema()
        try:
            asyncio.run(_start(with_options(self.url, schema=schema), _long_chain(length), "c"))
            self.serve(schema, "long", length, 2, 4, "c")
            rows = self.db.execute(
                "SELECT b.started_at - a.finished_at, b.output, a.finished_at, "
                f'a.worker_id <> b.worker_id FROM "{schema}".steps a JOIN "{schema}".steps b '
                "ON a.run_id = b.run_id AND b.idx = a.idx + 1 WHERE b.status = 'done'"
            ).fetchall()
        finally:
            self.drop(schema)
        out: dict[str, Any] = {"steps": length, "hand_offs": len(rows)}
        for label, cross in (("cross", True), ("same", False)):
            picked = [r for r in rows if r[3] == cross]
            out[label] = {
                "count": len(picked),
                "claim_ms": _pcts([1000 * r[0] for r in picked]),
                "handler_ms": _pcts([1000 * (json.loads(bytes(r[1])) - r[2]) for r in picked]),
            }
        return out

    def idle(self, short: float, window: float) -> dict[str, Any]:
        """An idle worker's transactions/s on a fresh database, from pg_stat_database: a worker
        serving `short` seconds and one serving `short + window` (their backends flush their
        counts when they exit), minus a `window` with no worker connected."""
        name = f"plait_bench_idle_{os.getpid()}"
        self.db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.db.execute(f'CREATE DATABASE "{name}"')
        url = with_options(urlunsplit(urlsplit(self.url)._replace(path=f"/{name}")), schema="plait")
        xacts = "SELECT (xact_commit + xact_rollback)::int FROM pg_stat_database WHERE datname = %s"
        counts, calls = [], []
        try:
            asyncio.run(_start(url, _chain(), None))  # the schema: the same start-up for both
            time.sleep(1.5)
            before = self.one(xacts, name)[0]
            time.sleep(window + 1.5)
            baseline = self.one(xacts, name)[0] - before
            for length in (short, short + window):
                before = self.one(xacts, name)[0]
                workers = Procs(["worker", url, "chain", 0, 16, ""])
                workers.say("go")
                time.sleep(length)
                calls = workers.finish()[0]["calls"]
                time.sleep(2)  # its backends have exited and flushed their counts
                counts.append(self.one(xacts, name)[0] - before)
        finally:
            self.db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        client: dict[str, float] = {}
        for t, what in calls:
            if short <= t < short + window:
                client[what] = client.get(what, 0) + 1 / window
        rate = (counts[1] - counts[0] - baseline) / window
        return {"window_s": window, "short_s": short, "xacts_short": counts[0],
                "xacts_long": counts[1], "baseline_xacts": baseline,
                "server_xacts_per_s": rate, "client_per_s": client}  # fmt: skip


def _timing(r: dict[str, Any], end: float, steps: int) -> dict[str, Any]:
    execute = end - r["t0"]
    return {"steps": steps, "execute_s": execute, "steps_per_s": steps / execute,
            "server_cpu_us_per_step": 1e6 * r["server_cpu_s"] / steps,
            "worker_cpu_us_per_step": 1e6 * r["worker_cpu_s"] / steps,
            "machine_busy": r["machine_busy"], "deadlocks": r["deadlocks"]}  # fmt: skip


def _pcts(values: list[float]) -> dict[str, float] | None:
    if len(values) < 2:
        return None
    deciles = statistics.quantiles(values, n=10, method="inclusive")
    return {"p50": statistics.median(values), "p90": deciles[8], "max": max(values)}


async def _create_runs(url: str, runs: int, parallel: int = 8) -> dict[str, Any]:
    """The first 200 runs one `start` at a time (the sequential rate), the rest from 8 tasks."""
    import plait

    wf, first = _chain(), min(200, runs)
    async with plait.Engine(url) as engine:
        await engine.register_async(wf)
        t0 = time.perf_counter()
        for i in range(first):
            await engine.start_async(wf, run_id=f"r{i}")
        t1 = time.perf_counter()
        todo = iter(range(first, runs))

        async def feed() -> None:
            for i in todo:
                await engine.start_async(wf, run_id=f"r{i}")

        await asyncio.gather(*(feed() for _ in range(parallel)))
        t2 = time.perf_counter()
    rest = (runs - first) / (t2 - t1) if runs > first else None
    return {"create_runs_per_s": first / (t1 - t0), "create_8_tasks_runs_per_s": rest}


async def _start(url: str, wf: Any, run_id: str | None) -> float:
    """Register `wf` and start one run of it (none if run_id is None); the start's seconds."""
    import plait

    async with plait.Engine(url) as engine:
        await engine.register_async(wf)
        t0 = time.perf_counter()
        if run_id is not None:
            await engine.start_async(wf, run_id=run_id)
        return time.perf_counter() - t0


# -- main ----------------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="plait benchmarks on PostgreSQL")
    parser.add_argument("--quick", action="store_true", help="smaller workloads (under a minute)")
    parser.add_argument("--repeat", type=int, help="tries of each measurement (default 2; quick 1)")
    parser.add_argument("--url", default=os.environ.get("PLAIT_BENCH_POSTGRES_URL", DEFAULT_URL))
    parser.add_argument("--out", default=str(RESULTS), help="results file (its 'postgres' key)")
    parser.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child)
        return 0

    quick = args.quick
    tries = range(args.repeat or (1 if quick else 2))
    runs = 1_000 if quick else 2_000
    concurrencies = (256,) if quick else (64, 256)
    bench = Bench(args.url)
    info = machine()
    info["postgres"] = bench.one("SHOW server_version")[0]
    names = ("synchronous_commit", "fsync", "wal_sync_method", "shared_buffers", "random_page_cost")
    settings = {s: bench.one(f"SHOW {s}")[0] for s in names}
    load_before = os.getloadavg()
    print(f"PostgreSQL {info['postgres']}; {settings}; load average {load_before[0]:.2f}")
    t_start, commit, dirty = time.monotonic(), _git_commit(), _src_changes()
    res: dict[str, Any] = {"limit_runs": [], "w1": {}, "w2": [], "analyzed": []}

    def limits(when: str) -> None:
        got = {c: bench.limit(c, 1.0 if quick else 3.0) for c in (1, 4)}
        res["limit_runs"].append(got)
        print(f"  server limit ({when}): {_rates(got)} commits/s from 1 / 4 connections")

    def measure(label: str, tries: list[dict[str, Any]]) -> dict[str, Any]:
        r = _best(tries, "steps_per_s")
        print(
            f"  {label}: {_rates(r)} steps/s ({r['execute_s']:.2f} s); CPU per step: server "
            f"{r['server_cpu_us_per_step']:.0f} us, workers {r['worker_cpu_us_per_step']:.0f} us; "
            f"machine busy {r['machine_busy']:.0%}; deadlocks {r['deadlocks']}"
        )
        return r

    limits("before")
    for procs in (1, 2, 4):
        res["w1"][procs] = [
            measure(f"W1 {procs} proc x conc {c}", [bench.w1(procs, c, runs) for _ in tries])
            for c in concurrencies
        ]
    for n in (1_000,) if quick else (1_000, 10_000):
        for procs in (1, 2, 4):
            # at 10,000 each try is followed by one on tables with planner statistics (as
            # autovacuum gives them later on): interleaved, so that both see the same noise
            variants = (False, True) if n > 1_000 else (False,)
            both = [[bench.w2(procs, n, 64, an) for an in variants] for _ in tries]
            res["w2"].append(measure(f"W2 N={n:,} {procs} proc", [b[0] for b in both]))
            if n > 1_000:
                tried = [b[1] for b in both]
                res["analyzed"].append(measure(f"W2 N={n:,} {procs} proc, ANALYZE", tried))
    h = res["handoff"] = bench.handoff(100 if quick else 400)
    print(f"  hand-off: {json.dumps(h)}")
    i = res["idle"] = bench.idle(1.5 if quick else 5.0, 6.0 if quick else 25.0)
    print(f"  idle worker: {i['server_xacts_per_s']:.2f} transactions/s; {json.dumps(i)}")
    if not quick:
        limits("after")

    best = {str(p): max(rows, key=lambda r: r["steps_per_s"]) for p, rows in res["w1"].items()}
    limit = {c: max((lr[c] for lr in res["limit_runs"]), key=lambda r: r["commits_per_s"])
             for c in (1, 4)}  # fmt: skip
    tenk = [r["execute_s"] for r in res["w2"] if r["n"] == 10_000]
    cross = res["handoff"]["cross"]["claim_ms"]
    targets = {
        "W1 >= 3,000 steps/s with 4 processes": best["4"]["steps_per_s"] >= 3_000,
        "hand-off p50 <= 10 ms (other process, to its claim)": bool(cross) and cross["p50"] <= 10,
        "idle worker <= 1 query/s (transactions)": i["server_xacts_per_s"] <= 1.0,
    }
    if tenk:
        targets["W2 N=10,000 <= 5 s (best process count)"] = min(tenk) <= 5.0
    if (commit, dirty) != (_git_commit(), _src_changes()):
        print("WARNING: src/ changed during the run: the numbers mix two versions; run again")
        commit = f"{commit} -> {_git_commit()} (src changed during the run)"
    results = {"when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "commit": commit, "src_dirty": dirty,
               "quick": quick, "repeat": len(tries), "machine": info, "server_settings": settings,
               "load_average": {"before": load_before, "after": os.getloadavg()},
               "took_s": time.monotonic() - t_start, "server_limit": limit,
               "server_limit_runs": res["limit_runs"], "w1_runs": runs,
               "w1": {str(p): rows for p, rows in res["w1"].items()}, "w1_best": best,
               "w2": res["w2"], "analyzed": res["analyzed"], "handoff": h, "idle": i,
               "targets": targets}  # fmt: skip
    print()
    print(_table(results))
    path = Path(args.out)
    data = json.loads(path.read_text()) if path.exists() else {}
    data["postgres"] = results
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(f"\nwritten to {path} (key 'postgres'); took {results['took_s']:.0f} s")
    return 0


def _src_changes() -> str:
    """Uncommitted changes under src/ (the code measured is the working tree's)."""
    cmd = ["git", "status", "--porcelain", "src"]
    return subprocess.run(cmd, cwd=HERE, capture_output=True, text=True, check=False).stdout


def _rates(r: dict[Any, Any]) -> str:
    if "tries" in r:
        return f"{r['steps_per_s']:,.0f} (tries {'/'.join(f'{v:,.0f}' for v in r['tries'])})"
    return " / ".join(f"{x['commits_per_s']:,.0f}" for x in r.values())


def _table(r: dict[str, Any]) -> str:
    """The results as a markdown table, ready for the README."""
    m, load, best = r["machine"], r["load_average"], r["w1_best"]
    l1, l4 = (r["server_limit"][c]["commits_per_s"] for c in (1, 4))

    def w(x: dict[str, Any]) -> str:
        ratio = f" = {x['steps_per_s'] / l4:.2f}× the 4-conn. limit" if x["procs"] == 4 else ""
        return f"**{x['steps_per_s']:,.0f}** (conc. {x['concurrency']}; median {x['median']:,.0f}){ratio}"

    def t(x: dict[str, Any]) -> str:
        dead = f"; {x['deadlocks']} deadlock{'s' * (x['deadlocks'] != 1)}" if x["deadlocks"] else ""
        return f"{x['execute_s']:.2f} s ({x['steps_per_s']:,.0f} steps/s{dead})"

    def cpu(x: dict[str, Any]) -> str:
        s, c = x["server_cpu_us_per_step"], x["worker_cpu_us_per_step"]
        return f"{s:.0f} / {c:.0f}; {x['machine_busy']:.0%}"

    def row(label: str, cells: dict[int, str], target: str = "") -> str:
        return f"| {label} | " + " | ".join(cells.get(p, "") for p in (1, 2, 4)) + f" | {target} |"

    b1, h, i = best["1"], r["handoff"], r["idle"]
    tried = ", ".join(str(x["concurrency"]) for x in r["w1"]["1"])
    lines = [
        f"{m['nproc']} CPUs ({m['cpu']}), Python {m['python']}, PostgreSQL {m['postgres']} on the "
        f"same machine (synchronous_commit={r['server_settings']['synchronous_commit']}); load "
        f"average {load['before'][0]:.1f} → {load['after'][0]:.1f}; commit {r['commit']}"
        + (" with uncommitted changes in src/" if r["src_dirty"] else "")
        + (" (--quick)" if r["quick"] else ""),
        "",
        "| workload | 1 process | 2 processes | 4 processes | target |",
        "|---|---|---|---|---|",
        row("server limit: one-row commits/s from 1 / 4 connections", {1: f"{l1:,.0f}", 4: f"{l4:,.0f}"}),
        row(f"W1: {r['w1_runs']:,} runs × 3-step chain, steps/s (best of conc. {tried} per process)",
            {int(p): w(x) for p, x in best.items()}, "≥ 3,000 with 4"),
        row("W1 CPU per step: server / workers (µs); machine busy", {int(p): cpu(x) for p, x in best.items()}),
        row("W1 run creation: runs/s, one `start` at a time / 8 concurrent",
            {1: f"{b1['create_runs_per_s']:,.0f} / {b1['create_8_tasks_runs_per_s'] or 0:,.0f}"}),
    ]  # fmt: skip
    for n in sorted({x["n"] for x in r["w2"]}):
        by_p = {x["procs"]: x for x in r["w2"] if x["n"] == n}
        start = max(x["start_s"] for x in by_p.values())
        label = f"W2: root → {n:,} → sink, execution (start: {start:.2f} s)"
        lines.append(row(label, {p: t(x) for p, x in by_p.items()}, "≤ 5 s" if n == 10_000 else ""))
    if r["analyzed"]:
        label = "W2: root → 10,000 → sink, the same after an `ANALYZE` (tries interleaved)"
        lines.append(row(label, {x["procs"]: t(x) for x in r["analyzed"]}))
    c, e = h["cross"]["claim_ms"], h["cross"]["handler_ms"]
    if c and e:
        label = (
            f"hand-off to the other process (chain; {h['cross']['count']} of {h['hand_offs']} "
            "hand-offs): step finished → dependent claimed, p50 / p90 (→ its handler running)"
        )
        ms = f"{c['p50']:.1f} / {c['p90']:.1f} ms ({e['p50']:.1f} / {e['p90']:.1f} ms)"
        lines.append(row(label, {2: ms}, "p50 ≤ 10 ms"))
    stmts = i["client_per_s"].get("statements", 0.0)
    label = f"idle worker: transactions/s at the server ({i['window_s']:.0f} s); statements/s sent"
    ms = f"{i['server_xacts_per_s']:.2f}; {stmts:.2f}"
    lines += [row(label, {1: ms}, "≤ 1"), ""]
    lines += [f"- target {k}: {'met' if ok else 'MISSED'}" for k, ok in r["targets"].items()]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
