"""The workflow file format, as pydantic models: validation and the published JSON Schema.

These models describe what a YAML file may say; :mod:`wtflow.loader` turns a validated
document into the frozen :class:`~wtflow.model.Workflow`.
"""

from __future__ import annotations

import math
import os
import re
from typing import Annotated, Any, Literal

import durationpy
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.functional_validators import BeforeValidator

# These models are wtflow's, not the user's: keep pydantic from scanning every installed
# package's metadata for plugins while they are built (30 ms of each start). Put back below.
_PLUGINS = "PYDANTIC_DISABLE_PLUGINS"
_plugins_setting = os.environ.get(_PLUGINS)
os.environ[_PLUGINS] = "__all__"

FUNCTION_PATTERN = (
    r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"
)
ENV_NAME_PATTERN = r"^[^=\x00]+$"


def parse_duration(value: Any) -> float:
    """Seconds from a number or a duration string such as ``90s``, ``5m`` or ``1h30m``."""
    if isinstance(value, bool):
        raise ValueError("expected a number of seconds or a duration such as 90s, 5m, 1h30m")  # noqa: TRY004
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
        raise ValueError("expected a number of seconds or a duration such as 90s, 5m, 1h30m")  # noqa: TRY004
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{value!r} is not a duration >= 0")
    return seconds


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0},
                {"type": "string", "pattern": r"^\s*(\d+(\.\d+)?(ns|us|µs|ms|s|m|h)?)+\s*$"},
            ]
        }
    ),
]
EnvName = Annotated[str, Field(pattern=ENV_NAME_PATTERN)]
Env = dict[EnvName, StrictStr]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class RetriesSpec(_Spec):
    """How often to try a failed node again."""

    max: StrictInt = Field(ge=0, description="Retries after the first attempt")
    delay: Duration = Field(default=0.0, description="Wait before the first retry: seconds or 5s, 1m")
    backoff: float = Field(default=1.0, ge=1, description="Each further wait is multiplied by this")


class FileArtifactSpec(_Spec):
    """A file the node produces, kept with its output."""

    name: StrictStr = Field(min_length=1, description="Name of the artifact")
    path: StrictStr = Field(min_length=1, description="File or glob, relative to the working directory")


class ArtifactRefSpec(_Spec):
    """An upstream artifact passed as an argument: ``{artifact: node.stdout}``."""

    artifact: StrictStr = Field(pattern=r"^.+\.[^.]+$", description="NODE.NAME, e.g. lint.stdout")


class ContainerSpec(_Spec):
    """Run the node's command in a container of this image."""

    image: StrictStr = Field(min_length=1, description="Image, e.g. python:3.12-slim")
    env: Env = Field(default_factory=dict, description="Environment for the container only")
    volumes: list[StrictStr] = Field(
        default_factory=list, description="HOST:CONTAINER[:MODE]; HOST relative to the workflow"
    )
    workdir: StrictStr | None = Field(
        default=None, description="Default: the node's working directory, at the same path"
    )
    network: StrictStr | None = Field(default=None, description="none or host here; default: the engine's default")
    user: StrictStr | None = Field(default=None, description="e.g. 1000:1000")
    pull: Literal["missing", "always", "never"] = Field(default="missing", description="When to pull the image")


class NodeSpec(_Spec):
    """One node: a command, a function, or neither (a group of children)."""

    name: StrictStr = Field(min_length=1, description="Unique in the workflow")
    command: StrictStr | list[StrictStr] | None = Field(
        default=None, description="A string runs through /bin/sh -c; a list is executed directly (no shell)"
    )
    function: StrictStr | None = Field(
        default=None, pattern=FUNCTION_PATTERN, description="A Python function to run, as module:attribute"
    )
    args: list[Any] = Field(default_factory=list, description="Positional arguments of the function")
    kwargs: dict[StrictStr, Any] = Field(default_factory=dict, description="Keyword arguments of the function")
    children: list[NodeSpec] = Field(default_factory=list, description="Run after this node, in order")
    parallel: StrictBool = Field(default=False, description="Run the children all at once")
    needs: list[StrictStr] = Field(default_factory=list, description="Nodes whose whole subtree must finish first")
    env: Env = Field(default_factory=dict, description="Environment variables for this node")
    working_directory: StrictStr | None = Field(default=None, description="Relative to the workflow file's directory")
    timeout: Duration | None = Field(default=None, description="Seconds, or 90s, 5m, 1h30m")
    retries: StrictInt | RetriesSpec | None = Field(default=None, description="A number, or {max, delay, backoff}")
    continue_on_error: StrictBool = Field(default=False, description="May fail without failing the run")
    artifacts: list[FileArtifactSpec] = Field(default_factory=list, description="Files the node produces")
    container: ContainerSpec | None = Field(default=None, description="Run the command in a container")

    @field_validator("command")
    @classmethod
    def _command_not_empty(cls, value: str | list[str] | None) -> str | list[str] | None:
        if value is not None and (not value or (isinstance(value, str) and not value.strip())):
            raise ValueError("command is empty")
        return value

    @field_validator("retries")
    @classmethod
    def _retries_not_negative(cls, value: int | RetriesSpec | None) -> int | RetriesSpec | None:
        if isinstance(value, int) and value < 0:
            raise ValueError("retries must be >= 0")
        return value

    @model_validator(mode="after")
    def _one_executable(self) -> NodeSpec:
        if self.command is not None and self.function is not None:
            raise ValueError("a node has at most one of command and function")
        if self.container is not None and self.command is None:
            raise ValueError("container needs a command")
        if self.function is None and (self.args or self.kwargs):
            raise ValueError("args and kwargs need a function")
        if self.command is None and self.function is None:
            for key in ("timeout", "retries", "working_directory"):
                if getattr(self, key) is not None:
                    raise ValueError(f"{key} needs a command or a function")
            if self.env:
                raise ValueError("env needs a command or a function (set it on the workflow for every node)")
        return self


class WorkflowSpec(_Spec):
    """A workflow file: a tree (``root``) or a graph (``nodes`` with ``needs``)."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        frozen=True,
        json_schema_extra={"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "wtflow workflow"},
    )

    name: StrictStr = Field(min_length=1, description="Name of the workflow")
    env: Env = Field(default_factory=dict, description="Environment variables for every node")
    max_parallel: StrictInt | None = Field(default=None, ge=1, description="Nodes running at once, at most")
    secrets: list[EnvName] = Field(
        default_factory=list, description="Environment variables whose values are masked (***) in all output"
    )
    root: NodeSpec | None = Field(default=None, description="The tree form: one root node with children")
    nodes: list[NodeSpec] | None = Field(default=None, description="The graph form: nodes ordered by needs")

    @model_validator(mode="after")
    def _one_form(self) -> WorkflowSpec:
        if (self.root is None) == (self.nodes is None):
            raise ValueError("a workflow has exactly one of root (a tree) and nodes (a graph)")
        return self


WorkflowSpec.model_rebuild()  # resolve the recursive references now, while plugins are off
if _plugins_setting is None:
    del os.environ[_PLUGINS]
else:
    os.environ[_PLUGINS] = _plugins_setting


def json_schema() -> dict[str, Any]:
    """The JSON Schema of workflow files."""
    return WorkflowSpec.model_json_schema()
