"""The stores the contract suite runs on (conftest.py says how they are chosen)."""

from __future__ import annotations

import importlib
import os
import tempfile
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

OUTSIDE_SCHEME = "contract-outside"
STORE_OPTION = "--plait-contract-store"
DURABLE_OPTION = "--plait-contract-durable"
STORE_ENV = "PLAIT_CONTRACT_STORE"
DURABLE_ENV = "PLAIT_CONTRACT_DURABLE"
ONLY_ENV = "PLAIT_CONTRACT_BACKENDS"


def _present() -> str | None:
    return None


@dataclass(frozen=True)
class Backend:
    """A store the suite runs on: `url(tmp)` is a fresh, empty store in that temporary
    directory (the same directory again: the same store)."""

    name: str
    url: Callable[[Path], str]
    durable: bool  # a store opened again on the same URL sees what the last one wrote
    missing: Callable[[], str | None] = _present  # why the store cannot run here, or None
    # set up for the whole session, taken down after it (a server's leftovers)
    session: Callable[[], AbstractContextManager[None]] | None = None


BUILT_IN = [
    Backend("memory", lambda _tmp: "memory://", durable=False),
    Backend("sqlite", lambda tmp: f"sqlite:///{tmp / 'plait.db'}", durable=True),
]

_ADDED = pytest.StashKey[list[Backend]]()
_CHOSEN = pytest.StashKey[list[Backend]]()
_OUTSIDE = pytest.StashKey["Backend | None"]()


def add_backends(config: pytest.Config, *added: Backend) -> None:
    """Run the suite on these stores too (a plugin's `pytest_configure` calls it; plait's
    checkout adds PostgreSQL and NATS). A store from outside, when named, runs alone."""
    config.stash.setdefault(_ADDED, []).extend(added)


def backends(config: pytest.Config) -> list[Backend]:
    """The stores this session's suite runs on, in order."""
    if _CHOSEN not in config.stash:
        outside = outside_store(config)
        chosen = [outside] if outside is not None else [*BUILT_IN, *config.stash.get(_ADDED, [])]
        only = os.environ.get(ONLY_ENV)
        if only:
            chosen = [b for b in chosen if b.name in only.split(",")]
        config.stash[_CHOSEN] = chosen
    return config.stash[_CHOSEN]


def outside_store(config: pytest.Config) -> Backend | None:
    """The backend of the store from outside plait that this session names, if it names one;
    its factory registered under OUTSIDE_SCHEME. A factory that cannot be loaded, or that
    makes no store, is a usage error saying why."""
    if _OUTSIDE not in config.stash:
        target = config.getoption(STORE_OPTION, None) or os.environ.get(STORE_ENV)
        durable = bool(config.getoption(DURABLE_OPTION, False)) or (
            os.environ.get(DURABLE_ENV, "") == "1"
        )
        try:
            config.stash[_OUTSIDE] = _outside(target, durable) if target else None
        except ValueError as bad:
            raise pytest.UsageError(str(bad)) from None
    return config.stash[_OUTSIDE]


def _outside(target: str, durable: bool) -> Backend:
    check_factory(target)
    _install_entry_point(target)
    return Backend("outside", lambda tmp: f"{OUTSIDE_SCHEME}://{tmp}/", durable=durable)


def check_factory(target: str) -> None:
    """Register the factory `target` names (`module:name`) under OUTSIDE_SCHEME, once it has
    made a store in a scratch directory; ValueError saying what is wrong otherwise."""
    from plait import StoreError
    from plait.stores import open_store, register_store

    factory = load_factory(target)
    register_store(OUTSIDE_SCHEME, factory)
    with tempfile.TemporaryDirectory(prefix="plait-contract-") as tmp:
        try:
            open_store(f"{OUTSIDE_SCHEME}://{tmp}/")
        except StoreError as bad:
            raise ValueError(f"the store factory {target}: {bad}") from None


def load_factory(target: str) -> Callable[..., Any]:
    """The callable `module:name` names; ValueError saying what is wrong otherwise."""
    module_name, _, name = target.partition(":")
    if not module_name or not name:
        raise ValueError(
            f"the store factory must be given as module:factory "
            f"(my_store.testing:make), got {target!r}"
        )
    try:
        module = importlib.import_module(module_name)
    except Exception as failed:
        raise ValueError(
            f"the store factory {target}: cannot import module {module_name!r}: "
            f"{type(failed).__name__}: {failed}"
        ) from None
    factory = getattr(module, name, None)
    if factory is None:
        raise ValueError(f"the store factory {target}: module {module_name!r} has no {name!r}")
    if not callable(factory):
        raise ValueError(
            f"the store factory {target} must be callable as factory(url, create=, "
            f"read_only=), got {type(factory).__name__}"
        )
    return factory  # type: ignore[no-any-return]  # a callable found by name


def _install_entry_point(target: str) -> None:
    """Make the outside store's scheme known to the processes tests start (`plait worker
    --db contract-outside://…`) as a package installs it: an entry point of the group
    `plait.stores`, in a dist-info folder on their PYTHONPATH (with the folder the factory's
    module is imported from, so that they import it as this process does)."""
    import sys

    site = Path(tempfile.mkdtemp(prefix="plait-contract-outside-"))
    info = site / "plait_contract_outside-0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: plait-contract-outside\nVersion: 0\n", encoding="utf-8"
    )
    (info / "entry_points.txt").write_text(
        f"[plait.stores]\n{OUTSIDE_SCHEME} = {target}\n", encoding="utf-8"
    )
    module_name = target.partition(":")[0]
    paths = [str(site)]
    file = getattr(sys.modules[module_name], "__file__", None)
    if file is not None:
        path = Path(file).resolve()
        depth = module_name.count(".") + (2 if path.name == "__init__.py" else 1)
        paths.append(str(path.parents[depth - 1]))
    paths += [os.getcwd(), *filter(None, [os.environ.get("PYTHONPATH")])]
    os.environ["PYTHONPATH"] = os.pathsep.join(paths)
