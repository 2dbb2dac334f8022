"""The workflow file format, as pydantic models: the authority on it, and its JSON Schema.

These models describe what a YAML file may say; :mod:`wtflow.loader` turns a validated
document into the frozen :class:`~wtflow.model.Workflow`. A valid file is read with the
faster :mod:`wtflow.fastspec`, and these models are imported only when it refuses one: their
complete error list becomes the loader's messages.
"""

from __future__ import annotations

import os
from typing import Annotated, Any, Literal

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

from wtflow.fastspec import (
    ENV_NAME_PATTERN,
    FUNCTION_PATTERN,
    check_command,
    check_node,
    check_retries,
    check_workflow,
    parse_duration,
)

# These models are wtflow's, not the user's: keep pydantic from scanning every installed
# package's metadata for plugins while they are built (30 ms of each start). Put back below.
_PLUGINS = "PYDANTIC_DISABLE_PLUGINS"
_plugins_setting = os.environ.get(_PLUGINS)
os.environ[_PLUGINS] = "__all__"

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
        check_command(value)
        return value

    @field_validator("retries")
    @classmethod
    def _retries_not_negative(cls, value: int | RetriesSpec | None) -> int | RetriesSpec | None:
        check_retries(value)
        return value

    @model_validator(mode="after")
    def _one_executable(self) -> NodeSpec:
        check_node(self)
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
        check_workflow(self)
        return self


WorkflowSpec.model_rebuild()  # resolve the recursive references now, while plugins are off
if _plugins_setting is None:
    del os.environ[_PLUGINS]
else:
    os.environ[_PLUGINS] = _plugins_setting


def json_schema() -> dict[str, Any]:
    """The JSON Schema of workflow files."""
    return WorkflowSpec.model_json_schema()
