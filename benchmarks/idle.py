"""What an idle worker costs a PostgreSQL server: transactions per second, with and without a
schedule in the store.

    python benchmarks/idle.py            # about four minutes
    python benchmarks/idle.py --quick    # 10 s windows: a smoke test, not numbers to quote

For each variant, a fresh database (`plait_bench_idle_<pid>_<n>`, dropped afterwards) gets
plait's schema and one registered workflow (and, for "schedule", a schedule whose next tick is
months away: the worker is elected scheduler and renews its lease, but starts nothing). A worker
process then serves it, idle, twice per try: for `short` seconds and for `short + window`.

Two counts:
- the worker's own transactions/s (the target: at most 1): every store operation is one
  transaction (a single autocommit statement, or one BEGIN…COMMIT), so the worker counts the
  store calls it makes within the window, by operation. Checked once against the server's
  statement log (`log_statement = all` on the database): 27 transactions in 35 s, 0.77/s, where
  the worker counted 0.72-0.80/s.
- the server's view, a cross-check: `pg_stat_database.xact_commit + xact_rollback` for the
  database, around the short run and around the long one (a backend flushes its counts when it
  exits, so long - short is `window` seconds of idling, start-up and exit cancelled out), minus
  a baseline window with nobody connected. On a shared server this is noisy: other activity
  (autovacuum visiting, and bursts of a few hundred transactions whose source we did not pin
  down) lands in some windows, so every try is recorded and the lowest is shown.

The fresh tables are analyzed first (autovacuum's first visit then has nothing to do), and the
windows start and end between the worker's timers (every 5 and 10 s) and last a multiple of
10 s, so that none of its transactions falls on an edge and each timer is counted whole. Results go to benchmarks/results.json under "idle" (the other
keys are kept). See benchmarks/README.md.

The server is $PLAIT_BENCH_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/postgres);
the user must be allowed to create databases.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from postgres import DEFAULT_URL, with_options  # noqa: E402
from run import RESULTS, _chain, _git_commit, machine  # noqa: E402

VARIANTS = ("no schedule", "schedule")


# -- the worker (a child process) ----------------------------------------------------------------


def child(url: str) -> None:
    """Serve (idle) from "go" until "stop"; print the store calls made, with their times."""
    import plait

    engine = plait.Engine(url)
    engine.register(_chain())  # opens the store: schema check, pool, LISTEN
    calls: list[tuple[float, str]] = []
    from plait.stores.protocol import Store

    # every store operation is one transaction: counting them counts the worker's own
    operations = [n for n, f in vars(Store).items() if asyncio.iscoroutinefunction(f)]
    for name in operations:
        if name in ("open", "close"):
            continue
        original = getattr(engine.store, name)

        def counting(original: Any, name: str) -> Any:
            async def counted(*args: Any, **kwargs: Any) -> Any:
                calls.append((time.monotonic(), name))
                return await original(*args, **kwargs)

            return counted

        setattr(engine.store, name, counting(original, name))
    print("ready", flush=True)
    sys.stdin.readline()
    t0 = time.monotonic()

    def stopper() -> None:
        sys.stdin.readline()
        engine.stop_workers()

    threading.Thread(target=stopper, daemon=True).start()
    engine.run_worker(concurrency=16)
    engine.close()
    print(json.dumps({"calls": [(round(t - t0, 4), what) for t, what in calls]}), flush=True)


def _serve(url: str, seconds: float) -> list[tuple[float, str]]:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", url]
    proc = subprocess.Popen(command, text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        proc.kill()
        raise SystemExit("the worker did not start")
    proc.stdin.write("go\n")
    proc.stdin.flush()
    time.sleep(seconds)  # the idle window being measured
    out, _ = proc.communicate("stop\n", timeout=120)
    if proc.returncode != 0:
        raise SystemExit(f"the worker failed ({proc.returncode})")
    return [tuple(c) for c in json.loads(out.strip().splitlines()[-1])["calls"]]


# -- the measurement -----------------------------------------------------------------------------


async def _prepare(url: str, schedule: bool) -> None:
    import plait

    async with plait.Engine(url) as engine:
        wf = _chain()
        await engine.register_async(wf)
        if schedule:  # due on 1 January at 03:00: never within the window
            await engine.schedule_async("yearly", wf, cron="0 3 1 1 *")


def measure(
    server: str, n: int, schedule: bool, short: float, window: float, repeat: int
) -> dict[str, Any]:
    import psycopg

    name = f"plait_bench_idle_{os.getpid()}_{n}"
    db = psycopg.connect(server, autocommit=True)
    db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    db.execute(f'CREATE DATABASE "{name}"')
    url = with_options(urlunsplit(urlsplit(server)._replace(path=f"/{name}")), schema="plait")
    query = "SELECT (xact_commit + xact_rollback)::int FROM pg_stat_database WHERE datname = %s"

    def xacts() -> int:
        row = db.execute(query, (name,)).fetchone()
        assert row is not None
        return int(row[0])

    tries: list[tuple[int, int]] = []
    calls: list[tuple[float, str]] = []
    try:
        asyncio.run(_prepare(url, schedule))
        # fresh tables: analyze them now, or autovacuum's first visit does it inside a window
        with psycopg.connect(url.split("?")[0], autocommit=True) as fresh:
            fresh.execute("VACUUM ANALYZE")
        time.sleep(1.5)  # the preparing backends have exited and flushed their counts
        before = xacts()
        time.sleep(window + 1.5)  # the baseline window: nobody connected
        baseline = xacts() - before
        for _ in range(repeat):
            counts = []
            for length in (short, short + window):
                before = xacts()
                calls = _serve(url, length)
                time.sleep(2)  # its backends have exited and flushed their counts
                counts.append(xacts() - before)
            tries.append((counts[0], counts[1]))
    finally:
        db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        db.close()
    client: dict[str, float] = {}
    for t, what in calls:
        if short <= t < short + window:
            client[what] = round(client.get(what, 0) + 1 / window, 3)
    # other clients of the database only add (but a burst in a short run subtracts: see above)
    rates = [(long - short_ - baseline) / window for short_, long in tries]
    return {
        "window_s": window,
        "short_s": short,
        "tries_xacts_short_long": tries,
        "baseline_xacts": baseline,
        "server_xacts_per_s": min(rates),
        "tries_xacts_per_s": rates,
        "client_calls_per_s": dict(sorted(client.items())),
        "client_xacts_per_s": round(sum(client.values()), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 s windows")
    parser.add_argument(
        "--repeat", type=int, default=2, help="tries per variant (the lowest counts)"
    )
    parser.add_argument("--out", default=str(RESULTS), help="results file (its 'idle' key)")
    parser.add_argument("--child", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    server = os.environ.get("PLAIT_BENCH_POSTGRES_URL", DEFAULT_URL)
    # the windows start and end between the worker's timers (every 5 s and 10 s) and last a
    # multiple of 10 s: no transaction falls on an edge, and each timer is counted whole
    short, window = (2.5, 10.0) if args.quick else (2.5, 30.0)
    results = {}
    for n, variant in enumerate(VARIANTS):
        results[variant] = measure(server, n, variant == "schedule", short, window, args.repeat)
    print(f"\nidle worker on PostgreSQL, {window:.0f} s window (target: <= 1 transaction/s)\n")
    print(f"{'variant':<14}{'worker xacts/s':>15}{'server (lowest)':>16}   store calls/s")
    for variant, r in results.items():
        calls = ", ".join(f"{k} {v:.2f}" for k, v in r["client_calls_per_s"].items())
        print(f"{variant:<14}{r['client_xacts_per_s']:>15.2f}"
              f"{r['server_xacts_per_s']:>16.2f}   {calls}")  # fmt: skip
    out = Path(args.out)
    data = json.loads(out.read_text()) if out.exists() else {}
    data["idle"] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": _git_commit(),
        "quick": args.quick,
        "machine": machine(),
        "target_xacts_per_s": 1.0,
        "variants": results,
    }
    out.write_text(json.dumps(data, indent=2) + "\n")


if __name__ == "__main__":
    main()
