"""The query layer shared by the SQL stores (SQLite now, PostgreSQL later): named queries read from
`.sql` files, a small dialect hook, and the conversions between records and rows.

All SQL lives in `stores/sql/`:

    schema.sql                  the schema as it is now
    migrations/NNNN_name.sql    numbered steps from an empty database to schema.sql
    queries.sql                 named queries: `-- name: <name>` then a one-line `-- description`

A query is written once with `:name` parameters. A `Dialect` rewrites the parameter style for its
driver (`:name` stays for sqlite3, becomes `%(name)s` for psycopg) and says how a list parameter
(`:something_list`) is passed; where the common text cannot serve a dialect, a block named
`-- name: <name> [<dialect>]` overrides it for that dialect only. So the stores share one copy of
their SQL, not one per database.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import orjson

from .._records import (
    Edge,
    EdgeKind,
    NewEvent,
    RunRow,
    RunStatus,
    StepPlan,
    StepRow,
    StepStatus,
    WorkflowPlan,
)

Params = dict[str, Any]

_NAME_LINE = re.compile(r"^--\s*name:\s*(?P<name>\w+)\s*(?:\[(?P<dialect>\w+)\])?\s*$")
_PARAM = re.compile(r"(?<![:\w]):(\w+)")
_MIGRATION = re.compile(r"^(\d{4})_\w+\.sql$")


# -- dialects ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Dialect:
    """What differs between SQL drivers in the way queries are sent.

    `paramstyle` is "named" (`:name`, sqlite3) or "pyformat" (`%(name)s`, psycopg). A list
    parameter is passed as a JSON array when `json_lists` is set (SQLite reads it with
    json_each), else as a Python list (a PostgreSQL array).
    """

    name: str
    paramstyle: str = "named"
    json_lists: bool = True

    def convert(self, sql: str) -> str:
        if self.paramstyle == "named":
            return sql
        if self.paramstyle == "pyformat":
            return _PARAM.sub(r"%(\1)s", sql.replace("%", "%%"))
        raise ValueError(f"unknown paramstyle {self.paramstyle!r}")

    def list_param(self, values: Iterable[Any]) -> Any:
        items = list(values)
        return orjson.dumps(items).decode() if self.json_lists else items


SQLITE = Dialect("sqlite")
POSTGRES = Dialect("postgres", paramstyle="pyformat", json_lists=False)


# -- reading .sql files --------------------------------------------------------------------------


def read_sql(relative: str) -> str:
    """The text of a file under stores/sql/."""
    return (resources.files("plait.stores") / "sql" / relative).read_text(encoding="utf-8")


@dataclass(frozen=True, slots=True)
class Query:
    name: str
    description: str
    sql: str


def parse_queries(text: str) -> dict[tuple[str, str | None], Query]:
    """Split a queries file into its named blocks, keyed by (name, dialect or None)."""
    blocks: dict[tuple[str, str | None], Query] = {}
    key: tuple[str, str | None] | None = None
    description: str | None = None
    body: list[str] = []

    def flush() -> None:
        if key is None:
            return
        sql = "\n".join(body).strip().rstrip(";").strip()
        if not description:
            raise ValueError(f"query {key[0]!r}: a `-- description` line must follow its name")
        if not sql:
            raise ValueError(f"query {key[0]!r} has no SQL")
        blocks[key] = Query(key[0], description, sql)

    for line in text.splitlines():
        match = _NAME_LINE.match(line.strip())
        if match:
            flush()
            key = (match["name"], match["dialect"])
            if key in blocks:
                raise ValueError(f"query {key[0]!r} is defined twice")
            description, body = None, []
        elif key is None:
            continue  # the file's header
        elif description is None:
            stripped = line.strip()
            description = stripped[2:].strip() if stripped.startswith("--") else ""
            if not stripped.startswith("--"):
                body.append(line)
        else:
            body.append(line)
    flush()
    return blocks


class Queries:
    """The named queries of queries.sql as one dialect runs them: `queries["get_run"]`."""

    def __init__(self, dialect: Dialect, text: str | None = None) -> None:
        self.dialect = dialect
        blocks = parse_queries(read_sql("queries.sql") if text is None else text)
        self.descriptions = {name: q.description for (name, d), q in blocks.items() if d is None}
        chosen: dict[str, str] = {}
        for (name, d), query in blocks.items():
            if d is None:
                chosen.setdefault(name, query.sql)
            elif d == dialect.name:
                chosen[name] = query.sql  # an override wins over the common text
        self._sql = {name: dialect.convert(sql) for name, sql in chosen.items()}

    def __getitem__(self, name: str) -> str:
        try:
            return self._sql[name]
        except KeyError:
            raise KeyError(f"no query named {name!r} in queries.sql") from None

    def __contains__(self, name: object) -> bool:
        return name in self._sql

    def names(self) -> list[str]:
        return sorted(self._sql)


def migrations() -> list[tuple[int, str]]:
    """(version, SQL) of every numbered migration, in order; versions are 1, 2, 3… without gaps."""
    folder = resources.files("plait.stores") / "sql" / "migrations"
    found = []
    for entry in folder.iterdir():
        match = _MIGRATION.match(entry.name)
        if match:
            found.append((int(match[1]), entry.read_text(encoding="utf-8")))
    found.sort()
    if [v for v, _ in found] != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations are not numbered 1..n: {[v for v, _ in found]}")
    return found


def split_statements(script: str) -> list[str]:
    """Split a SQL script into statements (by `;` at line ends; schema files keep to that)."""
    statements: list[str] = []
    current: list[str] = []
    for line in script.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("--")):
            continue
        current.append(line)
        if stripped.endswith(";"):
            statements.append("\n".join(current).strip())
            current = []
    if any(line.strip() and not line.strip().startswith("--") for line in current):
        statements.append("\n".join(current).strip())
    return statements


# -- records <-> rows ----------------------------------------------------------------------------

_STEP_STATUS = {s.value: s for s in StepStatus}
_RUN_STATUS = {s.value: s for s in RunStatus}
_EDGE_KIND = {k.value: k for k in EdgeKind}
_EDGES_CACHE: dict[str, tuple[Edge, ...]] = {}
_EDGES_CACHE_MAX = 4096
_SINKS_CACHE: dict[str, tuple[str, ...]] = {}


def edges_to_json(edges: Sequence[Edge]) -> str:
    if not edges:
        return "[]"
    return orjson.dumps([[e.target, e.kind.value, e.absorbs] for e in edges]).decode()


def edges_from_json(text: str) -> tuple[Edge, ...]:
    """Decode a `dependents` column; shapes repeat across runs, so decoded tuples are shared."""
    edges = _EDGES_CACHE.get(text)
    if edges is None:
        edges = tuple(Edge(t, _EDGE_KIND[k], bool(a)) for t, k, a in orjson.loads(text))
        if len(text) < 1024:
            if len(_EDGES_CACHE) >= _EDGES_CACHE_MAX:
                _EDGES_CACHE.clear()
            _EDGES_CACHE[text] = edges
    return edges


def step_from_row(row: Sequence[Any]) -> StepRow:
    """A StepRow from a row in the column order of the `steps` queries (StepRow's field order)."""
    (run_id, name, idx, status, unmet, dependents, optional, priority, attempt, recoveries,
     skip_reason, output, error_code, error_message, available_at, lease_token, lease_expires_at,
     worker_id, ready_at, started_at, finished_at) = row  # fmt: skip
    return StepRow(
        run_id, name, idx, _STEP_STATUS[status], unmet, edges_from_json(dependents), bool(optional),
        priority, attempt, recoveries, skip_reason, _bytes(output), error_code, error_message,
        available_at, lease_token, lease_expires_at, worker_id, ready_at, started_at, finished_at,
    )  # fmt: skip


def step_insert_params(step: StepRow) -> Params:
    params = step_update_params(step)
    params.update(
        idx=step.idx,
        dependents=edges_to_json(step.dependents),
        optional=step.optional,
        priority=step.priority,
        output=step.output,
    )
    return params


def step_update_params(step: StepRow) -> Params:
    """The mutable fields of a step (its output apart), with its key."""
    return {
        "run_id": step.run_id,
        "name": step.name,
        "status": step.status.value,
        "unmet": step.unmet,
        "attempt": step.attempt,
        "recoveries": step.recoveries,
        "skip_reason": step.skip_reason,
        "error_code": step.error_code,
        "error_message": step.error_message,
        "available_at": step.available_at,
        "lease_token": step.lease_token,
        "lease_expires_at": step.lease_expires_at,
        "worker_id": step.worker_id,
        "ready_at": step.ready_at,
        "started_at": step.started_at,
        "finished_at": step.finished_at,
    }


def sinks_from_json(text: str) -> tuple[str, ...]:
    sinks = _SINKS_CACHE.get(text)
    if sinks is None:
        sinks = tuple(orjson.loads(text))
        if len(text) < 1024:
            if len(_SINKS_CACHE) >= _EDGES_CACHE_MAX:
                _SINKS_CACHE.clear()
            _SINKS_CACHE[text] = sinks
    return sinks


def run_from_row(row: Sequence[Any]) -> RunRow:
    (id_, workflow, version, fingerprint, status, input_, sinks, unfinished, failures, next_seq,
     output, error, created_at, started_at, finished_at) = row  # fmt: skip
    return RunRow(
        id_, workflow, version, fingerprint, _RUN_STATUS[status], bytes(input_),
        sinks_from_json(sinks), unfinished, failures, next_seq, _bytes(output), error,
        created_at, started_at, finished_at,
    )  # fmt: skip


def run_insert_params(run: RunRow) -> Params:
    params = run_update_params(run)
    params.update(
        workflow=run.workflow,
        version=run.version,
        fingerprint=run.fingerprint,
        input=run.input,
        sinks=orjson.dumps(list(run.sinks)).decode(),
        output=run.output,
        created_at=run.created_at,
    )
    return params


def run_update_params(run: RunRow) -> Params:
    """The mutable fields of a run (its output apart), with its id."""
    return {
        "id": run.id,
        "status": run.status.value,
        "unfinished": run.unfinished,
        "failures": run.failures,
        "next_seq": run.next_seq,
        "error": run.error,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
    }


def event_params(event: NewEvent) -> Params:
    return {
        "run_id": event.run_id,
        "seq": event.seq,
        "type": event.type,
        "step": event.step,
        "payload": _dumps_payload(event.payload),
        "ts": event.ts,
    }


def event_from_row(row: Sequence[Any]) -> NewEvent:
    run_id, seq, type_, step, payload, ts = row
    return NewEvent(run_id, seq, type_, step, orjson.loads(payload), ts)


def plan_to_json(plan: WorkflowPlan) -> str:
    return orjson.dumps(
        {
            "name": plan.name,
            "version": plan.version,
            "fingerprint": plan.fingerprint,
            "created_at": plan.created_at,
            "steps": [
                {
                    "name": s.name,
                    "dependencies": [[dep, kind.value] for dep, kind in s.dependencies],
                    "defaults": list(s.defaults),
                    "optional": s.optional,
                    "priority": s.priority,
                    "inputs": [[name, required] for name, required in s.inputs],
                }
                for s in plan.steps
            ],
        }
    ).decode()


def plan_from_json(text: str | bytes) -> WorkflowPlan:
    data = orjson.loads(text)
    return WorkflowPlan(
        name=data["name"],
        version=data["version"],
        fingerprint=data["fingerprint"],
        created_at=data["created_at"],
        steps=tuple(
            StepPlan(
                name=s["name"],
                dependencies=tuple((dep, _EDGE_KIND[kind]) for dep, kind in s["dependencies"]),
                defaults=tuple(s["defaults"]),
                optional=s["optional"],
                priority=s["priority"],
                inputs=tuple((name, required) for name, required in s["inputs"]),
            )
            for s in data["steps"]
        ),
    )


def _bytes(value: Any) -> bytes | None:
    return None if value is None else bytes(value)


def _dumps_payload(payload: Mapping[str, object]) -> str:
    try:
        return orjson.dumps(payload, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return orjson.dumps(payload, default=repr, option=orjson.OPT_NON_STR_KEYS).decode()
