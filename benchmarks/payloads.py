"""Large payloads (issue 21, item 11): the peak memory a big step output costs, in new processes.

    python benchmarks/payloads.py                         # 50 MB and 100 MB outputs
    python benchmarks/payloads.py --quick                 # a 5 MB output (CI: run.py --quick)
    python benchmarks/payloads.py --compare /other/src    # that tree too, alternating with this

A workload module of run.py (`measure`, `table`). One step returns a string of N bytes; each
figure is the peak RSS of a child process above the same process with a 1 KB output (so the
interpreter and plait's code are not counted), as a multiple of N, or in MB where the payload
should not count at all:

    API, worker       Engine.start + run_worker: the step runs, its output is committed
    API, read back    handle.result(): the run's output read and decoded (same process, next)
    plait run         the command: runs the step, reads the output back, prints it indented
    runs show         `plait runs show RUN`: prints one cut line of the output
    runs list         `plait runs list`: prints no payload at all

The worker's and the reader's peaks are VmHWM from /proc, reset between the two phases; the
commands' are the kernel's rusage of the child (ru_maxrss). SQLite, default settings.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import RESULTS, SRC, git_commit, load_average, machine, update_results  # noqa: E402

MB = 1_000_000
TINY = 1000  # bytes of the baseline's output
SIZES = [50 * MB, 100 * MB]
QUICK_SIZES = [5 * MB]
TRIES, QUICK_TRIES = 3, 1

WORKFLOW = """
import os
import plait

SIZE = int(os.environ["PAYLOAD_BYTES"])
wf = plait.Workflow("payload", version="1")

@wf.step()
def make() -> str:
    return "x" * SIZE
"""

API = """
import json, os, sys
sys.path.insert(0, ".")
import plait
from flow import wf

def peak():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM"))

def reset():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")

engine = plait.Engine(sys.argv[1])
engine.list_runs(limit=1)  # the store open, its schema made: counted in neither phase
reset(); before = peak()
run = engine.start(wf, {})
engine.run_worker(until=run)
worker = peak() - before
reset(); before = peak()
value = run.result(timeout=300)
read = peak() - before
assert len(value["make"]) == int(os.environ["PAYLOAD_BYTES"])
print(json.dumps({"api_worker": worker, "api_read": read}))
"""

FIGURES = ["api_worker", "api_read", "run", "show", "list"]
LABELS = {
    "api_worker": "API, worker (x)",
    "api_read": "API, read back (x)",
    "run": "plait run (x)",
    "show": "runs show (MB)",
    "list": "runs list (MB)",
}
IN_MB = {"show", "list"}


def _env(src: Path, size: int) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(src),
        "PAYLOAD_BYTES": str(size),
        "PLAIT_LOG_LEVEL": "warning",
    }


def _peak_rss(args: list[str], cwd: Path, env: dict[str, str]) -> int:
    proc = subprocess.Popen(
        args, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(proc.pid, 0)
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {stderr[-2000:]}")
    return usage.ru_maxrss * 1024


def _once(src: Path, size: int, folder: Path) -> dict[str, int]:
    """Peak bytes of each figure for one output size, in a fresh folder and database."""
    folder.mkdir(parents=True)
    (folder / "flow.py").write_text(textwrap.dedent(WORKFLOW))
    env = _env(src, size)
    db = f"sqlite:///{folder / 'api.db'}"
    out = subprocess.run(
        [sys.executable, "-c", API, db], cwd=folder, env=env, capture_output=True, text=True
    )
    if out.returncode != 0:
        raise RuntimeError(f"the API child failed: {out.stderr[-2000:]}")
    found: dict[str, int] = json.loads(out.stdout)
    db = f"sqlite:///{folder / 'cli.db'}"
    plait = [sys.executable, "-m", "plait"]
    found["run"] = _peak_rss(
        [*plait, "run", "flow.py:wf", "--db", db, "--run-id", "r"], folder, env
    )
    found["show"] = _peak_rss([*plait, "runs", "show", "r", "--db", db], folder, env)
    found["list"] = _peak_rss([*plait, "runs", "list", "--db", db], folder, env)
    return found


def measure(quick: bool, directory: str, sources: dict[str, Path] | None = None) -> dict[str, Any]:
    sources = sources or {"src": SRC}
    sizes = QUICK_SIZES if quick else SIZES
    tries = QUICK_TRIES if quick else TRIES
    raw: dict[str, dict[int, list[dict[str, int]]]] = {
        label: {size: [] for size in [TINY, *sizes]} for label in sources
    }
    n = 0
    for _ in range(tries):  # the trees alternate, try by try, so that they share the minutes
        for label, src in sources.items():
            for size in [TINY, *sizes]:
                n += 1
                raw[label][size].append(_once(src, size, Path(directory) / f"{n}"))
    out: dict[str, Any] = {"tries": tries, "sizes": sizes, "sources": {}}
    for label, src in sources.items():
        tiny = {f: statistics.median(t[f] for t in raw[label][TINY]) for f in FIGURES}
        rows: dict[str, Any] = {}
        for size in sizes:
            row: dict[str, Any] = {}
            for f in FIGURES:
                above = statistics.median(t[f] for t in raw[label][size]) - tiny[f]
                row[f] = round(above / MB, 1) if f in IN_MB else round(above / size, 2)
            rows[str(size)] = row
        first = rows[str(sizes[0])]
        out["sources"][label] = {
            "src": str(src),
            "baseline_mb": {f: round(tiny[f] / MB, 1) for f in FIGURES},
            "sizes": rows,
            # targets at the sizes they are about (a 5 MB output is near the allocator's noise)
            "targets": {}
            if quick
            else {
                f"a {sizes[0] // MB} MB output through the API: the worker holds it at most "
                "twice (<= 2.2x)": first["api_worker"] <= 2.2,
                "runs show and runs list read none of it (< 10 MB)": all(
                    r["show"] < 10 and r["list"] < 10 for r in rows.values()
                ),
            },
        }
    return out


def table(results: dict[str, Any]) -> list[str]:
    lines = [
        "large payloads: peak RSS above a 1 KB output, as a multiple of the output's size "
        f"(or MB), median of {results['tries']} tries; SQLite"
    ]
    for label, r in results["sources"].items():
        if len(results["sources"]) > 1:
            lines.append(f"  {label}: {r['src']}")
        lines.append(f"  {'':22s}" + "".join(f"{int(s) // MB:>9d} MB" for s in r["sizes"]))
        for f in FIGURES:
            cells = "".join(f"{row[f]:12.2f}" for row in r["sizes"].values())
            lines.append(f"  {LABELS[f]:22s}{cells}")
        for target, ok in r["targets"].items():
            lines.append(f"  target {target}: {'met' if ok else 'MISSED'}")
    return lines


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 5 MB output, one try")
    parser.add_argument("--compare", metavar="SRC", help="another src/ tree, measured alongside")
    parser.add_argument("--no-save", action="store_true", help="do not update results.json")
    args = parser.parse_args(argv)
    sources = {"src": SRC}
    if args.compare:
        sources = {"before": Path(args.compare).resolve(), "after": SRC}
    load = load_average()
    with tempfile.TemporaryDirectory() as directory:
        results = measure(args.quick, directory, sources)
    results.update(commit=git_commit(), machine=machine(), load=[load, load_average()])
    print("\n".join(table(results)))
    if not args.no_save and not args.quick:
        update_results(RESULTS, {"payloads": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
