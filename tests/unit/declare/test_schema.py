"""schemas/plait-workflow.schema.json, which editors read, says what the loader accepts: the same
keys at every level, the examples valid, and the loader's structural refusals refused too."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

import plait
from plait.declare import loader
from plait.declare.source import read

from .helpers import flow, text
from .test_load import ORDERS

ROOT = Path(__file__).resolve().parents[3]
SCHEMA = json.loads((ROOT / "schemas" / "plait-workflow.schema.json").read_text())
VALIDATOR = Draft202012Validator(SCHEMA)


def document(source: str) -> Any:
    return read("flow.yaml", source).value


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    Draft202012Validator.check_schema(SCHEMA)


def test_the_schema_and_the_loader_know_the_same_keys() -> None:
    defs = SCHEMA["$defs"]
    assert tuple(SCHEMA["properties"]) == loader.TOP_KEYS
    assert tuple(defs["step"]["properties"]) == loader.STEP_KEYS
    assert tuple(defs["retry"]["properties"]) == loader.RETRY_KEYS
    assert tuple(defs["goto"]["properties"]) == loader.GOTO_KEYS
    assert tuple(defs["post"]["properties"]) == loader.POST_KEYS
    assert tuple(
        SCHEMA["properties"]["inputs"]["additionalProperties"]["oneOf"][1]["properties"]
    ) == (loader.INPUT_KEYS)
    assert tuple(defs["input_type"]["enum"]) == tuple(loader.INPUT_TYPES)
    policy = SCHEMA["properties"]["approval_policy"]["oneOf"]
    assert tuple(policy[1]["properties"]) == loader.POLICY_KEYS
    assert tuple(defs["policy_mode"]["enum"]) == loader.POLICY_MODES
    awaiting = defs["step"]["properties"]["await"]["oneOf"]
    assert tuple(awaiting[1]["properties"]) == loader.AWAIT_KEYS
    assert tuple(defs["await_mode"]["enum"]) == loader.AWAIT_MODES
    assert defs["end_step"]["not"]["anyOf"] == [{"required": [k]} for k in loader.NOT_AT_END]
    for level in (SCHEMA, defs["step"], defs["retry"], defs["goto"], defs["post"]):
        assert level["additionalProperties"] is False  # unknown keys refused, as the loader does


def test_the_examples_and_the_files_the_loader_accepts_are_valid() -> None:
    for name in ("etl.yaml", "etl_nightly.yaml", "refund.yaml"):
        example = ROOT / "examples" / name
        assert list(VALIDATOR.iter_errors(document(example.read_text()))) == []
        plait.load(example)
    files = [text(ORDERS)]
    files.append(
        text(
            """
            plait: 1
            version: 2
            retry: {attempts: 3, delay: 2s, backoff: 1.5, max_delay: 1m, jitter: 0}
            timeout: 1h30m
            fail_fast: true
            inputs:
              n: integer
              xs: {type: array, default: [], description: things}
            steps:
              a:
                action: test.count
                with: {n: "${inputs.n}"}
                goto: {when: "${steps.a.output < 3}", step: a, max_iterations: 4}
                post: {set: {last: "${output}"}, append: {all: "${output}"}}
              b:
                action: test.echo
                for_each: ${inputs.xs}
                max_parallel: 2
                with: {value: "${item}"}
                depends_on: a
                when: true
                optional: true
                defaults: {a: 0}
                queue: "io:slow"
                priority: -3
                delay: 250ms
                timeout: 10
                approval: {expires_after: 1d, on_expiry: approve}
            """
        )
    )
    from .test_catch import FILE as CATCHING

    files.append(text(CATCHING))
    files.append(
        text(
            """
            steps:
              a:
                action: test.echo
                for_each: ${[1, 2]}
                with: {value: "${item}"}
                await: {mode: any_error, timeout: 30s}
              b:
                action: test.echo
                for_each: ${[1, 2]}
                await: first
            """
        )
    )
    for source in files:
        assert list(VALIDATOR.iter_errors(document(source))) == []
        plait.loads(source)  # and the loader takes them


STRUCTURAL = [
    "stesp: {}\nsteps: {a: {action: test.echo}}\n",
    "steps:\n  a: {action: test.echo, retyr: {}}\n",
    "steps:\n  a: {action: test.echo, retry: {attempts: three}}\n",
    "steps:\n  a: {action: test.echo, retry: {attempts: 0}}\n",
    "steps:\n  a: {action: test.echo, retry: {jiter: 1}}\n",
    "steps:\n  a: {action: test.echo, timeout: soon}\n",
    "steps:\n  a: {action: test.echo, timeout: 0}\n",
    "steps:\n  a: {action: test.echo, optional: 'yes please'}\n",
    "steps:\n  a: {action: test.echo, priority: high}\n",
    "steps:\n  a: {action: test.echo, queue: two words}\n",
    "steps:\n  a: {action: test.echo, approval: {on_expiry: later}}\n",
    "steps:\n  a: {action: test.echo, approval: yes please}\n",
    "steps:\n  a: {with: {}}\n",
    "steps:\n  my-step: {action: test.echo}\n",
    "steps:\n  a: {action: test.echo, goto: [{when: true}]}\n",
    "steps:\n  a: {action: test.echo, goto: [{step: a, max_iterations: 0}]}\n",
    "inputs: {n: {type: int}}\nsteps:\n  a: {action: test.echo}\n",
    "inputs: {n: {type: integer, deflt: 1}}\nsteps:\n  a: {action: test.echo}\n",
    "plait: 2\nsteps:\n  a: {action: test.echo}\n",
    "steps: []\n",
    "steps: {}\n",
    "steps:\n  a: {action: test.echo, post: {}}\n",
    "steps:\n  a: {action: test.echo, post: {sett: {k: 1}}}\n",
    "steps:\n  a: {action: test.echo, post: {append: {}}}\n",
    "steps:\n  a: {action: test.echo, post: {set: {'': 1}}}\n",
    "steps:\n  state: {action: test.echo}\n",
    "fail_fast: 1\nsteps:\n  a: {action: test.echo}\n",
    "steps:\n  a: {action: test.echo, catch: 3}\n",
    "approval_policy: aks\nsteps:\n  a: {action: test.echo}\n",
    "approval_policy: {mode: ask, blok: []}\nsteps:\n  a: {action: test.echo}\n",
    "steps:\n  a: {action: test.echo, for_each: '${[1]}', await: frist}\n",
    "steps:\n  a: {action: test.echo, for_each: '${[1]}', await: {mode: first, wait: 1}}\n",
    "steps:\n  a: {action: test.echo}\ncatch: []\n",
    "steps:\n  a: {action: test.echo}\nfinally: {}\n",
    "steps:\n  a: {action: test.echo}\nfinally:\n  f: {action: test.echo, depends_on: a}\n",
    "steps:\n  a: {action: test.echo}\ncatch:\n  c: {action: test.echo, optional: true}\n",
    "steps:\n  a: {action: test.echo}\nfinally:\n  f: {action: test.echo, retyr: {}}\n",
]


@pytest.mark.parametrize("body", STRUCTURAL)
def test_the_schema_refuses_what_the_loader_refuses(body: str) -> None:
    with pytest.raises(plait.DeclarationError):
        flow(body)
    assert list(VALIDATOR.iter_errors(document(text(textwrap.dedent(body))))) != []


def test_the_docs_tell_editors_where_the_schema_is() -> None:
    docs = (ROOT / "docs" / "declarative.md").read_text()
    assert "schemas/plait-workflow.schema.json" in docs
    assert "yaml-language-server: $schema=" in (ROOT / "examples" / "etl.yaml").read_text()
