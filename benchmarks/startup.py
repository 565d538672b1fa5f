"""Start-up: what a new process pays before it does anything (issue 14, target 6).

    python benchmarks/startup.py                 # 21 rounds
    python benchmarks/startup.py --quick         # 3 rounds: a smoke test
    python benchmarks/startup.py --compare OLD/src NEW/src   # two trees, rounds interleaved

Each start is a fresh process of this interpreter, timed from spawn to exit, with `src/` of the
tree measured first on PYTHONPATH:

    bare interpreter       python -c pass  (site and .pth files included: the floor)
    import plait           python -c "import plait"
    every public name      import plait, then getattr(plait, name) for name in plait.__all__
    plait --help           python -m plait --help
    plait runs list --help python -m plait runs list --help

Two ways, each start timed both ways in every round:
- "cached": bytecode cached, as for a package pip installed. The children write and read their
  .pyc files under a private `PYTHONPYCACHEPREFIX`, warmed by two runs of every start first.
- "source": plait's own modules compiled from source at every start (the other packages'
  bytecode still cached), as in a source checkout run with PYTHONDONTWRITEBYTECODE=1, which is
  how this repository's development machines run it.
Every round runs every start once each way, in a shuffled order, so a shared machine's drifts
fall on all alike; the median of the rounds is reported, and "above bare" subtracts the bare
interpreter's median of the same run and way. One more run of each start with `-X importtime`
says which heavy packages it imported and how many modules.

Used by `benchmarks/run.py` (`measure`, `table`); alone, it prints its lines and writes the
"startup" key of the results file (the other keys are kept).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import RESULTS, SRC, load_average, update_results  # noqa: E402

STARTS: dict[str, list[str]] = {
    "bare interpreter": ["-c", "pass"],
    "import plait": ["-c", "import plait"],
    "every public name": ["-c", "import plait\nfor name in plait.__all__: getattr(plait, name)"],
    "plait --help": ["-m", "plait", "--help"],
    "plait runs list --help": ["-m", "plait", "runs", "list", "--help"],
}
# what each start is checked for: the third-party packages, and asyncio (~20 ms of the stdlib)
HEAVY = ("pydantic", "rich", "click", "orjson", "asyncio", "sqlite3", "psycopg")
TARGETS = {  # milliseconds, medians (issue 14: 6)
    "import plait": ("above bare", 100.0),
    "plait --help": ("total", 250.0),
}  # both with bytecode cached
ROUNDS, QUICK_ROUNDS = 21, 3


WAYS = ("cached", "source")


def _env(src: Path, cache: Path, way: str = "cached") -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if way == "source":
        env["PYTHONDONTWRITEBYTECODE"] = "1"  # and plait's .pyc files were deleted: see measure
    env["PYTHONPYCACHEPREFIX"] = str(cache)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(src), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    )
    env["COLUMNS"] = "100"  # the same help text whatever the terminal
    return env


def _start(args: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=False,
    )
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{args} exited with {proc.returncode}:\n{proc.stderr.decode()[-2000:]}")
    return elapsed


def _imports(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    """The modules one start imports (`-X importtime`): how many, and which heavy ones."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=True,
    )
    names = [
        line.rsplit("|", 1)[1].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:") and line.count("|") == 2
    ][1:]  # the header
    tops = {name.split(".")[0] for name in names}
    return {
        "modules": len(names),
        "plait_modules": sum(1 for n in names if n == "plait" or n.startswith("plait.")),
        "heavy": [h for h in HEAVY if h in tops],
    }


def measure(quick: bool, directory: str, sources: dict[str, Path] | None = None) -> dict[str, Any]:
    """Medians of `rounds` starts of each command, for each source tree (default: this one)."""
    sources = sources or {"src": SRC}
    rounds = QUICK_ROUNDS if quick else ROUNDS
    envs: dict[tuple[str, str], dict[str, str]] = {}
    jobs = [(label, way, name) for label in sources for way in WAYS for name in STARTS]
    for i, (label, src) in enumerate(sources.items()):
        for way in WAYS:  # a bytecode cache of each way's own, warmed up with the bytecode of all
            cache = Path(directory) / f"pycache-{i}-{way}"
            for _ in range(2):  # the file system's caches warm up too
                for name in STARTS:
                    _start(STARTS[name], _env(src, cache, "cached"))
            if way == "source":  # plait's own bytecode is deleted and never written again
                shutil.rmtree(cache / src.relative_to(src.anchor))
            envs[label, way] = _env(src, cache, way)
    times: dict[tuple[str, str, str], list[float]] = {job: [] for job in jobs}
    rng = random.Random(14)
    for _ in range(rounds):
        rng.shuffle(jobs)
        for label, way, name in jobs:
            times[label, way, name].append(_start(STARTS[name], envs[label, way]))
    out: dict[str, Any] = {"rounds": rounds, "sources": {}}
    for label, src in sources.items():
        rows: dict[str, Any] = {}
        for name, args in STARTS.items():
            rows[name] = _imports(args, envs[label, "cached"])
            for way in WAYS:
                bare = statistics.median(times[label, way, "bare interpreter"]) * 1000
                ms = sorted(t * 1000 for t in times[label, way, name])
                median = statistics.median(ms)
                rows[name][way] = {
                    "median_ms": median,
                    "above_bare_ms": median - bare,
                    "min_ms": ms[0],
                    "max_ms": ms[-1],
                }
        targets = {}
        for name, (kind, limit) in TARGETS.items():
            value = rows[name]["cached"]["above_bare_ms" if kind == "above bare" else "median_ms"]
            targets[f"{name}: {kind} <= {limit:.0f} ms"] = value <= limit
        out["sources"][label] = {"src": str(src), "starts": rows, "targets": targets}
    if len(sources) == 1:
        out["targets"] = targets
    return out


def table(results: dict[str, Any]) -> list[str]:
    lines = [
        f"start-up: a new process, ms, median of {results['rounds']} starts; bytecode cached, "
        "and plait compiled from source"
    ]
    for label, r in results["sources"].items():
        if len(results["sources"]) > 1:
            lines.append(f"  {label}: {r['src']}")
        lines.append(
            f"  {'':24s} {'cached':>7s} {'above':>7s} {'source':>8s} {'above':>7s} "
            f"{'modules':>8s}  heavy packages imported"
        )
        for name, row in r["starts"].items():
            cached, source = row["cached"], row["source"]
            lines.append(
                f"  {name:24s} {cached['median_ms']:7.1f} {cached['above_bare_ms']:7.1f} "
                f"{source['median_ms']:8.1f} {source['above_bare_ms']:7.1f} "
                f"{row['modules']:8d}  {', '.join(row['heavy']) or '-'}"
            )
        for target, ok in r["targets"].items():
            lines.append(f"  target {target}: {'met' if ok else 'MISSED'}")
    return lines


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_ROUNDS} rounds")
    parser.add_argument(
        "--out", help=f"results file (its 'startup' key; default {RESULTS}, none with --compare)"
    )
    parser.add_argument(
        "--compare", nargs="+", metavar="SRC", help="source trees to measure side by side"
    )
    args = parser.parse_args(argv)
    sources = (
        {
            f"{i}:{Path(s).resolve().parent.name}": Path(s).resolve()
            for i, s in enumerate(args.compare)
        }
        if args.compare
        else None
    )
    load = load_average()
    with tempfile.TemporaryDirectory(prefix="plait-startup-") as tmp:
        results = measure(args.quick, tmp, sources)
    results["load_average"] = {"before": load, "after": load_average()}
    print("\n".join(table(results)))
    print(f"load average {load:.2f} -> {results['load_average']['after']:.2f}")
    out = args.out or (None if args.compare else RESULTS)
    if out is not None:
        update_results(out, {"startup": results})
        print(f"written to {out} (key 'startup')")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
