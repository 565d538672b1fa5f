"""A YAML document read into plain JSON-like values, with the position of every node.

PyYAML composes the node tree (each node has a start mark); we build the values ourselves, so
that a key given twice in one mapping is an error (PyYAML keeps the last silently), only JSON's
kinds of value come out (no dates, no sets, no Python tags), and an alias cannot expand into
more than `MAX_NODES` nodes (the "billion laughs"). Errors are `DeclarationError`s at the
node's line and column."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

try:
    import yaml
except ImportError as exc:  # pragma: no cover - the test extra installs it
    raise ImportError(
        f"reading workflow files needs PyYAML: pip install 'plait[yaml]' ({exc})"
    ) from exc

from .._errors import DeclarationError

Path = tuple[str | int, ...]
MAX_NODES = 100_000
MAX_BYTES = 1 << 20  # a workflow file of more than 1 MiB is refused


def dotted(path: Path) -> str:
    """("steps", "charge", "retry") → "steps.charge.retry"; list indexes as [i]."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out or "(top)"


@dataclass
class Source:
    """One file: its name, its text, and where each value of it came from."""

    file: str
    text: str
    value: Any = None
    nodes: dict[Path, yaml.Node] = field(default_factory=dict)  # value nodes
    keys: dict[Path, yaml.Node] = field(default_factory=dict)  # mapping keys, by the value's path

    def at(self, path: Path, *, key: bool = False) -> tuple[int, int]:
        """(line, column), 1-based, of the value at `path` (or of its key), or of its nearest
        ancestor that has a position."""
        table = self.keys if key else self.nodes
        while path:
            node = table.get(path) or self.nodes.get(path)
            if node is not None:
                return node.start_mark.line + 1, node.start_mark.column + 1
            path = path[:-1]
        node = self.nodes.get(())
        return (node.start_mark.line + 1, node.start_mark.column + 1) if node else (1, 1)

    def error(
        self, path: Path, message: str, *, key: bool = False, offset: int | None = None
    ) -> DeclarationError:
        """The error at `path`: "file:line:col: path: message". `offset` is a column within the
        value's text (an expression's token), used where the scalar is on one line."""
        line, column = self.at(path, key=key)
        node = self.nodes.get(path)
        if offset is not None and isinstance(node, yaml.ScalarNode):
            start, end = node.start_mark, node.end_mark
            if start.line == end.line and node.style in (None, "'", '"'):
                column += offset + (1 if node.style else 0)
        where = dotted(path)
        return DeclarationError(
            f"{self.file}:{line}:{column}: {where}: {message}",
            file=self.file,
            line=line,
            column=column,
            path=where,
        )


def read(file: str, text: str) -> Source:
    """Parse `text` (the content of `file`) into a Source; DeclarationError if it is not one
    YAML document of JSON-like values with unique keys."""
    source = Source(file, text)
    if len(text.encode("utf-8", "replace")) > MAX_BYTES:
        raise DeclarationError(
            f"{file}:1:1: (top): the file is larger than {MAX_BYTES // 1024} KiB",
            file=file,
            line=1,
            column=1,
            path="(top)",
        )
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = " ".join(p for p in (exc.context, exc.problem) if p) or "invalid YAML"
        raise DeclarationError(
            f"{file}:{line}:{column}: YAML syntax error: {problem}",
            file=file,
            line=line,
            column=column,
            path="(top)",
        ) from None
    except yaml.YAMLError as exc:
        raise DeclarationError(
            f"{file}:1:1: YAML error: {exc}", file=file, line=1, column=1, path="(top)"
        ) from None
    finally:
        loader.dispose()
    if node is None:
        raise DeclarationError(
            f"{file}:1:1: (top): the file is empty", file=file, line=1, column=1, path="(top)"
        )
    counter = iter(range(MAX_NODES))
    source.value = _build(source, loader, node, (), counter)
    return source


def _build(
    source: Source, loader: yaml.SafeLoader, node: yaml.Node, path: Path, counter: Iterator[int]
) -> Any:
    if next(counter, None) is None:
        raise source.error(path, f"the document has more than {MAX_NODES} nodes (aliases count)")
    source.nodes.setdefault(path, node)
    if not isinstance(node, yaml.ScalarNode) and node.tag not in _JSON_TAGS:
        raise source.error(path, f"tag {node.tag!r} is not allowed: use plain JSON-like values")
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if (
                not isinstance(key_node, yaml.ScalarNode)
                or key_node.tag == "tag:yaml.org,2002:merge"
            ):
                line, column = key_node.start_mark.line + 1, key_node.start_mark.column + 1
                raise _at(source, line, column, path, "keys must be plain strings")
            key = key_node.value
            if key in out:
                first = source.keys[(*path, key)].start_mark
                raise _at(
                    source,
                    key_node.start_mark.line + 1,
                    key_node.start_mark.column + 1,
                    (*path, key),
                    f"duplicate key {key!r} (first given at line {first.line + 1})",
                )
            source.keys[(*path, key)] = key_node
            out[key] = _build(source, loader, value_node, (*path, key), counter)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [
            _build(source, loader, item, (*path, i), counter) for i, item in enumerate(node.value)
        ]
    assert isinstance(node, yaml.ScalarNode)
    if node.tag not in _JSON_TAGS:
        raise source.error(path, f"tag {node.tag!r} is not allowed: use plain JSON-like values")
    try:
        value = loader.construct_object(node)
    except yaml.YAMLError as exc:  # pragma: no cover - a resolved scalar constructs
        raise source.error(path, str(exc)) from None
    if isinstance(value, float) and not math.isfinite(value):
        raise source.error(path, f"{node.value} is not a JSON number")
    return value


def _at(source: Source, line: int, column: int, path: Path, message: str) -> DeclarationError:
    where = dotted(path)
    return DeclarationError(
        f"{source.file}:{line}:{column}: {where}: {message}",
        file=source.file,
        line=line,
        column=column,
        path=where,
    )


_JSON_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:map",
    "tag:yaml.org,2002:seq",
}
