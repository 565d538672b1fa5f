"""The structural JSON diff and the step-by-step run diff (`plait.core.diff`)."""

from __future__ import annotations

import copy
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from plait.core.diff import diff_runs, diff_values, pointer_token, summary
from plait.core.rows import StepRow, StepStatus


def test_equal_values_have_no_difference() -> None:
    doc = {"items": [{"sku": "a", "price": 1}], "total": 1.5, "ok": True, "note": None}
    assert diff_values(doc, copy.deepcopy(doc)) == []
    assert diff_values(1, 1.0) == []  # JSON numbers compare by value


def test_changed_added_and_removed_entries_name_their_path() -> None:
    a = {"items": [{"sku": "a", "price": 1}, {"sku": "b", "price": 2}], "coupon": "X1"}
    b = {"items": [{"sku": "a", "price": 3}], "note": "gift"}

    assert diff_values(a, b) == [
        {"path": "/coupon", "op": "removed", "a": "X1"},
        {"path": "/items/0/price", "op": "changed", "a": 1, "b": 3},
        {"path": "/items/1", "op": "removed", "a": {"sku": "b", "price": 2}},
        {"path": "/note", "op": "added", "b": "gift"},
    ]


def test_arrays_growing_and_types_changing() -> None:
    assert diff_values([1], [1, [2]]) == [{"path": "/1", "op": "added", "b": [2]}]
    assert diff_values({"x": [1]}, {"x": {"0": 1}}) == [
        {"path": "/x", "op": "changed", "a": [1], "b": {"0": 1}}
    ]
    assert diff_values(1, "1") == [{"path": "", "op": "changed", "a": 1, "b": "1"}]
    # a boolean is not a number, although Python says True == 1
    assert diff_values({"f": True}, {"f": 1}) == [
        {"path": "/f", "op": "changed", "a": True, "b": 1}
    ]
    assert diff_values(None, {}) == [{"path": "", "op": "changed", "a": None, "b": {}}]


def test_keys_are_escaped_as_json_pointer_tokens() -> None:
    assert pointer_token("a/b~c") == "a~1b~0c"
    assert diff_values({"a/b": 1}, {"a/b": 2})[0]["path"] == "/a~1b"


# -- property: applying the diff to a gives b -----------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 5)
    | st.floats(allow_nan=False, allow_infinity=False, width=32)
    | st.text(max_size=3),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(alphabet="ab/~", max_size=3), children, max_size=4)
    ),
    max_leaves=12,
)


def _parts(path: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]


def _apply(doc: Any, entries: list[dict[str, Any]]) -> Any:
    """A tiny patcher for the diff's entries (removals from arrays are applied last, tail first)."""
    root = {"": copy.deepcopy(doc)}
    later = []
    for entry in entries:
        if entry["op"] == "removed":
            later.append(entry)
            continue
        parts = ["", *_parts(entry["path"])]
        parent: Any = root
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent[part]
        last = parts[-1]
        if isinstance(parent, list):
            if entry["op"] == "added":
                assert int(last) == len(parent)
                parent.append(entry["b"])
            else:
                parent[int(last)] = entry["b"]
        else:
            parent[last] = entry["b"]
    for entry in reversed(later):
        parts = ["", *_parts(entry["path"])]
        parent = root
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent[part]
        if isinstance(parent, list):
            assert int(parts[-1]) == len(parent) - 1  # removals are at the tail
            parent.pop()
        else:
            del parent[parts[-1]]
    return root[""]


@settings(max_examples=300, deadline=None)
@given(json_values, json_values)
def test_applying_the_diff_to_a_gives_b(a: Any, b: Any) -> None:
    entries = diff_values(a, b)
    assert _canonical(_apply(a, entries)) == _canonical(b)
    assert (entries == []) == (_canonical(a) == _canonical(b))


def _canonical(value: Any) -> Any:
    """JSON equality: numbers by value, booleans apart from numbers."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return (type(value).__name__, value)
    if isinstance(value, int | float):
        return ("number", float(value))
    if isinstance(value, list):
        return ("array", tuple(_canonical(v) for v in value))
    return ("object", tuple(sorted((k, _canonical(v)) for k, v in value.items())))


# -- runs -----------------------------------------------------------------------------------------


def _step(name: str, idx: int, status: StepStatus, output: Any = None, **kw: Any) -> StepRow:
    return StepRow(
        run_id="r",
        name=name,
        idx=idx,
        status=status,
        unmet=0,
        output=None if output is None else orjson.dumps(output),
        **kw,
    )


def test_runs_compare_step_by_step() -> None:
    a = [
        _step("fetch", 0, StepStatus.DONE, {"n": 1}),
        _step("price", 1, StepStatus.DONE, {"total": 10}),
        _step("old", 2, StepStatus.DONE, 1),
        _step("ship", 3, StepStatus.FAILED, error_code="Boom", error_message="down"),
    ]
    b = [
        _step("fetch", 0, StepStatus.DONE, {"n": 1}),
        _step("price", 1, StepStatus.DONE, {"total": 12}),
        _step("ship", 2, StepStatus.DONE, "ok"),
        _step("new", 3, StepStatus.SKIPPED),
    ]

    result = diff_runs(a, b)

    assert list(result) == ["fetch", "price", "old", "ship", "new"]
    assert result["fetch"] == {"status": "same", "diff": []}
    assert result["price"] == {
        "status": "changed",
        "diff": [{"path": "/output/total", "op": "changed", "a": 10, "b": 12}],
    }
    assert result["old"] == {"status": "only_a", "diff": None}
    assert result["new"] == {"status": "only_b", "diff": None}
    assert result["ship"]["status"] == "changed"
    assert result["ship"]["diff"] == [
        {
            "path": "/error",
            "op": "changed",
            "a": {"code": "Boom", "message": "down"},
            "b": None,
        },
        {"path": "/output", "op": "changed", "a": None, "b": "ok"},
        {"path": "/status", "op": "changed", "a": "failed", "b": "done"},
    ]
    assert summary(result) == {"same": 1, "changed": 2, "only_a": 1, "only_b": 1}
