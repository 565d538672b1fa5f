"""What the dashboard reads beside the Engine's own views: a run's graph (laid out here, fan-outs
grouped), its timeline (one bar per attempt, queued then running), one step's whole story, and
the queues with their backlog.

The graph is laid out on the server, in layers (longest path from the sources) ordered by the
barycentre of their predecessors: cheap, deterministic, and the browser only draws. Steps that
look alike are one node: the steps a parent spawned from one task, and static steps of one layer
with the same dependencies and dependents, once there are `GROUP_AT` of them; a group shows its
counts per status and can be expanded (`expand=`, up to `EXPANDED_MAX` members)."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .._errors import RunNotFound
from ..core.rows import EdgeKind, StepRow, StepStatus
from ..data.artifacts import Artifact
from ..engine.engine import Engine
from ..engine.views import Event, Step
from .errors import NotFound

GROUP_AT = 12  # alike steps shown as one node from this many on
EXPANDED_MAX = 500  # members an expanded group shows at most
COLUMN, ROW = 230, 64  # layout grid, in pixels
NODE_W, NODE_H = 190, 44
EVENTS_MAX = 60_000  # events a timeline reads at most; past that, bars come from the step rows
BARS_MAX = 2_000
_ENDS = {
    "step_completed": "done",
    "step_failed": "failed",
    "step_retrying": "retrying",
    "step_lease_expired": "lease_expired",
    "step_released": "released",
    "step_cancelled": "cancelled",
    "step_key_full": "key_full",
}


async def rows_of(engine: Engine, run_id: str) -> list[StepRow]:
    await engine.get_run_async(run_id)  # RunNotFound, with the Engine's message
    return await engine.store.get_steps(run_id)


async def known_step(engine: Engine, run_id: str, step: str) -> StepRow:
    """The step's row; RunNotFound, or NotFound naming the step."""
    for row in await rows_of(engine, run_id):
        if row.name == step:
            return row
    raise NotFound(f"run {run_id!r} has no step {step!r}")


# -- the graph -------------------------------------------------------------------------------------


@dataclass
class _Node:
    id: str
    label: str
    members: list[StepRow] = field(default_factory=list)
    group: bool = False
    task: str | None = None
    preds: set[str] = field(default_factory=set)
    layer: int = 0
    pos: float = 0.0


def _group_keys(rows: list[StepRow]) -> dict[str, str]:
    """step → the id of the group node it belongs to (only steps in a group)."""
    preds: dict[str, set[str]] = defaultdict(set)
    succs: dict[str, set[str]] = defaultdict(set)
    parent: dict[str, str] = {}
    for r in rows:
        for e in r.dependents:
            if e.kind is EdgeKind.CHILD:
                parent[r.name] = e.target
            else:
                preds[e.target].add(r.name)
                succs[r.name].add(e.target)
    alike: dict[tuple[Any, ...], list[str]] = defaultdict(list)
    for r in rows:
        if r.name in parent:
            alike[("spawn", parent[r.name], r.task)].append(r.name)
        else:
            key = ("static", frozenset(preds[r.name]), frozenset(succs[r.name]))
            alike[key].append(r.name)
    found: dict[str, str] = {}
    for key, names in alike.items():
        if len(names) >= GROUP_AT:
            gid = f"group:{key[1]}:{key[2]}" if key[0] == "spawn" else f"group:{names[0]}"
            for n in names:
                found[n] = gid
    return found


async def graph(engine: Engine, run_id: str, expand: set[str]) -> dict[str, Any]:
    run = await engine.store.get_run(run_id)  # read before the steps: see `last_seq`
    if run is None:
        raise RunNotFound(f"no run with id {run_id!r} in {engine.url}")
    rows = await engine.store.get_steps(run_id)
    groups = _group_keys(rows)
    nodes: dict[str, _Node] = {}
    node_of: dict[str, str] = {}
    shown_in_group: Counter[str] = Counter()
    for r in rows:
        gid = groups.get(r.name)
        if gid is not None and gid in expand and shown_in_group[gid] < EXPANDED_MAX:
            shown_in_group[gid] += 1
            gid = None  # shown on its own
        if gid is None:
            nodes[r.name] = _Node(r.name, r.name, [r], task=r.task)
            node_of[r.name] = r.name
        else:
            node = nodes.get(gid)
            if node is None:
                label = f"{r.task or r.name} ×" if r.task else f"{r.name} …"
                node = nodes[gid] = _Node(gid, label, group=True, task=r.task)
            node.members.append(r)
            node_of[r.name] = gid
    edges: dict[tuple[str, str], str] = {}
    for r in rows:
        for e in r.dependents:
            if e.kind is EdgeKind.CHILD:  # drawn from the parent to what it spawned
                a, b, kind = node_of[e.target], node_of[r.name], "spawn"
            else:
                a, b, kind = node_of[r.name], node_of.get(e.target, e.target), e.kind.value
            if a != b and b in nodes:
                edges.setdefault((a, b), kind)
                nodes[b].preds.add(a)
    _layout(nodes)
    out_nodes: list[dict[str, Any]] = []
    for n in nodes.values():
        counts = Counter(m.status.value for m in n.members)
        first = n.members[0]
        out_nodes.append(
            {
                "id": n.id,
                "label": n.label if not n.group else f"{n.label}{len(n.members)}",
                "group": n.group,
                "size": len(n.members),
                "status": _status_of(counts) if n.group else first.status.value,
                "counts": dict(counts),
                "attempts": first.attempt if not n.group else None,
                "task": n.task,
                "x": n.layer * COLUMN + 20,
                "y": round(n.pos * ROW) + 20,
                "w": NODE_W,
                "h": NODE_H,
            }
        )
    width = max((n["x"] for n in out_nodes), default=0) + NODE_W + 40
    height = max((n["y"] for n in out_nodes), default=0) + NODE_H + 40
    return {
        "run_id": run_id,
        # the last event before the steps were read: a live view follows the events after it
        "last_seq": run.next_seq - 1,
        "steps": len(rows),
        "nodes": out_nodes,
        "edges": [{"from": a, "to": b, "kind": k} for (a, b), k in edges.items()],
        "width": width,
        "height": height,
    }


def _status_of(counts: Counter[str]) -> str:
    """The status a group is drawn with: the most pressing one among its members."""
    for status in ("failed", "running", "waiting", "ready", "pending", "cancelled", "skipped"):
        if counts.get(status):
            return status
    return "done"


def _layout(nodes: dict[str, _Node]) -> None:
    """Layers by longest path from the sources (Kahn's order), then each layer ordered by the
    mean position of its nodes' predecessors."""
    indegree = {k: len(n.preds) for k, n in nodes.items()}
    succs: dict[str, list[str]] = defaultdict(list)
    for k, n in nodes.items():
        for p in n.preds:
            succs[p].append(k)
    order: list[str] = [k for k, d in indegree.items() if d == 0]
    i = 0
    while i < len(order):
        k = order[i]
        i += 1
        for s in succs[k]:
            nodes[s].layer = max(nodes[s].layer, nodes[k].layer + 1)
            indegree[s] -= 1
            if indegree[s] == 0:
                order.append(s)
    for k in nodes:  # a cycle cannot be drawn in layers: what is left goes last
        if indegree[k] > 0:
            order.append(k)
    layers: dict[int, list[_Node]] = defaultdict(list)
    for k in order:
        layers[nodes[k].layer].append(nodes[k])
    for layer in sorted(layers):
        members = layers[layer]

        def centre(n: _Node, at: int = layer) -> float:
            ps = [nodes[p].pos for p in n.preds if nodes[p].layer < at]
            return sum(ps) / len(ps) if ps else 0.0

        members.sort(key=centre)
        for pos, n in enumerate(members):
            n.pos = float(pos)


# -- the timeline ----------------------------------------------------------------------------------


async def _all_events(engine: Engine, run_id: str, cap: int) -> tuple[list[Event], bool]:
    found: list[Event] = []
    after = 0
    while len(found) < cap:
        batch = await engine.events_async(run_id, after, 5000)
        found += batch
        if len(batch) < 5000:
            return found, False
        after = batch[-1].seq
    return found, True


def _attempts(events: Iterable[Event], rows: list[StepRow]) -> list[dict[str, Any]]:
    """One bar per attempt, from the run's events: queued (ready, or back after a retry's delay
    or a lost lease) until started, then running until it ended and how."""
    row_of = {r.name: r for r in rows}
    preds_of: dict[str, list[str]] = defaultdict(list)
    for r in rows:
        for edge in r.dependents:
            if edge.kind is not EdgeKind.CHILD:
                preds_of[edge.target].append(r.name)
    open_: dict[str, dict[str, Any]] = {}
    bar: dict[str, Any] | None
    queued: dict[str, float] = {}
    ended: dict[str, float] = {}
    bars: list[dict[str, Any]] = []
    for e in events:
        ts = e.ts.timestamp()
        step = e.step
        if step is None:
            continue
        if e.type == "step_started":
            row = row_of.get(step)
            since = queued.pop(step, None)
            if since is None and row is not None:
                preds = [ended[p] for p in preds_of.get(step, ()) if p in ended]
                since = max(preds) if preds else None
                if since is None and row.attempt <= 1:
                    since = row.ready_at
            bar = {
                "step": step,
                "attempt": e.payload.get("attempt"),
                "worker": e.payload.get("worker"),
                "queued_at": min(since, ts) if since is not None else ts,
                "started_at": ts,
                "ended_at": None,
                "outcome": "running",
                "code": None,
            }
            open_[step] = bar
            bars.append(bar)
        elif e.type in _ENDS:
            bar = open_.pop(step, None)
            if bar is not None:
                bar["ended_at"] = ts
                bar["outcome"] = _ENDS[e.type]
                bar["code"] = e.payload.get("code")
            if e.type == "step_retrying":
                retry_at = e.payload.get("retry_at")
                queued[step] = float(retry_at) if isinstance(retry_at, int | float) else ts
            elif e.type in ("step_lease_expired", "step_released", "step_key_full"):
                queued[step] = ts
            else:
                ended[step] = ts
        elif e.type == "step_approved":  # a gate's wait for its decision is not a queue's
            queued[step] = ts
        elif e.type == "step_skipped":
            ended[step] = ts
    return bars


async def timeline(engine: Engine, run_id: str) -> dict[str, Any]:
    rows = await rows_of(engine, run_id)
    run = await engine.get_run_async(run_id)
    events, truncated = await _all_events(engine, run_id, EVENTS_MAX)
    if truncated:  # too long a log to read for a page: the last attempt of each step
        bars = [
            {
                "step": r.name, "attempt": r.attempt, "worker": r.worker_id,
                "queued_at": r.ready_at, "started_at": r.started_at,
                "ended_at": r.finished_at, "outcome": r.status.value, "code": r.error_code,
            }
            for r in rows
            if r.started_at is not None
        ]  # fmt: skip
        source = "steps"
    else:
        bars = _attempts(events, rows)
        source = "events"
    bars.sort(key=lambda b: (b["started_at"] or 0.0, b["step"]))
    total = len(bars)
    return {
        "run_id": run_id,
        "source": source,
        "start": run.created_at.timestamp(),
        "end": run.finished_at.timestamp() if run.finished_at else time.time(),
        "bars": bars[:BARS_MAX],
        "total": total,
    }


# -- one step --------------------------------------------------------------------------------------


async def step_detail(engine: Engine, run_id: str, step: str) -> dict[str, Any]:
    rows = await rows_of(engine, run_id)
    row = next((r for r in rows if r.name == step), None)
    if row is None:
        raise NotFound(f"run {run_id!r} has no step {step!r}")
    run = await engine.get_run_async(run_id)
    view = Step.from_row(row)
    by_name = {r.name: r for r in rows}
    dependencies = [
        {"name": r.name, "kind": e.kind.value, "status": r.status.value}
        for r in rows
        for e in r.dependents
        if e.target == step and e.kind is not EdgeKind.CHILD
    ]
    inputs = {
        d["name"]: Step.from_row(by_name[d["name"]]).output
        for d in dependencies
        if d["kind"] == EdgeKind.DATA.value and by_name[d["name"]].status is StepStatus.DONE
    }
    events, _ = await _all_events(engine, run_id, EVENTS_MAX)
    mine = [e for e in events if e.step == step]
    artifacts: list[Artifact] = [a for a in await engine.artifacts_async(run_id) if a.step == step]
    why: list[str] | None = None
    if not row.status.terminal and row.status is not StepStatus.RUNNING:
        try:
            why = (await engine.inspect_async(run_id)).blockers.get(step)
        except RunNotFound:
            why = None
    if run.status.value in ("paused", "pausing") and not row.status.terminal:
        why = [f"the run is {run.status.value}: nothing new of it is dispatched", *(why or [])]
    return {
        "run": {"id": run.id, "workflow": run.workflow, "status": run.status, "input": run.input},
        "step": view,
        "spawned_input": None if row.input is None else _loads(row.input),
        "dependencies": dependencies,
        "dependents": [{"name": e.target, "kind": e.kind.value} for e in row.dependents],
        "inputs": inputs,
        "attempts": _attempts(events, rows) if len(rows) < 5000 else _attempts(mine, [row]),
        "events": mine[-500:],
        "artifacts": artifacts,
        "why": why,
    }


def _loads(data: bytes) -> Any:
    from .. import _codec

    return _codec.loads(data)


async def artifact_meta(engine: Engine, artifact_id: str) -> Artifact:
    row = await engine.store.get_artifact(artifact_id)
    if row is None:
        raise NotFound(f"no artifact with id {artifact_id!r}")
    return Artifact(
        id=row.id, name=row.name, size=row.size, sha256=row.sha256,
        content_type=row.content_type, uri="", run_id=row.run_id, step=row.step,
    )  # fmt: skip


# -- queues ----------------------------------------------------------------------------------------


async def queues(engine: Engine) -> list[dict[str, Any]]:
    now = time.time()
    configured = {q.name: q for q in await engine.queues_async()}
    backlog = await engine.store.step_backlog(now)
    out: dict[str, dict[str, Any]] = {}
    for name in sorted({*configured, *(q for q, *_ in backlog)}):
        q = configured.get(name)
        out[name] = {
            "name": name,
            "configured": q is not None,
            "concurrency": q.concurrency if q else None,
            "rate": q.rate if q else None,
            "tokens": q.tokens if q else None,
            "ready": 0,
            "running": 0,
            "waiting": 0,
            "oldest_ready_age": None,
        }
    for name, status, count, oldest in backlog:
        out[name][status.value] = count
        if oldest is not None:
            out[name]["oldest_ready_age"] = round(now - oldest, 3)
    return list(out.values())
