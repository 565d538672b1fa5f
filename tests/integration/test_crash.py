"""Crash durability with real processes: workers SIGKILLed at random moments (DESIGN §3.4).

Every test runs on each store that outlives its processes: a fresh SQLite file, and a fresh schema
on the PostgreSQL test server (tests/postgres_server.py; skipped when there is none, a failure
under CI=true). On PostgreSQL "the victim is dead" also means that the server has ended the
victim's sessions (each worker names its connections), so nothing it sent can still commit.

A round works on a fresh store. It starts runs of `crash_app.crashy` (chains, a fan-out and
fan-in, a step that fails once and is retried, slow steps), starts a worker process, kills it with
SIGKILL at a random moment, starts another, and so on, KILLS_PER_ROUND times; then a last worker
serves until every run has ended. Right after each kill (the victim is dead, so what it committed
is in the store and nothing more will be) the test notes which steps are done.

Then it checks, from the store and from the journal that every handler writes (fsync'ed) before
returning:
- every run completed, with the output the workflow computes when nothing crashes;
- each step has exactly one `step_completed` event (`step_outcome_ignored` is allowed);
- a step that was done at a kill never ran again: all its journal lines come from the killed
  worker or from earlier ones, and its recorded output did not change;
- no handler ran after its step's completion was committed: every journal line of a step is older
  than its `step_completed` event, and the newest is from the worker and attempt that completed it;
- each handler ran at most (attempts + lease recoveries) times, so at most (attempts + kills).

`--crash-trials N` sets the number of kills (default 4, one round a store); PLAIT_CRASH_SEED replays a schedule.
"""

from __future__ import annotations

import math
import os
import random
import select
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

import plait
from tests import nats_server, postgres_server
from tests.integration._support import load_app, wait_for

APP = Path(__file__).with_name("crash_app.py")
KILLS_PER_ROUND = 4
RUNS_AHEAD = 3  # unfinished runs kept in the store whenever a worker starts, so kills hit work
LEASE = 1.0  # short, so that steps held by a killed worker are soon taken over
KILL_AFTER = (0.0, 0.8)  # seconds after the worker is ready: the random moment of the kill
DEADLINE = 90.0  # for any single wait in these tests
SEED = int(os.environ.get("PLAIT_CRASH_SEED") or random.SystemRandom().randrange(10**9))
SCHEMA_PREFIX = "plait_i_"  # PostgreSQL: each test has a schema of its own, dropped by name after


app = load_app(APP)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "crash_round" in metafunc.fixturenames:
        trials = metafunc.config.getoption("crash_trials", default=4)
        rounds = max(1, math.ceil(trials / KILLS_PER_ROUND))
        metafunc.parametrize("crash_round", range(rounds), ids=lambda i: f"round{i}")


@dataclass
class Proc:
    index: int  # 0, 1, 2 … in the order the workers were started
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid


class Harness:
    """A store, a journal, and the worker processes that serve them."""

    def __init__(
        self, tmp_path: Path, url: str, *, lease: float, max_recoveries: int, seed: int
    ) -> None:
        self.tmp = tmp_path
        self.url = url
        self.postgres = url.startswith("postgresql://")
        self.journal = tmp_path / "journal.jsonl"
        self.run_ids_file = tmp_path / "runs.txt"
        self.lease = lease
        self.max_recoveries = max_recoveries
        self.seed = seed
        self.engine = plait.Engine(self.url, lease=lease, max_recoveries=max_recoveries)
        for wf in app.WORKFLOWS:
            self.engine.register(wf)
        self.inputs: dict[str, int] = {}  # run id → input n
        self.procs: list[Proc] = []

    def close(self) -> None:
        for p in self.procs:
            if p.popen.poll() is None:
                p.popen.kill()
                p.popen.wait(timeout=DEADLINE)
            if p.popen.stdout is not None:
                p.popen.stdout.close()
        self.engine.close()

    # -- runs

    def start(self, workflow: plait.Workflow, n: int) -> str:
        run_id = f"{workflow.name}-{len(self.inputs)}"
        self.engine.start(workflow, {"n": n} if workflow is app.crashy else None, run_id=run_id)
        self.inputs[run_id] = n
        self.run_ids_file.write_text("".join(f"{r}\n" for r in self.inputs))
        return run_id

    def unfinished(self) -> list[str]:
        return [r for r in self.inputs if not self.engine.get_run(r).status.terminal]

    def done_steps(self) -> dict[tuple[str, str], Any]:
        """(run, step) → output of every step recorded as done."""
        return {
            (s.run_id, s.name): s.output
            for r in self.inputs
            for s in self.engine.steps(r)
            if s.status is plait.StepStatus.DONE
        }

    # -- workers

    def spawn(self) -> Proc:
        """Start a worker process serving every run so far; return once it is ready to claim."""
        index = len(self.procs)
        log = self.tmp / f"worker{index}.log"
        env = {**os.environ, "PGAPPNAME": self.app_name(index)}  # names its PostgreSQL sessions
        with log.open("wb") as err:
            popen = subprocess.Popen(
                [
                    sys.executable,
                    str(APP),
                    self.url,
                    str(self.journal),
                    str(self.run_ids_file),
                    "--lease",
                    str(self.lease),
                    "--max-recoveries",
                    str(self.max_recoveries),
                ],
                stdout=subprocess.PIPE,
                stderr=err,
                env=env,
            )
        proc = Proc(index, popen, log)
        self.procs.append(proc)
        assert popen.stdout is not None
        deadline = time.monotonic() + DEADLINE
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"worker {index} not ready within {DEADLINE}s\n{self.diagnose()}"
            readable, _, _ = select.select([popen.stdout], [], [], min(left, 1.0))
            if readable:
                line = popen.stdout.readline()
                if line == b"ready\n":
                    return proc
                assert line, f"worker {index} ended before it was ready\n{self.diagnose()}"

    def kill(self, proc: Proc) -> bool:
        """SIGKILL the worker and reap it; False if it had already ended by itself. On return,
        nothing the worker did can still change the store."""
        alive = proc.popen.poll() is None
        proc.popen.send_signal(signal.SIGKILL)
        proc.popen.wait(timeout=DEADLINE)
        self.wait_sessions_gone(proc)
        return alive

    def app_name(self, index: int) -> str:
        """The application_name of worker `index`'s PostgreSQL sessions (unique to this store)."""
        return f"{self.url.rsplit('schema=', 1)[-1]}_w{index}" if self.postgres else ""

    def wait_sessions_gone(self, proc: Proc) -> None:
        """PostgreSQL: wait until the server has ended the dead worker's sessions. A COMMIT it sent
        just before dying may still be executing; once its session is gone, nothing more will
        commit. (SQLite: a dead process writes nothing more.)"""
        if not self.postgres:
            return
        name = self.app_name(proc.index)
        with postgres_server.connect(self.url, autocommit=True) as conn:
            query = "select count(*) from pg_stat_activity where application_name = %s"
            _wait_for(self, lambda: conn.execute(query, (name,)).fetchone(), lambda r: r == (0,))

    def freeze(self, proc: Proc) -> None:
        """SIGSTOP the worker. On PostgreSQL, only between two of its transactions: frozen inside
        one, it would keep its row locks, and every other worker's lease recovery would wait for
        them (no lock or idle-in-transaction timeout), so the take-over under test could not
        happen. Thawed and frozen again until then."""
        deadline = time.monotonic() + DEADLINE
        while True:
            proc.popen.send_signal(signal.SIGSTOP)
            if not self.postgres:
                return
            time.sleep(0.02)  # the server finishes what the worker sent just before it stopped
            query = "select state from pg_stat_activity where application_name = %s"
            with postgres_server.connect(self.url, autocommit=True) as conn:
                states = conn.execute(query, (self.app_name(proc.index),)).fetchall()
            if states and all(state == "idle" for (state,) in states):
                return
            proc.popen.send_signal(signal.SIGCONT)
            assert time.monotonic() < deadline, f"never caught between transactions: {states}"
            time.sleep(random.uniform(0.0, 0.02))

    def wait_exit(self, proc: Proc) -> int:
        try:
            return proc.popen.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            pytest.fail(f"worker {proc.index} did not end within {DEADLINE}s\n{self.diagnose()}")

    # -- evidence

    def journal_lines(self) -> list[dict[str, Any]]:
        if not self.journal.exists():
            return []
        return [orjson.loads(line) for line in self.journal.read_bytes().splitlines()]

    def diagnose(self) -> str:
        parts = [f"replay with PLAIT_CRASH_SEED={SEED} (round seed {self.seed}); store {self.url}"]
        for p in self.procs:
            tail = p.log.read_text(errors="replace")[-2000:] if p.log.exists() else ""
            parts.append(f"--- worker {p.index} pid {p.pid} exit {p.popen.returncode}\n{tail}")
        return "\n".join(parts)


@pytest.fixture(params=["sqlite", "postgres", "nats"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty store that outlives its processes; a PostgreSQL schema is dropped after;
    on NATS, a namespace of its own on the session's nats-server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'crash.db'}"
        return
    if request.param == "nats":
        yield f"{nats_server.require_server_url()}?namespace={nats_server.namespace_for(str(tmp_path))}"
        return
    base = postgres_server.require_server_url()
    url = postgres_server.fresh_schema_url(base, SCHEMA_PREFIX)
    try:
        yield url
    finally:
        drop_schema(base, url)


def drop_schema(base: str, url: str) -> None:
    """Drop the schema named by url's `schema=`, and only it: others may share the server. (Its
    name, prefix + 12 hex digits, is no other fresh schema's prefix.)"""
    schema = url.rsplit("schema=", 1)[-1]
    assert schema.startswith(SCHEMA_PREFIX) and len(schema) == len(SCHEMA_PREFIX) + 12, url
    dropped = postgres_server.drop_schemas(base, schema)
    assert dropped in ([], [schema]), dropped  # [] if the test ended before the store opened


@pytest.fixture
def harness_factory(tmp_path: Path, store_url: str) -> Iterator[Any]:
    made: list[Harness] = []

    def make(**kwargs: Any) -> Harness:
        h = Harness(tmp_path, store_url, **kwargs)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


def _worker_pid(worker_id: object) -> int:
    # worker ids are "host:pid:random"
    assert isinstance(worker_id, str), worker_id
    return int(worker_id.rsplit(":", 2)[-2])


def test_sigkilled_workers_lose_no_outcome_and_rerun_no_completed_step(
    harness_factory: Any, crash_round: int
) -> None:
    seed = SEED * 1000 + crash_round
    print(f"replay with PLAIT_CRASH_SEED={SEED}")  # shown by pytest when the test fails
    rng = random.Random(seed)
    h: Harness = harness_factory(lease=LEASE, max_recoveries=100, seed=seed)

    # -- the experiment: kill workers at random moments, keeping work in the store
    snapshots: list[tuple[Proc, dict[tuple[str, str], Any]]] = []  # victim, steps done at its death
    while len(snapshots) < KILLS_PER_ROUND:
        while len(h.unfinished()) < RUNS_AHEAD:
            h.start(app.crashy, rng.randrange(1000))
        proc = h.spawn()
        time.sleep(rng.uniform(*KILL_AFTER))  # the random moment (the experiment, not a sync)
        if h.kill(proc):  # if it had finished every run first, that was no trial: go again
            snapshots.append((proc, h.done_steps()))
        assert len(h.procs) < 4 * KILLS_PER_ROUND, (
            f"workers keep ending before their kill\n{h.diagnose()}"
        )
    last = h.spawn()
    assert h.wait_exit(last) == 0, f"the last worker failed\n{h.diagnose()}"

    # -- every run completed, with the output of a crash-free execution
    for run_id, n in h.inputs.items():
        run = h.engine.get_run(run_id)
        assert run.status is plait.RunStatus.COMPLETED, (
            f"{run_id}: {run.status} {run.error}\n{h.diagnose()}"
        )
        assert run.output == app.expected_output(n), (run_id, run.output, n)

    journal: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for line in h.journal_lines():
        journal[(line["run"], line["step"])].append(line)
    index_of = {p.pid: p.index for p in h.procs}
    assert len(index_of) == len(h.procs), "a pid was reused: rerun the round"
    for lines in journal.values():
        lines.sort(key=lambda x: x["t"])
        assert all(x["pid"] in index_of for x in lines), lines

    victims = {victim.index for victim, _ in snapshots}
    final = h.done_steps()
    recoveries_total = 0
    for run_id in h.inputs:
        events = h.engine.events(run_id)
        assert [e.seq for e in events] == list(range(1, len(events) + 1)), f"{run_id}: seq gaps"
        for step in h.engine.steps(run_id):
            key = (run_id, step.name)
            mine = [e for e in events if e.step == step.name]
            completed = [e for e in mine if e.type == "step_completed"]
            assert len(completed) == 1, (key, [(e.seq, e.type, e.payload) for e in mine])
            done = completed[0]
            started = [e for e in mine if e.type == "step_started" and e.seq < done.seq]
            assert started, (key, "completed without a start")
            expired = [e for e in mine if e.type == "step_lease_expired"]
            recoveries = len(expired)
            # a lease expires only when its worker died: once per step and killed worker
            holders = [index_of.get(_worker_pid(e.payload["worker"])) for e in expired]
            assert all(i in victims for i in holders), (
                key,
                "lease of a live worker expired",
                expired,
            )
            assert len(set(holders)) == len(holders), (key, "expired twice for one worker", expired)
            recoveries_total += recoveries
            lines = journal[key]
            assert lines, (key, "recorded done, but its handler never ran")
            # no execution after the completion was committed …
            late = [x for x in lines if x["t"] > done.ts.timestamp()]
            assert not late, (key, "handler ran after its completion was committed", late, done)
            # … and the recorded outcome is that of the last execution
            assert lines[-1]["pid"] == _worker_pid(started[-1].payload["worker"]), (
                key,
                lines,
                started[-1],
            )
            assert lines[-1]["attempt"] == done.payload["attempt"] == step.attempts, (
                key,
                lines,
                done,
            )
            # at least once, but no more than the attempts plus the kills that interrupted it
            assert len(lines) <= step.attempts + recoveries, (key, step.attempts, recoveries, lines)
            assert len(lines) <= step.attempts + len(snapshots), (key, lines)
            if step.name == "flaky":
                assert step.attempts == 2, (key, "flaky fails once, then succeeds", mine)
                assert any(e.type == "step_retrying" for e in mine), (key, mine)
            else:
                assert step.attempts == 1, (key, mine)

    # -- what was done when a worker died stays done, and never runs again
    for victim, done_then in snapshots:
        for key, output in done_then.items():
            assert final[key] == output, (key, "a recorded output changed after a crash")
            again = [x for x in journal[key] if index_of[x["pid"]] > victim.index]
            assert not again, (key, f"ran again after worker {victim.index} was killed", again)

    # the kills did land mid-step (otherwise this round proved little)
    assert recoveries_total >= 1, f"no kill interrupted a step\n{h.diagnose()}"


def test_step_that_kills_its_worker_fails_with_lease_expired(harness_factory: Any) -> None:
    max_recoveries = 2
    h: Harness = harness_factory(lease=1.0, max_recoveries=max_recoveries, seed=SEED)
    run_id = h.start(app.suicidal, 0)

    deadline = time.monotonic() + DEADLINE
    while not h.engine.get_run(run_id).status.terminal:
        assert time.monotonic() < deadline, f"run did not end\n{h.diagnose()}"
        assert len(h.procs) <= max_recoveries + 2, f"too many workers died\n{h.diagnose()}"
        h.wait_exit(h.spawn())  # it kills itself in `die`, or ends once the run has ended

    run = h.engine.get_run(run_id)
    assert run.status is plait.RunStatus.FAILED
    steps = {s.name: s for s in h.engine.steps(run_id)}
    assert steps["before"].status is plait.StepStatus.DONE
    die = steps["die"]
    assert die.status is plait.StepStatus.FAILED
    assert die.error is not None and die.error.code == "lease_expired", die.error
    assert f"max_recoveries={max_recoveries}" in str(die.error)
    assert steps["after"].status is plait.StepStatus.SKIPPED
    with pytest.raises(plait.RunFailed):
        plait.RunHandle(h.engine, run_id).result(timeout=DEADLINE)

    # it ran once per lease: the first, then one per recovery; each time in a worker it killed
    ran = [x for x in h.journal_lines() if x["step"] == "die"]
    assert len(ran) == max_recoveries + 1, ran
    killed = {p.pid for p in h.procs if p.popen.returncode == -signal.SIGKILL}
    assert {x["pid"] for x in ran} == killed and len(killed) == max_recoveries + 1, (
        ran,
        h.diagnose(),
    )
    kinds = [e.type for e in h.engine.events(run_id) if e.step == "die"]
    assert kinds.count("step_lease_expired") == max_recoveries, kinds
    assert kinds[-1] == "step_failed", kinds


def test_outcome_of_a_worker_that_lost_its_lease_is_fenced(harness_factory: Any) -> None:
    """A worker frozen (SIGSTOP) mid-step loses its lease; another worker runs the step and
    records it; when the first one thaws and reports, its outcome is ignored, and logged so."""
    h: Harness = harness_factory(lease=LEASE, max_recoveries=10, seed=SEED)
    run_id = h.start(app.frozen, 0)
    a = h.spawn()
    _wait_for(h, lambda: _step(h, run_id, "slow").worker, lambda w: w and _worker_pid(w) == a.pid)
    h.freeze(a)
    try:
        b = h.spawn()
        assert h.wait_exit(b) == 0, h.diagnose()  # b took the step over and finished the run
    finally:
        a.popen.send_signal(signal.SIGCONT)
    assert h.wait_exit(a) == 0, h.diagnose()  # a reported, was fenced off, saw the run ended

    assert plait.RunHandle(h.engine, run_id).result(timeout=DEADLINE) == {"slow": b.pid}
    events = [e for e in h.engine.events(run_id) if e.step == "slow"]
    kinds = [e.type for e in events]
    assert kinds.count("step_completed") == 1, kinds
    assert "step_lease_expired" in kinds, kinds
    ignored = [e for e in events if e.type == "step_outcome_ignored"]
    assert len(ignored) == 1 and ignored[0].payload["reason"] == "step is done", kinds
    assert ignored[0].seq > next(e.seq for e in events if e.type == "step_completed")
    ran = [x["pid"] for x in h.journal_lines()]
    assert sorted(ran) == sorted([a.pid, b.pid]), ran  # at least once: both executions happened


def _step(h: Harness, run_id: str, name: str) -> plait.Step:
    return next(s for s in h.engine.steps(run_id) if s.name == name)


def _wait_for(h: Harness, read: Any, ok: Any, timeout: float = DEADLINE) -> Any:
    return wait_for(read, ok, "condition", h.diagnose, timeout)
