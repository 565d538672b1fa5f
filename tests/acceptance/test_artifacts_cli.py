"""`plait artifacts list|get`, as a user runs it, on artifacts a worker process saved."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest

import plait

from .conftest import Cli, import_file

APP = """
import plait
wf = plait.Workflow("report")

@wf.step
def render(ctx: plait.StepContext) -> str:
    ctx.save_artifact("summary.txt", b"total: 42\\n", metadata={"lines": 1})
    return ctx.save_artifact("table.csv", b"a,b\\n1,2\\n").id
"""


def test_artifacts_list_and_get(cli: Cli, engine: plait.Engine, write_app, tmp_path: Path) -> None:
    app: Path = write_app("report_app.py", APP)
    done = cli("run", f"{app}:wf", "--input", "{}", "--run-id", "report-1")
    assert done.code == 0, done.stderr
    [summary, table] = engine.artifacts("report-1")

    listed = cli("artifacts", "list", "report-1")
    assert listed.code == 0, listed.stderr
    assert listed.stdout.splitlines() == [
        f"{summary.id}  render  summary.txt  10 bytes  text/plain",
        f"{table.id}  render  table.csv  8 bytes  text/csv",
    ]
    as_json = cli("artifacts", "list", "report-1", "--json").json()
    assert [(a["name"], a["size"], a["metadata"]) for a in as_json] == [
        ("summary.txt", 10, {"lines": 1}),
        ("table.csv", 8, None),
    ]
    assert as_json[0]["sha256"] == hashlib.sha256(b"total: 42\n").hexdigest()
    assert as_json[0]["uri"] == summary.uri and summary.uri.startswith("file://")
    created = datetime.fromisoformat(as_json[0]["created_at"])  # ISO, as runs give times
    assert created.timestamp() == pytest.approx(summary.created_at, abs=1e-6)

    printed = cli("artifacts", "get", summary.id)
    assert printed.code == 0 and printed.stdout == "total: 42\n"
    saved = cli("artifacts", "get", table.id, "-o", "out/table.csv")
    assert saved.code == 2  # the folder does not exist: nothing is created for it
    assert "plait: error: cannot write 'out/table.csv'" in saved.stderr
    saved = cli("artifacts", "get", table.id, "-o", "table.csv")
    assert saved.code == 0 and saved.stderr.strip() == "wrote 8 bytes to table.csv"
    assert (tmp_path / "table.csv").read_bytes() == b"a,b\n1,2\n"

    none = cli("artifacts", "list", "nope")
    assert none.code == 2 and "plait: error: no run with id 'nope'" in none.stderr
    unknown = cli("artifacts", "get", "f" * 32)
    assert unknown.code == 2 and f"plait: error: no artifact with id {'f' * 32!r}" in (
        unknown.stderr
    )


def test_artifacts_get_refuses_a_truncated_file_and_writes_nothing(
    cli: Cli, engine: plait.Engine, write_app, tmp_path: Path
) -> None:
    wf = import_file(write_app("report_app.py", APP)).wf
    handle = engine.start(wf, run_id="report-2")
    engine.run_worker(until=handle, timeout=30)
    [_, table] = engine.artifacts("report-2")
    path = Path(table.uri.removeprefix("file://"))
    path.write_bytes(b"a,b\n")

    damaged = cli("artifacts", "get", table.id, "-o", "table.csv")
    assert damaged.code == 2
    assert damaged.stderr.strip() == (
        f"plait: error: artifact {table.id} ('table.csv') is damaged: its file {str(path)!r} "
        "has 4 bytes, but 8 were saved (truncated or altered); nothing was returned"
    )
    assert not (tmp_path / "table.csv").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".table")] == []


def test_artifacts_gc_removes_a_failed_attempts_file(
    cli: Cli, engine: plait.Engine, write_app, tmp_path: Path
) -> None:
    app = write_app(
        "failing_app.py",
        "import plait\nwf = plait.Workflow('failing')\n@wf.step\n"
        "def broken(ctx: plait.StepContext) -> None:\n"
        "    ctx.save_artifact('partial.bin', b'x' * 10)\n    raise RuntimeError('boom')\n",
    )
    failed = cli("run", f"{app}:wf", "--input", "{}", "--run-id", "failing-1")
    assert failed.code == 1
    objects = tmp_path / "runs.db.artifacts" / "objects"
    assert len([p for p in objects.rglob("*") if p.is_file()]) == 1

    kept = cli("artifacts", "gc")  # younger than the default grace: kept
    assert kept.code == 0 and kept.stdout.strip() == "removed 0 unreferenced artifact file(s)"
    swept = cli("gc", "--grace", "0")  # plait gc: blobs and artifact files
    assert swept.code == 0 and swept.stdout.strip() == (
        "removed 0 unreferenced blob(s) and 1 artifact file(s); left: 0 blob(s), 0 bytes, "
        "0 reference(s) to them"
    )
    again = cli("artifacts", "gc", "--grace", "0")
    assert again.code == 0 and again.stdout.strip() == "removed 0 unreferenced artifact file(s)"
    assert [p for p in objects.rglob("*") if p.is_file()] == []
    assert cli("artifacts", "list", "failing-1").stdout.strip() == "run failing-1 has no artifacts"


# -- -o FILE writes to what FILE is ------------------------------------------------------------


@pytest.fixture
def table_id(engine: plait.Engine, write_app) -> str:
    """The id of an artifact holding b"a,b\\n1,2\\n" (8 bytes), saved by a worker."""
    wf = import_file(write_app("report_app.py", APP)).wf
    handle = engine.start(wf, run_id="report-o")
    engine.run_worker(until=handle, timeout=30)
    [_, table] = engine.artifacts("report-o")
    return table.id


@pytest.fixture
def umask() -> Iterator[Callable[[int], None]]:
    """Set the umask the CLI subprocesses inherit; restored after the test."""
    old = os.umask(0o022)
    os.umask(old)
    yield os.umask
    os.umask(old)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".plait-part"))


def test_artifacts_get_dash_writes_stdout(cli: Cli, table_id: str, tmp_path: Path) -> None:
    got = cli("artifacts", "get", table_id, "-o", "-")
    assert got.code == 0, got.stderr
    assert got.stdout == "a,b\n1,2\n" and got.stderr == ""
    assert not (tmp_path / "-").exists()


def test_artifacts_get_new_file_takes_the_umask(
    cli: Cli, table_id: str, tmp_path: Path, umask: Callable[[int], None]
) -> None:
    umask(0o027)
    got = cli("artifacts", "get", table_id, "-o", "new.csv")
    assert got.code == 0, got.stderr
    assert got.stderr.strip() == "wrote 8 bytes to new.csv"
    assert (tmp_path / "new.csv").read_bytes() == b"a,b\n1,2\n"
    assert stat.S_IMODE((tmp_path / "new.csv").stat().st_mode) == 0o640
    assert _leftovers(tmp_path) == []


def test_artifacts_get_replaces_a_regular_file_keeping_its_mode(
    cli: Cli, table_id: str, tmp_path: Path, umask: Callable[[int], None]
) -> None:
    umask(0o077)
    target = tmp_path / "kept.csv"
    target.write_bytes(b"old contents, longer than the artifact\n")
    target.chmod(0o664)
    got = cli("artifacts", "get", table_id, "-o", "kept.csv")
    assert got.code == 0, got.stderr
    assert target.read_bytes() == b"a,b\n1,2\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o664
    assert _leftovers(tmp_path) == []


def test_artifacts_get_writes_through_a_fifo(cli: Cli, table_id: str, tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    # a reader first (non-blocking, so the test never hangs); the CLI's open then succeeds
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        got = cli("artifacts", "get", table_id, "-o", str(fifo))
        assert got.code == 0, got.stderr
        assert got.stderr.strip() == f"wrote 8 bytes to {fifo}"
        assert os.read(reader, 100) == b"a,b\n1,2\n"  # in the pipe's buffer, the writer gone
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)  # still a FIFO, not replaced by a file
    assert _leftovers(tmp_path) == []


def test_artifacts_get_follows_a_symlink_and_keeps_it(
    cli: Cli, table_id: str, tmp_path: Path
) -> None:
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "table.csv"
    target.write_bytes(b"old\n")
    target.chmod(0o640)
    link = tmp_path / "link.csv"
    link.symlink_to(target)

    got = cli("artifacts", "get", table_id, "-o", "link.csv")
    assert got.code == 0, got.stderr
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_bytes() == b"a,b\n1,2\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert _leftovers(tmp_path) == [] and _leftovers(tmp_path / "real") == []

    dangling = tmp_path / "dangling.csv"
    dangling.symlink_to(tmp_path / "nowhere.csv")
    refused = cli("artifacts", "get", table_id, "-o", "dangling.csv")
    assert refused.code == 2
    assert refused.stderr.strip() == (
        f"plait: error: -o dangling.csv: a symbolic link to {str(tmp_path / 'nowhere.csv')!r}, "
        "which does not exist; nothing was written"
    )
    assert dangling.is_symlink() and not (tmp_path / "nowhere.csv").exists()


def test_artifacts_get_refuses_a_directory(cli: Cli, table_id: str, tmp_path: Path) -> None:
    (tmp_path / "folder").mkdir()
    refused = cli("artifacts", "get", table_id, "-o", "folder")
    assert refused.code == 2
    assert refused.stderr.strip() == (
        "plait: error: -o folder is a directory: plait writes an artifact to a file, a FIFO or "
        "a character device (or - for stdout); nothing was written"
    )
    empty = cli("artifacts", "get", table_id, "-o", "")
    assert empty.code == 2
    assert empty.stderr.strip() == "plait: error: -o: name a file, or - for stdout"


@pytest.mark.skipif(os.geteuid() != 0, reason="device nodes are made with mknod, as root")
def test_artifacts_get_writes_through_devices_as_root(
    cli: Cli, table_id: str, tmp_path: Path
) -> None:
    null = tmp_path / "null"  # what /dev/null is: character device 1,3
    os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    full = tmp_path / "full"  # /dev/full: every write fails with ENOSPC
    os.mknod(full, 0o666 | stat.S_IFCHR, os.makedev(1, 7))
    disk = tmp_path / "disk"  # a block device (loop0): never written
    os.mknod(disk, 0o600 | stat.S_IFBLK, os.makedev(7, 0))

    to_null = cli("artifacts", "get", table_id, "-o", str(null))
    assert to_null.code == 0, to_null.stderr
    assert to_null.stderr.strip() == f"wrote 8 bytes to {null}"
    to_full = cli("artifacts", "get", table_id, "-o", str(full))
    assert to_full.code == 2
    assert (
        to_full.stderr.strip()
        == f"plait: error: cannot write {str(full)!r}: No space left on device"
    )
    to_disk = cli("artifacts", "get", table_id, "-o", str(disk))
    assert to_disk.code == 2
    assert to_disk.stderr.strip() == (
        f"plait: error: -o {disk} is a block device: plait writes an artifact to a file, a FIFO "
        "or a character device (or - for stdout); nothing was written"
    )
    for node, device in ((null, (1, 3)), (full, (1, 7))):
        info = os.lstat(node)
        assert stat.S_ISCHR(info.st_mode), f"{node.name} was replaced"
        assert (os.major(info.st_rdev), os.minor(info.st_rdev)) == device
    assert stat.S_ISBLK(os.lstat(disk).st_mode)
    assert _leftovers(tmp_path) == []


def test_artifacts_get_leaves_a_file_as_it_was_when_a_write_fails(
    cli: Cli, engine: plait.Engine, write_app, tmp_path: Path
) -> None:
    wf = import_file(
        write_app(
            "big_app.py",
            "import plait\nwf = plait.Workflow('big')\n@wf.step\n"
            "def save(ctx: plait.StepContext) -> None:\n"
            "    ctx.save_artifact('big.bin', b'x' * 2_000_000)\n",
        )
    ).wf
    engine.run_worker(until=engine.start(wf, run_id="big-1"), timeout=30)
    [big] = engine.artifacts("big-1")
    target = tmp_path / "big.bin"
    target.write_bytes(b"the old contents\n")

    # the shell limits the CLI's files to 1,024,000 bytes: later writes fail with EFBIG
    # (Python ignores SIGXFSZ)
    limited = ["sh", "-c", 'ulimit -f 1000 && exec "$@"', "sh"]
    proc = subprocess.run(
        [*limited, *cli.command("artifacts", "get", big.id, "-o", "big.bin")],
        cwd=tmp_path,
        env=cli.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "plait: error: cannot write 'big.bin': File too large"
    assert target.read_bytes() == b"the old contents\n"
    assert _leftovers(tmp_path) == []
