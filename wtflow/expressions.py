"""GitHub Actions' expression language: ``${{ <expression> }}`` in strings and bare ``if:`` conditions.

Text is parsed by a lark LALR grammar into a small syntax tree, checked once (known functions and
their arity, known contexts) and compiled into closures, which :meth:`Expression.evaluate` runs on
the caller's contexts. Values are JSON-like Python data. Comparison, truthiness and conversion follow
Actions' documented rules: mismatched kinds are compared as numbers, strings compare ignoring case,
objects and arrays are equal only to themselves, ``&&`` and ``||`` return one of their operands.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, NamedTuple, cast

if TYPE_CHECKING:  # lark is imported on first parse: importing it costs more than this whole module
    from lark import Lark, Token, Transformer
    from lark.exceptions import UnexpectedInput

CONTEXTS = frozenset({"env", "vars", "matrix", "needs", "wtflow"})
STATUS_FUNCTIONS = frozenset({"success", "failure", "always", "cancelled"})
# Lower-case name -> (name as documented, fewest arguments, most arguments or None for no limit).
_SIGNATURES: dict[str, tuple[str, int, int | None]] = {
    "contains": ("contains", 2, 2),
    "startswith": ("startsWith", 2, 2),
    "endswith": ("endsWith", 2, 2),
    "format": ("format", 1, None),
    "join": ("join", 1, 2),
    "tojson": ("toJSON", 1, 1),
    "fromjson": ("fromJSON", 1, 1),
    **{name: (name, 0, 0) for name in sorted(STATUS_FUNCTIONS)},
}
FUNCTIONS = frozenset(_SIGNATURES)
_LITERALS: dict[str, Any] = {"true": True, "false": False, "null": None}

_GRAMMAR = r"""
start: expr
?expr: and_expr | expr OR and_expr -> binary
?and_expr: eq_expr | and_expr AND eq_expr -> binary
?eq_expr: cmp_expr | eq_expr EQOP cmp_expr -> binary
?cmp_expr: unary | cmp_expr CMPOP unary -> binary
?unary: postfix | NOT unary -> not_
?postfix: atom
    | postfix "." NAME -> prop
    | postfix "." "*" -> star
    | postfix "[" "*" "]" -> star
    | postfix "[" expr "]" -> index
?atom: NUMBER -> number
    | STRING -> string
    | NAME -> name
    | NAME "(" [args] ")" -> call
    | "(" expr ")"
args: expr ("," expr)*
OR: "||"
AND: "&&"
EQOP: "==" | "!="
CMPOP: "<=" | ">=" | "<" | ">"
NOT: "!"
NAME: /[A-Za-z_][A-Za-z0-9_-]*/
NUMBER: /-?(0[xX][0-9a-fA-F]+|[0-9]+(\.[0-9]*)?([eE][+-]?[0-9]+)?)/
STRING: /'(?:[^']+|'')*'/
%ignore /\s+/
"""
_CLOSER = {"(": ")", "[": "]"}
_CALL_OPENING = re.compile(r"[A-Za-z0-9_-]\s*$")
_CHAR_HINTS = {
    "'": "unterminated string: add the closing '",
    '"': "strings are written in single quotes: 'text'",
    "=": "unexpected '=': compare with '=='",
    "&": "unexpected '&': 'and' is written '&&'",
    "|": "unexpected '|': 'or' is written '||'",
}
_SYMBOLS = ("&&", "||", "==", "!=", "<=", ">=", "<", ">", "!", "(", "[", ",", ".")
# A quoted string (skipped whole, so '}}' or ')' inside it means nothing), or what is searched for.
_SCAN_CLOSE = re.compile(r"'(?:[^']+|'')*'|\}\}|'")
_SCAN_BRACKETS = re.compile(r"'(?:[^']+|'')*'|[()\[\]]")
_FORMAT_ITEM = re.compile(r"\{\{|\}\}|\{([0-9]+)\}|[{}]")
_NUMBER_TEXT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_HEX_TEXT = re.compile(r"[+-]?0[xX][0-9a-fA-F]+")
_NULL, _BOOL, _NUMBER, _STRING, _OBJECT = range(5)  # value kinds, primitives first

_Run = Callable[[Mapping[str, Any], Mapping[str, bool] | None], Any]
_MISSING = object()


class ExpressionError(ValueError):
    """A problem in an expression: ``message`` says what is wrong and how to fix it.

    ``offset`` is the 0-based index, in the text given to :func:`parse`, :func:`parse_template` or
    :func:`parse_condition` (plus :func:`parse`'s ``offset``), where the problem is.
    """

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message, offset)
        self.message = message
        self.offset = offset

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Expression:
    """One parsed expression: what it reads and calls, and a compiled form to evaluate.

    ``references`` are the static property paths it reads, e.g. ``("needs", "build", "outputs",
    "version")``, each cut at its first dynamic index or ``*``. A condition that calls no status
    function has ``implicit_success``: it means ``success() && (expression)``, as in Actions.
    """

    source: str
    offset: int
    contexts: frozenset[str]
    functions: frozenset[str]
    references: tuple[tuple[str, ...], ...]
    implicit_success: bool = False
    _run: _Run = field(repr=False, compare=False, kw_only=True)

    @property
    def uses_status(self) -> bool:
        """Whether it calls ``success()``, ``failure()``, ``always()`` or ``cancelled()``."""
        return not self.functions.isdisjoint(STATUS_FUNCTIONS)

    def evaluate(self, contexts: Mapping[str, Any], status: Mapping[str, bool] | None = None) -> Any:
        """The expression's value, reading ``contexts`` by name and status functions from ``status``.

        ``status`` holds ``success``, ``failure`` and ``cancelled``; without it ``success()`` is true.
        """
        if self.implicit_success and not _status("success", status):
            return False
        try:
            value = self._run(contexts, status)
        except RecursionError:
            raise ExpressionError("the expression is nested too deeply to evaluate", self.offset) from None
        return list(value) if isinstance(value, _Filtered) else value


@dataclass(frozen=True)
class Template:
    """A string that may hold ``${{ }}`` expressions: ``parts`` are its literal text and expressions in order."""

    text: str
    parts: tuple[str | Expression, ...]

    @property
    def expressions(self) -> tuple[Expression, ...]:
        """The expressions in the text, in order."""
        return tuple(part for part in self.parts if isinstance(part, Expression))

    def render(self, contexts: Mapping[str, Any], status: Mapping[str, bool] | None = None) -> Any:
        """The value of a text that is exactly one ``${{ }}`` (a number stays a number); else :meth:`render_text`."""
        if len(self.parts) == 1 and isinstance(self.parts[0], Expression):
            return self.parts[0].evaluate(contexts, status)
        return self.render_text(contexts, status)

    def render_text(self, contexts: Mapping[str, Any], status: Mapping[str, bool] | None = None) -> str:
        """The text with each expression replaced by its value as a string (see :func:`to_string`)."""
        return "".join(
            part if isinstance(part, str) else to_string(part.evaluate(contexts, status)) for part in self.parts
        )


def has_expression(text: str) -> bool:
    """Whether ``text`` holds a ``${{`` (a cheap test before :func:`parse_template`)."""
    return "${{" in text


def parse(text: str, *, offset: int = 0, contexts: Collection[str] = CONTEXTS) -> Expression:
    """Parse a bare expression; ``offset`` is where ``text`` starts in the caller's text.

    Raises :class:`ExpressionError` for a syntax error, an unknown function, a wrong number of
    arguments or a context that is not in ``contexts``.
    """
    return _parse(text, offset, frozenset(contexts))


def parse_template(text: str, *, contexts: Collection[str] = CONTEXTS) -> Template:
    """Parse a string holding any number of ``${{ expression }}``; each ends at its first ``}}`` outside quotes.

    Raises :class:`ExpressionError` as :func:`parse` does, and for a ``${{`` that is never closed.
    """
    return _parse_template(text, frozenset(contexts))


def parse_condition(text: str, *, contexts: Collection[str] = CONTEXTS) -> Expression:
    """Parse an ``if:`` value: a bare expression, or exactly one ``${{ expression }}`` with spaces around.

    Without a status function the condition means ``success() && (expression)``, as in Actions.
    """
    return _parse_condition(text, frozenset(contexts))


def truthy(value: Any) -> bool:
    """Actions' truthiness: ``false``, ``0``, ``-0``, ``""``, ``null`` and ``NaN`` are false; all else is true."""
    if value is None or isinstance(value, bool):
        return value is True
    if isinstance(value, int | float):
        return not math.isnan(value) and value != 0
    if isinstance(value, str):
        return value != ""
    return True


def to_string(value: Any) -> str:  # noqa: PLR0911 - one return per kind of value
    """A value as text is substituted: null as '', booleans in lower case, numbers as Actions prints them.

    Arrays and objects become their ``toJSON`` form: JSON indented by two spaces.
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return format(value, ".15g").upper()  # Actions prints doubles with 15 significant digits: 3.0 is "3"
    return _to_json(value)


def _to_json(value: Any) -> str:
    """``toJSON(value)``: JSON indented by two spaces, as Actions prints it."""
    return json.dumps(_plain(value), indent=2, ensure_ascii=False, default=str)


# -- parsing -------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def _parse(text: str, offset: int, contexts: frozenset[str]) -> Expression:
    try:
        node = _tree(text)
    except ExpressionError as exc:
        raise ExpressionError(exc.message, offset + exc.offset) from None
    compiler = _Compiler(offset, contexts)
    references: dict[tuple[str, ...], None] = {}  # a dict keeps the first-seen order
    try:
        run = compiler.compile(node)
        _collect_references(node, compiler.names, references)
    except RecursionError:
        raise ExpressionError("the expression is nested too deeply", offset) from None
    return Expression(
        source=text.strip(),
        offset=offset + len(text) - len(text.lstrip()),
        contexts=frozenset(compiler.contexts),
        functions=frozenset(compiler.functions),
        references=tuple(references),
        _run=run,
    )


@functools.lru_cache(maxsize=4096)
def _parse_template(text: str, contexts: frozenset[str]) -> Template:
    parts: list[str | Expression] = []
    position = 0
    while (start := text.find("${{", position)) != -1:
        if start > position:
            parts.append(text[position:start])
        end = _closing(text, start)
        parts.append(_parse(text[start + 3 : end], start + 3, contexts))
        position = end + 2
    if position < len(text):
        parts.append(text[position:])
    return Template(text, tuple(parts))


@functools.lru_cache(maxsize=4096)
def _parse_condition(text: str, contexts: frozenset[str]) -> Expression:
    start = text.find("${{")
    if start == -1:
        expression = _parse(text, 0, contexts)
    else:
        if text[:start].strip():
            raise ExpressionError("a condition is one expression: write it bare, without ${{ }}", start)
        end = _closing(text, start)
        if rest := text[end + 2 :].strip():
            where = text.index(rest, end + 2)
            raise ExpressionError("text after '}}': put the whole condition inside one ${{ }}", where)
        expression = _parse(text[start + 3 : end], start + 3, contexts)
    return expression if expression.uses_status else replace(expression, implicit_success=True)


def _closing(text: str, start: int) -> int:
    """Where the ``}}`` closing the ``${{`` at ``start`` is."""
    for match in _SCAN_CLOSE.finditer(text, start + 3):
        if match.group() == "}}":
            return match.start()
        if match.group() == "'":
            raise ExpressionError(_CHAR_HINTS["'"], match.start())
    raise ExpressionError("'${{' is never closed: end the expression with '}}'", start)


@functools.cache
def _parser() -> Lark:
    from lark import Lark

    # lark looks its callbacks up on the transformer by rule name; any object with them will do.
    return Lark(_GRAMMAR, parser="lalr", transformer=cast("Transformer[Any, Any]", _Build()))


@functools.lru_cache(maxsize=4096)
def _tree(text: str) -> _Node:
    """The syntax tree of ``text``; errors carry offsets into ``text``."""
    from lark.exceptions import UnexpectedInput

    if not text.strip():
        raise ExpressionError("empty expression: write one between ${{ and }}", 0)
    try:
        return cast("_Node", _parser().parse(text))
    except UnexpectedInput as exc:
        raise _syntax_error(text, exc) from None


def _syntax_error(text: str, exc: UnexpectedInput) -> ExpressionError:
    from lark.exceptions import UnexpectedCharacters, UnexpectedToken

    if isinstance(exc, UnexpectedCharacters):
        where: int = exc.pos_in_stream  # type: ignore[assignment]  # lark declares it None on the base class
        char = text[where]
        if text.startswith("${{", where):
            return ExpressionError("'${{' inside an expression: write the expression without ${{ }}", where)
        return ExpressionError(_CHAR_HINTS.get(char, f"unexpected character {char!r}"), where)
    token = exc.token if isinstance(exc, UnexpectedToken) and exc.token.type != "$END" else None
    where = len(text.rstrip()) if token is None else token.start_pos or 0
    expected = set(getattr(exc, "expected", ()))
    opened = _unclosed(text[:where])
    before = text[:where].rstrip()
    if token is not None and token.type in {"RPAR", "RSQB"} and opened is None:
        return ExpressionError(f"unexpected '{token}': nothing is open for it to close", where)
    if {"NAME", "NUMBER", "STRING"} <= expected:
        message = "expected an expression" + next((f" after '{s}'" for s in _SYMBOLS if before.endswith(s)), "")
    elif "STAR" in expected:
        message = "expected a property name or '*' after '.'"
    elif token is None and opened is not None:
        return ExpressionError(f"'{text[opened]}' is never closed: add '{_CLOSER[text[opened]]}'", opened)
    else:
        wanted = [] if opened is None else [f"'{_CLOSER[text[opened]]}'"]
        if (
            opened is not None and text[opened] == "(" and _CALL_OPENING.search(text, 0, opened)
        ):  # a call's arguments go on after a ','
            wanted.append("','")
        message = f"expected {' or '.join([*wanted, 'an operator'])}"
    if token is None:
        return ExpressionError(message, where)
    found = f"'{token}'" if len(token) <= 30 else f"'{token[:27]}...'"
    return ExpressionError(f"unexpected {found}; {message}", where)


def _unclosed(text: str) -> int | None:
    """Where the innermost '(' or '[' that ``text`` leaves open is."""
    opened: list[int] = []
    for match in _SCAN_BRACKETS.finditer(text):
        if match.group() in "([":
            opened.append(match.start())
        elif match.group() in ")]" and opened:
            opened.pop()
    return opened[-1] if opened else None


# -- the syntax tree -----------------------------------------------------------------------------


# Only names and calls keep their position: they are what errors point at.
class _Lit(NamedTuple):
    value: Any


class _Ctx(NamedTuple):
    pos: int
    name: str


class _Prop(NamedTuple):
    obj: _Node
    name: str


class _Index(NamedTuple):
    obj: _Node
    key: _Node


class _Star(NamedTuple):
    obj: _Node


class _Not(NamedTuple):
    operand: _Node


class _Op(NamedTuple):
    op: str
    left: _Node
    right: _Node


class _Call(NamedTuple):
    pos: int
    name: str
    args: tuple[_Node, ...]


_Node = _Lit | _Ctx | _Prop | _Index | _Star | _Not | _Op | _Call


class _Build:
    """What lark's parser calls as it reduces each rule (``c``: the rule's nodes and tokens): builds the tree."""

    def start(self, c: list[_Node]) -> _Node:
        return c[0]

    def args(self, c: list[_Node]) -> list[_Node]:
        return c

    def string(self, c: list[Token]) -> _Node:
        return _Lit(c[0][1:-1].replace("''", "'"))

    def number(self, c: list[Token]) -> _Node:
        return _Lit(_number_literal(c[0]))

    def name(self, c: list[Token]) -> _Node:
        return _Lit(_LITERALS[c[0]]) if c[0] in _LITERALS else _Ctx(c[0].start_pos or 0, str(c[0]))

    def call(self, c: list[Any]) -> _Node:
        return _Call(c[0].start_pos, str(c[0]), tuple(c[1] or ()))  # c[1] is None without arguments

    def prop(self, c: list[Any]) -> _Node:
        return _Prop(c[0], str(c[1]))

    def index(self, c: list[_Node]) -> _Node:
        return _Index(c[0], c[1])

    def star(self, c: list[_Node]) -> _Node:
        return _Star(c[0])

    def not_(self, c: list[Any]) -> _Node:
        return _Not(c[1])

    def binary(self, c: list[Any]) -> _Node:
        return _Op(str(c[1]), c[0], c[2])


def _number_literal(text: str) -> int | float:
    if _HEX_TEXT.fullmatch(text):
        return int(text, 16)
    if any(char in text for char in ".eE"):
        return float(text)
    try:
        return int(text)
    except ValueError:  # more digits than int() converts from text
        return float(text)


def _collect_references(node: _Node, names: Mapping[str, str], found: dict[tuple[str, ...], None]) -> None:
    """Add the static property path of each chain of accesses rooted at a context, in order."""
    if isinstance(node, _Ctx | _Prop | _Index | _Star):
        path: list[str] = []  # from the outermost access in
        current: _Node = node
        while isinstance(current, _Prop | _Index | _Star):
            key = current.name if isinstance(current, _Prop) else None
            if isinstance(current, _Index):
                _collect_references(current.key, names, found)
                if isinstance(current.key, _Lit) and isinstance(current.key.value, str):
                    key = current.key.value
            if key is None:  # what follows a dynamic index or '*' is not known before the run
                path.clear()
            else:
                path.append(key)
            current = current.obj
        if isinstance(current, _Ctx):
            found[(names[current.name.lower()], *reversed(path))] = None
        else:
            _collect_references(current, names, found)
    elif isinstance(node, _Not):
        _collect_references(node.operand, names, found)
    elif isinstance(node, _Op):
        _collect_references(node.left, names, found)
        _collect_references(node.right, names, found)
    elif isinstance(node, _Call):
        for arg in node.args:
            _collect_references(arg, names, found)


# -- checking and compiling ----------------------------------------------------------------------


class _Compiler:
    """Turns a syntax tree into closures, checking functions and contexts and noting which are used."""

    def __init__(self, offset: int, contexts: frozenset[str]) -> None:
        self.offset = offset
        self.names = {name.lower(): name for name in contexts}  # Actions' context names ignore case
        self.contexts: set[str] = set()
        self.functions: set[str] = set()

    def compile(self, node: _Node) -> _Run:  # noqa: PLR0911 - one case per kind of node
        """The closure that computes ``node``'s value from the contexts and the status."""
        match node:
            case _Lit(value):
                return lambda contexts, status: value
            case _Ctx(pos=pos, name=name):
                if (known := self.names.get(name.lower())) is None:
                    raise self._unknown("context", name, sorted(self.names.values()), pos)
                self.contexts.add(known)
                return lambda contexts, status: contexts.get(known)
            case _Prop(obj=obj, name=key):
                base = self.compile(obj)
                return lambda contexts, status: _index(base(contexts, status), key)
            case _Index(obj=obj, key=index):
                base, key_of = self.compile(obj), self.compile(index)
                return lambda contexts, status: _index(base(contexts, status), key_of(contexts, status))
            case _Star(obj=obj):
                base = self.compile(obj)
                return lambda contexts, status: _star(base(contexts, status))
            case _Not(operand=operand):
                inner = self.compile(operand)
                return lambda contexts, status: not truthy(inner(contexts, status))
            case _Op(op=op, left=left, right=right):
                return self._operator(op, self.compile(left), self.compile(right))
            case _Call():
                return self._call(node)

    def _operator(self, op: str, left: _Run, right: _Run) -> _Run:
        if op == "&&":
            return lambda c, s: right(c, s) if truthy(value := left(c, s)) else value
        if op == "||":
            return lambda c, s: value if truthy(value := left(c, s)) else right(c, s)
        accepted = _COMPARISONS[op]
        return lambda c, s: _relation(left(c, s), right(c, s)) in accepted

    def _call(self, node: _Call) -> _Run:
        key = node.name.lower()
        if key not in _SIGNATURES:
            known = sorted((shown for shown, _, _ in _SIGNATURES.values()), key=str.lower)
            raise self._unknown("function", node.name, known, node.pos)
        shown, least, most = _SIGNATURES[key]
        if not least <= len(node.args) <= (len(node.args) if most is None else most):
            takes = f"at least {least}" if most is None else str(least) if least == most else f"{least} or {most}"
            noun = "argument" if (most or least) == 1 else "arguments"
            given = len(node.args)
            raise ExpressionError(f"{shown}() takes {takes} {noun}, not {given}", self.offset + node.pos)
        self.functions.add(key)
        if key in STATUS_FUNCTIONS:
            return lambda contexts, status: _status(key, status)
        function, args = _IMPLEMENTATIONS[key], [self.compile(arg) for arg in node.args]
        where = self.offset + node.pos

        def run(contexts: Mapping[str, Any], status: Mapping[str, bool] | None) -> Any:
            try:
                return function([arg(contexts, status) for arg in args])
            except _Failure as exc:
                raise ExpressionError(f"{shown}(): {exc}", where) from None

        return run

    def _unknown(self, what: str, name: str, known: list[str], pos: int) -> ExpressionError:
        import difflib

        candidates = {candidate.lower(): candidate for candidate in known}
        if what == "context":  # 'True' is a context name, but more likely a mistyped literal
            candidates.update((literal, literal) for literal in _LITERALS)
        close = difflib.get_close_matches(name.lower(), candidates, n=1)
        hint = f"did you mean '{candidates[close[0]]}'? " if close else ""
        listed = f"known: {', '.join(known)}" if what == "function" else f"available here: {', '.join(known) or 'none'}"
        return ExpressionError(f"unknown {what} '{name}'; {hint}{listed}", self.offset + pos)


def _status(name: str, status: Mapping[str, bool] | None) -> bool:
    if name == "always":
        return True
    if status is None:
        return name == "success"
    if name == "success":
        return bool(status.get("success", not status.get("failure", False) and not status.get("cancelled", False)))
    return bool(status.get(name, False))


# -- values --------------------------------------------------------------------------------------


class _Filtered(list[Any]):
    """The array ``*`` makes: a property or index applied to it applies to each element."""


def _kind(value: Any) -> int:
    if value is None:
        return _NULL
    if isinstance(value, bool):
        return _BOOL
    if isinstance(value, int | float):
        return _NUMBER
    return _STRING if isinstance(value, str) else _OBJECT


def _to_number(value: Any) -> int | float:
    """Actions' number conversion: null 0, booleans 1 and 0, strings as JSON numbers ('' is 0), else NaN."""
    if value is None or isinstance(value, bool | int | float):
        return value or 0
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return 0
        if _HEX_TEXT.fullmatch(text):
            return int(text, 16)
        if _NUMBER_TEXT.fullmatch(text):
            return float(text)
    return math.nan


def _coerce(left: Any, right: Any) -> tuple[Any, Any, int]:
    """Both values of one kind as Actions compares them, and that kind (-1 when they still differ)."""
    left_kind, right_kind = _kind(left), _kind(right)
    while left_kind != right_kind:
        if (left_kind == _NUMBER and right_kind == _STRING) or right_kind in {_NULL, _BOOL}:
            right, right_kind = _to_number(right), _NUMBER
        elif (right_kind == _NUMBER and left_kind == _STRING) or left_kind in {_NULL, _BOOL}:
            left, left_kind = _to_number(left), _NUMBER
        else:
            return left, right, -1
    return left, right, left_kind


def _relation(left: Any, right: Any) -> str:
    """How ``left`` compares with ``right`` once coerced: '<', '=', '>', or '' when neither (NaN, objects)."""
    left, right, kind = _coerce(left, right)
    if kind in {_NULL, _OBJECT, -1}:
        return "=" if left is right else ""  # objects and arrays are equal only to themselves
    if kind == _STRING:
        left, right = left.upper(), right.upper()
    return "<" if left < right else ">" if left > right else "=" if left == right else ""


# Each comparison operator and the relations that make it true.
_COMPARISONS = {
    "==": frozenset("="),
    "!=": frozenset({"<", ">", ""}),
    "<": frozenset("<"),
    ">": frozenset(">"),
    "<=": frozenset("<="),
    ">=": frozenset(">="),
}


def _index(value: Any, key: Any) -> Any:
    """``value[key]`` (and ``value.key``) as Actions reads it: null when it is not there."""
    if isinstance(value, _Filtered):
        return _Filtered(item for element in value if (item := _index(element, key)) is not None)
    if isinstance(value, Mapping):
        if _kind(key) == _OBJECT:
            return None
        name = key if isinstance(key, str) else to_string(key)
        if (found := value.get(name, _MISSING)) is not _MISSING:  # one lookup: a lazy mapping may compute it
            return found
        folded = name.upper()
        return next((item for other, item in value.items() if isinstance(other, str) and other.upper() == folded), None)
    if isinstance(value, list | tuple):
        number = _to_number(key)
        return value[int(number)] if 0 <= number < len(value) else None  # a fraction is floored
    return None


def _star(value: Any) -> Any:
    if isinstance(value, _Filtered):  # '*' again flattens one level
        return _Filtered(item for element in value for item in (_star(element) or ()))
    if isinstance(value, Mapping):
        return _Filtered(value.values())
    return _Filtered(value) if isinstance(value, list | tuple) else None


def _plain(value: Any) -> Any:
    """JSON-ready data: any Mapping as a dict, integral floats as ints (toJSON prints 3, not 3.0)."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


# -- functions -----------------------------------------------------------------------------------


class _Failure(ValueError):
    """A function cannot compute its value; the call site turns it into an ExpressionError."""


def _contains(args: list[Any]) -> bool:
    search, item = args
    if _kind(search) != _OBJECT:
        return _kind(item) != _OBJECT and to_string(item).upper() in to_string(search).upper()
    return isinstance(search, list | tuple) and any(_relation(item, element) == "=" for element in search)


def _affix(method: Callable[[str, str], bool]) -> Callable[[list[Any]], bool]:
    def test(args: list[Any]) -> bool:
        text, affix = args
        if _kind(text) == _OBJECT or _kind(affix) == _OBJECT:
            return False
        return method(to_string(text).upper(), to_string(affix).upper())

    return test


def _format(args: list[Any]) -> str:
    def item(match: re.Match[str]) -> str:
        if match.group() in {"{{", "}}"}:
            return match.group()[0]
        if match.group(1) is None:
            double = "{{" if match.group() == "{" else "}}"
            raise _Failure(f"lone '{match.group()}' at {match.start()} in the format; write '{double}' for the brace")
        index = int(match.group(1))
        if index >= len(args) - 1:
            raise _Failure(f"'{{{index}}}' refers to argument {index}, but only {len(args) - 1} follow the format")
        return to_string(args[index + 1])

    return _FORMAT_ITEM.sub(item, to_string(args[0]))


def _join(args: list[Any]) -> str:
    separator = to_string(args[1]) if len(args) > 1 else ","
    if isinstance(args[0], list | tuple):
        return separator.join(to_string(item) for item in args[0])
    return to_string(args[0]) if _kind(args[0]) != _OBJECT else ""


def _from_json(args: list[Any]) -> Any:
    try:
        return json.loads(to_string(args[0]))
    except json.JSONDecodeError as exc:
        raise _Failure(f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    except (ValueError, RecursionError) as exc:  # too many digits, too deeply nested
        raise _Failure(f"cannot read the JSON: {exc}") from None


_IMPLEMENTATIONS: dict[str, Callable[[list[Any]], Any]] = {
    "contains": _contains,
    "startswith": _affix(str.startswith),
    "endswith": _affix(str.endswith),
    "format": _format,
    "join": _join,
    "tojson": lambda args: _to_json(args[0]),
    "fromjson": _from_json,
}
