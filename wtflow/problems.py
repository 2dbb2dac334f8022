"""The loader's messages for a document pydantic refuses: one ``FILE:LINE:COL: message`` each.

Imported only when a workflow file has a problem: valid files are read by
:mod:`wtflow.fastspec` without pydantic (see :mod:`wtflow.spec`).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from wtflow.errors import WorkflowError
from wtflow.loader import MAX_MESSAGES, Loc, kind_of_value
from wtflow.spec import FileArtifactSpec, NodeSpec, RetriesSpec, WorkflowSpec

if TYPE_CHECKING:
    from wtflow.loader import _Document


def validated(document: _Document) -> WorkflowSpec:
    """The document as pydantic reads it; :class:`WorkflowError` with every problem it found."""
    try:
        return WorkflowSpec.model_validate(document.data)
    except ValidationError as exc:
        raise WorkflowError("\n".join(validation_messages(exc, document))) from None


_MESSAGES = {
    "string_type": "expected text",
    "int_type": "expected a whole number",
    "bool_type": "expected true or false",
    "list_type": "expected a list",
    "dict_type": "expected a mapping",
    "model_type": "expected a mapping",
    "float_type": "expected a number",
}


def _model_at(loc: Loc) -> type | None:
    """Which spec model describes the mapping at ``loc`` (a cleaned location)."""
    model: type = WorkflowSpec
    index = 0
    while index < len(loc):
        part = loc[index]
        if part == "root" and model is WorkflowSpec:
            model = NodeSpec
        elif part in {"nodes", "children"}:
            model = NodeSpec
            index += 1  # the list index
        elif part == "retries":
            model = RetriesSpec
        elif part == "artifacts" and model is NodeSpec:
            model = FileArtifactSpec
            index += 1
        else:
            return None
        index += 1
    return model


def _clean(loc: Iterable[str | int], data: Any, *, last_is_key: bool = False) -> tuple[Loc, Loc | None]:
    """The location in the data, without pydantic's union member tags; and where a union was."""
    cleaned: list[str | int] = []
    union_at: Loc | None = None
    current = data
    parts = list(loc)
    for position, part in enumerate(parts):
        if last_is_key and position == len(parts) - 1:
            cleaned.append(part)
            break
        if isinstance(current, dict) and part in current:  # noqa: SIM114 - apart, each index has its own type
            current = current[part]
            cleaned.append(part)
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            current = current[part]
            cleaned.append(part)
        elif isinstance(current, dict) and isinstance(part, str) and not _is_union_tag(part):
            cleaned.append(part)  # a missing or unknown key
            current = None
        elif union_at is None:
            union_at = tuple(cleaned)
    return tuple(cleaned), union_at


def _is_union_tag(part: str) -> bool:
    return (
        part[:1].isupper()
        or part
        in {
            "str",
            "int",
            "float",
            "bool",
            "list[str]",
            "none",
            "function-after[_retries_not_negative(), union[int,RetriesSpec]]",
        }
        or "[" in part
    )


def validation_messages(exc: ValidationError, document: _Document) -> list[str]:
    """One ``FILE:LINE:COL: message`` per problem pydantic found, most specific first."""
    found: dict[Loc, tuple[str, str]] = {}
    union_errors: dict[Loc, list[tuple[Loc, dict[str, Any]]]] = {}
    errors = exc.errors(include_url=False)
    for error in errors[: MAX_MESSAGES * 4]:  # a union's members report one problem several times
        loc, union_at = _clean(error["loc"], document.data, last_is_key=error["type"] == "extra_forbidden")
        if union_at is not None:
            union_errors.setdefault(union_at, []).append((loc, dict(error)))
            continue
        found.setdefault(loc, _message(loc, dict(error), document))
    for union_at, members in union_errors.items():
        deepest = max(len(loc) for loc, _ in members)
        if deepest > len(union_at):
            for loc, member in members:
                if len(loc) == deepest:
                    found.setdefault(loc, _message(loc, member, document))
        else:
            found.setdefault(union_at, (document.where(union_at), _union_message(union_at)))
    messages = [f"{where}: {message}" for where, message in sorted(found.values(), key=lambda item: _sort_key(item[0]))]
    if len(messages) > MAX_MESSAGES or len(errors) > MAX_MESSAGES * 4:
        shown = messages[:MAX_MESSAGES]
        shown.append(f"{document.file}:1:1: ... and more problems ({exc.error_count()} in all); fix these first")
        return shown
    return messages


def _sort_key(where: str) -> tuple[int, int]:
    _, line, column = where.rsplit(":", 2)
    return int(line), int(column)


def _union_message(loc: Loc) -> str:
    field_name = loc[-1] if loc else "value"
    hints = {
        "command": "command must be a string or a list of strings",
        "retries": "retries must be a whole number or a mapping {max, delay, backoff}",
        "timeout": "timeout must be seconds or a duration such as 90s, 5m, 1h30m",
        "max_parallel": "max_parallel must be a whole number >= 1",
        "working_directory": "working_directory must be text",
        "function": "function must be text: module:attribute",
        "root": "root must be a mapping (a node)",
        "nodes": "nodes must be a list of nodes",
    }
    return hints.get(str(field_name), f"{field_name} has the wrong type")


def _message(loc: Loc, error: dict[str, Any], document: _Document) -> tuple[str, str]:
    kind = error["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        model = _model_at(loc[:-1])
        known = sorted(model.model_fields) if model is not None else []  # type: ignore[attr-defined]
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else (f"; known keys: {', '.join(known)}" if known else "")
        return document.where(loc, key=True), f"unknown key {key!r}{hint}"
    if kind == "missing":
        return document.where(loc[:-1]), f"missing required key {loc[-1]!r}"
    field_name = str(loc[-1]) if loc else "value"
    if kind == "string_pattern_mismatch":
        if field_name == "function":
            return document.where(loc), "function must be written module:attribute, e.g. mypkg.reports:summarize"
        return document.where(loc), f"{field_name} has a character that is not allowed"
    if kind in _MESSAGES:
        return document.where(loc), f"{field_name}: {_MESSAGES[kind]}, got {_kind_of(error.get('input'))}"
    message = str(error["msg"]).removeprefix("Value error, ")
    if kind in {"greater_than_equal", "too_short", "string_too_short"}:
        message = f"{field_name}: {message[0].lower()}{message[1:]}"
    return document.where(loc), message


def _kind_of(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    return (
        f"{kind_of_value(value)} {value!r}"
        if not isinstance(value, dict | list)
        else kind_of_value(value)
        if isinstance(value, list)
        else "a mapping"
    )
