"""Safe YAML parsing that keeps positions: plain data, and where each value and key stands.

No tags that construct objects, aliases expanded within a budget (an alias bomb is an error,
not an out-of-memory), duplicate keys refused, merge keys (``<<: *defaults``) supported in the
YAML spec's order (own keys first, then the merged mappings, earlier before later). Every
problem is a :class:`~wtflow.errors.WorkflowError` at ``FILE:LINE:COL``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from wtflow.errors import WorkflowError

Loc = tuple[str | int, ...]
"""Where a value stands in a document: the keys and list indices that lead to it."""

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_PLAIN_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
}
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_STR_TAG = "tag:yaml.org,2002:str"
_VALUE_TAG = "tag:yaml.org,2002:value"
_NUL_ESCAPE = re.compile(r"\\(0|x00|u0000|U00000000)")  # how a double-quoted scalar writes NUL


@dataclass(frozen=True)
class Position:
    """A 1-based line and column in a file."""

    line: int
    column: int


@dataclass
class Document:
    """Plain data from YAML, with the position of every value and every key."""

    file: str
    data: Any = None
    values: dict[Loc, Position] = field(default_factory=dict)
    keys: dict[Loc, Position] = field(default_factory=dict)
    # Positions not recorded yet, found on demand by walking the YAML events (see parse()).
    pending: Iterator[None] | None = None
    # False when the text has no escape that writes a NUL character ("\0", "\x00", ...): then no
    # value holds one, and checking for them can skip the walk over every value.
    may_hold_nul: bool = True

    def where(self, loc: Loc, *, key: bool = False) -> str:
        """``FILE:LINE:COL`` of ``loc`` (of its key, if ``key``), or of its nearest enclosing value."""
        if self.pending is not None:
            while loc not in self.values:
                if next(self.pending, StopIteration) is StopIteration:
                    self.pending = None
                    break
        table = self.keys if key and loc in self.keys else self.values
        while loc and loc not in table:
            loc = loc[:-1]
            table = self.values
        position = table.get(loc, Position(1, 1))
        return f"{self.file}:{position.line}:{position.column}"


def parse(text: str, file: str) -> Document:
    """The mapping in ``text`` with its positions; :class:`WorkflowError` on any YAML problem.

    Ordinary files are read by libyaml at full speed, and their positions are found only when
    a message needs one: holding every position of a large file costs more memory than the
    file's data. Files with aliases, tags, merge keys or duplicate keys, and anything that is
    not a mapping, go through the careful parser, which counts what it builds.
    """
    data = plain_data(text)
    if isinstance(data, dict):
        document = Document(file, data)
        document.pending = _walk_positions(text, document)
    else:
        document = _parse_carefully(text, file)
    document.may_hold_nul = "\0" in text or _NUL_ESCAPE.search(text) is not None
    return document


def kind_of_value(value: Any) -> str:
    """What ``value`` is, in a message's words: list, string, number, boolean or value."""
    return {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}.get(type(value), "value")


# -- the fast reading ----------------------------------------------------------------------


class _Unusual(Exception):
    """Something the fast reading leaves to the careful parser (a duplicate or merge key, say)."""


def plain_data(text: str) -> Any:
    """The document's data without positions, or ``None`` when only the careful parser may read it.

    libyaml parses and resolves tags; the values are then built here, without the bookkeeping
    PyYAML's generic constructor does for every value. Strings, lists and mappings are built
    directly, every other scalar by PyYAML's own rules. Aliases (a way to build huge documents
    from small files), tags, merge keys, duplicate keys and anything unusual give ``None``.
    """
    if "*" in text or "!" in text:
        return None
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        return None if node is None else _construct(node, loader)
    except (yaml.YAMLError, RecursionError, _Unusual):
        return None
    finally:
        loader.dispose()


def _construct(node: yaml.Node, loader: Any) -> Any:
    if isinstance(node, yaml.ScalarNode):
        if node.tag == _STR_TAG:
            return node.value
        return loader.construct_object(node)  # numbers, booleans, null, timestamps
    if isinstance(node, yaml.SequenceNode):
        return [_construct(item, loader) for item in node.value]
    if not isinstance(node, yaml.MappingNode):
        raise _Unusual
    mapping: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
            raise _Unusual
        key = _construct(key_node, loader)
        if not isinstance(key, str) or key in mapping:
            raise _Unusual  # a key that is not text, or given twice: the careful parser says where
        mapping[key] = _construct(value_node, loader)
    return mapping


def _walk_positions(text: str, document: Document) -> Iterator[None]:
    """Record the position of every value and key of an alias-free document, one node at a time."""
    frames: list[list[Any]] = []  # [loc, is_mapping, pending key or None, next index]
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
            frames.pop()
            continue
        if not isinstance(event, yaml.NodeEvent):
            continue
        loc: Loc = ()
        if frames:
            frame = frames[-1]
            if frame[1]:  # in a mapping: a key, then its value
                if frame[2] is None:
                    key = event.value if isinstance(event, yaml.ScalarEvent) else "<key>"
                    frame[2] = key
                    document.keys[(*frame[0], key)] = _position(event.start_mark)
                    continue
                loc = (*frame[0], frame[2])
                frame[2] = None
            else:
                loc = (*frame[0], frame[3])
                frame[3] += 1
        document.values.setdefault(loc, _position(event.start_mark))
        if isinstance(event, yaml.MappingStartEvent):
            frames.append([loc, True, None, 0])
        elif isinstance(event, yaml.SequenceStartEvent):
            frames.append([loc, False, None, 0])
        yield None


def _position(mark: Any) -> Position:
    return Position(mark.line + 1, mark.column + 1)


# -- the careful parser --------------------------------------------------------------------


def _parse_carefully(text: str, file: str) -> Document:
    """Parse ``text`` into plain data, recording every position as it goes."""
    document = Document(file)
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{file}:{mark.line + 1}:{mark.column + 1}" if mark else f"{file}:1:1"
        problem = " ".join(" ".join(part.split()) for part in (exc.context, exc.problem) if part)
        raise WorkflowError(f"invalid YAML: {problem}", location=where) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        problem = f"invalid YAML: character {exc.character!r} is not allowed ({exc.reason})"
        raise WorkflowError(problem, location=f"{file}:{line}:{column}") from None
    except yaml.YAMLError as exc:
        raise WorkflowError(f"invalid YAML: {' '.join(str(exc).split())}", location=f"{file}:1:1") from None
    except RecursionError:
        raise WorkflowError("invalid YAML: nested too deeply", location=f"{file}:1:1") from None
    if root is None:
        raise WorkflowError("the file is empty; a workflow needs at least a name and a root", location=f"{file}:1:1")
    budget = min(5_000_000, 10_000 + 50 * len(text))
    try:
        document.data = _Builder(document, budget).build(root, ())
    except RecursionError:
        raise WorkflowError("the document is nested too deeply", location=f"{file}:1:1") from None
    if not isinstance(document.data, dict):
        raise WorkflowError(
            f"a workflow file holds a mapping (name:, root: or nodes:), not a {kind_of_value(document.data)}",
            location=document.where(()),
        )
    return document


class _Builder:
    """Turns composed YAML nodes into plain data, recording positions, within a size budget."""

    def __init__(self, document: Document, budget: int) -> None:
        self.document = document
        self.budget = budget
        self.constructor = yaml.SafeLoader("")  # only for scalar conversion
        self._flattened: dict[int, list[tuple[yaml.Node, yaml.Node]]] = {}  # by id() of a mapping node
        self._flattening: set[int] = set()

    def build(self, node: yaml.Node, loc: Loc) -> Any:
        self.budget -= 1
        if self.budget < 0:
            raise WorkflowError(
                "the document expands to too many values (an alias bomb?); write the values out or use fewer aliases",
                location=self.document.where(loc),
            )
        if loc not in self.document.values:
            self.document.values[loc] = _position(node.start_mark)
        if isinstance(node, yaml.ScalarNode) and node.tag == _STR_TAG:
            return node.value  # most scalars: no need for the constructor's machinery
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, loc)
        if isinstance(node, yaml.SequenceNode):
            if node.tag != _SEQ_TAG:
                raise self._tag_error(node, loc)
            return [self.build(item, (*loc, index)) for index, item in enumerate(node.value)]
        if node.tag not in _PLAIN_TAGS:
            raise self._tag_error(node, loc)
        return self.constructor.construct_object(node, deep=True)

    def _mapping(self, node: yaml.MappingNode, loc: Loc) -> dict[str, Any]:
        if node.tag != _MAP_TAG:
            raise self._tag_error(node, loc)
        result: dict[str, Any] = {}
        for key_node, value_node in self._pairs(node, loc):
            key = self.build(key_node, (*loc, "<key>")) if isinstance(key_node, yaml.ScalarNode) else None
            key_position = _position(key_node.start_mark)
            if not isinstance(key, str):
                raise WorkflowError(
                    f"keys must be text, got {key!r}; quote it",
                    location=f"{self.document.file}:{key_position.line}:{key_position.column}",
                )
            self.document.keys[(*loc, key)] = key_position
            result[key] = self.build(value_node, (*loc, key))
        return result

    def _pairs(self, node: yaml.MappingNode, loc: Loc) -> list[tuple[yaml.Node, yaml.Node]]:
        """The mapping's keys and values with its merge keys (``<<``) applied, as the YAML spec says.

        The mapping's own keys win over merged ones; of ``<<: [*a, *b]``, ``a``'s win over ``b``'s.
        (PyYAML 6.0.4's ``flatten_mapping`` lets ``b`` win.) A mapping merged in many places is
        flattened once.
        """
        flattened = self._flattened.get(id(node))
        if flattened is not None:
            return flattened
        if id(node) in self._flattening:
            raise WorkflowError("a merge key (<<) merges the mapping it is in", location=self.document.where(loc))
        self._flattening.add(id(node))
        own: list[tuple[yaml.Node, yaml.Node]] = []
        merged: list[yaml.Node] = []
        seen: set[str] = set()
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merged.extend(self._merged_mappings(value_node))
                continue
            if key_node.tag == _VALUE_TAG:  # a plain '=' key: text here, as PyYAML reads it
                key_node.tag = _STR_TAG
            if isinstance(key_node, yaml.ScalarNode):
                if key_node.value in seen:
                    position = _position(key_node.start_mark)
                    raise WorkflowError(
                        f"duplicate key {key_node.value!r}",
                        location=f"{self.document.file}:{position.line}:{position.column}",
                    )
                seen.add(key_node.value)
            own.append((key_node, value_node))
        pairs = list(own)
        for source in merged:
            assert isinstance(source, yaml.MappingNode)  # _merged_mappings checked
            for key_node, value_node in self._pairs(source, loc):
                if not isinstance(key_node, yaml.ScalarNode) or key_node.value not in seen:
                    if isinstance(key_node, yaml.ScalarNode):
                        seen.add(key_node.value)
                    pairs.append((key_node, value_node))
        self.budget -= len(pairs)  # merged lists are built once but may be long
        self._flattening.discard(id(node))
        self._flattened[id(node)] = pairs
        return pairs

    def _merged_mappings(self, value: yaml.Node) -> list[yaml.Node]:
        """What a merge key's value merges, in order: one mapping, or a list of mappings."""
        in_list = isinstance(value, yaml.SequenceNode)
        items = value.value if in_list else [value]
        for item in items:
            if not isinstance(item, yaml.MappingNode):
                position = _position(item.start_mark)
                found = f"a list holding a {_node_kind(item)}" if in_list else f"a {_node_kind(item)}"
                raise WorkflowError(
                    f"a merge key (<<) takes a mapping or a list of mappings, not {found}",
                    location=f"{self.document.file}:{position.line}:{position.column}",
                )
        return list(items)

    def _tag_error(self, node: yaml.Node, loc: Loc) -> WorkflowError:
        return WorkflowError(
            f"YAML tag {node.tag!r} is not allowed in workflow files; remove it",
            location=self.document.where(loc),
        )


def _node_kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.SequenceNode):
        return "list"
    return "scalar" if isinstance(node, yaml.ScalarNode) else "value"
