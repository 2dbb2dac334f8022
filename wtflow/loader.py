"""Loading workflow files: a YAML file's validated spec becomes a Workflow; a Python file is imported.

Loading is a function that returns values; it never runs a node. Every problem is reported
as ``FILE:LINE:COL: what is wrong``, all of them at once where the file could be parsed:
:mod:`wtflow.yamldoc` parses safely and knows where each value stands, :mod:`wtflow.spec`
says what the format allows, and this module checks what only the whole workflow shows
(unique names, references, importable functions) while it builds the frozen model.
"""

from __future__ import annotations

import contextlib
import difflib
import gc
import importlib
import re
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

from wtflow import expressions, yamldoc
from wtflow.errors import WorkflowError
from wtflow.matrix import Matrix, expansion_name
from wtflow.model import (
    RESULT,
    STDERR,
    STDOUT,
    Artifact,
    Command,
    Container,
    FileArtifact,
    Node,
    PyFunc,
    Retry,
    Workflow,
)
from wtflow.spec import MAX_MESSAGES, EnvFileSpec, FileArtifactSpec, NodeSpec, RetriesSpec, WorkflowSpec, validate
from wtflow.yamldoc import Document, Loc

DEFAULT_FILES = ("wtflow.yml", "wtflow.yaml", "wtflow.py")
MAX_FILE_BYTES = 64 * 1024 * 1024
_ARTIFACT_REF = re.compile(r"^.+\.[^.]+$")  # {artifact: NODE.NAME}


# -- building the model --------------------------------------------------------------------


class _Build:
    """Turns a validated spec into a Workflow, collecting every problem with its position.

    Duplicate names, unresolved references, functions that cannot be imported and values the
    model refuses are all found before anything is raised: a file shows every problem at once,
    sorted by position. Only what needs a whole, sound tree (a dependency cycle) comes after.
    """

    def __init__(self, spec: WorkflowSpec, document: Document, base_dir: Path, text: str = "") -> None:
        self.spec = spec
        self.document = document
        self.base_dir = base_dir
        self.lines = text.splitlines()
        self.locs: dict[str, Loc] = {}
        self.problems: list[tuple[str, str]] = []  # (FILE:LINE:COL, message)

    def workflow(self) -> Workflow:
        specs: list[tuple[NodeSpec, Loc]]
        if self.spec.root is not None:
            specs = [(self.spec.root, ("root",))]
        else:
            specs = [(node, ("nodes", index)) for index, node in enumerate(self.spec.nodes or [])]
        env = self._env_files(self.spec.env_file, ("env_file",))
        for spec, loc in specs:
            self._index(spec, loc)
        self._check_references()
        built = [self._node(spec, loc) for spec, loc in specs]
        nodes = [node for node in built if node is not None]
        if self.problems or len(nodes) < len(built):
            raise WorkflowError("\n".join(self._messages()))
        if self.spec.root is not None:
            root = nodes[0]
        else:
            name = self.spec.name if self.spec.name not in self.locs else f"{self.spec.name} (workflow)"
            root = Node(name, parallel=True, children=nodes)
        try:
            return Workflow(
                self.spec.name,
                root,
                env={**env, **self.spec.env},
                max_parallel=self.spec.max_parallel,
                secrets=self.spec.secrets,
                implicit_root=self.spec.root is None,
                vars=self.spec.vars,
                max_fail=self.spec.max_fail,
                base_dir=self.base_dir,
            )
        except WorkflowError as exc:
            for problem in (exc, *exc.more):
                loc = self.locs.get(problem.node or "", ()) if problem.node is not None else ()
                self.problems.append((self._where_in(loc, problem), problem.message))
            raise WorkflowError("\n".join(self._messages())) from None

    def _where_in(self, loc: Loc, exc: WorkflowError) -> str:
        """Where the problem ``exc`` reports stands: its field of the node at ``loc``, and the offset in it."""
        if not exc.field:
            return self.document.where((*loc, "name") if loc else ())
        field_loc: Loc = (*loc, *exc.field)
        where = self.document.where(field_loc)
        value = self._data_at(field_loc)
        if exc.offset is None or not isinstance(value, str):
            return where
        return _column_of(where, self.lines, value, exc.offset)

    def _data_at(self, loc: Loc) -> Any:
        value: Any = self.document.data
        for part in loc:
            try:
                value = value[part]
            except (KeyError, IndexError, TypeError):
                return None
        return value

    def _env_files(self, files: list[EnvFileSpec], loc: Loc) -> dict[str, str]:
        """The variables of ``.env`` files, later files winning; a missing required file is a problem."""
        found: dict[str, str] = {}
        for index, env_file in enumerate(files):
            path = self.base_dir / env_file.path
            if not path.is_file():
                if env_file.required:
                    self._problem(
                        (*loc, index),
                        f"env_file {env_file.path!r}: no such file ({path}); "
                        "create it, or write {path: ..., required: false}",
                    )
                continue
            import dotenv  # only for files that have env files

            try:
                values = dotenv.dotenv_values(path, interpolate=False)
            except (OSError, UnicodeDecodeError) as exc:
                self._problem((*loc, index), f"env_file {env_file.path!r} cannot be read: {exc}")
                continue
            found.update({key: value for key, value in values.items() if value is not None})
        return found

    def _problem(self, loc: Loc, message: str) -> None:
        self.problems.append((self.document.where(loc), message))

    def _messages(self) -> list[str]:
        """Every problem as ``FILE:LINE:COL: message``, by position: at most MAX_MESSAGES, then a count."""
        ordered = sorted(dict.fromkeys(self.problems), key=lambda problem: _line_and_column(problem[0]))
        lines = [f"{where}: {message}" for where, message in ordered[:MAX_MESSAGES]]
        if len(ordered) > MAX_MESSAGES:
            lines.append(f"{self.document.file}:1:1: ... and more problems ({len(ordered)} in all); fix these first")
        return lines

    def _index(self, spec: NodeSpec, loc: Loc) -> None:
        stack = [(spec, loc)]
        expansions: list[tuple[NodeSpec, Loc]] = []
        while stack:
            node, node_loc = stack.pop()
            if node.name in self.locs:
                first = self.document.where((*self.locs[node.name], "name"))
                self._problem(
                    (*node_loc, "name"),
                    f"node name {node.name!r} is used twice (first at {first}); node names must be unique",
                )
            else:
                self.locs[node.name] = node_loc
            stack.extend((child, (*node_loc, "children", i)) for i, child in reversed(list(enumerate(node.children))))
            if node.matrix is not None and "${{" not in node.name:
                expansions.append((node, node_loc))
        for node, node_loc in expansions:  # a combination may be needed (or reported) by its own name
            matrix = self._matrix(node, node_loc, report=False)
            for combination in matrix.combinations() if matrix is not None else ():
                self.locs.setdefault(expansion_name(node.name, combination), node_loc)

    def _check_references(self) -> None:
        names = list(self.locs)
        for name, loc in self.locs.items():
            spec = self._spec_at(loc)
            for index, need in enumerate(spec.needs):
                if need not in self.locs:
                    self._problem(
                        (*loc, "needs", index),
                        f"node {name!r} needs {need!r}, which is not a node of this workflow"
                        f"{_did_you_mean(need, names)}",
                    )
            for ref_loc, ref in _artifact_refs(spec, loc):
                self._check_artifact(ref_loc, ref, names)

    def _check_artifact(self, loc: Loc, ref: str, names: list[str]) -> None:
        if not _ARTIFACT_REF.search(ref):
            self._problem(loc, "artifact must be written NODE.NAME, e.g. lint.stdout")
            return
        node_name, _, artifact = ref.rpartition(".")
        if node_name not in self.locs:
            self._problem(
                loc,
                f"artifact {ref!r} names node {node_name!r}, which is not a node of this workflow"
                f"{_did_you_mean(node_name, names)}",
            )
            return
        produced = _artifact_names(self._spec_at(self.locs[node_name]))
        if artifact not in produced:
            self._problem(
                loc,
                f"artifact {ref!r}: node {node_name!r} produces only {', '.join(sorted(produced))}"
                f"{_did_you_mean(artifact, sorted(produced))}",
            )

    def _spec_at(self, loc: Loc) -> NodeSpec:
        value: Any = self.spec
        for part in loc:
            value = value[part] if isinstance(part, int) else getattr(value, part)
        return cast("NodeSpec", value)  # a node's location, from _index

    def _node(self, spec: NodeSpec, loc: Loc) -> Node | None:
        """The node at ``loc``; ``None`` when it or a node below it has a problem (recorded)."""
        before = len(self.problems)
        cwd = self._working_directory(spec, loc)
        executable = self._executable(spec, loc, cwd) if cwd is not None else None
        children = [self._node(child, (*loc, "children", i)) for i, child in enumerate(spec.children)]
        artifacts = [self._file_artifact(a, (*loc, "artifacts", i), cwd) for i, a in enumerate(spec.artifacts)]
        matrix = self._matrix(spec, loc)
        if len(self.problems) > before:
            return None
        try:
            return Node(
                spec.name,
                executable=executable,
                children=cast("list[Node]", children),  # none is None: a failed child recorded a problem
                parallel=spec.parallel,
                continue_on_error=spec.continue_on_error,
                needs=spec.needs,
                retries=_retry(spec.retries),
                artifacts=cast("list[FileArtifact]", artifacts),
                condition=spec.if_,
                matrix=matrix,
                sources=spec.sources,
                outputs=spec.outputs,
                cache=spec.cache,
                runs_on=spec.runs_on,
                resources=spec.resources,
            )
        except WorkflowError as exc:
            self.problems.append((self._where_in(loc, exc), exc.message))
            return None

    def _matrix(self, spec: NodeSpec, loc: Loc, *, report: bool = True) -> Matrix | None:
        if spec.matrix is None:
            return None
        try:
            return Matrix(
                dict(spec.matrix.__pydantic_extra__ or {}),
                include=spec.matrix.include,
                exclude=spec.matrix.exclude,
                fail_fast=True if spec.fail_fast is None else spec.fail_fast,
                max_parallel=spec.max_parallel,
            )
        except WorkflowError as exc:
            if report:
                self._problem((*loc, *(exc.field or ("matrix",))), f"node {spec.name!r}: {exc.message}")
            return None

    def _working_directory(self, spec: NodeSpec, loc: Loc) -> Path | None:
        """The node's resolved working directory, inside the file's directory tree; ``None`` if not.

        One holding an expression is checked when the node starts, once substituted.
        """
        if spec.working_directory is None:
            return self.base_dir
        if expressions.has_expression(spec.working_directory):
            try:
                expressions.parse_template(spec.working_directory)
            except expressions.ExpressionError as exc:
                where = self.document.where((*loc, "working_directory"))
                self.problems.append(
                    (
                        _column_of(where, self.lines, spec.working_directory, exc.offset),
                        f"working_directory: {exc.message}",
                    )
                )
                return None
            return self.base_dir / spec.working_directory
        cwd = (self.base_dir / spec.working_directory).resolve()
        if not cwd.is_relative_to(self.base_dir):
            self._problem(
                (*loc, "working_directory"),
                f"working_directory {spec.working_directory!r} is {cwd}, outside the workflow file's directory "
                f"{self.base_dir}; keep it inside that directory",
            )
            return None
        return cwd

    def _file_artifact(self, spec: FileArtifactSpec, loc: Loc, cwd: Path | None) -> FileArtifact | None:
        try:
            artifact = FileArtifact(spec.name, spec.path)
        except WorkflowError as exc:
            self._problem(loc, exc.message)
            return None
        # No '..' in the path itself; links on the way must not lead out either.
        if cwd is not None and not (cwd / spec.path).resolve().is_relative_to(cwd):
            self._problem(
                (*loc, "path"),
                f"artifact {spec.name!r}: path {spec.path!r} leads outside the node's working directory {cwd}; "
                "keep it inside",
            )
            return None
        return artifact

    def _executable(self, spec: NodeSpec, loc: Loc, cwd: Path) -> Command | PyFunc | None:
        """The node's executable, or ``None`` for a group node or when a problem was recorded."""
        if spec.command is not None:
            container = None
            if spec.container is not None:
                c = spec.container
                try:
                    container = Container(c.image, c.env, c.volumes, c.workdir, c.network, c.user, c.pull)
                except WorkflowError as exc:
                    self._problem((*loc, "container"), exc.message)
                    return None
            env = {**self._env_files(spec.env_file, (*loc, "env_file")), **spec.env}
            try:
                return Command(spec.command, timeout=spec.timeout or None, env=env, cwd=cwd, container=container)
            except WorkflowError as exc:
                self._problem((*loc, "command"), exc.message)
                return None
        if spec.function is not None:
            func = self._import(spec.function, (*loc, "function"))
            if func is None:
                return None
            try:
                return PyFunc(
                    func,
                    args=_with_artifacts(spec.args),
                    kwargs=_with_artifacts(spec.kwargs),
                    timeout=spec.timeout or None,
                    env={**self._env_files(spec.env_file, (*loc, "env_file")), **spec.env},
                    cwd=cwd,
                )
            except WorkflowError as exc:
                self._problem((*loc, "function"), exc.message)
        return None

    def _import(self, target: str, loc: Loc) -> Any:
        """The function ``module:attribute``, or ``None`` with the problem recorded."""
        module_name, _, attribute = target.partition(":")
        _add_to_path(self.base_dir)
        try:
            value: Any = importlib.import_module(module_name)
        except Exception as exc:  # noqa: BLE001 - any import failure is the file's problem to report
            self._problem(loc, f"function {target!r}: cannot import {module_name!r}: {exc.__class__.__name__}: {exc}")
            return None
        owner = module_name
        for part in attribute.split("."):
            if not hasattr(value, part):
                public = [name for name in dir(value) if not name.startswith("_")]
                self._problem(
                    loc, f"function {target!r}: {owner!r} has no attribute {part!r}{_did_you_mean(part, public)}"
                )
                return None
            value = getattr(value, part)
            owner = f"{owner}.{part}"
        if not callable(value):
            self._problem(loc, f"function {target!r} is not callable")
            return None
        return value


def _artifact_names(spec: NodeSpec) -> set[str]:
    """What the node of ``spec`` produces: as :meth:`Node.artifact_names` says of the built node."""
    names = {STDOUT, STDERR, *(declared.name for declared in spec.artifacts)}
    if spec.function is not None:
        names.add(RESULT)
    return names


def _column_of(where: str, lines: list[str], value: str, offset: int) -> str:
    """``where`` (a text value's start) moved to the character ``offset`` of ``value``, as the file writes it.

    The value's text is looked for on its lines: a plain or quoted scalar on one line, or the
    lines of a block scalar. Where it cannot be found (escapes), the value's start is kept.
    """
    file, line_text, column_text = where.rsplit(":", 2)
    line, column = int(line_text), int(column_text)
    before, after = value[:offset], value[offset:]
    line += before.count("\n")
    probe = after.split("\n", 1)[0][:40]
    for number in range(line, min(line + 3, len(lines)) + 1):
        start = column - 1 if number == int(line_text) else 0
        found = lines[number - 1].find(probe, start) if probe else -1
        if found >= 0:
            return f"{file}:{number}:{found + 1}"
    return where


def _line_and_column(where: str) -> tuple[int, int]:
    _, line, column = where.rsplit(":", 2)
    return int(line), int(column)


def _did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _artifact_refs(spec: NodeSpec, loc: Loc) -> Iterator[tuple[Loc, str]]:
    """Every ``{artifact: NODE.NAME}`` in a function node's arguments, with where it stands."""

    def walk(value: Any, value_loc: Loc) -> Iterator[tuple[Loc, str]]:
        if isinstance(value, dict) and set(value) == {"artifact"} and isinstance(value["artifact"], str):
            yield (*value_loc, "artifact"), value["artifact"]
        elif isinstance(value, dict):
            for key, item in value.items():
                yield from walk(item, (*value_loc, key))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                yield from walk(item, (*value_loc, index))

    yield from walk(spec.args, (*loc, "args"))
    yield from walk(spec.kwargs, (*loc, "kwargs"))


def _with_artifacts(value: Any) -> Any:
    """Arguments with every ``{artifact: NODE.NAME}`` turned into an :class:`Artifact` reference."""
    if isinstance(value, dict) and set(value) == {"artifact"} and isinstance(value["artifact"], str):
        node, _, name = value["artifact"].rpartition(".")
        return Artifact(node, name)
    if isinstance(value, dict):
        return {key: _with_artifacts(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_with_artifacts(item) for item in value]
    return value


def _retry(spec: RetriesSpec | None) -> Retry | None:
    if spec is None:
        return None
    return Retry(max=spec.max, delay=spec.delay, backoff=spec.backoff)


def _add_to_path(directory: Path) -> None:
    entry = str(directory)
    if entry not in sys.path:
        sys.path.insert(0, entry)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a workflow is built.

    Building a large workflow creates many objects and no garbage cycles; collections that
    walk them all would make loading time grow faster than the file.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def load_yaml(text: str, file: str = "<string>", base_dir: Path | None = None) -> Workflow:
    """Parse, validate and build the workflow in ``text``; ``base_dir`` anchors relative paths."""
    base = (base_dir or Path.cwd()).resolve()
    with _gc_paused():
        document = yamldoc.parse(text, file)
        return _Build(validate(document), document, base, text).workflow()


def read_text(path: Path) -> str:
    """The file's text; :class:`WorkflowError` if it is missing, unreadable, too large or not UTF-8."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise WorkflowError(
                f"the file is {size} bytes; workflow files are at most {MAX_FILE_BYTES}", location=f"{path}:1:1"
            )
        raw = path.read_bytes()
    except FileNotFoundError:
        raise WorkflowError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise WorkflowError(f"{path}: is a directory") from None
    except OSError as exc:
        raise WorkflowError(f"{path}: cannot be read: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise WorkflowError(
            f"the file is not UTF-8 text (byte 0x{raw[exc.start]:02x}); save it as UTF-8",
            location=f"{path}:{line}:{column}",
        ) from None
    if "\0" in text:
        offset = text.index("\0")
        line = text.count("\n", 0, offset) + 1
        column = offset - (text.rfind("\n", 0, offset) + 1) + 1
        raise WorkflowError("the file holds a NUL character: is it a binary file?", location=f"{path}:{line}:{column}")
    return text.removeprefix("\ufeff")


def load_python(path: Path) -> list[Workflow]:
    """Import the ``.py`` file and return its module-level workflows (its functions stay importable)."""
    path = path.resolve()
    _add_to_path(path.parent)
    name = path.stem
    existing = sys.modules.get(name)
    if existing is not None and Path(getattr(existing, "__file__", "") or "").resolve() != path:
        raise WorkflowError(f"{path}: its module name {name!r} is taken by {existing!r}; rename the file")
    try:
        module = existing or importlib.import_module(name)
    except SyntaxError as exc:
        raise WorkflowError(
            f"invalid Python: {exc.msg}", location=f"{path}:{exc.lineno or 1}:{exc.offset or 1}"
        ) from None
    except WorkflowError as exc:
        line = _line_in(path, exc)
        raise WorkflowError(exc.message, location=f"{path}:{line}:1") from None
    except Exception as exc:  # noqa: BLE001 - the user's module failed while being imported
        line = _line_in(path, exc)
        raise WorkflowError(f"loading failed: {exc.__class__.__name__}: {exc}", location=f"{path}:{line}:1") from None
    workflows = [value for value in vars(module).values() if isinstance(value, Workflow)]
    if not workflows:
        raise WorkflowError(f"{path}: defines no wtflow.Workflow at module level")
    return workflows


def _line_in(path: Path, exc: BaseException) -> int:
    lines = [frame.lineno for frame in traceback.extract_tb(exc.__traceback__) if Path(frame.filename) == path]
    return (lines[-1] or 1) if lines else 1


def find_file(path: Path | None) -> Path:
    """The workflow file for ``path``: the file itself, or a directory's ``wtflow.yml``/``.yaml``/``.py``."""
    target = path if path is not None else Path.cwd()
    if target.is_dir():
        for name in DEFAULT_FILES:
            candidate = target / name
            if candidate.is_file():
                return candidate
        raise WorkflowError(f"{target}: no workflow file here; expected one of {', '.join(DEFAULT_FILES)}")
    if not target.exists():
        raise WorkflowError(f"{target}: no such file or directory")
    return target


def load_file(path: Path) -> list[Workflow]:
    """Every workflow in the file at ``path`` (a YAML file holds one)."""
    if path.suffix == ".py":
        return load_python(path)
    return [load_yaml(read_text(path), str(path), path.parent)]


def select(workflows: list[Workflow], name: str | None, file: Path) -> Workflow:
    """The workflow called ``name``, or the only one."""
    if name is None:
        if len(workflows) > 1:
            names = ", ".join(repr(w.name) for w in workflows)
            raise WorkflowError(f"{file} defines several workflows ({names}); choose one with --workflow")
        return workflows[0]
    for workflow in workflows:
        if workflow.name == name:
            return workflow
    known = [w.name for w in workflows]
    raise WorkflowError(f"{file} has no workflow {name!r}{_did_you_mean(name, known)}; it has: {', '.join(known)}")
