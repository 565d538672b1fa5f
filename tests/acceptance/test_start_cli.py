"""`plait start`: one run, or a run per line of a JSON Lines file (many per transaction), its
ids on stdout; a worker runs them."""

from __future__ import annotations

import os
import pty
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

import plait

from .conftest import Cli, import_file

SQUARES = """
    import plait

    wf = plait.Workflow("sq")

    @wf.step()
    def square(n: int) -> int:
        return n * n
"""

OTHER = """
    import plait

    wf = plait.Workflow("other")

    @wf.step()
    def one() -> int:
        return 1
"""


@pytest.fixture
def app(write_app: Callable[[str, str], Path]) -> Path:
    return write_app("squares.py", SQUARES)


def lines_of(path: Path, *lines: str) -> Path:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


def results(engine: plait.Engine, app: Path, ids: list[str]) -> list[object]:
    wf = import_file(app).wf
    engine.run_worker(workflows=[wf], until=ids, timeout=30)
    return [engine.get_run(run_id).output for run_id in ids]


def test_start_a_run_per_line_and_print_their_ids(
    cli: Cli, app: Path, tmp_path: Path, engine: plait.Engine
) -> None:
    inputs = lines_of(tmp_path / "in.jsonl", '{"n": 1}', '{"n": 2}', "", '{"n": 3}')

    started = cli("start", f"{app}:wf", "--inputs", str(inputs))

    assert started.code == 0, started.stderr
    ids = started.stdout.split()
    assert len(ids) == 3 and len(set(ids)) == 3
    assert started.stderr.strip() == "plait start: 3 runs of sq started"
    assert results(engine, app, ids) == [{"square": 1}, {"square": 4}, {"square": 9}]


def test_an_id_prefix_names_runs_by_line_so_starting_again_starts_none_twice(
    cli: Cli, app: Path, tmp_path: Path, engine: plait.Engine
) -> None:
    inputs = lines_of(tmp_path / "in.jsonl", '{"n": 4}', "", '{"n": 5}')

    first = cli("start", str(app), "--inputs", str(inputs), "--id-prefix", "backfill")
    again = cli("start", str(app), "--inputs", str(inputs), "--id-prefix", "backfill")

    assert first.code == again.code == 0, first.stderr + again.stderr
    assert first.stdout == again.stdout == "backfill-1\nbackfill-3\n"
    assert sorted(r.id for r in engine.list_runs().runs) == ["backfill-1", "backfill-3"]
    assert results(engine, app, ["backfill-1", "backfill-3"]) == [{"square": 16}, {"square": 25}]


def test_inputs_from_stdin(cli: Cli, app: Path, engine: plait.Engine) -> None:
    started = cli("start", str(app), "--inputs", "-", stdin='{"n": 6}\n{"n": 7}\n')

    assert started.code == 0, started.stderr
    assert results(engine, app, started.stdout.split()) == [{"square": 36}, {"square": 49}]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            '{"n": 2,}',
            "line 2 is not valid JSON: Expecting property name enclosed in double quotes",
        ),
        ("[1, 2]", "line 2 must be a JSON object such as '{\"order_id\": 42}', got an array"),
        ('{"n": NaN}', "line 2: "),
        ('{"m": 2}', "line 2: run input of 'sq' misses field 'n', required by step 'square'"),
        ('{"n": "two"}', "line 2: run input field 'n' (step 'square') is invalid"),
    ],
)
def test_a_bad_line_names_its_number_and_nothing_is_started(
    cli: Cli, app: Path, tmp_path: Path, engine: plait.Engine, line: str, message: str
) -> None:
    inputs = lines_of(tmp_path / "in.jsonl", '{"n": 1}', line, '{"n": 3}')

    started = cli("start", str(app), "--inputs", str(inputs))

    assert started.code == 2
    assert started.stderr.startswith(f"plait: error: --inputs file {inputs} {message}")
    assert started.stdout == ""
    assert engine.list_runs().runs == []


def test_a_run_id_of_another_workflow_names_the_line_and_the_flag(
    cli: Cli, app: Path, tmp_path: Path, write_app: Callable[[str, str], Path]
) -> None:
    other = write_app("other.py", OTHER)
    assert cli("start", str(other), "--run-id", "p-2").stdout == "p-2\n"
    inputs = lines_of(tmp_path / "in.jsonl", '{"n": 1}', '{"n": 2}')

    started = cli("start", str(app), "--inputs", str(inputs), "--id-prefix", "p")
    single = cli("start", str(app), "--input", '{"n": 1}', "--run-id", "p-2")

    assert started.code == single.code == 2
    assert started.stderr.strip() == (
        f"plait: error: --inputs file {inputs} line 2: run id 'p-2' is already used by a run of "
        "workflow 'other', not 'sq'; choose another --id-prefix; no run was started"
    )
    assert single.stderr.strip() == (
        "plait: error: run id 'p-2' is already used by a run of workflow 'other', not 'sq'; "
        "choose another --run-id"
    )


def test_one_run_with_input_and_run_id(cli: Cli, app: Path, engine: plait.Engine) -> None:
    first = cli("start", str(app), "--input", '{"n": 8}', "--run-id", "one")
    again = cli("start", str(app), "--input", '{"n": 8}', "--run-id", "one")
    other = cli("start", str(app), "--input", '{"n": 9}', "--run-id", "one")
    returned = cli("start", str(app), "--input", '{"n": 9}', "--run-id", "one", "--if-exists",
                   "return")  # fmt: skip

    assert first.code == again.code == returned.code == 0, first.stderr
    assert first.stdout == again.stdout == returned.stdout == "one\n"
    assert other.code == 2
    assert other.stderr.strip() == (
        "plait: error: run id 'one' is already a run of workflow 'sq' with a different input; "
        "choose another --run-id, or pass --if-exists return to get that run as it is"
    )
    assert results(engine, app, ["one"]) == [{"square": 64}]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--inputs", "in.jsonl", "--input", "{}"],
            "--inputs starts a run per line: give --input and --run-id without it",
        ),
        (
            ["--inputs", "in.jsonl", "--run-id", "x"],
            "--inputs starts a run per line: give --input and --run-id without it",
        ),
        (["--id-prefix", "p"], "--id-prefix names the runs of --inputs: give --inputs too"),
        (
            ["--inputs", "in.jsonl", "--id-prefix", "a b"],
            "--id-prefix 'a b' makes invalid run ids: use ASCII letters, digits or any of _ . : @ - (at most 190)",
        ),
        (
            ["--inputs", "missing.jsonl"],
            "--inputs: cannot read missing.jsonl: No such file or directory",
        ),
    ],
)
def test_usage_mistakes(cli: Cli, app: Path, tmp_path: Path, args: list[str], message: str) -> None:
    lines_of(tmp_path / "in.jsonl", '{"n": 1}')

    result = cli("start", str(app), *args)

    assert result.code == 2
    assert result.stderr.strip() == f"plait: error: {message}"


def test_a_progress_bar_on_a_terminal(cli: Cli, app: Path, tmp_path: Path) -> None:
    inputs = lines_of(tmp_path / "in.jsonl", *(f'{{"n": {n}}}' for n in range(5)))
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run(
            cli.command("start", str(app), "--inputs", str(inputs)),
            cwd=cli.cwd,
            env={**cli.env, "COLUMNS": "100", "TERM": "xterm"},
            stdout=subprocess.PIPE,
            stderr=follower,
            text=True,
            timeout=60,
        )
        os.close(follower)
        follower = -1
        shown = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal's other end closed: everything is read
                break
            if not chunk:
                break
            shown += chunk
    finally:
        if follower != -1:
            os.close(follower)
        os.close(leader)
    assert proc.returncode == 0
    assert len(proc.stdout.split()) == 5
    text = shown.decode(errors="replace")
    assert "starting" in text and "5/5" in text and "runs" in text
