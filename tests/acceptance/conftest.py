"""Acceptance tests: the `plait` command line in a subprocess, as a user runs it.

Each test works in its own temporary directory with its own SQLite file. Helpers wait on
conditions with deadlines; nothing sleeps to synchronise.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import IO, Any

import pytest

import plait

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
DEADLINE = 30.0  # seconds any single wait may take before the test fails


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


# A process forked while SIGINT and SIGQUIT are ignored in the test process inherits them
# ignored, and Python leaves them so: a `plait runs watch` deaf to Ctrl-C (seen in the full
# suite, never alone: /proc showed both ignored in the child; glibc's system(3) ignores exactly
# these two while it runs, and something in the suite's process does so meanwhile). A spawned
# command therefore sets them as an interactive shell would, then runs `python -m plait`.
DEFAULT_SIGNALS = (
    "import runpy, signal; "
    "signal.signal(signal.SIGINT, signal.default_int_handler); "
    "signal.signal(signal.SIGQUIT, signal.SIG_DFL); "
    "runpy.run_module('plait', run_name='__main__', alter_sys=True)"
)


class Cli:
    """Runs `python -m plait ...` in a working directory against one database."""

    def __init__(self, cwd: Path, db: str) -> None:
        self.cwd = cwd
        self.db = db
        # faulthandler: a process that hangs is sent SIGABRT and prints where each thread was
        self.env = {
            **os.environ,
            "PLAIT_DB": db,
            "PYTHONUNBUFFERED": "1",
            "PYTHONFAULTHANDLER": "1",
        }
        self.env.pop("PLAIT_LOG_LEVEL", None)

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "plait", *args]

    def __call__(self, *args: str, timeout: float = 60, stdin: str | None = None) -> Result:
        proc = subprocess.run(
            self.command(*args),
            cwd=self.cwd,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def many(self, commands: Sequence[Sequence[str]]) -> list[Result]:
        """Run independent commands at once (a few at a time); their results in order. For
        tests that give the same input to every command: each command is a process start."""
        with ThreadPoolExecutor(max_workers=4) as pool:
            return list(pool.map(lambda command: self(*command), commands))

    def spawn(self, *args: str) -> Spawned:
        """Start a long-running command (a worker); its output is collected as it comes. It
        starts with SIGINT and SIGQUIT as a terminal gives them (see DEFAULT_SIGNALS)."""
        proc = subprocess.Popen(
            [sys.executable, "-c", DEFAULT_SIGNALS, *args],
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        return Spawned(proc)


def _signal_masks(pid: int) -> str:
    """Each thread's pending, blocked, ignored and caught signals (from /proc), for a process
    that did not exit when told to."""
    lines = []
    for task in sorted(Path(f"/proc/{pid}/task").glob("*")):
        try:
            status = (task / "status").read_text().splitlines()
        except OSError:
            continue
        keep = ("Name", "SigQ", "SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt")
        lines.append(" ".join(line.replace("\t", "") for line in status if line.startswith(keep)))
    return "\n".join(lines)


class Spawned:
    """A CLI subprocess whose stdout and stderr are read by threads, so pipes never fill."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._read, args=(proc.stderr, self.err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: IO[str] | None, into: list[str]) -> None:
        assert stream is not None
        for line in stream:
            into.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self.err)

    def wait_for_stderr(self, text: str, timeout: float = DEADLINE) -> None:
        def seen() -> bool:
            if self.proc.poll() is not None and text not in self.stderr:
                pytest.fail(
                    f"process exited ({self.proc.returncode}) before printing {text!r}:\n"
                    f"{self.stderr}"
                )
            return text in self.stderr

        wait_for(seen, f"{text!r} on stderr", timeout)

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 15) -> int:
        """Wait for the process to exit (fails the test if it does not, after killing it)."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            signals = _signal_masks(self.proc.pid)
            self.proc.send_signal(signal.SIGABRT)  # its threads' tracebacks, on stderr
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            for reader in self._readers:
                reader.join(timeout=5)
            pytest.fail(
                f"process did not exit within {timeout}s; its threads' signals:\n{signals}\n"
                f"stderr:\n{self.stderr}"
            )
        for reader in self._readers:
            reader.join(timeout=5)
        return code

    def stop(self, timeout: float = 15) -> int:
        """SIGTERM, then wait for the exit code."""
        self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "runs.db"


@pytest.fixture
def db_url(db_path: Path) -> str:
    return f"sqlite:///{db_path}"  # absolute path: sqlite:////tmp/...


@pytest.fixture
def cli(tmp_path: Path, db_url: str) -> Cli:
    return Cli(tmp_path, db_url)


@pytest.fixture
def engine(db_url: str) -> Iterator[plait.Engine]:
    with plait.Engine(db_url) as eng:
        yield eng


@pytest.fixture
def write_app(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write a workflow module into the test's directory; returns its path."""

    def write(name: str, source: str) -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(source).lstrip(), encoding="utf-8")
        return path

    return write


def import_file(path: Path) -> ModuleType:
    """Import a workflow file in the test process (same source, so the same fingerprint)."""
    name = f"acceptance_{path.stem}_{abs(hash(str(path)))}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def wait_for(condition: Callable[[], Any], what: str, timeout: float = DEADLINE) -> Any:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    pause = 0.01
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(pause)  # polling interval of a deadline-bounded wait, not synchronisation
        pause = min(pause * 2, 0.2)


@pytest.fixture
def spawned() -> Iterator[list[Spawned]]:
    """Processes a test starts; any still running at its end are killed."""
    procs: list[Spawned] = []
    yield procs
    for proc in procs:
        proc.kill()
