"""core.versions and core.upgrade: what changed between two plans, and whether a run fits a new
one (pure; the stores' side is tests/contract/test_upgrade.py and test_versions.py)."""

from __future__ import annotations

from dataclasses import replace

import plait
from plait.core.cascade import new_run
from plait.core.rows import StepStatus
from plait.core.upgrade import fit
from plait.core.versions import describe, diff_plans


def noop() -> None:
    return None


def other() -> int:
    return 1


def chain(*names: str, version: str = "1", code: object = noop) -> plait.Workflow:
    wf = plait.Workflow("chain", version=version)
    for i, name in enumerate(names):
        wf.add_step(name, code if i == len(names) - 1 else noop, after=list(names[i - 1 : i]))  # type: ignore[arg-type]
    return wf


def test_a_plan_saved_before_graphs_were_kept_is_compared_step_by_step() -> None:
    a, b = chain("a", "b").plan(), chain("a", "b", code=other).plan()
    assert not diff_plans(a, b).graph  # the same graph: code only
    assert diff_plans(a, b).code == {"b": {"a": a.steps[1].code, "b": b.steps[1].code}}
    legacy = replace(a, graph=None, fingerprint="old")
    assert not diff_plans(legacy, b).graph
    grown = chain("a", "b", "c").plan()
    found = diff_plans(replace(legacy, graph=None), grown)
    assert found.graph and found.added == ["c"]
    assert describe(found) == "steps added: 'c'"


def test_a_same_version_with_other_workflow_options_is_another_graph() -> None:
    a = chain("a").plan()
    b = plait.Workflow("chain", version="1", retry=plait.Retry(attempts=3))
    b.add_step("a", noop)
    found = diff_plans(a, b.plan())
    assert found.graph and not (found.added or found.options)
    assert (
        describe(found) == "the workflow's own options (retry, timeout, fail_fast) or step retries"
    )


def test_fit_rules() -> None:
    old = chain("a", "b", "c").plan()
    run, steps, _ = new_run(old, "r", b"{}", 0.0)
    rows = {s.name: s for s in steps}
    rows["a"].status, rows["a"].attempt = StepStatus.DONE, 1
    rows["b"].status = StepStatus.READY
    # c, not started, may go; b, not started, may change its dependencies
    shorter = fit(run, list(rows.values()), old, chain("a", "b", version="2").plan())
    assert (shorter.reason, shorter.dropped) == (None, ["c"])
    # a, done, may not go
    gone = fit(run, list(rows.values()), old, chain("b", "c", version="3").plan())
    assert gone.reason is not None and gone.reason.startswith("step 'a' is done (attempt 1)")
    # d added after c (unfinished) fits; e added after a (ended) does not
    grown = fit(run, list(rows.values()), old, chain("a", "b", "c", "d", version="4").plan())
    assert (grown.reason, grown.added) == (None, ["d"])
    late = plait.Workflow("chain", version="5")
    for name, after in (("a", []), ("b", ["a"]), ("c", ["b"]), ("e", ["a"])):
        late.add_step(name, noop, after=after)
    assert fit(run, list(rows.values()), old, late.plan()).reason == (
        "version 5 adds step 'e' after steps that have all ended (a): fork the run to run it"
    )
