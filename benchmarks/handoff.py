"""Hand-off: how long a step's dependent waits, in the same worker process, once the step is done.

    python benchmarks/handoff.py                  # about a minute; prints the table
    python benchmarks/handoff.py --quick          # a short chain, one try (seconds)
    python benchmarks/handoff.py --compare /path/to/other/src   # the same tries, alternating,
                                                                 # on another tree's code

Workload: one run of a chain of no-op steps `h0 → h1 → …`, each a data dependency of the next,
served by one worker with the defaults (`run_worker(until=run)`). Each handler returns the
`time.perf_counter()` at which it returns; the next one reads it (its input) when it starts.
The hand-off is the difference: the outcome's commit, the dependent's claim and the reading of
its input, and the step's start on a handler thread. On SQLite (synchronous=FULL) it holds at
least one durable commit: the single-row commit time measured in the same run is shown beside it
(plain sqlite3, WAL, FULL, one INSERT per transaction; on PostgreSQL, one 100-byte INSERT and
COMMIT from one psycopg connection). PostgreSQL runs when a server answers at
PLAIT_BENCH_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/postgres), a fresh schema
per try. Each try is a fresh child process on a fresh database; the medians over the tries of
each try's p50 and p95 are reported.

For the combined report (benchmarks/run.py): `measure(quick, directory) -> dict` and
`table(results) -> list[str]`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent))
import e2e  # noqa: E402
from e2e import POSTGRES_URL, _postgres_available, _Stores  # noqa: E402

FULL = {"length": 300, "tries": 5}
QUICK = {"length": 30, "tries": 1}
TARGET_SQLITE_P50_MS = 1.0

_GAPS: list[float] = []


def hop(**given: float) -> float:
    if given:
        _GAPS.append(time.perf_counter() - max(given.values()))
    return time.perf_counter()


def chain(length: int) -> Any:
    import plait

    wf = plait.Workflow(f"handoff_{length}", version="1")
    wf.add_step("h0", hop)
    for i in range(1, length):
        wf.add_step(f"h{i}", hop, deps=[f"h{i - 1}"])
    return wf


def child_chain(url: str, length: int) -> dict[str, Any]:
    import plait

    wf = chain(length)
    with plait.Engine(url) as engine:
        engine.register(wf)
        run = engine.start(wf)
        t0 = time.perf_counter()
        engine.run_worker(until=run)
        elapsed = time.perf_counter() - t0
        assert list(run.result(timeout=10)) == [f"h{length - 1}"]
    gaps = sorted(1000 * g for g in _GAPS)
    assert len(gaps) == length - 1, f"{len(gaps)} hand-offs of {length - 1}"
    return {
        "length": length,
        "seconds": elapsed,
        "p50_ms": statistics.median(gaps),
        "p95_ms": statistics.quantiles(gaps, n=20, method="inclusive")[18],
        "mean_ms": statistics.fmean(gaps),
        "max_ms": gaps[-1],
    }


CHILDREN = {"chain": lambda a: child_chain(a[0], int(a[1]))}


def _in_child(src: str | None, *args: object, module: str = "handoff") -> dict[str, Any]:
    """One measurement in a fresh process (this module's child, or e2e's storage limits), on
    the code under `src` (default: this tree's)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = src or str(HERE.parent.parent / "src")
    script = HERE if module == "handoff" else Path(e2e.__file__).resolve()
    proc = subprocess.run(
        [sys.executable, str(script), "--child", *map(str, args)],
        capture_output=True, text=True, timeout=1800, check=False, env=env,
    )  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"measurement {args} failed:\n{proc.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def measure(
    quick: bool,
    directory: str,
    *,
    repeat: int | None = None,
    compare: str | None = None,
    postgres: bool | None = None,
    say: Any = None,
) -> dict[str, Any]:
    """`repeat` tries of the chain on SQLite FULL and, if a server answers, PostgreSQL; with
    `compare` (another tree's src/), each try runs on that code too, right before this one's."""
    say = say or (lambda text: None)
    sizes = QUICK if quick else FULL
    tries = repeat or sizes["tries"]
    postgres = _postgres_available() if postgres is None else postgres
    backends = ["sqlite"] + (["postgres"] if postgres else [])
    codes: dict[str, str | None] = {"old": compare, "new": None} if compare else {"new": None}
    stores = _Stores(directory)
    limit_s = 0.3 if quick else 1.0
    out: dict[str, Any] = {"quick": quick, "sizes": sizes, "repeat": tries,
                           "backends": backends, "compared_with": compare,
                           "load_before": os.getloadavg()}  # fmt: skip
    limits: dict[str, list[dict[str, Any]]] = {}
    work: dict[str, dict[str, list[dict[str, Any]]]] = {}
    try:
        for backend in backends:
            for _ in range(tries):
                if backend == "sqlite":
                    limit = _in_child(None, "sqlite_limit", directory, limit_s, module="e2e")
                else:
                    stores.count += 1
                    schema = f"plait_handoff_limit_{os.getpid()}_{stores.count}"
                    limit = _in_child(
                        None, "postgres_limit", POSTGRES_URL, schema, limit_s, module="e2e"
                    )
                limits.setdefault(backend, []).append(limit)
                for code, src in codes.items():  # alternating: old, new, old, new …
                    url = stores.sqlite() if backend == "sqlite" else stores.postgres()
                    r = _in_child(src, "chain", url, sizes["length"])
                    work.setdefault(backend, {}).setdefault(code, []).append(r)
                stores.drop()
            say(f"  {backend}: {len(codes) * tries} tries")
    finally:
        stores.drop()
    out["load_after"] = os.getloadavg()
    for backend in backends:
        commit_ms = statistics.median(1000 / r["commits_per_s"] for r in limits[backend])
        row: dict[str, Any] = {"commit_ms": commit_ms, "limit_tries": limits[backend]}
        for code, rs in work[backend].items():
            row[code] = {
                "p50_ms": statistics.median(r["p50_ms"] for r in rs),
                "p95_ms": statistics.median(r["p95_ms"] for r in rs),
                "tries": rs,
            }
        out[backend] = row
    p50 = out["sqlite"]["new"]["p50_ms"]
    out["targets"] = {f"hand-off p50 <= {TARGET_SQLITE_P50_MS:g} ms on SQLite": p50 <= 1.0}
    return out


def table(results: dict[str, Any]) -> list[str]:
    lines = [
        f"Hand-off to a dependent, same process, defaults (a chain of "
        f"{results['sizes']['length']}; medians of {results['repeat']} tries):"
    ]
    for backend in results["backends"]:
        r = results[backend]
        cells = []
        for code in ("old", "new"):
            if code in r:
                label = "" if code == "new" and "old" not in r else f"{code}: "
                cells.append(
                    f"{label}p50 {r[code]['p50_ms']:.2f} ms, p95 {r[code]['p95_ms']:.2f} ms"
                )
        lines.append(
            f"  {backend:8s} {'; '.join(cells)}   (one commit alone: {r['commit_ms']:.2f} ms)"
        )
    lines += [f"  target {k}: {'met' if ok else 'MISSED'}" for k, ok in results["targets"].items()]
    return lines


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="plait hand-off latency")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeat", type=int)
    parser.add_argument("--compare", help="another tree's src/: its tries alternate with these")
    parser.add_argument("--dir", default=None, help="where the SQLite files go")
    parser.add_argument("--out", help="also write the results as JSON")
    parser.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(CHILDREN[args.child[0]](args.child[1:])), flush=True)
        return 0
    import tempfile

    with tempfile.TemporaryDirectory(dir=args.dir) as directory:
        results = measure(args.quick, directory, repeat=args.repeat, compare=args.compare,
                          say=print)  # fmt: skip
    print("\n".join(table(results)))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
