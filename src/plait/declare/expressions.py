"""plait's expression language: `${…}` in a workflow file. Small, safe and bounded.

An expression reads JSON values only (the run input, step outputs, the session state, a
for_each item) and computes a JSON value; there is no `eval`, no attribute of a Python object,
no loop, no assignment, no call but a fixed list of functions. It is parsed when the file is loaded (a
syntax error, an unknown name or function is an error at its line and column) and evaluated
when a step runs, within limits of size and work:

    literals      42  1.5  "text"  'text'  true  false  null  [1, 2]
    names         inputs  steps  state  run  item  index  output
                  (what each place allows is checked at load)
    fields        inputs.order_id   steps.fetch.output.items[0]   x["a key"]
    operators     ! - * / % + -  < <= > >= == != in  && || (and, or, not)  c ? a : b
    functions     len str int float lower upper trim startswith endswith contains join
                  split keys values min max sum abs round default

`+` adds numbers and joins strings or lists; comparisons need two numbers or two strings;
`==` never takes true for 1. A field that is missing is an error, except inside
`default(x, fallback)`, which gives `fallback` when `x` is missing or null.

Limits: an expression of at most MAX_SOURCE characters and MAX_NODES nodes, nested at most
MAX_DEPTH deep; an evaluation of at most MAX_STEPS steps (a function over a list counts its
items) and MAX_SECONDS; strings and lists it builds of at most MAX_SIZE characters or items;
integers within ±2**63.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

MAX_SOURCE = 2_000
MAX_NODES = 300
MAX_DEPTH = 32
MAX_STEPS = 10_000
MAX_SECONDS = 0.5
MAX_SIZE = 1_000_000
MAX_INT = 2**63


class ExpressionError(Exception):
    """An expression that does not parse, or names what does not exist; `offset` is the
    character of the expression text (0-based) it is about."""

    def __init__(self, message: str, offset: int = 0) -> None:
        super().__init__(message)
        self.offset = offset


class EvaluationError(Exception):
    """An expression that cannot be computed on these values (a missing field, a type
    mismatch, a limit). `missing` is true for a missing field or index."""

    def __init__(self, message: str, *, missing: bool = False) -> None:
        super().__init__(message)
        self.missing = missing


@dataclass(frozen=True, slots=True)
class Node:
    op: str  # lit, name, get, list, call, not, neg, and, or, cond, or a binary operator
    offset: int
    args: tuple[Node, ...] = ()
    value: Any = None  # lit: the value; name and call: the name


# -- tokens ----------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
    | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<op>==|!=|<=|>=|&&|\|\||[<>!+\-*/%()\[\].,?:}])
    )""",
    re.VERBOSE,
)
_KEYWORDS = {"true": True, "false": False, "null": None}
_WORD_OPS = {"and": "&&", "or": "||", "not": "!", "in": "in"}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"'}


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # number, string, name, op, end
    text: str
    offset: int


def _tokens(text: str, start: int) -> Iterator[_Token]:
    """Tokens from `start` up to and including the `}` that closes the expression."""
    pos = start
    while True:
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            rest = text[pos:].lstrip()
            if not rest:
                yield _Token("end", "", len(text))
                return
            at = len(text) - len(rest)
            raise ExpressionError(f"unexpected character {rest[0]!r}", at)
        kind = match.lastgroup or "op"
        token = _Token(kind, match.group(kind), match.start(kind))
        pos = match.end()
        if kind == "name" and token.text in _WORD_OPS:
            token = _Token("op", _WORD_OPS[token.text], token.offset)
        yield token
        if token.text == "}" and kind == "op":
            return


def _unquote(token: _Token) -> str:
    body, out, i = token.text[1:-1], [], 0
    while i < len(body):
        c = body[i]
        if c == "\\":
            escaped = body[i + 1]
            if escaped not in _ESCAPES:
                raise ExpressionError(
                    f"unknown escape \\{escaped} in a string", token.offset + 1 + i
                )
            out.append(_ESCAPES[escaped])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


# -- parsing ---------------------------------------------------------------------------------


class _Parser:
    """Precedence climbing over the tokens of one `${…}`."""

    def __init__(self, text: str, start: int) -> None:
        self.text = text
        self.tokens = _tokens(text, start)
        self.token = next(self.tokens)
        self.nodes = 0
        self.depth = 0

    def advance(self) -> _Token:
        token = self.token
        self.token = next(self.tokens, _Token("end", "", len(self.text)))
        return token

    def expect(self, text: str) -> _Token:
        if self.token.text != text or self.token.kind not in ("op",):
            found = self.token.text or "the end"
            raise ExpressionError(f"expected {text!r}, found {found!r}", self.token.offset)
        return self.advance()

    def node(self, op: str, offset: int, args: tuple[Node, ...] = (), value: Any = None) -> Node:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise ExpressionError(
                f"the expression is too long (more than {MAX_NODES} nodes)", offset
            )
        return Node(op, offset, args, value)

    def expression(self) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExpressionError(
                f"the expression nests more than {MAX_DEPTH} deep", self.token.offset
            )
        try:
            test = self.binary(0)
            if self.token.text == "?" and self.token.kind == "op":
                at = self.advance().offset
                yes = self.expression()
                self.expect(":")
                no = self.expression()
                return self.node("cond", at, (test, yes, no))
            return test
        finally:
            self.depth -= 1

    def binary(self, level: int) -> Node:
        if level == len(_LEVELS):
            return self.unary()
        left = self.binary(level + 1)
        ops = _LEVELS[level]
        while self.token.kind == "op" and self.token.text in ops:
            op = self.advance()
            right = self.binary(level + 1 if level != _COMPARE else len(_LEVELS))
            left = self.node(op.text, op.offset, (left, right))
            if level == _COMPARE and self.token.kind == "op" and self.token.text in ops:
                raise ExpressionError(
                    "comparisons do not chain: write (a < b) && (b < c)", self.token.offset
                )
        return left

    def unary(self) -> Node:
        if self.token.kind == "op" and self.token.text in ("!", "-"):
            op = self.advance()
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise ExpressionError(f"the expression nests more than {MAX_DEPTH} deep", op.offset)
            operand = self.unary()
            self.depth -= 1
            return self.node("not" if op.text == "!" else "neg", op.offset, (operand,))
        return self.postfix(self.primary())

    def postfix(self, node: Node) -> Node:
        while self.token.kind == "op" and self.token.text in (".", "["):
            if self.advance().text == ".":
                name = self.token
                if name.kind != "name":
                    raise ExpressionError("expected a field name after '.'", name.offset)
                self.advance()
                key = self.node("lit", name.offset, value=name.text)
            else:
                key = self.expression()
                self.expect("]")
            node = self.node("get", key.offset, (node, key))
        return node

    def primary(self) -> Node:
        token = self.advance()
        if token.kind == "number":
            value: Any = (
                float(token.text) if any(c in token.text for c in ".eE") else int(token.text)
            )
            if isinstance(value, int) and abs(value) >= MAX_INT:
                raise ExpressionError("integer out of range (±2**63)", token.offset)
            return self.node("lit", token.offset, value=value)
        if token.kind == "string":
            return self.node("lit", token.offset, value=_unquote(token))
        if token.kind == "name":
            if token.text in _KEYWORDS:
                return self.node("lit", token.offset, value=_KEYWORDS[token.text])
            if self.token.text == "(" and self.token.kind == "op":
                return self.call(token)
            return self.node("name", token.offset, value=token.text)
        if token.text == "(":
            inner = self.expression()
            self.expect(")")
            return inner
        if token.text == "[":
            items = self.items("]")
            return self.node("list", token.offset, tuple(items))
        found = token.text or "the end"
        raise ExpressionError(f"expected a value, found {found!r}", token.offset)

    def items(self, close: str) -> list[Node]:
        items: list[Node] = []
        while not (self.token.kind == "op" and self.token.text == close):
            items.append(self.expression())
            if self.token.kind == "op" and self.token.text == ",":
                self.advance()
            elif not (self.token.kind == "op" and self.token.text == close):
                found = self.token.text or "the end"
                raise ExpressionError(
                    f"expected ',' or {close!r}, found {found!r}", self.token.offset
                )
        self.advance()
        return items

    def call(self, name: _Token) -> Node:
        function = FUNCTIONS.get(name.text)
        if function is None:
            raise ExpressionError(
                f"unknown function {name.text!r}{did_you_mean(name.text, FUNCTIONS)}", name.offset
            )
        self.advance()  # (
        args = self.items(")")
        low, high = function.arity
        if not low <= len(args) <= high:
            wanted = str(low) if low == high else f"{low} to {high}"
            raise ExpressionError(
                f"{name.text}() takes {wanted} argument{'s' if high != 1 else ''}, got {len(args)}",
                name.offset,
            )
        return self.node("call", name.offset, tuple(args), name.text)


_LEVELS: list[tuple[str, ...]] = [
    ("||",),
    ("&&",),
    ("==", "!=", "<", "<=", ">", ">=", "in"),
    ("+", "-"),
    ("*", "/", "%"),
]
_COMPARE = 2


def parse(text: str, start: int = 0) -> tuple[Node, int]:
    """Parse the expression that starts at `start` of `text` and ends with `}`: (its tree, the
    offset just past the `}`)."""
    if len(text) - start > MAX_SOURCE and text.find("}", start) - start > MAX_SOURCE:
        raise ExpressionError(f"the expression is longer than {MAX_SOURCE} characters", start)
    parser = _Parser(text, start)
    if parser.token.kind == "op" and parser.token.text == "}":
        raise ExpressionError(
            "empty expression: write a value between ${ and }", parser.token.offset
        )
    tree = parser.expression()
    end = parser.token
    if end.kind == "end":
        raise ExpressionError("the expression is not closed: add '}'", end.offset)
    if end.text != "}":
        raise ExpressionError(f"unexpected {end.text!r}", end.offset)
    if end.offset - start > MAX_SOURCE:
        raise ExpressionError(f"the expression is longer than {MAX_SOURCE} characters", start)
    return tree, end.offset + 1


@dataclass(frozen=True, slots=True)
class Template:
    """A string of a workflow file, with its `${…}` parsed: `parts` alternate literal text and
    expressions. A string that is exactly one `${…}` gives the expression's value, whatever
    its type; otherwise the values are written into the text (strings as they are, other
    values as JSON). `$${` is a literal `${`."""

    text: str
    parts: tuple[str | Node, ...]
    shift: int = 0  # how far offsets are from the text given (a `when:` without its ${ })

    @property
    def whole(self) -> bool:
        return len(self.parts) == 1 and isinstance(self.parts[0], Node)

    def expressions(self) -> Iterator[Node]:
        return (p for p in self.parts if isinstance(p, Node))


def template(text: str) -> Template:
    parts: list[str | Node] = []
    literal: list[str] = []
    pos = 0
    while True:
        found = text.find("${", pos)
        if found < 0:
            literal.append(text[pos:])
            break
        if found > 0 and text[found - 1] == "$":  # $${ is a literal ${
            literal.append(text[pos : found - 1] + "${")
            pos = found + 2
            continue
        literal.append(text[pos:found])
        tree, pos = parse(text, found + 2)
        if "".join(literal):
            parts.append("".join(literal))
        literal = []
        parts.append(tree)
    if "".join(literal) or not parts:
        parts.append("".join(literal))
    return Template(text, tuple(parts))


def has_expression(text: str) -> bool:
    return "${" in text


def references(tree: Node) -> Iterator[tuple[str, list[tuple[str, int]], int]]:
    """Each name the expression reads, with the fields read from it by constant keys:
    (name, [(field, offset), …], offset of the name). `steps.fetch.output.total` gives
    ("steps", [("fetch", o1), ("output", o2), ("total", o3)], o0)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        chain: list[tuple[str, int]] = []
        inner = node
        while (
            inner.op == "get" and inner.args[1].op == "lit" and isinstance(inner.args[1].value, str)
        ):
            chain.append((inner.args[1].value, inner.args[1].offset))
            inner = inner.args[0]
        if inner.op == "name":
            yield inner.value, chain[::-1], inner.offset
            # dynamic keys along the chain are expressions of their own
            walk = node
            while walk is not inner:
                stack.extend(a for a in walk.args[1:] if a.op != "lit")
                walk = walk.args[0]
            continue
        stack.extend(node.args)


# -- evaluation ------------------------------------------------------------------------------


class _Budget:
    __slots__ = ("deadline", "steps")

    def __init__(self) -> None:
        self.steps = 0
        self.deadline = time.monotonic() + MAX_SECONDS

    def spend(self, n: int = 1) -> None:
        self.steps += n
        if self.steps > MAX_STEPS:
            raise EvaluationError(f"the expression took more than {MAX_STEPS} steps")
        if self.steps & 0xFF == 0 and time.monotonic() > self.deadline:
            raise EvaluationError(f"the expression took longer than {MAX_SECONDS}s")


def evaluate(tree: Node, env: Mapping[str, Any]) -> Any:
    """The value of `tree` with names bound by `env` (JSON values). EvaluationError if it
    cannot be computed."""
    return _eval(tree, env, _Budget())


def render(tmpl: Template, env: Mapping[str, Any]) -> Any:
    """The value of a Template: the expression's value when it is whole, else the text."""
    budget = _Budget()
    if tmpl.whole:
        return _eval(tmpl.parts[0], env, budget)  # type: ignore[arg-type]  # whole: one Node
    out: list[str] = []
    size = 0
    for part in tmpl.parts:
        piece = part if isinstance(part, str) else _text(_eval(part, env, budget))
        size += len(piece)
        if size > MAX_SIZE:
            raise EvaluationError(f"the text is longer than {MAX_SIZE} characters")
        out.append(piece)
    return "".join(out)


def truthy(value: Any) -> bool:
    """JSON truth: false, null, 0, "", [] and {} are false; everything else is true."""
    return bool(value)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def kind_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _checked(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= MAX_INT:
        raise EvaluationError("integer out of range (±2**63)")
    if isinstance(value, float) and not math.isfinite(value):
        raise EvaluationError("the result is not a finite number")
    if isinstance(value, str | list) and len(value) > MAX_SIZE:
        raise EvaluationError(f"the result is longer than {MAX_SIZE} characters or items")
    return value


def equal(a: Any, b: Any) -> bool:
    """JSON equality: true is not 1, 1 is 1.0, lists and objects compare item by item."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    if _number(a) and _number(b):
        return bool(a == b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and bool(a == b)


def _eval(node: Node, env: Mapping[str, Any], budget: _Budget) -> Any:
    budget.spend()
    op = node.op
    if op == "lit":
        return node.value
    if op == "name":
        if node.value not in env:
            raise EvaluationError(f"{node.value!r} is not available here")
        return env[node.value]
    if op == "get":
        return _get(_eval(node.args[0], env, budget), _eval(node.args[1], env, budget))
    if op == "&&":
        return truthy(_eval(node.args[0], env, budget)) and truthy(_eval(node.args[1], env, budget))
    if op == "||":
        return truthy(_eval(node.args[0], env, budget)) or truthy(_eval(node.args[1], env, budget))
    if op == "not":
        return not truthy(_eval(node.args[0], env, budget))
    if op == "cond":
        branch = node.args[1] if truthy(_eval(node.args[0], env, budget)) else node.args[2]
        return _eval(branch, env, budget)
    if op == "neg":
        value = _eval(node.args[0], env, budget)
        if not _number(value):
            raise EvaluationError(f"cannot negate {kind_of(value)}")
        return -value
    if op == "list":
        return [_eval(a, env, budget) for a in node.args]
    if op == "call":
        if node.value == "default":
            try:
                value = _eval(node.args[0], env, budget)
            except EvaluationError as exc:
                if not exc.missing:
                    raise
                value = None
            return _eval(node.args[1], env, budget) if value is None else value
        args = [_eval(a, env, budget) for a in node.args]
        function = FUNCTIONS[node.value]
        budget.spend(sum(len(a) for a in args if isinstance(a, str | list | dict)) // 16)
        try:
            return _checked(function.fn(*args))
        except EvaluationError:
            raise
        except (TypeError, ValueError, OverflowError, AttributeError) as exc:
            raise EvaluationError(f"{node.value}(): {_plain(exc)}") from None
    left, right = _eval(node.args[0], env, budget), _eval(node.args[1], env, budget)
    return _checked(_binary(op, left, right, budget))


def _plain(exc: Exception) -> str:
    return str(exc).replace("'NoneType'", "null").replace("NoneType", "null")


def _get(container: Any, key: Any) -> Any:
    if isinstance(container, dict):
        if not isinstance(key, str):
            raise EvaluationError(f"an object's fields are named by strings, got {kind_of(key)}")
        if key not in container:
            known = ", ".join(repr(k) for k in list(container)[:10]) or "none"
            raise EvaluationError(
                f"no field {key!r} (fields: {known}){did_you_mean(key, container)}", missing=True
            )
        return container[key]
    if isinstance(container, list):
        if isinstance(key, bool) or not isinstance(key, int):
            raise EvaluationError(f"a list's items are numbered by integers, got {kind_of(key)}")
        if not -len(container) <= key < len(container):
            raise EvaluationError(
                f"index {key} is out of range (the list has {len(container)} items)", missing=True
            )
        return container[key]
    if isinstance(container, str) and isinstance(key, int) and not isinstance(key, bool):
        if not -len(container) <= key < len(container):
            raise EvaluationError(f"index {key} is out of range", missing=True)
        return container[key]
    what = f"field {key!r}" if isinstance(key, str) else f"item {key!r}"
    raise EvaluationError(f"cannot read {what} of {kind_of(container)}", missing=container is None)


def _binary(op: str, a: Any, b: Any, budget: _Budget) -> Any:
    if op == "==":
        return equal(a, b)
    if op == "!=":
        return not equal(a, b)
    if op == "in":
        if isinstance(b, str) and isinstance(a, str):
            return a in b
        if isinstance(b, list):
            budget.spend(len(b))
            return any(equal(a, x) for x in b)
        if isinstance(b, dict) and isinstance(a, str):
            return a in b
        raise EvaluationError(f"cannot look for {kind_of(a)} in {kind_of(b)}")
    if op in ("<", "<=", ">", ">="):
        if not ((_number(a) and _number(b)) or (isinstance(a, str) and isinstance(b, str))):
            raise EvaluationError(f"cannot compare {kind_of(a)} with {kind_of(b)}")
        return _COMPARISONS[op](a, b)
    if op == "+":
        if _number(a) and _number(b):
            return a + b
        if isinstance(a, str) and isinstance(b, str):
            return _joined(a, b, budget)
        if isinstance(a, list) and isinstance(b, list):
            return _joined(a, b, budget)
        raise EvaluationError(f"cannot add {kind_of(a)} and {kind_of(b)}")
    if not (_number(a) and _number(b)):
        raise EvaluationError(f"{op} needs two numbers, got {kind_of(a)} and {kind_of(b)}")
    if op in ("/", "%") and b == 0:
        raise EvaluationError("division by zero")
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        return a / b
    return a % b


def _joined(a: Any, b: Any, budget: _Budget) -> Any:
    if len(a) + len(b) > MAX_SIZE:
        raise EvaluationError(f"the result is longer than {MAX_SIZE} characters or items")
    budget.spend((len(a) + len(b)) // 64)
    return a + b


_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


# -- functions -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Function:
    arity: tuple[int, int]
    fn: Callable[..., Any]


def _need(kind: type | tuple[type, ...], value: Any, what: str) -> None:
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise EvaluationError(f"{what}, got {kind_of(value)}")


def _len(x: Any) -> int:
    _need((str, list, dict), x, "len() needs a string, a list or an object")
    return len(x)


def _int(x: Any) -> int:
    if isinstance(x, str):
        return int(x.strip())
    _need((int, float), x, "int() needs a number or a string")
    return int(x)


def _float(x: Any) -> float:
    if isinstance(x, str):
        return float(x.strip())
    _need((int, float), x, "float() needs a number or a string")
    return float(x)


def _string(name: str) -> Callable[[Any], str]:
    def check(x: Any) -> str:
        _need(str, x, f"{name}() needs a string")
        return str(x)

    return check


def _numbers(name: str, xs: Any) -> list[Any]:
    _need(list, xs, f"{name}() needs a list of numbers")
    if not xs and name != "sum":
        raise EvaluationError(f"{name}() of an empty list")
    for x in xs:
        if not _number(x):
            raise EvaluationError(f"{name}() needs a list of numbers, found {kind_of(x)}")
    return list(xs)


def _join(xs: Any, sep: Any = "") -> str:
    _need(list, xs, "join() needs a list")
    _need(str, sep, "join()'s separator must be a string")
    return str(sep).join(_text(x) for x in xs)


def _split(s: Any, sep: Any) -> list[str]:
    _need(str, s, "split() needs a string")
    _need(str, sep, "split()'s separator must be a string")
    if not sep:
        raise EvaluationError("split()'s separator must not be empty")
    return str(s).split(sep)


def _round(x: Any, digits: Any = 0) -> Any:
    _need((int, float), x, "round() needs a number")
    _need(int, digits, "round()'s digits must be an integer")
    return round(x, digits) if digits else round(x)


def _abs(x: Any) -> Any:
    _need((int, float), x, "abs() needs a number")
    return abs(x)


def _object(name: str, x: Any) -> dict[str, Any]:
    _need(dict, x, f"{name}() needs an object")
    return dict(x)


def _contains(container: Any, x: Any) -> bool:
    return bool(_binary("in", x, container, _Budget()))


FUNCTIONS: dict[str, Function] = {
    "len": Function((1, 1), _len),
    "str": Function((1, 1), _text),
    "int": Function((1, 1), _int),
    "float": Function((1, 1), _float),
    "lower": Function((1, 1), lambda s: _string("lower")(s).lower()),
    "upper": Function((1, 1), lambda s: _string("upper")(s).upper()),
    "trim": Function((1, 1), lambda s: _string("trim")(s).strip()),
    "startswith": Function(
        (2, 2), lambda s, p: _string("startswith")(s).startswith(_string("startswith")(p))
    ),
    "endswith": Function(
        (2, 2), lambda s, p: _string("endswith")(s).endswith(_string("endswith")(p))
    ),
    "contains": Function((2, 2), _contains),
    "join": Function((1, 2), _join),
    "split": Function((2, 2), _split),
    "keys": Function((1, 1), lambda o: list(_object("keys", o))),
    "values": Function((1, 1), lambda o: list(_object("values", o).values())),
    "min": Function((1, 1), lambda xs: min(_numbers("min", xs))),
    "max": Function((1, 1), lambda xs: max(_numbers("max", xs))),
    "sum": Function((1, 1), lambda xs: sum(_numbers("sum", xs))),
    "abs": Function((1, 1), _abs),
    "round": Function((1, 2), _round),
    "default": Function((2, 2), lambda x, fallback: x),  # evaluated lazily by _eval
}


def did_you_mean(name: str, known: Iterator[str] | Mapping[str, Any] | list[str]) -> str:
    """ " (did you mean 'total'?)" when a known name is close to `name`, else ""."""
    import difflib

    close = difflib.get_close_matches(name, [str(k) for k in known], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
