"""What every benchmark records beside its figures: the machine, the commit, the load average;
and the results file, which each script updates under its own key(s), keeping the others.

Imports nothing of plait at its top, so that importing it never decides which plait is measured.
"""

from __future__ import annotations

import json
import os
import platform
import sqlite3
import statistics
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SRC = ROOT / "src"
RESULTS = HERE / "results.json"


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import plait

    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
        "plait": plait.__version__,
    }


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=HERE,
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return None
    return out.stdout.strip() or None


def src_dirty() -> bool:
    """Uncommitted changes under src/ (the code measured is the working tree's)."""
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain", "src"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return False
    return bool(out.stdout.strip())


def load_average() -> float:
    return os.getloadavg()[0]


def best(tries: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The best try, annotated with the median and every value (noise shows)."""
    values = sorted(t[key] for t in tries)
    top = dict(max(tries, key=lambda t: t[key]))
    top["median"] = statistics.median(values)
    top["tries"] = values
    return top


def update_results(path: str | Path, results: dict[str, Any], drop: Iterable[str] = ()) -> None:
    """Write `results`' keys into the JSON file at `path`, keeping its other keys but `drop`."""
    out = Path(path)
    text = out.read_text() if out.exists() else ""
    previous = json.loads(text) if text.strip() else {}  # a new file (mktemp) is empty
    kept = {k: v for k, v in previous.items() if k not in set(drop)}
    out.write_text(json.dumps({**kept, **results}, indent=2) + "\n")
