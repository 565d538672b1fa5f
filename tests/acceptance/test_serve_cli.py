"""`plait serve` as a user runs it: in a subprocess, on a loopback port, over a SQLite file;
and its refusals (another address without a token, a short token)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("uvicorn")

from tests.server.browser import free_port


def plait_cmd(*args: str, cwd: Path, **kw: object) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PLAIT_TOKEN": ""}
    env.pop("PLAIT_TOKEN")
    return subprocess.run([sys.executable, "-m", "plait", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60, **kw)  # type: ignore[call-overload]  # fmt: skip


def test_serve_refuses_another_address_without_a_token(tmp_path: Path) -> None:
    done = plait_cmd("serve", "--host", "0.0.0.0", "--port", "1", cwd=tmp_path)
    assert done.returncode == 2
    assert "refusing to serve on 0.0.0.0, which is not a loopback address, without a token" in (
        done.stderr
    )
    done = plait_cmd("serve", "--host", "0.0.0.0", "--token", "short", cwd=tmp_path)
    assert done.returncode == 2 and "at least 8 characters" in done.stderr
    assert not (tmp_path / "plait.db").exists()  # nothing was opened


def test_serve_answers_on_loopback_and_never_prints_the_token(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ}
    proc = subprocess.Popen(
        [sys.executable, "-m", "plait", "serve", "--port", str(port), "--token", "secret-token-1",
         "--db", f"sqlite:///{tmp_path / 'p.db'}"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/runs", timeout=5)
                page = json.loads(body.read())
                assert page == {"runs": [], "next_cursor": None, "as_of": page["as_of"]}
                assert isinstance(page["as_of"], float)
                break
            except (urllib.error.URLError, ConnectionError):
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "plait serve did not answer"
                time.sleep(0.05)  # polling a port that is not open yet
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/runs/x/cancel",
                                         method="POST", headers={"X-Plait-Token": "wrong"})  # fmt: skip
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        assert refused.value.code == 403
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read().decode()
        assert "/static/app.js" in page
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    assert "secret-token-1" not in out + err
    assert f"on http://127.0.0.1:{port}/" in err
