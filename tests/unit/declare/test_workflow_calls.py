"""`workflow:` steps: a workflow file calls another as a sub-workflow (relative to its own
directory, `with:` as the child's input, checked at load against the child's inputs); a file
that is missing or includes itself is refused at load, at the step's line. And the retry
options a file gives a step (`attempts: null`, `backoff: linear`, `non_retryable`)."""

from __future__ import annotations

from pathlib import Path

import pytest

import plait
from plait.declare import loader

from .helpers import flow, run, step_errors, text

CHILD = """
inputs:
  n: integer
steps:
  twice:
    action: test.async_double
    with: {n: "${inputs.n}"}
"""


def _files(tmp_path: Path, **files: str) -> Path:
    for name, body in files.items():
        path = tmp_path / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text(body, name=name.replace("/", "_")))
    return tmp_path


def test_a_step_calls_a_workflow_file_once_or_for_each_item(tmp_path: Path) -> None:
    _files(
        tmp_path,
        **{
            "sub/child": CHILD,
            "parent": """
            inputs:
              items: array
            steps:
              each:
                workflow: sub/child.yaml
                for_each: ${inputs.items}
                max_parallel: 2
                with: {n: "${item}"}
              one:
                workflow: sub/child.yaml
                with: {n: 21}
              last:
                action: test.echo
                with: {value: "${steps.one.output.twice}"}
            """,
        },
    )
    wf = plait.load(tmp_path / "parent.yaml")
    assert [c.name for c in wf.calls] == ["sub_child"]  # once, though two steps call it

    engine, handle = run(wf, {"items": [1, 2, 3]})

    assert handle.result(timeout=5) == {
        "each": [{"twice": 2}, {"twice": 4}, {"twice": 6}],
        "last": 42,
    }
    child = engine.get_run(f"{handle.id}.one.0.1")
    assert (child.workflow, child.parent_run, child.called_by) == ("sub_child", handle.id, "one")
    assert engine.get_run(f"{handle.id}.each:each.item-2.0.1").called_by == "each/each.item-2"


def test_the_called_file_is_part_of_the_fingerprint(tmp_path: Path) -> None:
    _files(tmp_path, child=CHILD, parent="steps:\n  go:\n    workflow: child.yaml\n"
           "    with: {n: 1}\n")  # fmt: skip
    before = plait.load(tmp_path / "parent.yaml").pinned_fingerprint
    _files(tmp_path, child=CHILD.replace("async_double", "echo").replace("{n:", "{value:"))
    assert plait.load(tmp_path / "parent.yaml").pinned_fingerprint != before


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (
            {"parent": "steps:\n  go:\n    workflow: nowhere.yaml\n"},
            "parent.yaml:6:15: steps.go.workflow: cannot read workflow file 'nowhere.yaml' "
            "({dir}/nowhere.yaml): No such file or directory",
        ),
        (
            {"parent": "steps:\n  go:\n    workflow: parent.yaml\n"},
            "parent.yaml:6:15: steps.go.workflow: workflow file 'parent.yaml' includes itself: "
            "parent.yaml -> parent.yaml",
        ),
        (
            {
                "parent": "steps:\n  go:\n    workflow: middle.yaml\n",
                "middle": "steps:\n  back:\n    workflow: parent.yaml\n",
            },
            "middle.yaml:6:15: steps.back.workflow: workflow file 'parent.yaml' includes itself: "
            "parent.yaml -> middle.yaml -> parent.yaml",
        ),
        (
            {"parent": "steps:\n  go:\n    action: test.echo\n    workflow: child.yaml\n"},
            "parent.yaml:7:5: steps.go.workflow: a step calls an action or a workflow, not both: "
            "drop action: or workflow:",
        ),
        (
            {"child": CHILD, "parent": "steps:\n  go:\n    workflow: child.yaml\n"},
            "parent.yaml:6:15: steps.go.workflow: action 'workflow:child.yaml' needs argument "
            "'n' under with:",
        ),
        (
            {
                "child": CHILD,
                "parent": "steps:\n  go:\n    workflow: child.yaml\n    with: {n: 1, m: 2}\n",
            },
            "parent.yaml:7:18: steps.go.with.m: action 'workflow:child.yaml' has no parameter 'm' "
            "(it takes: n)",
        ),
        (
            {
                "child": CHILD,
                "parent": "steps:\n  go:\n    workflow: child.yaml\n    with: {n: one}\n",
            },
            "parent.yaml:7:15: steps.go.with.n: action 'workflow:child.yaml', argument 'n': Input "
            "should be a valid integer",
        ),
        (
            {
                "child": CHILD.replace("async_double", "async_dubble"),
                "parent": "steps:\n  go:\n    workflow: child.yaml\n    with: {n: 1}\n",
            },
            "child.yaml:8:13: steps.twice.action: unknown action 'test.async_dubble'",
        ),
    ],
)
def test_a_bad_workflow_call_is_refused_at_load(
    tmp_path: Path, files: dict[str, str], message: str
) -> None:
    _files(tmp_path, **files)
    with pytest.raises(plait.DeclarationError) as caught:
        plait.load(tmp_path / "parent.yaml")
    assert str(caught.value).startswith(f"{tmp_path}/" + message.format(dir=tmp_path))


def test_a_failed_child_fails_the_calling_step_with_its_code(tmp_path: Path) -> None:
    _files(
        tmp_path,
        child="steps:\n  no:\n    action: test.fail\n    with: {message: nope}\n",
        parent="steps:\n  go:\n    workflow: child.yaml\n",
    )
    engine, handle = run(plait.load(tmp_path / "parent.yaml"))
    code, message = step_errors(engine, handle.id)["go"]
    assert code == "Permanent"
    assert message == f"sub-workflow run '{handle.id}.go.0.1' failed: step 'no' failed: nope"


# -- retry options -------------------------------------------------------------------------------


def _retry(spec: str) -> plait.Retry:
    wf = flow(f"steps:\n  s:\n    action: test.echo\n    retry: {spec}\n")
    policy = wf["s"].retry
    assert policy is not None
    return policy


def test_retry_takes_unbounded_attempts_linear_backoff_and_non_retryable_codes() -> None:
    policy = _retry("{attempts: null, backoff: linear, delay: 2s, non_retryable: [Boom, timeout]}")
    assert policy == plait.Retry(
        attempts=None, backoff="linear", delay=2.0, non_retryable=("Boom", "timeout")
    )


def test_a_non_retryable_code_fails_the_step_at_once() -> None:
    wf = flow(
        """
        steps:
          s:
            action: test.fail
            retry: {attempts: 5, delay: 1ms, non_retryable: [Permanent]}
        """
    )
    engine, handle = run(wf)
    assert step_errors(engine, handle.id)["s"][0] == "Permanent"
    assert next(s for s in engine.steps(handle.id)).attempts == 1


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "{backoff: linaer}",
            "flow.yaml:7:22: steps.s.retry.backoff: must be a number from 1 to 100 or 'linear', "
            "got 'linaer' (did you mean 'linear'?)",
        ),
        (
            "{non_retryable: Boom}",
            "flow.yaml:7:28: steps.s.retry.non_retryable: must be a list of error codes (an "
            "exception's class name unless it gives a code, timeout, ...), got a string ('Boom')",
        ),
        (
            "{non_retryable: [Boom, 3]}",
            "flow.yaml:7:35: steps.s.retry.non_retryable[1]: must be an error code (a non-empty "
            "string), got 3",
        ),
        (
            "{attempts: 0}",
            "flow.yaml:7:23: steps.s.retry.attempts: must be an integer from 1 to 1000, or null "
            "for no limit, got 0",
        ),
    ],
)
def test_bad_retry_options_are_refused_at_their_line(spec: str, message: str) -> None:
    with pytest.raises(plait.DeclarationError) as caught:
        flow(f"steps:\n  s:\n    action: test.echo\n    retry: {spec}\n")
    assert str(caught.value) == message


def test_the_retry_keys_are_the_schema_s() -> None:
    assert "non_retryable" in loader.RETRY_KEYS and "workflow" in loader.STEP_KEYS


def test_the_nightly_etl_example_calls_the_etl_once_per_source() -> None:
    examples = Path(__file__).resolve().parents[3] / "examples"
    wf = plait.load(examples / "etl_nightly.yaml")
    assert [c.name for c in wf.calls] == ["etl"]
    engine, handle = run(wf, {"sources": ["shop", "web"], "limit": 2})
    assert handle.result(timeout=5) == {
        "summary": "2 source(s): loaded 2 rows into sales_shop (total 33.0); loaded 2 rows "
        "into sales_web (total 33.0)"
    }
    children = engine.list_runs(workflow="etl").runs
    assert sorted(r.called_by or "" for r in children) == [
        "each_source/each_source.item-0",
        "each_source/each_source.item-1",
    ]


def test_a_python_step_calling_a_workflow_file_gets_what_a_workflow_step_gets(
    tmp_path: Path,
) -> None:
    """The same sub-workflow called both ways: `workflow:` in a file, ctx.call in Python."""
    _files(tmp_path, child=CHILD, parent="steps:\n  go:\n    workflow: child.yaml\n"
           "    with: {n: 5}\n")  # fmt: skip
    from_file = plait.load(tmp_path / "parent.yaml")
    child = from_file.calls[0]
    in_python = plait.Workflow("twin", calls=[child])

    @in_python.step()
    def go(ctx: plait.StepContext) -> object:
        return ctx.call(child, {"n": 5})

    outputs = []
    for wf in (from_file, in_python):
        engine, handle = run(wf)
        outputs.append(handle.result(timeout=5))
        assert engine.get_run(f"{handle.id}.go.0.1").called_by == "go"
    assert outputs[0] == outputs[1] == {"go": {"twice": 10}}


def test_a_called_file_imports_the_modules_beside_it(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "beside_child.py").write_text(
        "import plait\n\n@plait.action('beside.triple')\ndef triple(n: int) -> int:\n"
        "    return 3 * n\n"
    )
    (tmp_path / "lib" / "child.yaml").write_text(
        "name: child\nimports: [beside_child]\ninputs: {n: integer}\n"
        "steps:\n  t:\n    action: beside.triple\n    with: {n: '${inputs.n}'}\n"
    )
    (tmp_path / "parent.yaml").write_text(
        "name: parent\nsteps:\n  go:\n    workflow: lib/child.yaml\n    with: {n: 2}\n"
    )
    _, handle = run(plait.load(tmp_path / "parent.yaml"))
    assert handle.result(timeout=5) == {"go": {"t": 6}}
