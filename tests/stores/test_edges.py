"""A step's `dependents` column (the SQL stores' JSON of its edges): a big fan-out's is read an
edge at a time, and must decode exactly as orjson reads it, whatever JSON it holds."""

from __future__ import annotations

import orjson
import pytest

from plait.core.rows import Edge, EdgeKind
from plait.stores.sql import rows


def by_orjson(text: str) -> tuple[Edge, ...]:
    return tuple(Edge(t, EdgeKind(k), bool(a)) for t, k, a in orjson.loads(text))


def fan_out(n: int) -> tuple[Edge, ...]:
    kinds = list(EdgeKind)
    return tuple(Edge(f"s{i}", kinds[i % len(kinds)], i % 7 == 0) for i in range(n))


def test_a_big_fan_outs_edges_are_read_one_by_one_as_orjson_reads_them() -> None:
    edges = fan_out(20_000)
    text = rows.edges_to_json(edges)
    assert len(text) >= rows._STREAMED  # streamed, not parsed whole
    assert rows._stream_edges(text) == edges
    assert rows.edges_from_json(text) == edges


@pytest.mark.parametrize(
    "text",
    [
        '[["a", "data", false], ["b", "after", true]]',  # spaces (another writer's JSON)
        '[["a\\u0041","data",false],["b","after",true]]',  # an escaped name
        '[["a","data",false],,["b","after",true]]',  # not JSON
        '[["a","data",false]x]',
        '[["a","data",false],["b","unknown",true]]',
    ],
)
def test_other_json_is_left_to_orjson(text: str) -> None:
    assert rows._stream_edges(text) is None


def test_a_big_column_with_an_escaped_name_still_decodes() -> None:
    edges = (*fan_out(10_000), Edge('a "quoted" name', EdgeKind.DATA, False))
    text = rows.edges_to_json(edges)
    assert len(text) >= rows._STREAMED
    assert rows.edges_from_json(text) == edges == by_orjson(text)
