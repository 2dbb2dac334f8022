"""Loading workflow files: YAML (validated against :mod:`wtflow.fastspec`, :mod:`wtflow.spec`) and Python modules.

Loading is a function that returns values; it never runs a node. Every problem is reported
as ``FILE:LINE:COL: what is wrong``, all of them at once where the file could be parsed.
YAML is parsed safely: no tags that construct objects, aliases expanded within a budget
(an alias bomb is an error, not an out-of-memory), duplicate keys refused.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import importlib.util
import re
import sys
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import yaml

from wtflow import fastspec
from wtflow.errors import WorkflowError
from wtflow.model import Artifact, Command, Container, FileArtifact, Node, PyFunc, Retry, Workflow

if TYPE_CHECKING:  # pydantic is imported only for a file with a problem (see wtflow.fastspec)
    from wtflow.spec import FileArtifactSpec, NodeSpec, RetriesSpec, WorkflowSpec

DEFAULT_FILES = ("wtflow.yml", "wtflow.yaml", "wtflow.py")
MAX_FILE_BYTES = 64 * 1024 * 1024
Loc = tuple[str | int, ...]
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
MAX_MESSAGES = 50  # problems reported per file; the rest are counted


@dataclass(frozen=True)
class Position:
    """A 1-based line and column in a file."""

    line: int
    column: int


@dataclass
class _Document:
    """Plain data from YAML, with the position of every value and every key."""

    file: str
    data: Any = None
    values: dict[Loc, Position] = field(default_factory=dict)
    keys: dict[Loc, Position] = field(default_factory=dict)
    # Positions not recorded yet, found on demand by walking the YAML events (fast path).
    pending: Iterator[None] | None = None

    def where(self, loc: Loc, *, key: bool = False) -> str:
        """``FILE:LINE:COL`` of ``loc``, or of its nearest enclosing value."""
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


def _walk_positions(text: str, document: _Document) -> Iterator[None]:
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


class _Builder:
    """Turns composed YAML nodes into plain data, recording positions, within a size budget."""

    def __init__(self, document: _Document, budget: int) -> None:
        self.document = document
        self.budget = budget
        self.constructor = yaml.SafeLoader("")  # only for scalar conversion and merge keys

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
        seen: set[str] = set()
        for key_node, _ in node.value:  # duplicates among the mapping's own keys; merged keys may be overridden
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                if key_node.value in seen:
                    position = _position(key_node.start_mark)
                    raise WorkflowError(
                        f"duplicate key {key_node.value!r}",
                        location=f"{self.document.file}:{position.line}:{position.column}",
                    )
                seen.add(key_node.value)
        try:
            self.constructor.flatten_mapping(node)  # YAML merge keys (<<: *defaults)
        except yaml.MarkedYAMLError as exc:
            raise WorkflowError(str(exc.problem), location=self.document.where(loc)) from None
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = self.build(key_node, (*loc, "<key>")) if isinstance(key_node, yaml.ScalarNode) else None
            key_position = _position(key_node.start_mark)
            if not isinstance(key, str):
                raise WorkflowError(
                    f"keys must be text, got {key!r}; quote it",
                    location=f"{self.document.file}:{key_position.line}:{key_position.column}",
                )
            self.document.keys[(*loc, key)] = key_position
            self.document.values.pop((*loc, key), None)  # a key given again overrides a merged one
            result[key] = self.build(value_node, (*loc, key))
        return result

    def _tag_error(self, node: yaml.Node, loc: Loc) -> WorkflowError:
        return WorkflowError(
            f"YAML tag {node.tag!r} is not allowed in workflow files; remove it",
            location=self.document.where(loc),
        )


def parse_yaml(text: str, file: str) -> _Document:
    """Parse ``text`` into plain data with positions; :class:`WorkflowError` on any YAML problem."""
    document = _Document(file)
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


def kind_of_value(value: Any) -> str:
    """What ``value`` is, in a message's words: list, string, number, boolean or value."""
    return {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}.get(type(value), "value")


# -- building the model --------------------------------------------------------------------


class _Build:
    """Turns a validated spec into a Workflow, checking names and references with positions."""

    def __init__(self, spec: WorkflowSpec, document: _Document, base_dir: Path) -> None:
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
                if not re.search(fastspec.ARTIFACT_REF_PATTERN, ref):
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
    import difflib  # for error messages only: a valid file's load does not wait for it

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


def _retry(spec: int | RetriesSpec | None) -> Retry | None:
    if spec is None:
        return None
    if isinstance(spec, int):
        return Retry(max=spec)
    return Retry(max=spec.max, delay=spec.delay, backoff=spec.backoff)


def _add_to_path(directory: Path) -> None:
    entry = str(directory)
    if entry not in sys.path:
        sys.path.insert(0, entry)


# -- entry points -------------------------------------------------------------------------


class _Unusual(Exception):
    """Something the fast reading leaves to the careful parser (a duplicate or merge key, say)."""


def _fast_data(text: str) -> Any:
    """The document's data without positions, or ``None`` when only the careful parser may read it.

    libyaml parses and resolves tags; the values are then built here, without PyYAML's generic
    constructor (its bookkeeping per value: 144 ms of a 10,000-node file, against 90 ms here). Strings,
    lists and mappings are built directly, every other scalar by PyYAML's own rules. Aliases (a
    way to build huge documents from small files), tags, merge keys, duplicate keys and anything
    unusual go to the careful parser, which counts what it builds and knows where every value
    stands.
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
        if key in mapping:
            raise _Unusual  # PyYAML would keep the last one; the careful parser says where both are
        mapping[key] = _construct(value_node, loader)
    return mapping


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a workflow is built.

    Building a large workflow creates many objects and no garbage cycles; collections that
    walked them all made loading superlinear (20,000 nodes took 3.4 times as long as 10,000).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def load_yaml(text: str, file: str = "<string>", base_dir: Path | None = None) -> Workflow:
    """Parse, validate and build the workflow in ``text``; ``base_dir`` anchors relative paths.

    Ordinary files are read by libyaml at full speed; positions for messages are found only
    when a problem needs them. Files with aliases or tags go through the careful parser.
    """
    with _gc_paused():
        return _load_yaml(text, file, base_dir)


def _load_yaml(text: str, file: str, base_dir: Path | None) -> Workflow:
    base = (base_dir or Path.cwd()).resolve()
    data = _fast_data(text)
    if isinstance(data, dict):
        document = _Document(file, data)
        document.pending = _walk_positions(text, document)  # positions only if a problem needs them
    else:
        document = parse_yaml(text, file)
    # msgspec's Structs have the models' fields and values (tests check it): the build reads either.
    spec = cast("WorkflowSpec | None", fastspec.read(document.data))
    if spec is None:  # pydantic, the format's authority, says what is wrong, or reads it after all
        from wtflow.problems import validated

        spec = validated(document)
    return _Build(spec, document, base).workflow()


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
