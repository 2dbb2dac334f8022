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

from wtflow import yamldoc
from wtflow.errors import WorkflowError
from wtflow.model import Artifact, Command, Container, FileArtifact, Node, PyFunc, Retry, Workflow
from wtflow.spec import FileArtifactSpec, NodeSpec, RetriesSpec, WorkflowSpec, validate
from wtflow.yamldoc import Document, Loc

DEFAULT_FILES = ("wtflow.yml", "wtflow.yaml", "wtflow.py")
MAX_FILE_BYTES = 64 * 1024 * 1024
_ARTIFACT_REF = re.compile(r"^.+\.[^.]+$")  # {artifact: NODE.NAME}


# -- building the model --------------------------------------------------------------------


class _Build:
    """Turns a validated spec into a Workflow, checking names and references with positions."""

    def __init__(self, spec: WorkflowSpec, document: Document, base_dir: Path) -> None:
        self.spec = spec
        self.document = document
        self.base_dir = base_dir
        self.locs: dict[str, Loc] = {}
        self.problems: list[str] = []

    def workflow(self) -> Workflow:
        specs: list[tuple[NodeSpec, Loc]]
        if self.spec.root is not None:
            specs = [(self.spec.root, ("root",))]
        else:
            specs = [(node, ("nodes", index)) for index, node in enumerate(self.spec.nodes or [])]
        for spec, loc in specs:
            self._index(spec, loc)
        self._check_references()
        self._raise_problems()
        nodes = [self._node(spec, loc) for spec, loc in specs]
        self._raise_problems()
        if self.spec.root is not None:
            root = nodes[0]
        else:
            name = self.spec.name if self.spec.name not in self.locs else f"{self.spec.name} (workflow)"
            root = Node(name, parallel=True, children=nodes)
        try:
            return Workflow(
                self.spec.name, root, env=self.spec.env, max_parallel=self.spec.max_parallel, secrets=self.spec.secrets
            )
        except WorkflowError as exc:
            loc = self.locs.get(exc.node or "", ())
            raise WorkflowError(exc.message, location=self.document.where((*loc, "name"))) from None

    def _raise_problems(self) -> None:
        if self.problems:
            raise WorkflowError("\n".join(self.problems))

    def _index(self, spec: NodeSpec, loc: Loc) -> None:
        stack = [(spec, loc)]
        while stack:
            node, node_loc = stack.pop()
            if node.name in self.locs:
                first = self.document.where((*self.locs[node.name], "name"))
                self.problems.append(
                    f"{self.document.where((*node_loc, 'name'))}: node name {node.name!r} is used twice "
                    f"(first at {first}); node names must be unique"
                )
            else:
                self.locs[node.name] = node_loc
            stack.extend((child, (*node_loc, "children", i)) for i, child in reversed(list(enumerate(node.children))))

    def _check_references(self) -> None:
        names = list(self.locs)
        for name, loc in self.locs.items():
            spec = self._spec_at(loc)
            for index, need in enumerate(spec.needs):
                if need not in self.locs:
                    self.problems.append(
                        f"{self.document.where((*loc, 'needs', index))}: node {name!r} needs {need!r}, "
                        f"which is not a node of this workflow{_did_you_mean(need, names)}"
                    )
            for ref_loc, ref in _artifact_refs(spec, loc):
                if not _ARTIFACT_REF.search(ref):
                    where = self.document.where(ref_loc)
                    self.problems.append(f"{where}: artifact must be written NODE.NAME, e.g. lint.stdout")
                    continue
                node_name = ref.rsplit(".", 1)[0]
                if node_name not in self.locs:
                    self.problems.append(
                        f"{self.document.where(ref_loc)}: artifact {ref!r} names node {node_name!r}, "
                        f"which is not a node of this workflow{_did_you_mean(node_name, names)}"
                    )

    def _spec_at(self, loc: Loc) -> NodeSpec:
        value: Any = self.spec
        for part in loc:
            value = value[part] if isinstance(part, int) else getattr(value, part)
        return cast("NodeSpec", value)  # a node's location, from _index

    def _node(self, spec: NodeSpec, loc: Loc) -> Node:
        try:
            return Node(
                spec.name,
                executable=self._executable(spec, loc),
                children=[self._node(child, (*loc, "children", i)) for i, child in enumerate(spec.children)],
                parallel=spec.parallel,
                continue_on_error=spec.continue_on_error,
                needs=spec.needs,
                retries=_retry(spec.retries),
                artifacts=[self._file_artifact(a, (*loc, "artifacts", i)) for i, a in enumerate(spec.artifacts)],
            )
        except WorkflowError as exc:
            if exc.location is not None:
                raise
            raise WorkflowError(exc.message, location=self.document.where(loc)) from None

    def _file_artifact(self, spec: FileArtifactSpec, loc: Loc) -> FileArtifact:
        try:
            return FileArtifact(spec.name, spec.path)
        except WorkflowError as exc:
            raise WorkflowError(exc.message, location=self.document.where(loc)) from None

    def _executable(self, spec: NodeSpec, loc: Loc) -> Command | PyFunc | None:
        cwd = self.base_dir
        if spec.working_directory is not None:
            cwd = (self.base_dir / spec.working_directory).resolve()
        if spec.command is not None:
            container = None
            if spec.container is not None:
                c = spec.container
                container = Container(c.image, c.env, c.volumes, c.workdir, c.network, c.user, c.pull)
            return Command(spec.command, timeout=spec.timeout or None, env=spec.env, cwd=cwd, container=container)
        if spec.function is not None:
            func = self._import(spec.function, (*loc, "function"))
            try:
                return PyFunc(
                    func,
                    args=_with_artifacts(spec.args),
                    kwargs=_with_artifacts(spec.kwargs),
                    timeout=spec.timeout or None,
                    env=spec.env,
                    cwd=cwd,
                )
            except WorkflowError as exc:
                raise WorkflowError(exc.message, location=self.document.where((*loc, "function"))) from None
        return None

    def _import(self, target: str, loc: Loc) -> Any:
        module_name, _, attribute = target.partition(":")
        _add_to_path(self.base_dir)
        try:
            value: Any = importlib.import_module(module_name)
        except Exception as exc:  # noqa: BLE001 - any import failure is the file's problem to report
            raise WorkflowError(
                f"function {target!r}: cannot import {module_name!r}: {exc.__class__.__name__}: {exc}",
                location=self.document.where(loc),
            ) from None
        for part in attribute.split("."):
            if not hasattr(value, part):
                raise WorkflowError(
                    f"function {target!r}: {module_name!r} has no attribute {attribute!r}",
                    location=self.document.where(loc),
                )
            value = getattr(value, part)
        if not callable(value):
            raise WorkflowError(f"function {target!r} is not callable", location=self.document.where(loc))
        return value


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
        return _Build(validate(document), document, base).workflow()


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
