"""Failed steps across runs, on every store (issue 18, item 6): `engine.failures` filtered by
workflow, step, code, time and run labels, newest first, paged with an opaque cursor that refuses to be
misused; `engine.retry_failures` counting first (dry run) and retrying many at once."""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

import plait


@pytest.fixture
def engine(store_url: str) -> Iterator[plait.Engine]:
    with plait.Engine(store_url, lease=5.0) as eng:
        yield eng


BROKEN = {"charge": True, "ship": True}


def _workflows() -> tuple[plait.Workflow, plait.Workflow]:
    shop = plait.Workflow("dl_shop")

    @shop.step
    def charge(n: int) -> int:
        if BROKEN["charge"]:
            raise plait.Permanent(f"declined {n}", code="declined")
        return n

    @shop.step
    def receipt(charge: int) -> str:
        return f"receipt {charge}"

    depot = plait.Workflow("dl_depot")

    @depot.step
    def ship(n: int) -> int:
        if BROKEN["ship"]:
            raise ConnectionError(f"depot down {n}")
        return n

    return shop, depot


@pytest.fixture
def failed(engine: plait.Engine) -> Iterator[tuple[plait.Workflow, plait.Workflow, float]]:
    """Three runs of dl_shop failed at charge (code declined), two of dl_depot at ship
    (ConnectionError); `middle` lies between the first three and the last two."""
    BROKEN.update(charge=True, ship=True)
    shop, depot = _workflows()
    first = [engine.start(shop, {"n": n}, run_id=f"shop-{n}") for n in range(3)]
    engine.run_worker(until=first, timeout=30)
    middle = time.time()
    later = [engine.start(depot, {"n": n}, run_id=f"depot-{n}") for n in range(2)]
    engine.run_worker(until=later, timeout=30)
    yield shop, depot, middle
    BROKEN.update(charge=True, ship=True)


def _ids(page: plait.FailedStepPage) -> list[tuple[str, str]]:
    return [(f.run_id, f.step) for f in page.steps]


def test_failures_filter_newest_first(
    engine: plait.Engine, failed: tuple[plait.Workflow, plait.Workflow, float]
) -> None:
    _, _, middle = failed
    every = engine.failures(limit=10)
    assert sorted(_ids(every)) == [
        ("depot-0", "ship"), ("depot-1", "ship"),
        ("shop-0", "charge"), ("shop-1", "charge"), ("shop-2", "charge"),
    ]  # fmt: skip
    ends = [f.finished_at for f in every.steps]
    assert ends == sorted(ends, reverse=True) and every.next_cursor is None  # type: ignore[type-var]  # all set
    assert {f.run_id for f in every.steps[:2]} == {"depot-0", "depot-1"}  # the latest first
    assert len(engine.failures(workflow="dl_shop").steps) == 3
    assert sorted(_ids(engine.failures(step="ship"))) == [("depot-0", "ship"), ("depot-1", "ship")]
    assert len(engine.failures(code="declined").steps) == 3
    assert len(engine.failures(code="ConnectionError", workflow="dl_shop").steps) == 0
    assert sorted(_ids(engine.failures(since=middle))) == [("depot-0", "ship"), ("depot-1", "ship")]
    as_datetime = datetime.fromtimestamp(middle, UTC)
    assert len(engine.failures(since=as_datetime).steps) == 2
    assert engine.failures(workflow="nobody").steps == []


def test_failures_page_with_their_filters(
    engine: plait.Engine, failed: tuple[plait.Workflow, plait.Workflow, float]
) -> None:
    every = _ids(engine.failures(workflow="dl_shop", limit=10))
    page = engine.failures(workflow="dl_shop", limit=2)
    assert page.next_cursor is not None and "|" not in page.next_cursor  # opaque
    rest = engine.failures(workflow="dl_shop", limit=2, cursor=page.next_cursor)
    assert _ids(page) + _ids(rest) == every and rest.next_cursor is None
    with pytest.raises(plait.InputError, match="belongs to a listing with other filters"):
        engine.failures(workflow="dl_depot", limit=2, cursor=page.next_cursor)
    with pytest.raises(plait.InputError, match="belongs to a listing with other filters"):
        engine.failures(limit=2, cursor=page.next_cursor)


def test_a_bad_cursor_is_refused_saying_why(engine: plait.Engine) -> None:
    with pytest.raises(plait.InputError, match=r"invalid cursor 'zz!': pass the next_cursor"):
        engine.failures(cursor="zz!")
    forged = base64.urlsafe_b64encode(json.dumps([1, "x", "r", "s", "d"]).encode()).decode()
    with pytest.raises(plait.InputError, match="invalid cursor"):
        engine.failures(cursor=forged)
    not_finite = base64.urlsafe_b64encode(b'[1, NaN, "r", "s", "d"]').decode()
    with pytest.raises(plait.InputError, match="invalid cursor"):
        engine.failures(cursor=not_finite)
    old = base64.urlsafe_b64encode(json.dumps([0, 1.0, "r", "s", "d"]).encode()).decode()
    with pytest.raises(plait.InputError, match="has expired: another version of plait made it"):
        engine.failures(cursor=old)
    with pytest.raises(plait.InputError, match=re.escape("invalid cursor 'nan|a|b'")):
        engine.failed_steps(cursor="nan|a|b")  # the older name, the same rule


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"workflow": 3}, "workflow must be a non-empty string of at most 200 characters, got 3"),
        ({"step": ""}, "step must be a non-empty string of at most 200 characters, got ''"),
        ({"code": ["x"]}, "code must be a non-empty string"),
        ({"since": "yesterday"}, "since must be a datetime or epoch seconds, got 'yesterday'"),
        ({"limit": 0}, "limit must be an integer between 1 and"),
        ({"labels": {"a b": "1"}}, "failures: invalid label key 'a b': use 1-63 ASCII letters"),
        ({"labels": {"k": 1}}, "failures: label 'k' must be a string, got int 1"),
        ({"labels": ["k"]}, "failures: labels must be a dict of strings to strings, got list"),
    ],
)
def test_bad_filters_are_refused(
    engine: plait.Engine, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(plait.InputError, match=message):
        engine.failures(**kwargs)  # type: ignore[arg-type]  # wrong types on purpose


def test_retry_failures_counts_then_retries(
    engine: plait.Engine, failed: tuple[plait.Workflow, plait.Workflow, float]
) -> None:
    before = {r: len(engine.events(r)) for r in ("shop-0", "shop-1", "shop-2", "depot-0")}
    count = engine.retry_failures(plait.FailureFilter(code="declined"), dry_run=True)
    assert (count.dry_run, count.matched, count.more, count.runs) == (True, 3, False, 3)
    assert sorted(count.sample) == ["shop-0/charge", "shop-1/charge", "shop-2/charge"]
    assert count.items == []
    assert {r: len(engine.events(r)) for r in before} == before  # a dry run writes nothing

    limited = engine.retry_failures(plait.FailureFilter(), dry_run=True, limit=4)
    assert (limited.matched, limited.more) == (4, True)

    BROKEN["charge"] = False
    done = engine.retry_failures(plait.FailureFilter(workflow="dl_shop"), by="ops")
    assert not done.dry_run and done.matched == 3
    assert sorted((i.run_id, i.outcome) for i in done.items) == [
        ("shop-0", "done"), ("shop-1", "done"), ("shop-2", "done"),
    ]  # fmt: skip
    handles = [plait.RunHandle(engine, f"shop-{n}") for n in range(3)]
    engine.run_worker(until=handles, timeout=30)
    assert [h.result() for h in handles] == [{"receipt": f"receipt {n}"} for n in range(3)]
    assert sorted(_ids(engine.failures())) == [("depot-0", "ship"), ("depot-1", "ship")]
    assert engine.retry_failures(plait.FailureFilter(workflow="dl_shop")).matched == 0


def test_failures_filter_by_run_labels(engine: plait.Engine) -> None:
    BROKEN.update(charge=True, ship=True)
    shop, _ = _workflows()
    tags = [{"tier": "gold", "region": "eu"}, {"tier": "gold"}, {"tier": "free", "region": "eu"}]
    handles = [engine.start(shop, {"n": n}, run_id=f"shop-{n}", labels=tags[n]) for n in range(3)]
    engine.run_worker(until=handles, timeout=30)
    gold = engine.failures(labels={"tier": "gold"})
    assert sorted(_ids(gold)) == [("shop-0", "charge"), ("shop-1", "charge")]
    both = engine.failures(labels={"tier": "gold", "region": "eu"})  # every one of them
    assert _ids(both) == [("shop-0", "charge")]
    assert engine.failures(labels={"tier": "none"}).steps == []
    first = engine.failures(labels={"tier": "gold"}, limit=1)
    assert first.next_cursor is not None
    rest = engine.failures(labels={"tier": "gold"}, limit=1, cursor=first.next_cursor)
    assert sorted(_ids(first) + _ids(rest)) == sorted(_ids(gold))
    with pytest.raises(plait.InputError, match="belongs to a listing with other filters"):
        engine.failures(labels={"tier": "free"}, cursor=first.next_cursor)
    where = plait.FailureFilter(workflow="dl_shop", labels={"region": "eu"})
    count = engine.retry_failures(where, dry_run=True)
    assert (count.matched, sorted(count.sample)) == (2, ["shop-0/charge", "shop-2/charge"])


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (({"workflow": "dl_shop"},), {}, "filter must be a plait.FailureFilter, got dict"),
        ((plait.FailureFilter(),), {"dry_run": "yes"}, "dry_run must be True or False, got 'yes'"),
        ((plait.FailureFilter(),), {"limit": 1001}, "limit must be an integer between 1 and 1000"),
        ((plait.FailureFilter(since="now"),), {}, "since must be a datetime or epoch seconds"),  # type: ignore[arg-type]  # on purpose
    ],
)
def test_retry_failures_bad_input_writes_nothing(
    engine: plait.Engine,
    failed: tuple[plait.Workflow, plait.Workflow, float],
    args: tuple[object, ...],
    kwargs: dict[str, object],
    message: str,
) -> None:
    with pytest.raises(plait.InputError, match=message):
        engine.retry_failures(*args, **kwargs)  # type: ignore[arg-type]  # wrong types on purpose
    assert len(engine.failures().steps) == 5  # nothing retried
