"""The cost of `_codec.dumps` (on the hot path of every step) on typical outputs.

    python benchmarks/codec.py          # µs per call, best of 7 repeats, for each kind of value

Prints one line per value; compare the figures of two commits on the same machine.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import timeit
from typing import Any

import pydantic

from plait._codec import dumps


@dataclasses.dataclass
class Line:
    sku: str
    qty: int
    price: float
    note: str | None = None


class Order(pydantic.BaseModel):
    id: int
    at: dt.datetime
    lines: list[dict[str, Any]]


def values() -> dict[str, Any]:
    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    record = {"id": 42, "total": 30.5, "ok": True, "tags": ["a", "b"], "customer": "c-7"}
    return {
        "None (a no-op step)": None,
        "small dict": record,
        "small dict with a null": {**record, "note": None},
        "100 dicts, each with a null": [{**record, "id": i, "note": None} for i in range(100)],
        "tuple of 3": (1, "two", 3.0),
        "dataclass with 10 lines": {"lines": [Line("s", i, 1.5) for i in range(10)]},
        "pydantic model": Order(id=1, at=when, lines=[record] * 10),
        "10,000 floats": [i / 7 for i in range(10_000)],
        "1 MB string": "x" * 1_000_000,
        "100,000 dicts with nulls (6 MB)": [{"i": i, "v": None} for i in range(100_000)],
    }


def main() -> None:
    for name, value in values().items():
        dumps(value)
        number = 1
        while timeit.timeit(lambda: dumps(value), number=number) < 0.2:  # noqa: B023
            number *= 2
        best = min(timeit.repeat(lambda: dumps(value), number=number, repeat=7))  # noqa: B023
        print(f"{name:34} {best / number * 1e6:12.2f} µs")


if __name__ == "__main__":
    main()
