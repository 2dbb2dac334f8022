"""Substituting a node's ``${{ }}`` expressions when it is about to start.

The model checked every expression when the workflow was built; here they get their values
from the run: the node's environment (``env``), the workflow's ``vars``, its ``matrix`` values,
what it waits for (``needs``) and the run itself (``wtflow``). An environment's values are
substituted first, without ``env``; everything else then sees the substituted environment.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from wtflow import expressions
from wtflow.durations import parse_duration
from wtflow.errors import WorkflowError, field_name
from wtflow.model import Command, Container, PyFunc

Contexts = dict[str, Any]


def environment(env: Mapping[str, str], contexts: Contexts, status: Mapping[str, bool] | None = None) -> dict[str, str]:
    """``env`` with the expressions in its values substituted (they cannot read ``env``)."""
    return {name: _text(value, ("env", name), contexts, status) for name, value in env.items()}


def executable(
    original: Command | PyFunc,
    contexts: Contexts,
    status: Mapping[str, bool] | None = None,
    *,
    base_dir: Path | None = None,
) -> Command | PyFunc:
    """``original`` with every expression substituted; :class:`WorkflowError` naming the field when one fails.

    A working directory that held an expression must, once substituted, stay inside ``base_dir``.
    """
    timeout = original.timeout
    if isinstance(timeout, str):
        value = _value(timeout, ("timeout",), contexts, status)
        try:
            timeout = parse_duration(value) or None
        except ValueError as exc:
            raise WorkflowError(f"timeout: {exc}", field=("timeout",)) from None
    cwd = Path(original.cwd) if original.cwd is not None else None
    if cwd is not None and expressions.has_expression(str(cwd)):
        cwd = Path(_text(str(cwd), ("working_directory",), contexts, status))
        if base_dir is not None and not cwd.resolve().is_relative_to(base_dir):
            raise WorkflowError(
                f"working_directory is {cwd.resolve()} once substituted, outside the workflow file's directory "
                f"{base_dir}; keep it inside that directory",
                field=("working_directory",),
            )
    if isinstance(original, PyFunc):
        return dataclasses.replace(
            original,
            args=_deep(list(original.args), ("args",), contexts, status),
            kwargs=_deep(dict(original.kwargs or {}), ("kwargs",), contexts, status),
            timeout=timeout,
            cwd=cwd,
        )
    cmd: str | list[str]
    if isinstance(original.cmd, str):
        cmd = _text(original.cmd, ("command",), contexts, status)
    else:
        cmd = [_text(arg, ("command", index), contexts, status) for index, arg in enumerate(original.cmd)]
    container = original.container
    if container is not None:
        container = Container(
            _text(container.image, ("container", "image"), contexts, status),
            {
                name: _text(value, ("container", "env", name), contexts, status)
                for name, value in (container.env or {}).items()
            },
            container.volumes,
            container.workdir,
            container.network,
            container.user,
            container.pull,
        )
    return dataclasses.replace(original, cmd=cmd, timeout=timeout, cwd=cwd, container=container)


def _deep(value: Any, path: tuple[str | int, ...], contexts: Contexts, status: Mapping[str, bool] | None) -> Any:
    """A function's arguments with each text substituted; a text that is one expression keeps its value's type."""
    if isinstance(value, str):
        return _value(value, path, contexts, status)
    if isinstance(value, list):
        return [_deep(item, (*path, index), contexts, status) for index, item in enumerate(value)]
    if isinstance(value, dict):
        return {key: _deep(item, (*path, key), contexts, status) for key, item in value.items()}
    return value


def _value(text: str, path: tuple[str | int, ...], contexts: Contexts, status: Mapping[str, bool] | None) -> Any:
    if not expressions.has_expression(text):
        return text
    try:
        return expressions.parse_template(text).render(contexts, status)
    except expressions.ExpressionError as exc:
        raise WorkflowError(f"{field_name(path)}: {exc.message}", field=path, offset=exc.offset) from None


def _text(text: str, path: tuple[str | int, ...], contexts: Contexts, status: Mapping[str, bool] | None) -> str:
    if not expressions.has_expression(text):
        return text
    try:
        return expressions.parse_template(text).render_text(contexts, status)
    except expressions.ExpressionError as exc:
        raise WorkflowError(f"{field_name(path)}: {exc.message}", field=path, offset=exc.offset) from None
