"""The workflow file format as msgspec Structs: how the loader reads a file with no problems.

pydantic's models in :mod:`wtflow.spec` describe the same format and stay its authority. The
loader turns to them only when these Structs refuse a document: for their messages (every
problem at once, each at its file:line), and to accept what these might refuse that pydantic
does not. They also give the JSON Schema. Importing pydantic and building its models took
0.09 s of every run's start here; msgspec takes 3 ms. Tests check that whatever these accept,
pydantic accepts and reads alike. The rules both apply beyond types live here, once. A key
added to the format goes into both, and into the value tables of ``tests/unit/test_fastspec.py``.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

import durationpy
import msgspec
from msgspec import Meta

FUNCTION_PATTERN = (
    r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"
)
ENV_NAME_PATTERN = r"^[^=\x00]+$"
ARTIFACT_REF_PATTERN = r"^.+\.[^.]+$"
DURATION_HINT = "expected a number of seconds or a duration such as 90s, 5m, 1h30m"


def parse_duration(value: Any) -> float:
    """Seconds from a number or a duration string such as ``90s``, ``5m`` or ``1h30m``."""
    if isinstance(value, bool):
        raise ValueError(DURATION_HINT)  # noqa: TRY004 - a validation error, reported as such
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d+(\.\d+)?", text):
            seconds = float(text)
        else:
            try:
                seconds = durationpy.from_str(text).total_seconds()
            except (durationpy.DurationError, ValueError, OverflowError):
                raise ValueError(f"{value!r} is not a duration; write seconds (90) or e.g. 90s, 5m, 1h30m") from None
    else:
        raise ValueError(DURATION_HINT)  # noqa: TRY004 - a validation error, reported as such
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{value!r} is not a duration >= 0")
    return seconds


def check_command(value: str | list[str] | None) -> None:
    """A command is not empty."""
    if value is not None and (not value or (isinstance(value, str) and not value.strip())):
        raise ValueError("command is empty")


def check_retries(value: object) -> None:
    """A plain number of retries is not negative."""
    if isinstance(value, int) and value < 0:
        raise ValueError("retries must be >= 0")


def check_node(node: Any) -> None:
    """What a node's fields must agree on: one executable, and settings only where they apply."""
    if node.command is not None and node.function is not None:
        raise ValueError("a node has at most one of command and function")
    if node.container is not None and node.command is None:
        raise ValueError("container needs a command")
    if node.function is None and (node.args or node.kwargs):
        raise ValueError("args and kwargs need a function")
    if node.command is None and node.function is None:
        for key in ("timeout", "retries", "working_directory"):
            if getattr(node, key) is not None:
                raise ValueError(f"{key} needs a command or a function")
        if node.env:
            raise ValueError("env needs a command or a function (set it on the workflow for every node)")


def check_workflow(workflow: Any) -> None:
    """A workflow is a tree or a graph, not both and not neither."""
    if (workflow.root is None) == (workflow.nodes is None):
        raise ValueError("a workflow has exactly one of root (a tree) and nodes (a graph)")


def _whole(pattern: str) -> str:
    # pydantic's regular expressions end at ``$``; Python's ``$`` also matches before a final newline.
    return pattern.removesuffix("$") + r"\Z"


_NonEmpty = Annotated[str, Meta(min_length=1)]
_EnvName = Annotated[str, Meta(pattern=_whole(ENV_NAME_PATTERN))]
_Env = dict[_EnvName, str]


class _Struct(msgspec.Struct, forbid_unknown_fields=True):
    pass


class Retries(_Struct):
    """See :class:`wtflow.spec.RetriesSpec`."""

    max: Annotated[int, Meta(ge=0)]
    delay: float | str = 0.0
    backoff: Annotated[float, Meta(ge=1)] = 1.0

    def __post_init__(self) -> None:
        self.delay = parse_duration(self.delay)


class FileArtifact(_Struct):
    """See :class:`wtflow.spec.FileArtifactSpec`."""

    name: _NonEmpty
    path: _NonEmpty


class Container(_Struct):
    """See :class:`wtflow.spec.ContainerSpec`."""

    image: _NonEmpty
    env: _Env = {}
    volumes: list[str] = []
    workdir: str | None = None
    network: str | None = None
    user: str | None = None
    pull: Literal["missing", "always", "never"] = "missing"


class Node(_Struct):
    """See :class:`wtflow.spec.NodeSpec`."""

    name: _NonEmpty
    command: str | list[str] | None = None
    function: Annotated[str, Meta(pattern=_whole(FUNCTION_PATTERN))] | None = None
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    children: list[Node] = []
    parallel: bool = False
    needs: list[str] = []
    env: _Env = {}
    working_directory: str | None = None
    timeout: float | str | None = None
    retries: int | Retries | None = None
    continue_on_error: bool = False
    artifacts: list[FileArtifact] = []
    container: Container | None = None

    def __post_init__(self) -> None:
        check_command(self.command)
        check_retries(self.retries)
        if self.timeout is not None:
            self.timeout = parse_duration(self.timeout)
        check_node(self)


class Workflow(_Struct):
    """See :class:`wtflow.spec.WorkflowSpec`."""

    name: _NonEmpty
    env: _Env = {}
    max_parallel: Annotated[int, Meta(ge=1)] | None = None
    secrets: list[_EnvName] = []
    root: Node | None = None
    nodes: list[Node] | None = None

    def __post_init__(self) -> None:
        check_workflow(self)


def read(data: object) -> Workflow | None:
    """``data`` (from YAML) as a :class:`Workflow`; ``None`` if it does not fit, for pydantic to say why."""
    try:
        return msgspec.convert(data, Workflow)
    except (msgspec.ValidationError, RecursionError):  # a tree deeper than msgspec goes: pydantic's call
        return None
