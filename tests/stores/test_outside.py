"""Stores from outside plait: `Engine(store=obj)`, `register_store`, the entry point group
`plait.stores`, the check that refuses an object lacking protocol operations, and the contract
suite run on such a store (tests/contract/outside_store.py) by `python -m
plait.testing.store_contract`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import plait
from plait import stores
from plait.stores import check_store, open_store, register_store
from plait.testing import store_contract
from tests.contract.outside_store import WrappedStore, make

ROOT = Path(__file__).resolve().parents[2]


def squares() -> plait.Workflow:
    wf = plait.Workflow("sq")

    @wf.step
    def square(n: int) -> int:
        return n * n

    return wf


@pytest.fixture(autouse=True)
def _forget_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stores, "_registered", {})


def test_an_engine_takes_a_store_object(tmp_path: Path) -> None:
    store = make(f"mine://{tmp_path}/")
    with plait.Engine(store=store) as engine:
        assert engine.store is store and engine.url == f"mine://{tmp_path}/"
        handle = engine.start(squares(), {"n": 3}, labels={"k": "v"})
        engine.run_worker(until=handle)
        assert handle.result(timeout=10) == {"square": 9}
        assert [r.id for r in engine.list_runs(labels={"k": "v"}).runs] == [handle.id]
    assert (tmp_path / "plait.db").exists()  # the object's own storage


class Partial:
    url = "partial://"
    capabilities: frozenset[str] = frozenset()
    blob_threshold = 1024

    async def open(self) -> None: ...

    async def close(self) -> None: ...


def test_a_store_lacking_operations_is_refused_naming_them() -> None:
    with pytest.raises(plait.StoreError) as caught:
        plait.Engine(store=Partial())  # type: ignore[arg-type]  # incomplete on purpose
    message = str(caught.value)
    assert message.startswith(
        "Partial is not a plait store: it lacks 44 of the protocol's operations and "
        "attributes: subscribe, save_workflow, get_workflow, list_workflows, workflow_known, "
    )
    assert message.endswith("gc_blobs (docs/stores.md says what each must do)")
    assert "open," not in message and "close," not in message


def test_operations_must_be_async_and_attributes_typed(tmp_path: Path) -> None:
    class Blocking(WrappedStore):
        def claim(self, **options: Any) -> Any:  # not async
            return self._inner.claim(**options)

    inner = make(f"mine://{tmp_path}/")._inner
    with pytest.raises(plait.StoreError) as not_async:
        check_store(Blocking("mine://", inner))
    assert str(not_async.value) == (
        "Blocking is not a plait store: these operations must be async (async def): claim"
    )
    with pytest.raises(plait.StoreError) as bad_url:
        check_store(WrappedStore(5, inner))  # type: ignore[arg-type]  # bad on purpose
    assert str(bad_url.value).startswith(
        "WrappedStore is not a plait store: its url must be a string and its capabilities a "
        "frozenset of names, got 5 and"
    )
    with pytest.raises(plait.StoreError, match=r"^expected a store object, got str 'sqlite://'"):
        plait.Engine(store="sqlite://")  # type: ignore[arg-type]  # a URL is not a store
    with pytest.raises(
        plait.StoreError, match=r"^give the Engine a store URL or a store object \(store=\)"
    ):
        plait.Engine("memory://", store=make(f"mine://{tmp_path}/"))


def test_a_registered_scheme_opens_its_store(tmp_path: Path) -> None:
    register_store("mine", make)
    with plait.Engine(f"mine://{tmp_path}/") as engine:
        handle = engine.start(squares(), {"n": 4})
        engine.run_worker(until=handle)
        assert handle.result(timeout=10) == {"square": 16}
        assert isinstance(engine.store, WrappedStore)
    with pytest.raises(plait.StoreError) as unknown:
        open_store("other://x")
    assert str(unknown.value).endswith("; installed: mine://")


@pytest.mark.parametrize(
    ("scheme", "factory", "message"),
    [
        ("sqlite", make, "the store URL scheme 'sqlite' is plait's own; choose another"),
        ("my store", make, "invalid store URL scheme 'my store': use a letter, then letters"),
        ("", make, "invalid store URL scheme '': use a letter"),
        ("mine", "make", "the factory of store scheme 'mine' must be callable, got 'make'"),
    ],
)
def test_bad_registrations_are_refused(scheme: str, factory: Any, message: str) -> None:
    with pytest.raises(plait.StoreError) as caught:
        register_store(scheme, factory)
    assert str(caught.value).startswith(message)
    assert stores._registered == {}


def test_what_a_factory_makes_is_checked() -> None:
    register_store("partial", lambda url, **_: Partial())
    register_store("broken", lambda url, **_: 1 / 0)
    with pytest.raises(plait.StoreError, match=r"^Partial is not a plait store: it lacks 44"):
        open_store("partial://x")
    with pytest.raises(plait.StoreError) as broken:
        open_store("broken://user:secret@host")
    assert str(broken.value) == (
        "the store of scheme 'broken' could not be made for this URL: ZeroDivisionError: "
        "division by zero"
    )
    assert "secret" not in str(broken.value)


def install(site: Path, entry: str) -> None:
    """A package's entry point of the group plait.stores, installed in `site`."""
    info = site / "plait_test_store-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: plait-test-store\nVersion: 1.0\n", encoding="utf-8"
    )
    (info / "entry_points.txt").write_text(f"[plait.stores]\n{entry}\n", encoding="utf-8")


def test_an_installed_entry_point_opens_its_scheme(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    install(site, "epstore = tests.contract.outside_store:make\nbad = no_such_module:make")
    monkeypatch.syspath_prepend(str(site))
    data = tmp_path / "data"
    data.mkdir()
    with plait.Engine(f"epstore://{data}/") as engine:
        handle = engine.start(squares(), {"n": 5}, run_id="ep-1")
        engine.run_worker(until=handle)
        assert handle.result(timeout=10) == {"square": 25}
    with pytest.raises(plait.StoreError) as bad:
        open_store("bad://x")
    assert str(bad.value) == (
        "the store of scheme 'bad' (entry point 'no_such_module:make' of group 'plait.stores') "
        "cannot be loaded: ModuleNotFoundError: No module named 'no_such_module'"
    )
    # the command line opens it too, in another process
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT / "src"), str(ROOT)])}
    listed = subprocess.run(
        [sys.executable, "-m", "plait", "runs", "list", "--db", f"epstore://{data}/"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    assert "ep-1" in listed.stdout


def test_the_contract_suite_runs_on_an_outside_store(tmp_path: Path) -> None:
    """A store author's run: their module, their directory, the suite from the package."""
    (tmp_path / "shop_store.py").write_text(
        (ROOT / "tests" / "contract" / "outside_store.py").read_text(encoding="utf-8"),
        encoding="utf-8",
    )
    env = {**os.environ, "CI": "true", "PYTHONPATH": str(ROOT / "src")}
    for name in ("PLAIT_CONTRACT_STORE", "PLAIT_CONTRACT_DURABLE", "PLAIT_CONTRACT_BACKENDS"):
        env.pop(name, None)
    ran = subprocess.run(
        [sys.executable, "-m", "plait.testing.store_contract", "shop_store:make", "--durable",
         "-v", "--no-header", "-k", "test_store or test_identity"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    results = [line for line in ran.stdout.splitlines() if " PASSED" in line]
    assert len(results) > 30
    assert all("[outside" in line for line in results)  # only the outside store, every test


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("shop_store", "the store factory must be given as module:factory (my_store.testing:make), got 'shop_store'"),
        ("no_such_module:make", "the store factory no_such_module:make: cannot import module 'no_such_module': ModuleNotFoundError: No module named 'no_such_module'"),
        ("tests.stores.test_outside:nothing", "the store factory tests.stores.test_outside:nothing: module 'tests.stores.test_outside' has no 'nothing'"),
        ("tests.stores.test_outside:ROOT", "the store factory tests.stores.test_outside:ROOT must be callable as factory(url, create=, read_only=), got PosixPath"),
        ("tests.stores.test_outside:partial", "the store factory tests.stores.test_outside:partial: Partial is not a plait store: it lacks 44 of the protocol's operations"),
        ("tests.stores.test_outside:broken", "the store factory tests.stores.test_outside:broken: the store of scheme 'contract-outside' could not be made for this URL: OSError: no disk"),
    ],
)  # fmt: skip
def test_a_bad_factory_is_refused_saying_why(
    target: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert store_contract.main([target]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message), err
    assert err.endswith(f"{store_contract.USAGE}\n")


def partial(url: str, **options: Any) -> Partial:
    return Partial()


def broken(url: str, **options: Any) -> Any:
    raise OSError("no disk")


def test_the_entry_point_hands_pytest_the_store_and_the_rest() -> None:
    assert store_contract.main([]) == 2
    args = store_contract.pytest_args("shop:make", True, ["-x", "-k", "claim"])
    assert args == [
        str(store_contract.SUITE), "-p", "no:cacheprovider", "--plait-contract-store=shop:make",
        "--plait-contract-durable", "-x", "-k", "claim",
    ]  # fmt: skip
    assert (store_contract.SUITE / "conftest.py").is_file()


class Options:
    """What `outside_store` reads of a pytest config: the stash and the command line."""

    def __init__(self, **given: Any) -> None:
        self.stash = pytest.Stash()
        self.given = given

    def getoption(self, name: str, default: Any = None) -> Any:
        return self.given.get(name, default)


def test_pytest_refuses_a_bad_store_option_before_any_test(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from plait.testing.contract import backends

    monkeypatch.delenv("PLAIT_CONTRACT_STORE", raising=False)
    assert backends.outside_store(Options()) is None  # type: ignore[arg-type]  # a stand-in
    bad = Options(**{"--plait-contract-store": "no_such_module:make"})
    with pytest.raises(pytest.UsageError) as refused:
        backends.outside_store(bad)  # type: ignore[arg-type]  # a stand-in
    assert str(refused.value).startswith(
        "the store factory no_such_module:make: cannot import module 'no_such_module'"
    )
    # the environment names a store as the option does (PLAIT_CONTRACT_STORE)
    monkeypatch.setenv("PLAIT_CONTRACT_STORE", "shop_store")
    with pytest.raises(pytest.UsageError, match="must be given as module:factory"):
        backends.outside_store(Options())  # type: ignore[arg-type]  # a stand-in


def test_plaits_own_run_collects_every_module_of_the_packaged_suite() -> None:
    """The suite is one of plait's testpaths, collected by name (test_*.py): a module dropped
    into it joins without being listed anywhere, and none is left out of plait's CI."""
    import tomllib

    options = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    pytest_options = options["tool"]["pytest"]["ini_options"]
    assert "src/plait/testing/contract" in pytest_options["testpaths"]
    assert "python_files" not in pytest_options  # pytest's default: test_*.py
    assert store_contract.SUITE == ROOT / "src" / "plait" / "testing" / "contract"
    assert len(list(store_contract.SUITE.glob("test_*.py"))) >= 50
