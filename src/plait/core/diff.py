"""Structural diffs of JSON values and of runs, step by step. Pure.

A difference is one entry per place where two JSON documents disagree, addressed by a JSON
Pointer (RFC 6901: "/items/0/price"; "" is the whole document):

    {"path": "/items/0/price", "op": "changed", "a": 1, "b": 2}
    {"path": "/note", "op": "added", "b": "gift"}          # only in b
    {"path": "/coupon", "op": "removed", "a": "X1"}       # only in a

Objects are compared key by key (sorted), arrays index by index (extra elements are added or
removed at the end), anything else by value: numbers by value (1 and 1.0 are the same), but a
boolean is never a number, and a value whose JSON type differs is "changed" as a whole.

Two runs are compared through their steps' records: status, output and error. A step in both runs
is "same" or "changed" (with the entries of the step document that differ, paths such as
"/output/total" or "/status"); a step in one run only is "only_a" or "only_b".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

from .. import _codec
from .rows import StepRow

Entry = dict[str, Any]
StepStatusInDiff = Literal["same", "changed", "only_a", "only_b"]


def diff_values(a: Any, b: Any) -> list[Entry]:
    """The differences between two JSON values (decoded), in document order; [] if equal."""
    entries: list[Entry] = []
    _walk(a, b, "", entries)
    return entries


def _walk(a: Any, b: Any, path: str, out: list[Entry]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(a.keys() | b.keys(), key=str):
            where = f"{path}/{pointer_token(str(key))}"
            if key not in b:
                out.append({"path": where, "op": "removed", "a": a[key]})
            elif key not in a:
                out.append({"path": where, "op": "added", "b": b[key]})
            else:
                _walk(a[key], b[key], where, out)
        return
    if isinstance(a, list) and isinstance(b, list):
        for i in range(max(len(a), len(b))):
            where = f"{path}/{i}"
            if i >= len(b):
                out.append({"path": where, "op": "removed", "a": a[i]})
            elif i >= len(a):
                out.append({"path": where, "op": "added", "b": b[i]})
            else:
                _walk(a[i], b[i], where, out)
        return
    if not _same_scalar(a, b):
        out.append({"path": path, "op": "changed", "a": a, "b": b})


def _same_scalar(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return type(a) is type(b) and a == b


def pointer_token(key: str) -> str:
    """A key as one JSON Pointer token: '~' is written '~0' and '/' is written '~1'."""
    return key.replace("~", "~0").replace("/", "~1")


def step_document(step: StepRow) -> dict[str, Any]:
    """What a run diff compares of a step: how it ended, and its output or error."""
    error = (
        {"code": step.error_code, "message": step.error_message or ""}
        if step.error_code is not None
        else None
    )
    return {"status": step.status.value, "output": _codec.loads(step.output), "error": error}


def diff_runs(steps_a: Iterable[StepRow], steps_b: Iterable[StepRow]) -> dict[str, dict[str, Any]]:
    """{step: {"status": "same" | "changed" | "only_a" | "only_b", "diff": ...}}, in the order of
    run a's steps, then those only in run b. "diff" is [] for "same", the entries of the step
    documents' differences for "changed", and None for a step in one run only. A step whose
    latest attempts ran different code (both known) has "code": {"a": digest, "b": digest}."""
    rows_a = sorted(steps_a, key=lambda s: s.idx)
    rows_b = sorted(steps_b, key=lambda s: s.idx)
    result = diff_documents(
        {s.name: step_document(s) for s in rows_a}, {s.name: step_document(s) for s in rows_b}
    )
    # which code ran each side's latest attempt: said when it differs, never a difference of
    # its own (a fork reuses outputs, recorded by code that is not its to name)
    code_b = {s.name: s.code for s in rows_b}
    for s in rows_a:
        other = code_b.get(s.name)
        if s.code is not None and other is not None and s.code != other:
            result[s.name]["code"] = {"a": s.code, "b": other}
    return result


def diff_documents(
    docs_a: Mapping[str, Any], docs_b: Mapping[str, Any]
) -> dict[str, dict[str, Any]]:
    """`diff_runs` on documents already built: {name: document} for each side, in order."""
    result: dict[str, dict[str, Any]] = {}
    for name, doc in docs_a.items():
        if name not in docs_b:
            result[name] = {"status": "only_a", "diff": None}
            continue
        entries = diff_values(doc, docs_b[name])
        result[name] = {"status": "changed" if entries else "same", "diff": entries}
    for name in docs_b:
        if name not in docs_a:
            result[name] = {"status": "only_b", "diff": None}
    return result


def summary(diff: Mapping[str, Mapping[str, Any]]) -> dict[StepStatusInDiff, int]:
    """How many steps are in each diff status."""
    counts: dict[StepStatusInDiff, int] = {"same": 0, "changed": 0, "only_a": 0, "only_b": 0}
    for entry in diff.values():
        counts[entry["status"]] += 1
    return counts
