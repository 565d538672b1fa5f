"""The worker's cycle on PostgreSQL (issue 14, 4): W1 at the defaults, next to the server's limit.

    python benchmarks/pgcycle.py                  # a few minutes; prints the table
    python benchmarks/pgcycle.py --quick          # smaller, one try (under a minute)
    python benchmarks/pgcycle.py --compare /path/to/other/src   # the same tries, alternating,
                                                                 # on another tree's code

Measured, with everything at its default (no `concurrency=`):
  W1 end to end, one process   e2e.py's W1: 500 runs of the 3-step chain each started with
                               `start()`, one worker (`run_worker(until=...)`), every `result()`
                               read; from the first start to the last result. Next to the server's
                               single-connection limit (one 100-byte INSERT + COMMIT per
                               transaction from one connection).
  W1, 4 worker processes       postgres.py's W1: 2,000 runs created first, then 4 worker
                               processes released together; from "go" to the last run's
                               finished_at. Next to the server's 4-connection limit (4 processes
                               committing as above at once).
The limits are measured before each try of the workloads (the median is used). The server is
$PLAIT_BENCH_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/postgres), a fresh schema
per try. Not with run.py's --quick (it needs a server): run alone with --quick to smoke-test.

For the combined report (benchmarks/run.py): `measure(quick, directory) -> dict` and
`table(results) -> list[str]`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent))
import e2e  # noqa: E402
import postgres  # noqa: E402

FULL = {"e2e_runs": 500, "procs_runs": 2_000, "tries": 3, "limit_s": 2.0}
QUICK = {"e2e_runs": 100, "procs_runs": 400, "tries": 1, "limit_s": 0.5}
TARGETS = {"e2e_vs_1": 0.5, "procs4_vs_4": 1.5}


def measure(
    quick: bool,
    directory: str,
    *,
    repeat: int | None = None,
    compare: str | None = None,
    say: Any = None,
) -> dict[str, Any]:
    say = say or (lambda text: None)
    sizes = QUICK if quick else FULL
    tries = repeat or sizes["tries"]
    codes: dict[str, str | None] = {"old": compare, "new": None} if compare else {"new": None}
    here_src = str(HERE.parent.parent / "src")
    bench = postgres.Bench(postgres.DEFAULT_URL if not os.environ.get(
        "PLAIT_BENCH_POSTGRES_URL") else os.environ["PLAIT_BENCH_POSTGRES_URL"])  # fmt: skip
    stores = e2e._Stores(directory)
    out: dict[str, Any] = {"quick": quick, "sizes": sizes, "repeat": tries,
                           "compared_with": compare, "load_before": os.getloadavg()}  # fmt: skip
    limits: dict[int, list[float]] = {1: [], 4: []}
    e2e_runs: dict[str, list[dict[str, Any]]] = {}
    procs_runs: dict[str, list[dict[str, Any]]] = {}
    saved = os.environ.get("PYTHONPATH")
    try:
        for _ in range(tries):
            for conns in (1, 4):
                limits[conns].append(bench.limit(conns, sizes["limit_s"])["commits_per_s"])
            for code, src in codes.items():  # alternating: old, new, old, new …
                r = e2e._in_child(src, "w1", stores.postgres(), sizes["e2e_runs"])
                e2e_runs.setdefault(code, []).append(r)
                stores.drop()
                os.environ["PYTHONPATH"] = src or here_src  # the worker processes' code
                try:
                    w = bench.w1(4, 0, sizes["procs_runs"])  # 0: the default concurrency
                finally:
                    if saved is None:
                        os.environ.pop("PYTHONPATH", None)
                    else:
                        os.environ["PYTHONPATH"] = saved
                procs_runs.setdefault(code, []).append(w)
            say(f"  try done: limits {limits[1][-1]:,.0f} / {limits[4][-1]:,.0f} commits/s")
    finally:
        stores.drop()
    out["load_after"] = os.getloadavg()
    limit1, limit4 = statistics.median(limits[1]), statistics.median(limits[4])
    out["limit"] = {"1": limit1, "4": limit4, "tries": {str(k): v for k, v in limits.items()}}
    for code in codes:
        e = [r["steps_per_s"] for r in e2e_runs[code]]
        p = [r["steps_per_s"] for r in procs_runs[code]]
        out[code] = {
            "e2e_steps_per_s": statistics.median(e),
            "e2e_vs_1": statistics.median(e) / limit1,
            "e2e_start_ms": statistics.median(r["start_ms"] for r in e2e_runs[code]),
            "e2e_execute_steps_per_s": statistics.median(
                r["execute_steps_per_s"] for r in e2e_runs[code]
            ),
            "e2e_result_ms": statistics.median(r["result_ms"] for r in e2e_runs[code]),
            "procs4_steps_per_s": statistics.median(p),
            "procs4_vs_4": statistics.median(p) / limit4,
            "e2e_tries": e2e_runs[code],
            "procs4_tries": procs_runs[code],
        }
    new = out["new"]
    out["targets"] = {
        "PostgreSQL W1 end to end, 1 process, defaults >= 0.5x the 1-connection limit": new[
            "e2e_vs_1"
        ]
        >= TARGETS["e2e_vs_1"],
        "PostgreSQL W1, 4 worker processes, defaults >= 1.5x the 4-connection limit": new[
            "procs4_vs_4"
        ]
        >= TARGETS["procs4_vs_4"],
    }
    return out


def table(results: dict[str, Any]) -> list[str]:
    limit = results["limit"]
    lines = [
        f"PostgreSQL W1 at the defaults (medians of {results['repeat']} tries); server limit "
        f"{limit['1']:,.0f} commits/s from 1 connection, {limit['4']:,.0f} from 4:"
    ]
    for code in ("old", "new"):
        if code not in results:
            continue
        r = results[code]
        label = f"{code}: " if "old" in results else ""
        lines.append(
            f"  {label}end to end, 1 process: {r['e2e_steps_per_s']:,.0f} steps/s = "
            f"{r['e2e_vs_1']:.2f}x (start {r['e2e_start_ms']:.2f} ms each, execution "
            f"{r['e2e_execute_steps_per_s']:,.0f} steps/s, result {r['e2e_result_ms']:.2f} ms "
            f"each); 4 worker processes: {r['procs4_steps_per_s']:,.0f} steps/s = "
            f"{r['procs4_vs_4']:.2f}x"
        )
    lines += [f"  target {k}: {'met' if ok else 'MISSED'}" for k, ok in results["targets"].items()]
    return lines


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="plait's worker cycle on PostgreSQL")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeat", type=int)
    parser.add_argument("--compare", help="another tree's src/: its tries alternate with these")
    parser.add_argument("--out", help="also write the results as JSON")
    args = parser.parse_args(argv)
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        results = measure(args.quick, directory, repeat=args.repeat, compare=args.compare,
                          say=print)  # fmt: skip
    print("\n".join(table(results)))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
