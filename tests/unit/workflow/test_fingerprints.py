"""Fingerprints are pinned: a run records its workflow's fingerprint, and a worker serves only
the fingerprints it has registered, so a change in how plait computes them would strand every
run started before an upgrade. These values were computed before definitions were made faster
for big graphs (issue 14, big runs); the faster code must give the very same."""

from __future__ import annotations

from datetime import timedelta

import plait


def noop() -> None:
    return None


def leaf(root: int) -> int:
    return root


def total(ctx: plait.StepContext, a: int, extra: int = 2, **rest: object) -> int:
    return a + extra


def positive(a: int) -> bool:
    return a > 0


def key(order_id: int) -> str:
    return str(order_id)


def chain() -> plait.Workflow:
    wf = plait.Workflow("chain", version="1")
    wf.add_step("a", noop)
    wf.add_step("b", leaf, ("a",))
    wf.add_step("c", noop, after=["b"])
    return wf


def options() -> plait.Workflow:
    wf = plait.Workflow("options", version="7", retry=plait.Retry(attempts=3), timeout=30)
    wf.add_step("a", noop)
    wf.add_step(
        "b",
        total,
        ("a",),
        defaults={"a": 0},
        retry=plait.Retry(attempts=5, backoff=2.0, max_delay=60),
        timeout=5,
        priority=3,
        optional=True,
        when=positive,
    )
    wf.add_step("c", noop, after_any=["b"], delay=timedelta(seconds=2), queue="slow")
    wf.add_step("d", noop, after=["c"], approval=True)
    wf.add_step("e", noop, after=["a"], concurrency_key=key, key_limit=2)
    wf.signal("payment", after=["a"])

    @wf.task
    def child(item: int) -> int:
        return item

    return wf


def fan(n: int) -> plait.Workflow:
    wf = plait.Workflow("fan", version="1")
    wf.add_step("root", lambda: 1)
    for i in range(n):
        wf.add_step(f"s{i}", leaf, ("root",))
    wf.add_step("sink", noop, after=[f"s{i}" for i in range(n)])
    return wf


def shapes() -> plait.Workflow:
    """Steps alike but for their names, in several shapes (options, a refusal, fail-fast), each
    shape printed once and the names spliced in: the same bytes as every step printed whole."""
    policy = plait.ApprovalPolicy("auto", block=["t1*"])
    wf = plait.Workflow("shapes", version="2", fail_fast=True, approval_policy=policy)
    wf.add_step("a", noop)
    for i in range(50):
        retry = plait.Retry(attempts=2)
        wf.add_step(f"q{i}", leaf, ("a",), queue="q", retry=retry, timeout=3, priority=i % 2)
        wf.add_step(f"t{i}", total, ("a",))
        wf.add_step(f"o{i}", noop, after=["a"], optional=True)
    after, after_any = [f"q{i}" for i in range(50)], [f"o{i}" for i in range(50)]
    wf.add_step("z", noop, after=after, after_any=after_any)
    return wf


def test_fingerprints_are_what_they_were() -> None:
    """With the code (pinned): as before code_changes existed, so that runs started before
    migration 12 are served still."""
    assert {
        "chain": chain().pinned_fingerprint,
        "options": options().pinned_fingerprint,
        "fan": fan(1000).pinned_fingerprint,
        "shapes": shapes().pinned_fingerprint,
    } == {
        "chain": "350e81332a212383",
        "options": "d12346b5ab94d258",
        "fan": "08a816f000fb668d",
        "shapes": "25cc9746abe2f25d",
    }


def test_graph_fingerprints_are_what_they_were() -> None:
    """Without the code (code_changes="deploy", the default since migration 12): pinned too."""
    assert {
        "chain": chain().fingerprint,
        "options": options().fingerprint,
        "fan": fan(1000).fingerprint,
        "shapes": shapes().fingerprint,
    } == {
        "chain": "ee66c6acdbff57a8",
        "options": "c242f4f43f9ff94f",
        "fan": "23f03d8ca5eff835",
        "shapes": "a387cb05928db8b2",
    }
