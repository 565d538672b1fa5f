"""A run's session state as a step sees it: `ctx.state` (and a `when=` condition's `plait.SessionState`
parameter).

The state is one JSON object per run. A step reads the state its run had when the step started
(every success committed before it, with its changes), plus its own changes; `set` and `append`
are kept by the attempt and sent with its success only (`core.session` applies them, in commit
order, in the transaction that records it), so a failed or retried attempt changes nothing.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from typing import Any

from .. import _codec
from .._errors import InputError
from ..core.rows import StateChange
from ..core.session import decode

KEY_LIMIT = 256  # characters of a session state key


class SessionState:
    """The session state of a run: `get`, `set`, `append`. Values are JSON; keys are strings."""

    __slots__ = ("_changes", "_doc", "_lock", "_step", "_writable")

    def __init__(self, data: bytes | None = None, *, step: str = "", writable: bool = True) -> None:
        self._doc = decode(data)
        self._changes: list[StateChange] = []
        self._lock = threading.Lock()
        self._step = step
        self._writable = writable

    def get(self, key: str, default: Any = None) -> Any:
        """The value of `key` (a copy), or `default` if the state has none."""
        with self._lock:
            if key not in self._doc:
                return default
            return copy.deepcopy(self._doc[key])

    def set(self, key: str, value: Any) -> None:
        """Give `key` the JSON value `value` when this step's success commits (the last success
        to commit wins when several steps set one key)."""
        self._change("set", key, value)

    def append(self, key: str, value: Any) -> None:
        """Add `value` at the end of the list under `key` (a new list if there is none) when this
        step's success commits; appends of parallel steps all land, in commit order."""
        self._change("append", key, value)

    def to_dict(self) -> dict[str, Any]:
        """The whole state (a copy), this attempt's changes included."""
        with self._lock:
            return copy.deepcopy(self._doc)

    def __contains__(self, key: object) -> bool:
        return key in self._doc

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._doc))

    def __repr__(self) -> str:
        return f"SessionState({self._doc!r})"

    def _change(self, op: str, key: str, value: Any) -> None:
        if not self._writable:
            raise InputError("a when= condition reads the session state; it cannot change it")
        if not isinstance(key, str) or not key or len(key) > KEY_LIMIT:
            raise InputError(
                f"step {self._step!r}: a session state key is a string of 1 to {KEY_LIMIT} "
                f"characters, got {key!r}"
            )
        try:
            data = _codec.dumps(value)
        except _codec.EncodeError as exc:
            raise InputError(
                f"step {self._step!r}: the value of ctx.state.{op}({key!r}, ...) is not JSON: {exc}"
            ) from None
        with self._lock:
            held = self._doc.get(key)
            if op == "append" and held is not None and not isinstance(held, list):
                raise InputError(
                    f"step {self._step!r}: cannot append to session state key {key!r}: it holds "
                    f"a {type(held).__name__}, not a list (set it to a list first)"
                )
            plain = _codec.loads(data)
            if op == "set":
                self._doc[key] = plain
            elif held is None:
                self._doc[key] = [plain]
            else:
                held.append(plain)
            self._changes.append(StateChange(op, key, data))

    def _take(self) -> tuple[StateChange, ...]:
        """The changes to send with this attempt's success."""
        with self._lock:
            return tuple(self._changes)
