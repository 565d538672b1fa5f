"""What the SQL programs make a pipelining driver (PostgreSQL) wait for: every statement whose
reply a program needs before it goes on is a round trip to the server. Driven without a server:
the ops a program yields are read, not run."""

from __future__ import annotations

from typing import Any

from plait.core.cascade import new_run
from plait.stores.sql.ops import EXECUTE, EXECUTE_ALL, FETCH, Program
from plait.stores.sql.programs import Programs, SQLTxn
from plait.stores.sql.queries import POSTGRES, Queries
from plait.testing.contract.helpers import NOW, chain

WAITED = (FETCH, EXECUTE, EXECUTE_ALL)  # kinds whose reply the program waits for


def _kinds(program: Program[Any], reply: Any = None) -> list[int]:
    kinds: list[int] = []
    try:
        op = next(program)
        while True:
            kinds.append(op[0])
            op = program.send([] if op[0] == FETCH else reply)
    except StopIteration:
        return kinds


def test_a_hopeful_start_on_postgresql_waits_for_nothing_before_its_commit() -> None:
    programs = Programs(Queries.of(POSTGRES), 1 << 16)
    plan = chain(length=3)
    runs = [new_run(plan, f"r{i}", b"{}", NOW) for i in range(2)]

    hopeful = _kinds(programs.create_runs(runs, careful=False, counted=False))
    counted = _kinds(programs.create_runs(runs, careful=False, counted=True), reply=2)

    assert hopeful and not [k for k in hopeful if k in WAITED]  # one round trip: the commit
    assert [k for k in counted if k in WAITED] == [EXECUTE_ALL]  # one more, for the count


def _queries(program: Program[Any]) -> list[str]:
    sent: list[str] = []
    try:
        op = next(program)
        while True:
            sent.append(op[1])
            op = program.send([] if op[0] == FETCH else 0)
    except StopIteration:
        return sent


def test_a_workers_commit_on_postgresql_sets_its_planner_settings_first_without_waiting() -> None:
    """A commit (alone, or with the claim that follows it) begins with the worker's planner
    settings (claim_session: its bulk writes probe by key, not hash the table), pipelined."""
    programs = Programs(Queries.of(POSTGRES), 1 << 16)
    session = programs.claim_session
    assert session is not None and "enable_hashjoin" in session

    def claim(done: SQLTxn) -> Program[Any]:
        return programs.claim("w", ["fp"], 4, 30.0, NOW, session=False, shared=done)

    alone = programs.complete([], NOW)
    paired = programs.complete_and_claim([], NOW, claim)
    for program in (alone, paired):
        first = next(program)
        assert first[1] == session and first[0] not in WAITED
    assert _queries(programs.complete_and_claim([], NOW, claim)).count(session) == 1
