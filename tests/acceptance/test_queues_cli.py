"""`plait queues list|set`, as a user runs them, and their errors."""

from __future__ import annotations

import json

import plait

from .conftest import Cli


def test_set_and_list_queues(cli: Cli, engine: plait.Engine) -> None:
    assert engine.queues() == []  # the database exists
    assert cli("queues", "list").stdout.strip() == "no configured queues"
    done = cli("queues", "set", "emails", "--concurrency", "5", "--rate", "10", "--burst", "20")
    assert done.code == 0, done.stderr
    assert done.stdout.strip() == (
        "emails  concurrency 5  rate 10 per 1s, burst 20, 20.0 token(s) left"
    )
    [q] = engine.queues()  # stored: every worker sees it
    assert (q.concurrency, q.rate) == (5, plait.Rate(10, per=1.0, burst=20))
    cli("queues", "set", "emails", "--concurrency", "2")  # the rate is lifted
    [doc] = json.loads(cli("queues", "list", "--json").stdout)
    assert doc == {"name": "emails", "concurrency": 2, "rate": None, "tokens": None}


def test_bad_limits_exit_2_with_one_line(cli: Cli, engine: plait.Engine) -> None:
    cases = [
        (["emails", "--concurrency", "0"], "queue 'emails': concurrency must be an integer >= 1 and <= 2147483647, got 0"),
        (["emails", "--rate", "0"], "queue 'emails': rate count must be a finite number > 0 and <= 1e9, got 0.0"),
        (["emails", "--rate", "5", "--burst", "0.5"], "queue 'emails': rate burst must be a finite number >= 1 and <= 1e9, got 0.5"),
        (["a b"], "plait queues set: invalid queue name 'a b': use 1-100 letters, digits or any of _ . : @ - (no spaces)"),
        (["emails", "--concurrency", "99999999999999999999"], "queue 'emails': concurrency must be an integer >= 1 and <= 2147483647, got 99999999999999999999"),
        (["emails", "--rate", "5", "--burst", "1e308"], "queue 'emails': rate burst must be a finite number >= 1 and <= 1e9, got 1e+308"),
        (["emails", "--rate", "1e308"], "queue 'emails': rate count must be a finite number > 0 and <= 1e9, got 1e+308"),
        (["emails", "--rate", "nan"], "queue 'emails': rate count must be a finite number > 0 and <= 1e9, got nan"),
        (["emails", "--rate", "1", "--per", "inf"], "queue 'emails': rate per must be a finite number of seconds >= 0.001 and <= 31536000 (a year), got inf"),
        (["emails", "--rate", "1", "--per", "0"], "queue 'emails': rate per must be a finite number of seconds >= 0.001 and <= 31536000 (a year), got 0.0"),
        (["emails", "--rate", "1", "--per", "1e-300"], "queue 'emails': rate per must be a finite number of seconds >= 0.001 and <= 31536000 (a year), got 1e-300"),
        (["emails", "--burst", "5"], "--burst needs --rate COUNT: it sizes a rate limit (queues set replaces a queue's limits: those not given are lifted)"),
        (["emails", "--concurrency", "3", "--per", "60"], "--per needs --rate COUNT: it is the period of a rate limit (queues set replaces a queue's limits: those not given are lifted)"),
    ]  # fmt: skip
    for args, message in cases:
        result = cli("queues", "set", *args)
        assert result.code == 2, (args, result.stderr)
        assert result.stderr.strip() == f"plait: error: {message}"
    assert engine.queues() == []
