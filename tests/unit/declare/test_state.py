"""Session state in workflow files: `${state.…}` in with:, when: and goto, `post:` setting and
appending from a step's output; the same runs as a Python workflow writing ctx.state."""

from __future__ import annotations

from typing import Any

import plait

from .helpers import flow, run, step_errors

TALLY = """
inputs:
  order: {type: integer, default: 6}
steps:
  start:
    action: test.echo
    with: {value: 0}
    post: {set: {total: "${output}"}}
  book:
    action: test.fetch
    with: {order_id: "${inputs.order}"}
    depends_on: start
    post:
      set: {total: "${output.total}", last: "${output.id}"}
      append: {log: "booked ${len(output.items)}"}
  big:
    action: test.echo
    with: {value: "${state.total}"}
    when: ${state.total > 50}
    depends_on: book
    post: {append: {log: "big ${output}"}}
  small:
    action: test.echo
    with: {value: "${state.total}"}
    when: ${state.total <= 50}
    depends_on: book
"""


def test_post_sets_and_appends_and_later_steps_read_the_state() -> None:
    engine, handle = run(flow(TALLY))
    assert handle.result(timeout=10) == {"big": 60, "small": None}
    steps = {s.name: s.status for s in engine.steps(handle.id)}
    assert steps["small"] is plait.StepStatus.SKIPPED
    assert engine.get_run(handle.id).state == {
        "total": 60, "last": 6, "log": ["booked 3", "big 60"],
    }  # fmt: skip
    changes = [
        (e.step, e.payload["op"], e.payload["key"])
        for e in engine.events(handle.id)
        if e.type == "state_changed"
    ]
    assert changes == [
        ("start", "set", "total"), ("book", "set", "total"), ("book", "set", "last"),
        ("book", "append", "log"), ("big", "append", "log"),
    ]  # fmt: skip


def test_the_python_twin_makes_the_same_state() -> None:
    wf = plait.Workflow("twin")

    @wf.step
    def start(ctx: plait.StepContext) -> int:
        ctx.state.set("total", 0)
        return 0

    @wf.step(after=["start"])
    def book(ctx: plait.StepContext, order: int = 6) -> int:
        ctx.state.set("total", order * 10)
        ctx.state.set("last", order)
        ctx.state.append("log", "booked 3")
        return order

    def is_big(state: plait.SessionState) -> bool:
        return bool(state.get("total") > 50)

    @wf.step(after=["book"], when=is_big)
    def big(ctx: plait.StepContext) -> Any:
        ctx.state.append("log", f"big {ctx.state.get('total')}")
        return ctx.state.get("total")

    engine, handle = run(wf)
    _, yaml_handle = (yaml := run(flow(TALLY)))
    assert handle.result(timeout=10) == {"big": 60}
    assert engine.get_run(handle.id).state == yaml[0].get_run(yaml_handle.id).state


def test_a_post_that_cannot_be_computed_fails_the_step_and_changes_nothing() -> None:
    engine, handle = run(
        flow(
            """
            steps:
              a:
                action: test.echo
                with: {value: 1}
                post:
                  set: {ok: true}
                  append: {bad: "${output / 0}"}
            """
        )
    )
    code, message = step_errors(engine, handle.id)["a"]
    assert code == "expression_error"
    assert message == "flow.yaml:10:21: steps.a.post.append.bad: division by zero"
    assert engine.get_run(handle.id).state == {}


def test_state_reads_in_a_goto_see_the_post() -> None:
    engine, handle = run(
        flow(
            """
            steps:
              loop:
                action: test.echo
                with: {value: "${len(default(state.seen, []))}"}
                post: {append: {seen: "${output}"}}
                goto: {when: "${len(state.seen) < 3}", step: loop}
            """
        )
    )
    assert handle.result(timeout=10) == {"loop": 2}
    assert engine.get_run(handle.id).state == {"seen": [0, 1, 2]}


def test_fail_fast_in_a_file_is_the_workflow_s_and_ends_the_run_at_its_first_failure() -> None:
    wf = flow(
        """
        fail_fast: true
        steps:
          bad: {action: test.fail, with: {message: declined}}
          later: {action: test.echo, depends_on: bad}
          other: {action: test.echo, with: {value: 1}, delay: 30s}
        """
    )
    assert wf.fail_fast is True
    engine, handle = run(wf)
    run_ = engine.get_run(handle.id)
    assert run_.status is plait.RunStatus.FAILED and run_.error == "step 'bad' failed: declined"
    steps = {s.name: s.status for s in engine.steps(handle.id)}
    assert steps == {
        "bad": plait.StepStatus.FAILED,
        "later": plait.StepStatus.SKIPPED,  # for its dependency's failure, as always
        "other": plait.StepStatus.CANCELLED,  # delayed 30 s: cancelled, not waited for
    }
