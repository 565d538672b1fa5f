"""Many worker processes on one PostgreSQL database, and a server restarted under them.

The workers are `plait worker pg_app.py --db postgresql://…` processes (the command line, as
deployed), each with its stderr in a file; the test starts runs of `pg_app.mixed` (chains, a
fan-out, retries, an optional failure with a fallback) and `pg_app.doomed` (a failing run) from
its own process, and reads the outcome from the store and from the journal every handler writes
(fsync'ed) before it returns.

- test_four_workers_share_a_mixed_workload: 4 workers, no faults. Every run ends as the workflow
  says (outputs, statuses), each step has exactly one outcome event of the right kind and ran
  exactly once per attempt (SKIP LOCKED claims never hand a step to two workers), all 4 workers
  did work, and SIGTERM stops each one cleanly.
- test_workers_ride_out_a_server_restart: a throwaway server (never the shared one) is stopped in
  the middle of a workload (`pg_ctl stop -m fast`, or `immediate`: a crash) and started again once
  every worker has noticed. The workers survive it, log that the store is unavailable and that
  it is reachable again, lose nothing that was committed, and every run completes as if nothing
  had happened (a step may run again, but it has one outcome).

Skipped without a PostgreSQL server (and initdb for the restart), except under CI=true.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest

import plait
from tests import postgres_server
from tests.integration._support import load_app
from tests.integration._support import wait_for as shared_wait_for

APP = Path(__file__).with_name("pg_app.py")
SCHEMA_PREFIX = "plait_i_"
DEADLINE = 90.0  # for any single wait in these tests
LEASE = 1.0  # in the restart test: short, so that the leases held when the server stops expire
T = TypeVar("T")


app = load_app(APP)


def wait_for(read: Callable[[], T], ok: Callable[[T], bool], what: str, diagnose: Any) -> T:
    return shared_wait_for(read, ok, what, diagnose, DEADLINE, max_pause=0.1)


@dataclass
class Worker:
    index: int
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class Fleet:
    """A store, the runs started in it, and `plait worker` processes serving it."""

    def __init__(self, tmp: Path, url: str, *, lease: float, pause: float) -> None:
        self.tmp, self.url, self.lease, self.pause = tmp, url, lease, pause
        self.journal = tmp / "journal.jsonl"
        self.engine = plait.Engine(url, lease=lease)
        for wf in app.WORKFLOWS:
            self.engine.register(wf)
        self.runs: dict[str, tuple[str, int]] = {}  # run id → (workflow, input n)
        self.workers: list[Worker] = []

    def close(self) -> None:
        for w in self.workers:
            if w.popen.poll() is None:
                w.popen.kill()
                w.popen.wait(timeout=DEADLINE)
        self.engine.close()

    # -- runs

    def start(self, workflow: plait.Workflow, n: int) -> str:
        run_id = f"{workflow.name}-{len(self.runs)}"
        self.engine.start(workflow, {"n": n}, run_id=run_id)
        self.runs[run_id] = (workflow.name, n)
        return run_id

    def unfinished(self) -> list[str]:
        return [r for r in self.runs if not self.engine.get_run(r).status.terminal]

    def wait_all_ended(self) -> None:
        left = set(self.runs)

        def read() -> set[str]:
            left.difference_update(r for r in list(left) if self.engine.get_run(r).status.terminal)
            return left

        wait_for(read, lambda rest: not rest, "every run ended", self.diagnose)

    def done_steps(self) -> dict[tuple[str, str], Any]:
        return {
            (s.run_id, s.name): s.output
            for r in self.runs
            for s in self.engine.steps(r)
            if s.status is plait.StepStatus.DONE
        }

    # -- workers

    def spawn(self, concurrency: int = 4) -> Worker:
        index = len(self.workers)
        log = self.tmp / f"worker{index}.log"
        cmd = [sys.executable, "-c", "from plait.cli import main; main()", "worker", str(APP)]
        cmd += ["--db", self.url, "--lease", str(self.lease), "--concurrency", str(concurrency)]
        cmd += ["--grace", "10", "--log-level", "info"]
        env = {
            **os.environ,
            app.JOURNAL_ENV: str(self.journal),
            app.PAUSE_ENV: str(self.pause),
            "PYTHONUNBUFFERED": "1",
        }
        with log.open("wb") as err:
            popen = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=err, env=env)
        worker = Worker(index, popen, log)
        self.workers.append(worker)
        return worker

    def wait_logged(self, worker: Worker, text: str) -> None:
        def read() -> str:
            assert worker.popen.poll() is None, f"worker {worker.index} ended\n{self.diagnose()}"
            return worker.text()

        wait_for(
            read, lambda log: text in log, f"worker {worker.index} logs {text!r}", self.diagnose
        )

    def stop_all(self) -> None:
        """SIGTERM every worker; each must stop cleanly (exit 0, 'stopped')."""
        for w in self.workers:
            w.popen.send_signal(signal.SIGTERM)
        for w in self.workers:
            try:
                code = w.popen.wait(timeout=DEADLINE)
            except subprocess.TimeoutExpired:
                pytest.fail(f"worker {w.index} ignored SIGTERM\n{self.diagnose()}")
            assert code == 0, f"worker {w.index} exited {code}\n{self.diagnose()}"
            assert "plait worker: stopped" in w.text(), self.diagnose()

    # -- evidence

    def journal_lines(self) -> dict[tuple[str, str], list[dict[str, Any]]]:
        lines: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        if self.journal.exists():
            for raw in self.journal.read_bytes().splitlines():
                line = orjson.loads(raw)
                lines[(line["run"], line["step"])].append(line)
        for each in lines.values():
            each.sort(key=lambda x: x["t"])
        return lines

    def diagnose(self) -> str:
        parts = [f"store {self.url}"]
        for w in self.workers:
            parts.append(
                f"--- worker {w.index} pid {w.pid} exit {w.popen.returncode}\n{w.text()[-3000:]}"
            )
        return "\n".join(parts)

    # -- the checks both tests make

    def check_outcomes(self, *, exactly_once: bool) -> dict[str, int]:
        """Every run ended as its workflow says, and every step has exactly one outcome event,
        of the right kind, after the right number of attempts; its handler ran once per attempt
        (`exactly_once`) or at least so, and never after its outcome was committed. Returns how
        many handler executions each worker pid made."""
        journal = self.journal_lines()
        pids = {w.pid for w in self.workers}
        ran_by: Counter[int] = Counter()
        for run_id, (workflow, n) in self.runs.items():
            run = self.engine.get_run(run_id)
            expected = app.expected_output(workflow, n)
            if expected is None:
                assert run.status is plait.RunStatus.FAILED, (run_id, run.status, run.error)
            else:
                assert run.status is plait.RunStatus.COMPLETED, (run_id, run.status, run.error)
                assert run.output == expected, (run_id, run.output, expected)
            events = self.engine.events(run_id)
            assert [e.seq for e in events] == list(range(1, len(events) + 1)), f"{run_id}: seq gaps"
            ends = [e.type for e in events if e.type in ("run_completed", "run_failed")]
            assert ends == ["run_completed" if expected else "run_failed"], (run_id, ends)
            steps = {s.name: s for s in self.engine.steps(run_id)}
            outcomes = app.expected_steps(workflow)
            assert set(steps) == set(outcomes), (run_id, sorted(steps))
            for name, (kind, attempts) in outcomes.items():
                key = (run_id, name)
                mine = [e for e in events if e.step == name]
                ends = [e for e in mine if e.type in (app.COMPLETED, app.FAILED, app.SKIPPED)]
                assert [e.type for e in ends] == [kind], (key, [(e.seq, e.type) for e in mine])
                assert steps[name].attempts == attempts, (key, steps[name].attempts, mine)
                retrying = [e for e in mine if e.type == "step_retrying"]
                assert len(retrying) == max(attempts - 1, 0), (key, [e.type for e in mine])
                lines = journal.get(key, [])
                assert all(x["pid"] in pids for x in lines), (key, lines, pids)
                ran_by.update(x["pid"] for x in lines)
                tried = sorted({x["attempt"] for x in lines})
                assert tried == list(range(1, attempts + 1)), (key, "attempts that ran", lines)
                if exactly_once:
                    assert len(lines) == attempts, (key, "ran more than once an attempt", lines)
                    assert not [e for e in mine if e.type == "step_lease_expired"], (key, mine)
                    assert len([e for e in mine if e.type == "step_started"]) == attempts, mine
                if lines:
                    end = ends[0]
                    late = [x for x in lines if x["t"] > end.ts.timestamp()]
                    assert not late, (key, "ran after its outcome was committed", late, end)
                    assert lines[-1]["attempt"] == attempts, (key, lines)
        return dict(ran_by)


@pytest.fixture
def schema_url() -> Iterator[str]:
    """A fresh schema on the shared test server, dropped after (by its exact name)."""
    base = postgres_server.require_server_url()
    url = postgres_server.fresh_schema_url(base, SCHEMA_PREFIX)
    schema = url.rsplit("schema=", 1)[-1]
    assert len(schema) == len(SCHEMA_PREFIX) + 12, url  # so no other fresh schema starts with it
    try:
        yield url
    finally:
        dropped = postgres_server.drop_schemas(base, schema)
        assert dropped in ([], [schema]), dropped  # [] if the test ended before the store opened


@pytest.fixture
def cluster() -> Iterator[postgres_server.Cluster]:
    """A throwaway server of this test's own, which it may stop and start."""
    if postgres_server.find_bin_dir() is None:
        postgres_server.skip_or_fail(f"initdb and pg_ctl not found; {postgres_server.HOW_TO}")
    made = postgres_server.Cluster.create()
    try:
        made.start()
        yield made
    finally:
        made.destroy()


def test_four_workers_share_a_mixed_workload(
    fleet_factory: Callable[..., Fleet], schema_url: str
) -> None:
    fleet = fleet_factory(schema_url, lease=10.0, pause=0.01)  # no faults: no lease may expire
    workers = [fleet.spawn() for _ in range(4)]
    for w in workers:
        fleet.wait_logged(w, "serving")  # all four compete for the work from the first run on
    for i in range(32):
        fleet.start(app.doomed if i % 4 == 3 else app.mixed, 1000 + i)
    fleet.wait_all_ended()

    ran_by = fleet.check_outcomes(exactly_once=True)
    idle = [w.index for w in workers if ran_by.get(w.pid, 0) == 0]
    assert not idle, (f"workers {idle} ran nothing", ran_by)
    fleet.stop_all()
    for w in workers:
        assert " ERROR " not in w.text() and "Traceback" not in w.text(), fleet.diagnose()
        assert "fenced off" not in w.text(), fleet.diagnose()


@pytest.mark.parametrize("mode", ["fast", "immediate"])  # a restart; a crash of the server
def test_workers_ride_out_a_server_restart(
    cluster: postgres_server.Cluster,  # first: set up before the fleet, torn down after it
    fleet_factory: Callable[..., Fleet],
    mode: postgres_server.StopMode,
) -> None:
    url = postgres_server.fresh_schema_url(cluster.url, SCHEMA_PREFIX)
    fleet = fleet_factory(url, lease=LEASE, pause=0.15)
    for i in range(12):
        fleet.start(app.doomed if i % 4 == 3 else app.mixed, 2000 + i)
    total = sum(len(app.expected_steps(wf)) for wf, _ in fleet.runs.values())
    workers = [fleet.spawn() for _ in range(3)]

    # stop the server in the middle of the workload: some steps done, many not
    wait_for(
        lambda: len(fleet.done_steps()),
        lambda done: done >= total // 5,
        "a fifth of the steps done",
        fleet.diagnose,
    )
    before = fleet.done_steps()
    seen_at = time.time()  # any handler execution of those steps later than this is a rerun
    assert len(before) < total * 3 // 4, "the workload ended too soon to be interrupted"
    cluster.stop(mode)
    down_at = time.monotonic()
    for w in workers:  # each notices, through a failed store call of its own
        fleet.wait_logged(w, "failed, will retry")
    # the experiment: down for at least a few leases, so that those held at the stop expire
    time.sleep(max(0.0, down_at + 3 * LEASE - time.monotonic()))
    cluster.start()

    fleet.wait_all_ended()
    fleet.check_outcomes(exactly_once=False)

    # nothing committed before the stop was lost (even by a crash), changed, or ran again
    journal = fleet.journal_lines()
    after = fleet.done_steps()
    for key, output in before.items():
        assert after[key] == output, (key, "a recorded output changed", output, after[key])
        again = [x for x in journal[key] if x["t"] > seen_at]
        assert not again, (key, "done before the stop, ran again after it", again)

    # the logs say what happened, in that order
    for w in workers:
        fleet.wait_logged(w, "store reachable again")
        fleet.wait_logged(w, "notifications restored")
        log = w.text()
        lost = log.index("notification connection lost")
        down = log.index("failed, will retry")
        assert log.index("store reachable again") > down, log
        assert log.index("notifications restored") > lost, log
    fleet.stop_all()
