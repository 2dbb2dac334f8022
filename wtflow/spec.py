"""The workflow file format: pydantic models, their JSON Schema, and messages for what they refuse.

These models are the format's only definition. :mod:`wtflow.loader` validates a parsed
document against them and builds the frozen :class:`~wtflow.model.Workflow` from the result;
``wtflow schema`` prints their JSON Schema. When a document does not fit, every problem
pydantic found becomes one ``FILE:LINE:COL: message``. The messages of the rules beyond types
are this module's own (:class:`PydanticCustomError`); pydantic's are recognised by their
documented error types only.
"""

from __future__ import annotations

import difflib
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    Tag,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import ErrorDetails, PydanticCustomError, core_schema

from wtflow.durations import parse_duration
from wtflow.errors import WorkflowError
from wtflow.yamldoc import Document, Loc, kind_of_value

FUNCTION_PATTERN = (
    r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"
)
ENV_NAME_PATTERN = r"^[^=\x00]+$"
MATRIX_KEY_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]*$"  # a name expressions can write: matrix.<key>, vars.<name>
MAX_MESSAGES = 50  # problems reported per file; the rest are counted


def _parse_duration(value: Any) -> float:
    """Seconds from a number or a duration string such as ``90s``, ``5m`` or ``1h30m``."""
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise PydanticCustomError("duration", str(exc)) from None


def _command_form(value: Any) -> str | None:
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "list"
    return None  # neither: the discriminator's own error


def _command_not_empty(value: str | list[str]) -> str | list[str]:
    if not value or (isinstance(value, str) and not value.strip()):
        raise PydanticCustomError("command_empty", "command is empty")
    return value


def _retries_as_mapping(value: Any) -> Any:
    """``retries: 3`` is short for ``retries: {max: 3}``."""
    if value is None or isinstance(value, dict):
        return value
    if not isinstance(value, int) or isinstance(value, bool):
        raise PydanticCustomError("retries_type", "retries must be a whole number or a mapping {max, delay, backoff}")
    if value < 0:
        raise PydanticCustomError("retries_negative", "retries must be >= 0")
    return {"max": value}


def _needs_as_list(value: Any) -> Any:
    """``needs: build`` is short for ``needs: [build]``."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise PydanticCustomError("needs_type", "needs must be a node name or a list of node names")
    return value


Duration = Annotated[
    float,
    BeforeValidator(_parse_duration),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0},
                {"type": "string", "pattern": r"^\s*(\d+(\.\d+)?(ns|us|µs|ms|s|m|h)?)+\s*$"},
            ]
        }
    ),
]


def _duration_or_expression(value: Any) -> Any:
    """A timeout: a duration, or text holding ``${{ }}`` decided when the node starts."""
    if isinstance(value, str) and "${{" in value:
        return value
    return _parse_duration(value)


Timeout = Annotated[
    float | StrictStr,
    BeforeValidator(_duration_or_expression),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0},
                {"type": "string", "pattern": r"^\s*(\d+(\.\d+)?(ns|us|µs|ms|s|m|h)?)+\s*$"},
                {"type": "string", "pattern": r"\$\{\{"},
            ]
        }
    ),
]
CommandSpec = Annotated[
    Annotated[StrictStr, Tag("text")] | Annotated[list[StrictStr], Tag("list")],
    Discriminator(
        _command_form,
        custom_error_type="command_type",
        custom_error_message="command must be a string or a list of strings",
    ),
    AfterValidator(_command_not_empty),
]
EnvName = Annotated[str, Field(pattern=ENV_NAME_PATTERN)]
MatrixKey = Annotated[str, Field(pattern=MATRIX_KEY_PATTERN)]
VarName = Annotated[str, Field(pattern=MATRIX_KEY_PATTERN)]
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


class EnvFileSpec(_Spec):
    """A ``.env`` file whose variables the environment gets (the file's ``env`` wins)."""

    path: StrictStr = Field(min_length=1, description="Relative to the workflow file's directory")
    required: StrictBool = Field(default=True, description="false: a missing file is no error")


def _env_files_as_list(value: Any) -> Any:
    """``env_file: .env`` is short for ``env_file: [{path: .env}]``."""
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    return [{"path": item} if isinstance(item, str) else item for item in items]


EnvFiles = Annotated[
    list[EnvFileSpec],
    BeforeValidator(_env_files_as_list, json_schema_input_type=StrictStr | EnvFileSpec | list[StrictStr | EnvFileSpec]),
]


class MatrixSpec(BaseModel):
    """Keys with lists of values, as GitHub Actions' ``strategy.matrix``; ``include`` and ``exclude`` too."""

    model_config = ConfigDict(
        extra="allow", strict=True, frozen=True, json_schema_extra={"propertyNames": {"pattern": MATRIX_KEY_PATTERN}}
    )
    __pydantic_extra__: dict[MatrixKey, Annotated[list[Any], Field(min_length=1)]] = Field(init=False)

    include: list[dict[StrictStr, Any]] = Field(
        default_factory=list, description="Combinations to extend with more values, or to add"
    )
    exclude: list[dict[StrictStr, Any]] = Field(default_factory=list, description="Combinations to leave out")


def _amount(value: Any) -> Any:
    """A resource's amount: a number, or text YAML leaves unparsed (``4e9``, which YAML 1.1 reads as text)."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise PydanticCustomError(
                "resource_amount", "a resource amount must be a number, got {value}", {"value": repr(value)}
            ) from None
    return value


Amount = Annotated[
    float,
    BeforeValidator(_amount),
    Field(gt=0, allow_inf_nan=False),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "exclusiveMinimum": 0},
                {"type": "string", "pattern": r"^\s*[0-9.]+([eE][-+]?[0-9]+)?\s*$"},
            ]
        }
    ),
]


def _condition_text(value: Any) -> Any:
    """``if: false`` is the expression ``false``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


class NodeSpec(_Spec):
    """One node: a command, a function, or neither (a group of children)."""

    name: StrictStr = Field(min_length=1, description="Unique in the workflow")
    command: CommandSpec | None = Field(
        default=None, description="A string runs through /bin/sh -c; a list is executed directly (no shell)"
    )
    function: StrictStr | None = Field(
        default=None, pattern=FUNCTION_PATTERN, description="A Python function to run, as module:attribute"
    )
    args: list[Any] = Field(default_factory=list, description="Positional arguments of the function")
    kwargs: dict[StrictStr, Any] = Field(default_factory=dict, description="Keyword arguments of the function")
    children: list[NodeSpec] = Field(default_factory=list, description="Run after this node, in order")
    parallel: StrictBool = Field(default=False, description="Run the children all at once")
    needs: Annotated[
        list[StrictStr], BeforeValidator(_needs_as_list, json_schema_input_type=StrictStr | list[StrictStr])
    ] = Field(default_factory=list, description="A node name, or a list of nodes whose whole subtree must finish first")
    env: Env = Field(default_factory=dict, description="Environment variables for this node")
    working_directory: StrictStr | None = Field(default=None, description="Relative to the workflow file's directory")
    timeout: Timeout | None = Field(default=None, description="Seconds, or 90s, 5m, 1h30m, or an expression")
    if_: (
        Annotated[StrictStr, BeforeValidator(_condition_text, json_schema_input_type=StrictStr | StrictBool)] | None
    ) = Field(
        default=None,
        alias="if",
        description="Run only when this expression holds, e.g. always(), failure(), matrix.os == 'linux'",
    )
    matrix: MatrixSpec | None = Field(default=None, description="Fan the node out over combinations of values")
    fail_fast: StrictBool | None = Field(
        default=None, description="With a matrix: cancel the other combinations when one fails (default true)"
    )
    max_parallel: StrictInt | None = Field(
        default=None, ge=1, description="With a matrix: combinations running at once, at most"
    )
    env_file: EnvFiles = Field(default_factory=list, description="A .env file (or several) for this node")
    sources: list[StrictStr] = Field(
        default_factory=list, description="Globs of input files, relative to the working directory; ** allowed"
    )
    outputs: list[StrictStr] = Field(
        default_factory=list, description="Globs of the files and directories the node produces (kept in the cache)"
    )
    cache: StrictBool | None = Field(
        default=None, description="Skip the node when nothing it depends on changed (default: true with sources)"
    )
    retries: Annotated[
        RetriesSpec | None, BeforeValidator(_retries_as_mapping, json_schema_input_type=StrictInt | RetriesSpec | None)
    ] = Field(default=None, title="Retries", description="A number, or {max, delay, backoff}")
    continue_on_error: StrictBool = Field(default=False, description="May fail without failing the run")
    artifacts: list[FileArtifactSpec] = Field(default_factory=list, description="Files the node produces")
    container: ContainerSpec | None = Field(default=None, description="Run the command in a container")
    runs_on: Literal["local", "dask"] | None = Field(
        default=None,
        description="Where the node runs: local, or dask (a worker of the run's Dask cluster; "
        "the default when one is configured)",
    )
    resources: dict[StrictStr, Amount] = Field(
        default_factory=dict,
        description="Dask worker resources the node needs, e.g. {GPU: 1, MEM: 4e9}: it waits for a worker with them",
    )

    @model_validator(mode="after")
    def _fields_agree(self) -> NodeSpec:
        """One executable at most, and settings only where they apply."""
        problem = None
        if self.command is not None and self.function is not None:
            problem = "a node has at most one of command and function"
        elif self.container is not None and self.command is None:
            problem = "container needs a command"
        elif self.function is None and (self.args or self.kwargs):
            problem = "args and kwargs need a function"
        elif self.matrix is None and (self.fail_fast is not None or self.max_parallel is not None):
            problem = f"{'fail_fast' if self.fail_fast is not None else 'max_parallel'} needs a matrix"
        elif self.matrix is not None and (self.children or (self.command is None and self.function is None)):
            problem = "a matrix needs a command or a function, and no children (give other nodes needs instead)"
        elif self.command is None and self.function is None:
            for key in ("timeout", "retries", "working_directory", "cache", "runs_on"):
                if getattr(self, key) is not None:
                    problem = f"{key} needs a command or a function"
                    break
            else:
                if self.env or self.env_file:
                    key = "env" if self.env else "env_file"
                    problem = f"{key} needs a command or a function (set it on the workflow for every node)"
                else:
                    key = next((key for key in ("sources", "outputs", "resources") if getattr(self, key)), "")
                    problem = f"{key} needs a command or a function" if key else None
        if problem is not None:
            raise PydanticCustomError("node_fields", problem)
        return self


class WorkflowSpec(_Spec):
    """A workflow file: a tree (``root``) or a graph (``nodes`` with ``needs``).

    Top-level keys starting with ``x-`` are ignored, as in Compose files: a place for YAML
    anchors that nodes merge (``x-defaults: &defaults {...}``, then ``<<: *defaults``).
    """

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        frozen=True,
        json_schema_extra={
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "wtflow workflow",
            "patternProperties": {"^x-": {}},  # extension keys, e.g. to hold YAML anchors
        },
    )

    name: StrictStr = Field(min_length=1, description="Name of the workflow")
    env: Env = Field(default_factory=dict, description="Environment variables for every node")
    max_parallel: StrictInt | None = Field(default=None, ge=1, description="Nodes running at once, at most")
    secrets: list[EnvName] = Field(
        default_factory=list, description="Environment variables whose values are masked (***) in all output"
    )
    vars: dict[VarName, StrictStr | StrictInt | float | StrictBool] = Field(
        default_factory=dict, description="Values for expressions (vars.NAME); --var NAME=VALUE overrides them"
    )
    env_file: EnvFiles = Field(default_factory=list, description="A .env file (or several) for every node")
    max_fail: StrictInt | None = Field(
        default=None, ge=0, description="Failed nodes allowed before the run stops (default 0: the first stops it)"
    )
    root: NodeSpec | None = Field(default=None, description="The tree form: one root node with children")
    nodes: list[NodeSpec] | None = Field(default=None, description="The graph form: nodes ordered by needs")

    @model_validator(mode="before")
    @classmethod
    def _without_extensions(cls, data: Any) -> Any:
        """Top-level keys that start with ``x-`` are the user's (shared anchors, say) and ignored."""
        if isinstance(data, dict) and any(isinstance(key, str) and key.startswith("x-") for key in data):
            return {key: value for key, value in data.items() if not (isinstance(key, str) and key.startswith("x-"))}
        return data

    @model_validator(mode="after")
    def _one_form(self) -> WorkflowSpec:
        if (self.root is None) == (self.nodes is None):
            raise PydanticCustomError(
                "workflow_form", "a workflow has exactly one of root (a tree) and nodes (a graph)"
            )
        return self


class _JsonSchema(GenerateJsonSchema):
    def tagged_union_schema(self, schema: core_schema.TaggedUnionSchema) -> JsonSchemaValue:
        # A union told apart by a function (command's text or list) is written as anyOf, as a
        # plain union is: its members are of different JSON types, so anyOf means oneOf here.
        generated = super().tagged_union_schema(schema)
        if callable(schema["discriminator"]) and "oneOf" in generated:
            generated["anyOf"] = generated.pop("oneOf")
        return generated


def json_schema() -> dict[str, Any]:
    """The JSON Schema of workflow files."""
    return WorkflowSpec.model_json_schema(schema_generator=_JsonSchema)


def validate(document: Document) -> WorkflowSpec:
    r"""The document read by the models; :class:`WorkflowError` with every problem they found.

    No text of a workflow file may hold a NUL character (YAML writes it ``"\0"``): no process
    name, argument or environment takes one, nor a database's text column.
    """
    found = _nul_problems(document)
    try:
        spec = WorkflowSpec.model_validate(document.data)
    except ValidationError as exc:
        raise WorkflowError("\n".join(_messages(exc.errors(include_url=False), document, found))) from None
    if found:
        raise WorkflowError("\n".join(_messages([], document, found)))
    return spec


def _nul_problems(document: Document) -> dict[Loc, tuple[str, str]]:
    """Every key and text value holding a NUL character, by location."""
    found: dict[Loc, tuple[str, str]] = {}
    stack: list[tuple[Loc, Any]] = [((), document.data)] if document.may_hold_nul else []
    while stack:
        loc, value = stack.pop()
        if isinstance(value, str):
            if "\0" in value:
                found[loc] = (document.where(loc), f"{_field_of(loc)}: {_shown(value)} holds a NUL character (\\0)")
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(key, str) and "\0" in key:
                    where = document.where((*loc, key), key=True)
                    found[(*loc, key)] = (where, f"key {_shown(key)} holds a NUL character (\\0)")
                else:
                    stack.append(((*loc, key), item))
        elif isinstance(value, list):
            stack.extend(((*loc, index), item) for index, item in enumerate(value))
    return found


def _field_of(loc: Loc) -> str:
    """The key a value stands under, with the positions of list items after it: ``command[1]``."""
    indices = ""
    for part in reversed(loc):
        if isinstance(part, str):
            return f"{part}{indices}"
        indices = f"[{part}]{indices}"
    return "value"


def _shown(text: str) -> str:
    shown = repr(text)
    return shown if len(shown) <= 60 else f"{shown[:56]}...{shown[-1]}"


# -- messages ------------------------------------------------------------------------------

_EXPECTED = {  # pydantic's error types for a value of the wrong type
    "string_type": "expected text",
    "int_type": "expected a whole number",
    "bool_type": "expected true or false",
    "list_type": "expected a list",
    "dict_type": "expected a mapping",
    "model_type": "expected a mapping",
    "float_type": "expected a number",
}
_KEY_ERRORS = {"missing", "extra_forbidden"}  # their location ends with a key that is not in the data


def _messages(errors: list[ErrorDetails], document: Document, found: dict[Loc, tuple[str, str]]) -> list[str]:
    """One ``FILE:LINE:COL: message`` per problem (``found`` and pydantic's ``errors``), by position.

    At most MAX_MESSAGES, then a count; one problem per location, ``found`` first.
    """
    total = len(found) + len(errors)
    found = dict(found)
    for error in errors:
        if len(found) > MAX_MESSAGES:
            break
        loc, of_key = _in_data(error["loc"], document.data, ends_in_key=error["type"] in _KEY_ERRORS)
        found.setdefault(loc, _message(loc, error, document, of_key=of_key))
    ordered = sorted(found.values(), key=lambda item: _line_and_column(item[0]))
    lines = [f"{where}: {message}" for where, message in ordered[:MAX_MESSAGES]]
    if len(found) > MAX_MESSAGES:
        lines.append(f"{document.file}:1:1: ... and more problems ({total} in all); fix these first")
    return lines


def _in_data(loc: tuple[str | int, ...], data: Any, *, ends_in_key: bool) -> tuple[Loc, bool]:
    """The keys and indices of ``loc`` that lead through ``data``; and whether the error is a key's.

    pydantic's locations also name what the data does not hold: a tagged union's member, or a
    mark after a mapping's key when the key itself is wrong. The location in the file is what
    remains; a location that ends past a mapping's key is about that key.
    """
    path: list[str | int] = []
    current = data
    in_mapping = followed = False
    for position, part in enumerate(loc):
        followed = True
        if ends_in_key and position == len(loc) - 1:
            path.append(part)
        elif isinstance(current, dict) and part in current:
            current = current[part]
            path.append(part)
            in_mapping = True
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            current = current[part]
            path.append(part)
            in_mapping = False
        else:
            followed = False
    return tuple(path), in_mapping and not followed


def _line_and_column(where: str) -> tuple[int, int]:
    _, line, column = where.rsplit(":", 2)
    return int(line), int(column)


def _message(loc: Loc, error: ErrorDetails, document: Document, *, of_key: bool) -> tuple[str, str]:
    """Where the problem at ``loc`` is (its key's position if ``of_key``), and what it is."""
    kind = error["type"]
    if kind == "extra_forbidden":
        return document.where(loc, key=True), _unknown_key(loc)
    if kind == "missing":
        return document.where(loc[:-1]), f"missing required key {loc[-1]!r}"
    field_name = str(loc[-1]) if loc else "value"
    if kind == "recursion_depth_exceeded":  # pydantic validates a few hundred levels deep, no deeper
        message = "nodes are nested too deeply; write the deepest levels as nodes with needs"
    elif kind == "string_pattern_mismatch" and field_name == "function":
        message = "function must be written module:attribute, e.g. mypkg.reports:summarize"
    elif kind == "string_pattern_mismatch":  # ENV_NAME_PATTERN: a key of env, or an item of secrets
        message = f"{error['input']!r} cannot be an environment variable name: it must not be empty or hold = or NUL"
    elif kind == "invalid_key" or (kind in _EXPECTED and of_key):
        message = f"keys must be text, got {error['input']!r}; quote it"
    elif kind in _EXPECTED:
        message = f"{field_name}: {_EXPECTED[kind]}, got {_described(error.get('input'))}"
    elif kind == "literal_error":
        message = f"{field_name}: {error['msg'][0].lower()}{error['msg'][1:]}, got {_described(error.get('input'))}"
    elif kind in {"greater_than", "greater_than_equal", "too_short", "string_too_short", "finite_number"}:
        message = f"{field_name}: {error['msg'][0].lower()}{error['msg'][1:]}"
    else:  # this module's own errors, and pydantic's that read well as they are
        message = error["msg"]
    return document.where(loc, key=of_key or kind == "invalid_key"), message


def _unknown_key(loc: Loc) -> str:
    key = str(loc[-1])
    model = _model_at(loc[:-1])
    known = sorted(field.alias or name for name, field in model.model_fields.items()) if model is not None else []
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else (f"; known keys: {', '.join(known)}" if known else "")
    if len(loc) == 1 and not close:
        hint += "; keys of your own start with x-"
    return f"unknown key {key!r}{hint}"


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The model that describes the mapping at ``loc``, if one does."""
    model: type[BaseModel] = WorkflowSpec
    for part in loc:
        if isinstance(part, int):
            continue  # an item of a list of models
        field = model.model_fields.get(part)
        found = _model_in(field.annotation) if field is not None else None
        if found is None:
            return None
        model = found
    return model


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model in a field's type: ``NodeSpec`` in ``list[NodeSpec] | None``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in get_args(annotation):
        found = _model_in(argument)
        if found is not None:
            return found
    return None


def _described(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return kind_of_value(value)
    return f"{kind_of_value(value)} {value!r}"
