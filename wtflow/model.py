"""The workflow definition: plain, frozen data, validated once when built.

Nothing here runs anything. A :class:`Workflow` is a tree of :class:`Node` objects; a node
carries at most one executable (:class:`Command` or :class:`PyFunc`) and may name other nodes
it ``needs``. :class:`Artifact` objects are references to a node's outputs; the engine resolves
them to files when the producing node has run.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pickle
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from wtflow import expressions
from wtflow.errors import ArtifactError, WorkflowError, field_name
from wtflow.globs import relative_parts
from wtflow.graph import SELF, dependencies, find_cycle
from wtflow.matrix import Matrix, expansion_name

STDOUT = "stdout"
STDERR = "stderr"
RESULT = "result"


@dataclass(frozen=True)
class Artifact:
    """A named output of a node: ``stdout``, ``stderr``, ``result`` or a declared file artifact.

    Before a run it is only a reference (``path`` is ``None``). Passed to a :class:`PyFunc`, it
    arrives resolved: ``.data`` reads the bytes the producing node wrote. A declared file
    artifact is every file its ``path`` (a glob) matched: ``.paths`` lists them, and ``.data``
    reads the one file when it matched exactly one. ``exit_code`` is how the producer ended.
    """

    node: str
    name: str
    path: Path | None = None
    exit_code: int | None = None

    @property
    def paths(self) -> list[Path]:
        """The artifact's files: the stream's own file, or every file of a declared artifact, sorted."""
        if self.path is None:
            raise self._unresolved()
        if self.name in {STDOUT, STDERR, RESULT}:
            if not self.path.is_file():
                raise self._missing()
            return [self.path]
        found = sorted(
            Path(folder, name)
            for folder, _, names in os.walk(self.path)  # links to folders are not followed
            for name in names
            if Path(folder, name).is_file()
        )
        if not found:
            raise self._missing()
        return found

    @property
    def data(self) -> bytes:
        """The artifact's bytes, read from storage on each access (a declared artifact's one file)."""
        paths = self.paths
        if len(paths) > 1:
            assert self.path is not None
            shown = ", ".join(str(path.relative_to(self.path)) for path in paths[:5])
            raise ArtifactError(
                f"artifact {self.name!r} of node {self.node!r} is {len(paths)} files ({shown}"
                f"{', ...' if len(paths) > 5 else ''}): read them through .paths"
            )
        try:
            return paths[0].read_bytes()
        except FileNotFoundError:
            raise self._missing() from None

    def text(self, encoding: str = "utf-8") -> str:
        """The artifact's content decoded as text."""
        return self.data.decode(encoding)

    def resolved(self, path: Path, exit_code: int | None = None) -> Artifact:
        """Return this reference bound to where its data is kept, and how its producer ended."""
        return dataclasses.replace(self, path=path, exit_code=exit_code)

    def _unresolved(self) -> ArtifactError:
        return ArtifactError(
            f"artifact {self.name!r} of node {self.node!r} has no data yet: "
            "artifacts are resolved when the workflow runs"
        )

    def _missing(self) -> ArtifactError:
        ended = f" (exit {self.exit_code})" if self.exit_code is not None else ""
        return ArtifactError(f"artifact {self.name!r} was not produced by {self.node}{ended}")


def _check_timeout(timeout: float | str | None) -> None:
    if isinstance(timeout, str) and expressions.has_expression(timeout):
        return  # decided when the node starts
    if timeout is not None and not (isinstance(timeout, int | float) and timeout > 0 and math.isfinite(timeout)):
        raise WorkflowError(f"timeout must be a positive number of seconds, got {timeout!r}")


def _check_env(env: Mapping[str, str] | None) -> dict[str, str]:
    if env is None:
        return {}
    for key, value in env.items():
        if not isinstance(key, str) or not key or "=" in key or "\0" in key:
            raise WorkflowError(f"environment variable name {key!r} is invalid")
        if not isinstance(value, str):
            raise WorkflowError(f"environment variable {key} must be a string, got {type(value).__name__}")
        if "\0" in value:
            raise WorkflowError(f"environment variable {key}: its value holds a NUL character (\\0)")
    return dict(env)


PULL_POLICIES = ("missing", "always", "never")
# Where a node may run: on this machine, or on a worker of the configured Dask cluster.
RUNS_ON = ("local", "dask")


@dataclass(frozen=True)
class Container:
    """Where a :class:`Command` runs when not on this machine: a container of ``image``.

    Only the declared environment reaches it (workflow, node and ``env`` here, plus the
    ``WTFLOW_*`` variables). The node's working directory is mounted at the same path and is
    the container's working directory unless ``workdir`` says otherwise. ``pull`` is
    ``missing`` (the default), ``always`` or ``never``.
    """

    image: str
    env: Mapping[str, str] | None = None
    volumes: Sequence[str] = ()
    workdir: str | None = None
    network: str | None = None
    user: str | None = None
    pull: str = "missing"

    def __post_init__(self) -> None:
        if not isinstance(self.image, str) or not self.image.strip():
            raise WorkflowError("container image is empty")
        if self.pull not in PULL_POLICIES:
            raise WorkflowError(f"container pull must be one of {', '.join(PULL_POLICIES)}, got {self.pull!r}")
        object.__setattr__(self, "env", _check_env(self.env))
        object.__setattr__(self, "volumes", tuple(self.volumes))
        for volume in self.volumes:
            if not isinstance(volume, str) or volume.count(":") not in {1, 2}:
                raise WorkflowError(f"container volume {volume!r} must be HOST:CONTAINER or HOST:CONTAINER:MODE")


@dataclass(frozen=True)
class Command:
    """A process to run: a string goes through ``/bin/sh -c``; a list is executed directly.

    A string that is only a program and plain words (no quotes, variables, globs, pipes or
    redirects; not a shell builtin) starts the program directly, as the shell would have.

    ``timeout`` (seconds) kills the whole process group and marks the node ``timed_out``.
    ``env`` is added to the inherited environment; ``cwd`` is the working directory.
    With ``container``, the command runs in a container instead (see :class:`Container`).
    Texts may hold ``${{ }}`` expressions (``timeout`` too), substituted when the node starts.
    """

    cmd: str | Sequence[str]
    timeout: float | str | None = None
    env: Mapping[str, str] | None = None
    cwd: str | Path | None = None
    container: Container | None = None

    def __post_init__(self) -> None:
        if isinstance(self.cmd, str):
            if not self.cmd.strip():
                raise WorkflowError("command is empty")
            argv: tuple[str, ...] = (self.cmd,)
        else:
            argv = tuple(self.cmd)
            if not argv or not all(isinstance(arg, str) for arg in argv):
                raise WorkflowError(f"command must be a non-empty string or a list of strings, got {self.cmd!r}")
            object.__setattr__(self, "cmd", argv)
        if any("\0" in arg for arg in argv):  # no process argument can hold one
            raise WorkflowError(f"command {self.cmd!r} holds a NUL character (\\0)")
        _check_timeout(self.timeout)
        object.__setattr__(self, "env", _check_env(self.env))
        if self.cwd is not None:
            object.__setattr__(self, "cwd", Path(self.cwd))
        if self.container is not None and not isinstance(self.container, Container):
            raise WorkflowError(f"container must be a Container, got {type(self.container).__name__}")

    @property
    def argv(self) -> tuple[str, ...]:
        """What is executed: the shell for a string, the list itself otherwise."""
        if isinstance(self.cmd, str):
            return ("/bin/sh", "-c", self.cmd)
        return tuple(self.cmd)


def _main_module_file() -> str | None:
    main = sys.modules.get("__main__")
    return getattr(main, "__file__", None)


@dataclass(frozen=True)
class PyFunc:
    """A Python function run in its own process.

    Its stdout and stderr are captured at the file-descriptor level. ``args`` and ``kwargs``
    may hold :class:`Artifact` references (also inside lists, tuples and dicts); they arrive
    resolved. A JSON-serialisable return value is kept as the node's ``result`` artifact; a
    returned ``dict`` also gives the node's outputs. Texts in ``args`` and ``kwargs`` may hold
    ``${{ }}`` expressions, substituted when the node starts.
    """

    func: Callable[..., Any]
    args: Sequence[Any] = ()
    kwargs: Mapping[str, Any] | None = None
    timeout: float | str | None = None
    env: Mapping[str, str] | None = None
    cwd: str | Path | None = None

    def __post_init__(self) -> None:
        if not callable(self.func):
            raise WorkflowError(f"PyFunc needs a callable, got {self.func!r}")
        qualname = getattr(self.func, "__qualname__", repr(self.func))
        try:
            pickle.dumps(self.func)
        except Exception as exc:  # noqa: BLE001 - pickling raises many types; all mean the same here
            raise WorkflowError(
                f"function {qualname} cannot be sent to its own process ({exc}); "
                "define it at the top level of a module (lambdas and nested functions cannot be sent)"
            ) from None
        if getattr(self.func, "__module__", None) == "__main__" and _main_module_file() is None:
            raise WorkflowError(
                f"function {qualname} is defined in an interactive session; "
                "define it in a script or module file so its process can import it"
            )
        object.__setattr__(self, "args", tuple(self.args))
        object.__setattr__(self, "kwargs", dict(self.kwargs or {}))
        _check_timeout(self.timeout)
        object.__setattr__(self, "env", _check_env(self.env))
        if self.cwd is not None:
            object.__setattr__(self, "cwd", Path(self.cwd))

    @property
    def name(self) -> str:
        """The function's dotted name, for display."""
        return f"{getattr(self.func, '__module__', '?')}:{getattr(self.func, '__qualname__', '?')}"

    def artifacts(self) -> list[Artifact]:
        """Every artifact reference in ``args`` and ``kwargs``."""
        found: list[Artifact] = []
        _collect_artifacts((self.args, self.kwargs), found)
        return found


Executable = Command | PyFunc


def _collect_artifacts(value: Any, found: list[Artifact]) -> None:
    if isinstance(value, Artifact):
        found.append(value)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            _collect_artifacts(item, found)
    elif isinstance(value, dict):
        for item in value.values():
            _collect_artifacts(item, found)


def replace_artifacts(value: Any, resolve: Callable[[Artifact], Artifact]) -> Any:
    """``value`` with every artifact reference (also nested in containers) passed through ``resolve``."""
    if isinstance(value, Artifact):
        return resolve(value)
    if isinstance(value, list):
        return [replace_artifacts(item, resolve) for item in value]
    if isinstance(value, tuple):
        items = [replace_artifacts(item, resolve) for item in value]
        return type(value)(*items) if hasattr(value, "_fields") else tuple(items)
    if isinstance(value, dict):
        return {key: replace_artifacts(item, resolve) for key, item in value.items()}
    return value


# An environment value is substituted before the environment exists: it cannot read ``env``.
ENV_VALUE_CONTEXTS = expressions.CONTEXTS - {"env"}
# The workflow's environment is every node's: it cannot name one node's matrix or needs.
WORKFLOW_ENV_CONTEXTS = frozenset({"vars", "wtflow"})


# Lists and dicts nested deeper than this in a node's values are refused: a run walks them
# (expressions, artifacts, the cache key, pickling) and Python's recursion limit is near.
MAX_NESTING = 100


class _Unwalkable(Exception):
    """A value that cannot be walked: ``why``, at ``path``."""

    def __init__(self, path: tuple[str | int, ...], why: str) -> None:
        super().__init__(path, why)
        self.path = path
        self.why = why


def _texts(value: Any, path: tuple[str | int, ...], found: list[tuple[tuple[str | int, ...], str]]) -> None:
    """Collect every text under ``value`` that holds an expression, with its path, in order.

    A walk with a stack of its own, not recursion. :class:`_Unwalkable` for a list or dict that
    contains itself, or one nested deeper than :data:`MAX_NESTING`.
    """
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, path)]
    inside: dict[int, int] = {}  # id of each list or dict being walked -> the stack's height below its items
    while stack:
        item, where = stack.pop()
        while inside and len(stack) < next(reversed(inside.values())):
            inside.popitem()  # every item of the innermost container is done: it is left
        if isinstance(item, str):
            if expressions.has_expression(item):
                found.append((where, item))
        elif isinstance(item, list | tuple | dict):
            if id(item) in inside:
                raise _Unwalkable(where, "contains itself")
            if len(inside) >= MAX_NESTING:
                raise _Unwalkable(where, f"is nested more than {MAX_NESTING} levels deep")
            inside[id(item)] = len(stack)
            children = item.items() if isinstance(item, dict) else enumerate(item)
            stack.extend(reversed([(child, (*where, key)) for key, child in children]))


@dataclass(frozen=True)
class Retry:
    """How often a failed node is tried again, and how long to wait between tries."""

    max: int = 0
    delay: float = 0.0
    backoff: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.max, int) or self.max < 0:
            raise WorkflowError(f"retries.max must be a whole number >= 0, got {self.max!r}")
        if self.delay < 0 or not math.isfinite(self.delay):
            raise WorkflowError(f"retries.delay must be >= 0 seconds, got {self.delay!r}")
        if self.backoff < 1 or not math.isfinite(self.backoff):
            raise WorkflowError(f"retries.backoff must be >= 1, got {self.backoff!r}")

    def delay_before(self, attempt: int) -> float:
        """Seconds to wait before ``attempt`` (2 is the first retry)."""
        return float(self.delay * self.backoff ** max(0, attempt - 2))


@dataclass(frozen=True)
class FileArtifact:
    """A file (or glob) a node produces, kept with its output under ``name``."""

    name: str
    path: str

    def __post_init__(self) -> None:
        if not self.name or self.name in {STDOUT, STDERR, RESULT} or "/" in self.name or self.name.startswith("."):
            raise WorkflowError(
                f"artifact name {self.name!r} is invalid: use a plain name other than stdout, stderr and result"
            )
        pure = Path(self.path)
        if not self.path or pure.is_absolute() or ".." in pure.parts:
            raise WorkflowError(
                f"artifact {self.name!r}: path {self.path!r} must be relative to the working directory, without '..'"
            )


@dataclass(frozen=True, eq=False)
class Node:
    """One step of a workflow: an optional executable, then its children.

    Children run one after another in order, or all at once with ``parallel=True``. ``needs``
    names other nodes (anywhere in the workflow) whose whole subtree must finish first. A node
    with ``continue_on_error=True`` may fail without failing the run.

    ``condition`` (a file's ``if``) is an expression deciding whether the node runs once what it
    waits for is done; without it the node runs when all of that succeeded. ``matrix`` fans the
    node out: the workflow replaces it with a parallel group of that name holding one node per
    combination, ``name (v1, v2)``, each with its values in ``matrix_values``.

    ``sources`` (globs of input files) make the node cached: when its command, environment,
    sources and what it reads from other nodes are unchanged since a successful run, its
    output is replayed and its ``outputs`` (globs of files it produces) restored instead of
    running it again. ``cache=False`` turns that off; ``cache=True`` caches a node without sources.

    ``runs_on`` says where the node runs: ``local`` (this machine) or ``dask`` (a worker of the
    run's Dask cluster); ``None`` runs it on the cluster when one is configured, else here.
    ``resources`` (name -> amount, e.g. ``{"GPU": 1}``) are Dask worker resources: the node waits
    for a worker that has them (they mean nothing to a node that runs here).
    """

    name: str
    executable: Command | PyFunc | None = None
    children: Sequence[Node] = ()
    parallel: bool = False
    continue_on_error: bool = False
    needs: Sequence[str] = ()
    retries: Retry | None = None
    artifacts: Sequence[FileArtifact] = ()
    condition: str | None = None
    matrix: Matrix | None = None
    matrix_values: Mapping[str, Any] | None = None
    sources: Sequence[str] = ()
    outputs: Sequence[str] = ()
    cache: bool | None = None
    runs_on: str | None = None
    resources: Mapping[str, float] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise WorkflowError(f"node name must be a string, got {self.name!r}")
        if "\0" in self.name:
            raise WorkflowError(f"node name {self.name!r} holds a NUL character (\\0)")
        if self.executable is not None and not isinstance(self.executable, Command | PyFunc):
            raise WorkflowError(
                f"node {self.name!r}: executable must be a Command or a PyFunc, got {type(self.executable).__name__}"
            )
        children = tuple(self.children)
        for child in children:
            if not isinstance(child, Node):
                raise WorkflowError(f"node {self.name!r}: children must be Nodes, got {type(child).__name__}")
        object.__setattr__(self, "children", children)
        needs = (self.needs,) if isinstance(self.needs, str) else tuple(self.needs)
        object.__setattr__(self, "needs", needs)
        object.__setattr__(self, "artifacts", tuple(self.artifacts))
        self._check_cache_keys()
        self._check_placement()
        self._check_matrix()
        if self.condition is not None and not isinstance(self.condition, str):
            raise WorkflowError(f"node {self.name!r}: if must be an expression (text)", node=self.name, field=("if",))
        self._parse_expressions()

    def _check_cache_keys(self) -> None:
        for key in ("sources", "outputs"):
            patterns = getattr(self, key)
            patterns = (patterns,) if isinstance(patterns, str) else tuple(patterns)
            object.__setattr__(self, key, patterns)
            for pattern in patterns:
                problem = f"node {self.name!r}: {key} {pattern!r} is not a glob (text)"
                if isinstance(pattern, str):
                    try:
                        relative_parts(pattern, f"node {self.name!r}: {key}")
                        continue
                    except ValueError as exc:
                        problem = str(exc)
                raise WorkflowError(problem, node=self.name, field=(key,))
        if (self.sources or self.outputs or self.cache) and self.executable is None:
            raise WorkflowError(
                f"node {self.name!r}: sources, outputs and cache need a command or a function",
                node=self.name,
                field=("sources",),
            )

    def _check_placement(self) -> None:
        if self.runs_on is not None and self.runs_on not in RUNS_ON:
            raise WorkflowError(
                f"node {self.name!r}: runs_on must be one of {', '.join(RUNS_ON)}, got {self.runs_on!r}",
                node=self.name,
                field=("runs_on",),
            )
        resources = dict(self.resources or {})
        for name, amount in resources.items():
            if not isinstance(name, str) or not name:
                raise WorkflowError(
                    f"node {self.name!r}: resource names must be non-empty text, got {name!r}",
                    node=self.name,
                    field=("resources",),
                )
            if isinstance(amount, bool) or not isinstance(amount, int | float) or not (0 < amount < math.inf):
                raise WorkflowError(
                    f"node {self.name!r}: resource {name} must be a number > 0, got {amount!r}",
                    node=self.name,
                    field=("resources", name),
                )
        object.__setattr__(self, "resources", resources)
        if (self.runs_on is not None or resources) and self.executable is None:
            raise WorkflowError(
                f"node {self.name!r}: {'runs_on' if self.runs_on is not None else 'resources'} "
                "needs a command or a function",
                node=self.name,
                field=("runs_on" if self.runs_on is not None else "resources",),
            )

    def _check_matrix(self) -> None:
        if self.matrix is not None:
            if not isinstance(self.matrix, Matrix):
                raise WorkflowError(f"node {self.name!r}: matrix must be a Matrix", node=self.name, field=("matrix",))
            if self.executable is None and not all(child.matrix_values is not None for child in self.children):
                raise WorkflowError(
                    f"node {self.name!r}: a matrix needs a command or a function to fan out",
                    node=self.name,
                    field=("matrix",),
                )
            if self.executable is not None and self.children:
                raise WorkflowError(
                    f"node {self.name!r}: a node with a matrix cannot have children; give them needs instead",
                    node=self.name,
                    field=("matrix",),
                )

    def _parse_expressions(self) -> None:
        """Check every expression of the node: syntax, functions, contexts."""
        if self.condition is not None:
            self._parsed(("if",), self.condition, condition=True)
        if expressions.has_expression(self.name) and self.matrix is None and self.matrix_values is None:
            raise WorkflowError(
                f"node {self.name!r}: only a node with a matrix may use expressions in its name",
                node=self.name,
                field=("name",),
            )
        for path, text in self.expression_texts():
            self._parsed(path, text)

    def _parsed(self, path: tuple[str | int, ...], text: str, *, condition: bool = False) -> None:
        allowed = ENV_VALUE_CONTEXTS if path[-2:-1] == ("env",) else expressions.CONTEXTS
        try:
            if condition:
                expressions.parse_condition(text, contexts=allowed)
            else:
                expressions.parse_template(text, contexts=allowed)
        except expressions.ExpressionError as exc:
            raise WorkflowError(
                f"{field_name(path)}: {exc.message}", node=self.name, field=path, offset=exc.offset
            ) from None

    def expression_texts(self) -> Iterator[tuple[tuple[str | int, ...], str]]:
        """Every text of the executable holding ``${{ }}``, with its key path as a file writes it."""
        executable = self.executable
        if executable is None:
            return
        found: list[tuple[tuple[str | int, ...], str]] = []
        try:
            self._collect_texts(executable, found)
        except _Unwalkable as bad:
            raise WorkflowError(
                f"{field_name(bad.path)} {bad.why}: give the node plain values (lists, dicts, texts, numbers)",
                node=self.name,
                field=bad.path,
            ) from None
        yield from found

    @staticmethod
    def _collect_texts(executable: Command | PyFunc, found: list[tuple[tuple[str | int, ...], str]]) -> None:
        if isinstance(executable, Command):
            _texts(executable.cmd if isinstance(executable.cmd, str) else list(executable.cmd), ("command",), found)
            if executable.container is not None:
                _texts(executable.container.image, ("container", "image"), found)
                _texts(dict(executable.container.env or {}), ("container", "env"), found)
        else:
            _texts(list(executable.args), ("args",), found)
            _texts(dict(executable.kwargs or {}), ("kwargs",), found)
        _texts(dict(executable.env or {}), ("env",), found)
        if isinstance(executable.timeout, str):
            _texts(executable.timeout, ("timeout",), found)
        if executable.cwd is not None:
            _texts(str(executable.cwd), ("working_directory",), found)

    def references(self) -> Iterator[tuple[tuple[str | int, ...], expressions.Expression]]:
        """Every expression of the node (its condition first), with the key path it stands at."""
        if self.condition is not None:
            yield ("if",), expressions.parse_condition(self.condition)
        for path, text in self.expression_texts():
            allowed = ENV_VALUE_CONTEXTS if path[-2:-1] == ("env",) else expressions.CONTEXTS
            for expression in expressions.parse_template(text, contexts=allowed).expressions:
                yield path, expression

    def artifact(self, name: str) -> Artifact:
        """A reference to this node's artifact called ``name``."""
        return Artifact(node=self.name, name=name)

    @property
    def stdout_artifact(self) -> Artifact:
        """What this node writes to stdout."""
        return self.artifact(STDOUT)

    @property
    def stderr_artifact(self) -> Artifact:
        """What this node writes to stderr."""
        return self.artifact(STDERR)

    @property
    def result_artifact(self) -> Artifact:
        """The JSON of a :class:`PyFunc`'s return value."""
        return self.artifact(RESULT)

    def reads(self) -> list[Artifact]:
        """The artifacts of other nodes this node's executable is given (a function's arguments)."""
        return self.executable.artifacts() if isinstance(self.executable, PyFunc) else []

    def artifact_names(self) -> set[str]:
        """The names of every artifact this node produces."""
        names = {STDOUT, STDERR}
        if isinstance(self.executable, PyFunc):
            names.add(RESULT)
        names.update(declared.name for declared in self.artifacts)
        return names

    @property
    def cached(self) -> bool:
        """Whether a run may skip the node when nothing it depends on changed (``cache``, else: has it ``sources``)."""
        return bool(self.sources) if self.cache is None else self.cache

    def walk(self) -> Iterator[Node]:
        """Yield this node and every node below it, depth first, in order."""
        yield self
        for child in self.children:
            yield from child.walk()


@dataclass(frozen=True, eq=False)
class Workflow:
    """A named tree of nodes, checked when built: unique names, resolved references, no cycles.

    ``env`` is added to every node's environment; ``max_parallel`` caps this workflow's
    concurrency unless the configuration sets it; ``max_fail`` is how many nodes may fail
    before the run stops, unless the configuration says; ``vars`` are the ``vars`` context of
    expressions (the configuration's override them). ``base_dir`` is the directory a workflow
    file's relative paths start from: a working directory must stay inside it, also once
    substituted, and cache keys name directories relative to it. ``secrets`` names environment variables whose
    values are masked (``***``) in everything wtflow writes. ``implicit_root`` says the root is
    not a node the user wrote but the parallel group a graph-form file is given: it runs like
    any group, and counts and drawings leave it out (:attr:`user_nodes`).
    """

    name: str
    root: Node
    env: Mapping[str, str] = field(default_factory=dict)
    max_parallel: int | None = None
    secrets: Sequence[str] = ()
    implicit_root: bool = False
    vars: Mapping[str, Any] = field(default_factory=dict)
    max_fail: int | None = None
    base_dir: Path | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "secrets", tuple(self.secrets))
        object.__setattr__(self, "vars", dict(self.vars))
        if self.max_fail is not None and (not isinstance(self.max_fail, int) or self.max_fail < 0):
            raise WorkflowError(f"max_fail must be a whole number >= 0, got {self.max_fail!r}")
        if isinstance(self.root, Node) and any(node.matrix is not None for node in self.root.walk()):
            object.__setattr__(self, "root", _expanded(self.root))
        if not isinstance(self.implicit_root, bool):
            raise WorkflowError(f"implicit_root must be true or false, got {self.implicit_root!r}")
        if not isinstance(self.root, Node):
            raise WorkflowError(f"workflow {self.name!r}: root must be a Node, got {type(self.root).__name__}")
        object.__setattr__(self, "env", _check_env(self.env))
        for name, value in self.env.items():
            if expressions.has_expression(value):
                try:
                    expressions.parse_template(value, contexts=WORKFLOW_ENV_CONTEXTS)
                except expressions.ExpressionError as exc:
                    raise WorkflowError(f"env.{name}: {exc.message}", field=("env", name), offset=exc.offset) from None
        if self.max_parallel is not None and (not isinstance(self.max_parallel, int) or self.max_parallel < 1):
            raise WorkflowError(f"max_parallel must be a whole number >= 1, got {self.max_parallel!r}")
        self._validate()

    @cached_property
    def nodes(self) -> dict[str, Node]:
        """Every node by name, in tree order."""
        return {node.name: node for node in self.root.walk()}

    @cached_property
    def user_nodes(self) -> dict[str, Node]:
        """The nodes the user wrote, by name, in tree order: every node but an implicit root."""
        if not self.implicit_root:
            return self.nodes
        return {name: node for name, node in self.nodes.items() if node is not self.root}

    @cached_property
    def parents(self) -> dict[str, Node | None]:
        """Each node's parent (``None`` for the root), by name."""
        parents: dict[str, Node | None] = {self.root.name: None}
        for node in self.root.walk():
            for child in node.children:
                parents[child.name] = node
        return parents

    @cached_property
    def dependencies(self) -> dict[tuple[str, int], set[tuple[str, int]]]:
        """Each vertex of the run order and what it waits for (see :mod:`wtflow.graph`); read only."""
        return dependencies(self)

    def ancestors(self, name: str) -> list[str]:
        """The names of the node's parent, its parent's parent, and so on up to the root."""
        found = []
        parent = self.parents[name]
        while parent is not None:
            found.append(parent.name)
            parent = self.parents[parent.name]
        return found

    def path(self, name: str) -> str:
        """The node's path in the tree, e.g. ``ci/tests/unit``."""
        return "/".join(reversed([name, *self.ancestors(name)]))

    def _validate(self) -> None:
        seen: set[str] = set()
        ids: set[int] = set()
        for node in self.root.walk():
            if id(node) in ids:
                raise WorkflowError(f"node {node.name!r} appears twice in the tree", node=node.name)
            ids.add(id(node))
            if node.name in seen:
                raise WorkflowError(f"node name {node.name!r} is used twice; node names must be unique", node=node.name)
            seen.add(node.name)
        nodes = self.nodes
        for node in nodes.values():
            for need in node.needs:
                if need not in nodes:
                    raise WorkflowError(
                        f"node {node.name!r} needs {need!r}, which is not a node of this workflow", node=node.name
                    )
            for ref in node.reads():
                producer = nodes.get(ref.node)
                if producer is None:
                    raise WorkflowError(
                        f"node {node.name!r} reads an artifact of {ref.node!r}, which is not a node of this workflow",
                        node=node.name,
                    )
                if ref.name not in producer.artifact_names():
                    known = ", ".join(sorted(producer.artifact_names()))
                    raise WorkflowError(
                        f"node {node.name!r} reads artifact {ref.name!r} of {ref.node!r}, which produces only {known}",
                        node=node.name,
                    )
        cycle = find_cycle(self.dependencies)
        if cycle:
            raise WorkflowError("dependency cycle: " + " -> ".join(cycle), node=cycle[0])
        problems = [
            problem
            for node in nodes.values()
            if node.condition is not None or node.executable is not None
            for problem in self._bad_references(node)
        ]
        if problems:
            first = problems[0]
            raise WorkflowError(
                first.message, node=first.node, field=first.field, offset=first.offset, more=tuple(problems[1:])
            )

    def upstream(self, name: str) -> set[str]:
        """Every node the node ``name`` waits for, directly or through others."""
        seen: set[tuple[str, int]] = set()
        stack = [(name, SELF)]
        deps = self.dependencies
        while stack:
            for dep in deps[stack.pop()]:
                if dep not in seen:
                    seen.add(dep)
                    stack.append(dep)
        return {dep_name for dep_name, _ in seen} - {name}

    def matrix_keys(self, name: str) -> set[str]:
        """The keys ``matrix`` holds for the node: every key of its matrix's combinations."""
        parent = self.parents.get(name)
        if self.nodes[name].matrix_values is None or parent is None or parent.matrix is None:
            return set()
        return {key for combination in parent.matrix.combinations() for key in combination}

    def _bad_references(self, node: Node) -> Iterator[WorkflowError]:
        """Where ``needs.X`` names a node this one does not wait for, or ``matrix.K`` no key of its matrix."""
        upstream: set[str] | None = None
        for path, expression in node.references():
            for reference in expression.references:
                problem = None
                if reference[:1] == ("needs",) and len(reference) > 1:
                    upstream = self.upstream(node.name) if upstream is None else upstream
                    if reference[1] not in upstream:
                        problem = (
                            f"needs.{reference[1]}: node {node.name!r} does not wait for {reference[1]!r}; "
                            f"add it to needs"
                        )
                elif reference[:1] == ("matrix",) and len(reference) > 1:
                    keys = self.matrix_keys(node.name)
                    if reference[1] not in keys:
                        problem = (
                            f"matrix.{reference[1]}: the node's matrix has "
                            f"{'keys ' + ', '.join(sorted(keys)) if keys else 'no keys: it has no matrix'}"
                        )
                if problem is not None:
                    yield WorkflowError(
                        f"{field_name(path)}: {problem}", node=node.name, field=path, offset=expression.offset
                    )


def _expanded(node: Node) -> Node:
    """``node`` with every node that has a matrix replaced by the parallel group of its expansions."""
    if node.matrix is not None and node.executable is not None:
        matrix = node.matrix
        expansions = []
        for combination in matrix.combinations():
            name = expansion_name(node.name, combination)
            if expressions.has_expression(node.name):
                name = _rendered_name(node, combination)
            expansions.append(dataclasses.replace(node, name=name, needs=(), matrix=None, matrix_values=combination))
        return Node(
            node.name,
            children=expansions,
            parallel=True,
            needs=node.needs,
            continue_on_error=node.continue_on_error,
            matrix=matrix,
        )
    if not node.children:
        return node
    return dataclasses.replace(node, children=[_expanded(child) for child in node.children])


def _rendered_name(node: Node, combination: Mapping[str, Any]) -> str:
    try:
        template = expressions.parse_template(node.name, contexts={"matrix"})
        return template.render_text({"matrix": combination})
    except expressions.ExpressionError as exc:
        raise WorkflowError(
            f"name: {exc.message} (a name can use the matrix context only)",
            node=node.name,
            field=("name",),
            offset=exc.offset,
        ) from None
