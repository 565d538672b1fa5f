"""Files that truly cannot be written, even by root, for tests of read-only opening.

Root ignores permission bits, so chmod proves nothing there: as root the directory and its files
are made immutable (`chattr +i`: no write, no new file, no rename, not even by root); as another
user they lose their write bits. Either way the helper checks that writing really fails before
the test relies on it, and restores everything afterwards (so the temporary directory can go).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tests.postgres_server import skip_or_fail


def _chattr(flag: str, paths: list[Path]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["chattr", flag, *map(str, paths)], capture_output=True, text=True, check=False
    )


def _proven(directory: Path) -> bool:
    """Does creating a file in `directory`, or appending to a file in it, fail?"""
    try:
        (directory / ".plait-probe").touch()
    except OSError:
        pass
    else:
        (directory / ".plait-probe").unlink()
        return False
    for path in directory.iterdir():
        try:
            with path.open("ab"):
                return False
        except OSError:
            pass
    return True


@contextlib.contextmanager
def unwritable(directory: Path) -> Iterator[None]:
    """`directory` and the files in it cannot be written, created or removed, inside the block."""
    files = [p for p in directory.iterdir() if p.is_file()]
    if os.geteuid() == 0:
        if shutil.which("chattr") is None:
            skip_or_fail("root ignores file permissions, and chattr is not installed")
        done = _chattr("+i", [*files, directory])

        def undo() -> None:
            _chattr("-i", [directory, *files])

        if done.returncode != 0:
            undo()
            skip_or_fail(f"root ignores file permissions, and chattr +i failed: {done.stderr}")
    else:
        modes = {p: p.stat().st_mode for p in [*files, directory]}
        for p, mode in modes.items():
            p.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))

        def undo() -> None:
            for p, mode in modes.items():
                p.chmod(mode)

    try:
        assert _proven(directory), f"{directory} could still be written"
        yield
    finally:
        undo()
