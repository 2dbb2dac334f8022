"""The artifact store: where a run's outputs live, and how they are written and collected.

Layout of the files store::

    <artifacts_dir>/<run_id>/run.json
    <artifacts_dir>/<run_id>/events.jsonl
    <artifacts_dir>/<run_id>/<node dir>/stdout.log
    <artifacts_dir>/<run_id>/<node dir>/stdout.attempt-N.log  (output of a failed attempt N that was retried)
    <artifacts_dir>/<run_id>/<node dir>/stderr.log
    <artifacts_dir>/<run_id>/<node dir>/result.json        (PyFunc return value)
    <artifacts_dir>/<run_id>/<node dir>/files/<name>/...   (declared file artifacts)

The scheduler asks the store (:class:`ArtifactStore`) for a node attempt's :class:`OutputWriter`
(the executor's sink: whole lines, secrets masked, stored and forwarded), to collect a node's
declared files, and for what a node left with its sizes. :class:`FileStore` keeps them on disk;
:class:`MemoryStore` keeps them in memory, for tests. Run ids sort by start time and carry random
bits, so concurrent runs never collide. Node directory names come from node names, made safe and unique.
"""

from __future__ import annotations

import asyncio
import atexit
import errno
import functools
import io
import json
import os
import re
import shutil
import threading
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from wtflow.collection import Collection, Stopped
from wtflow.events import ArtifactInfo
from wtflow.masking import Masker
from wtflow.model import RESULT, STDERR, STDOUT, Node, PyFunc
from wtflow.output import Forward, OutputWriter, close_files

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_NAME = 64
FILE_NAMES = {STDOUT: "stdout.log", STDERR: "stderr.log", RESULT: "result.json"}
_STREAMS = frozenset({STDOUT, STDERR, RESULT})
RUN_FILES = frozenset({"run.json", "events.jsonl"})  # the run's own files, beside its nodes' directories
# Names a node's directory cannot take as they are: the run's files, and ``files`` (a node's declared files).
_RESERVED = frozenset({"", "files", *RUN_FILES})


def new_run_id(now: datetime | None = None) -> str:
    """A run id that sorts by start time: ``20261129T010212123456Z-1a2b3c4d``."""
    now = now or datetime.now(UTC)
    return now.strftime("%Y%m%dT%H%M%S%fZ") + "-" + os.urandom(4).hex()


def safe_dir_name(name: str) -> str:
    """A directory name for node ``name``: the name itself when safe, else a cleaned name plus a hash."""
    cleaned = _UNSAFE.sub("_", name).lstrip(".")[:_MAX_NAME]
    if cleaned == name and name not in _RESERVED:
        return name
    import hashlib  # rarely needed; a run's start does not wait for it

    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{cleaned or 'node'}-{digest}"


def node_dir_names(names: Iterable[str]) -> dict[str, str]:
    """Distinct, safe directory names for distinct node names."""
    taken: set[str] = set()
    result: dict[str, str] = {}
    for name in names:
        candidate = safe_dir_name(name)
        base, counter = candidate, 1
        while candidate in taken:  # two cleaned names that still meet (practically never)
            counter += 1
            candidate = f"{base}-{counter}"
        taken.add(candidate)
        result[name] = candidate
    return result


@functools.cache
def process_temp_dir() -> Path:
    """A directory that lasts until this process exits: the default artifacts directory."""
    import tempfile  # only when no artifacts directory is set

    path = Path(tempfile.mkdtemp(prefix="wtflow-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


class RunLayout:
    """The paths of one run's artifacts."""

    def __init__(self, run_dir: Path, node_names: Iterable[str]) -> None:
        self.run_dir = run_dir
        self._dirs = node_dir_names(node_names)
        # Each path is asked for several times as a node starts, and many nodes start at once.
        self._node_dirs: dict[str, Path] = {}
        self._paths: dict[tuple[str, str], Path] = {}

    def node_dir(self, node: str) -> Path:
        """The directory holding ``node``'s artifacts."""
        path = self._node_dirs.get(node)
        if path is None:
            path = self._node_dirs[node] = self.run_dir / self._dirs[node]
        return path

    def path(self, node: str, artifact: str) -> Path:
        """The file of ``node``'s artifact ``artifact``."""
        key = (node, artifact)
        path = self._paths.get(key)
        if path is None:
            file_name = FILE_NAMES.get(artifact)
            if file_name is not None:
                path = self.node_dir(node) / file_name
            else:
                path = self.node_dir(node) / "files" / safe_dir_name(artifact)
            self._paths[key] = path
        return path

    @property
    def run_file(self) -> Path:
        """``run.json``: the run's summary."""
        return self.run_dir / "run.json"


def create_run_dir(artifacts_dir: Path | None, run_id: str) -> Path:
    """Make the directory of a new run (under a temporary directory when none is configured)."""
    root = artifacts_dir if artifacts_dir is not None else process_temp_dir()
    root.mkdir(parents=True, exist_ok=True)
    run_dir = root / run_id
    run_dir.mkdir()  # exist_ok=False: a collision must not mix two runs
    return run_dir.resolve()


_TAIL_BLOCK = 1 << 14
_TAIL_LIMIT = 1 << 20  # a last line longer than this (no newline for a mebibyte) is shown cut


def last_lines(path: Path, count: int) -> list[str]:
    """The last ``count`` lines of text file ``path`` (``OSError`` if it is gone); undecodable bytes replaced."""
    with path.open("rb") as source:
        position = source.seek(0, os.SEEK_END)
        data = b""
        # Read backwards until what was read holds ``count`` whole lines, the file's start or the limit.
        while position > 0 and len(data) < _TAIL_LIMIT and data.count(b"\n", 0, len(data) - 1) < count:
            step = min(_TAIL_BLOCK, position)
            position -= step
            source.seek(position)
            data = source.read(step) + data
    lines = data.decode("utf-8", "replace").splitlines()
    return lines[-count:] if count else []


# Files a node's process writes into its directory by name ($WTFLOW_OUTPUT, $WTFLOW_STEP_SUMMARY).
NODE_TEXT_FILES = ("outputs", "summary.md")


class ArtifactStore(Protocol):
    """Where one run's artifacts go: a node attempt's output, its declared files, their sizes.

    ``open_run`` is called once, before any node starts; the other methods during the run.
    """

    async def open_run(self, run_id: str, nodes: Iterable[str], masker: Masker) -> Path:
        """Make room for the run; its directory (``OSError`` if it cannot be made)."""
        ...

    def node_dir(self, node: str) -> Path:
        """The directory a node's process may write into (a function's ``result.json``)."""
        ...

    def path(self, node: str, artifact: str) -> Path:
        """Where ``node``'s artifact ``artifact`` is kept."""
        ...

    def output(self, node: str, attempt: int, forward: Forward, files: list[BinaryIO] | None = None) -> OutputWriter:
        """The sink of ``node``'s attempt ``attempt``; an earlier attempt's output is kept beside it.

        ``files`` are the first attempt's files made ahead by :meth:`open_output` (else they are made here).
        """
        ...

    def open_output(self, node: str) -> list[BinaryIO]:
        """Make the node's first attempt's output files now (blocking: from a thread already at work for it)."""
        ...

    def link_streams(self, node: str, sources: Mapping[str, Path]) -> bool:
        """Make files that never change the node's first attempt's streams (by stream), without copying them.

        Whether it did: ``False`` (nothing made) where it cannot, and the caller writes them instead.
        """
        ...

    async def collect(self, node: Node, cwd: Path | None) -> list[str]:
        """Keep the node's declared file artifacts (globs in its working directory ``cwd``); warnings.

        Each warning names what was not kept and why (a symbolic link out of ``cwd``, a device,
        a limit reached).
        """
        ...

    def infos(self, node: Node) -> tuple[ArtifactInfo, ...]:
        """The artifacts the node left, with their sizes; what is missing or unreadable is left out."""
        ...


class FileStore:
    """Artifacts as files under ``artifacts_dir`` (a temporary directory for this process when ``None``).

    ``mask_files=False`` stores output unmasked (what is forwarded stays masked).
    """

    def __init__(self, artifacts_dir: Path | None = None, *, mask_files: bool = True) -> None:
        self.artifacts_dir = artifacts_dir
        self.mask_files = mask_files
        self._layout: RunLayout | None = None
        self._masker = Masker()
        self._sizes: dict[tuple[str, str], int] = {}  # (node, declared artifact) -> bytes collected

    @property
    def layout(self) -> RunLayout:
        """The paths of the open run."""
        assert self._layout is not None, "open_run first"
        return self._layout

    async def open_run(self, run_id: str, nodes: Iterable[str], masker: Masker) -> Path:
        """Create the run's directory."""
        run_dir = await asyncio.to_thread(create_run_dir, self.artifacts_dir, run_id)
        self._layout = RunLayout(run_dir, nodes)
        self._masker = masker
        self._sizes = {}
        return run_dir

    def node_dir(self, node: str) -> Path:
        """The node's directory (it exists once the node's output files are open)."""
        return self.layout.node_dir(node)

    def path(self, node: str, artifact: str) -> Path:
        """The file (or, for declared files, the directory) of ``node``'s ``artifact``."""
        return self.layout.path(node, artifact)

    def output(self, node: str, attempt: int, forward: Forward, files: list[BinaryIO] | None = None) -> OutputWriter:
        """Open the attempt's files on the loop's next turn: once the node's process has started.

        The pipes hold the process's first output meanwhile. Creating a file is cheaper than
        handing it to a thread. A file that cannot be made fails the node after it ran.
        """
        loop = asyncio.get_running_loop()
        opening: asyncio.Future[list[BinaryIO]] = loop.create_future()
        if files is not None:
            opening.set_result(files)
            return OutputWriter(opening, forward, masker=self._masker, mask_files=self.mask_files)
        paths = (self.path(node, STDOUT), self.path(node, STDERR))
        if attempt > 1:
            _keep_attempt(paths, attempt - 1)
        else:  # before the process starts: it may write into it ($WTFLOW_STEP_SUMMARY)
            self.node_dir(node).mkdir(parents=True, exist_ok=True)

        def open_now() -> None:
            try:
                opening.set_result(_open_files(paths))
            except BaseException as exc:  # settled whatever happens: the attempt waits for it
                opening.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise

        loop.call_soon(open_now)
        return OutputWriter(opening, forward, masker=self._masker, mask_files=self.mask_files)

    def open_output(self, node: str) -> list[BinaryIO]:
        """Make the node's directory and its first attempt's output files now (blocking)."""
        self.node_dir(node).mkdir(parents=True, exist_ok=True)
        return _open_files((self.path(node, STDOUT), self.path(node, STDERR)))

    def link_streams(self, node: str, sources: Mapping[str, Path]) -> bool:
        """Hard-link each source as the node's stream: a new name costs far less than a new file.

        Its content is then the source's own: only for files that are never written again (a
        cache entry's). ``False`` on another file system or where links are refused.
        """
        self.node_dir(node).mkdir(parents=True, exist_ok=True)
        made: list[Path] = []
        try:
            for stream, source in sources.items():
                target = self.path(node, stream)
                os.link(source, target)
                made.append(target)
        except OSError:
            for target in made:
                target.unlink(missing_ok=True)
            return False
        return True

    async def collect(self, node: Node, cwd: Path | None) -> list[str]:
        """Copy the node's declared file artifacts into its ``files/`` directory; what was skipped, and why.

        The walk runs in a thread and stops at the limits of :mod:`wtflow.collection` or, soon
        after, once this coroutine is cancelled. What the node's process wrote into its
        directory itself (``result.json``, its outputs and summary files) is masked here like its output.
        """
        if self.mask_files and self._masker.active:
            await asyncio.to_thread(self._mask_written, node)
        if not node.artifacts:
            return []
        stop = threading.Event()
        walk = asyncio.ensure_future(asyncio.to_thread(self._collect, node, cwd, stop))
        walk.add_done_callback(_retrieve)  # a walk that failed after it was given up is not reported
        try:
            return await asyncio.shield(walk)
        except asyncio.CancelledError:
            stop.set()
            # The walk looks at the flag between files and between chunks of a file: it ends soon.
            await asyncio.wait({walk})
            raise

    def _mask_written(self, node: Node) -> None:
        """Mask what the node's process wrote into its directory: its outputs, summary and result."""
        for name in NODE_TEXT_FILES:
            path = self.node_dir(node.name) / name
            try:
                text = path.read_text(encoding="utf-8", errors="surrogateescape")
            except (FileNotFoundError, IsADirectoryError):
                continue
            masked = self._masker.text(text)
            if masked != text:
                tmp = path.with_name(f".{name}.tmp")
                tmp.write_text(masked, encoding="utf-8", errors="surrogateescape")
                os.replace(tmp, path)
        if isinstance(node.executable, PyFunc):
            self._mask_result(node.name)

    def _mask_result(self, node: str) -> None:
        path = self.path(node, RESULT)
        try:
            value = json.loads(path.read_bytes())
        except (FileNotFoundError, ValueError):  # the function returned nothing to keep
            return
        masked = _mask_json(value, self._masker)
        if masked != value:  # its strings are masked as text: JSON's escapes cannot hide a secret
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(json.dumps(masked), encoding="utf-8")
            os.replace(tmp, path)

    def _collect(self, node: Node, cwd: Path | None, stop: threading.Event) -> list[str]:
        collection = Collection((cwd or Path.cwd()).resolve(), stop)
        try:
            for declared in node.artifacts:
                target = self.path(node.name, declared.name)
                before = collection.bytes
                try:
                    collection.declared(declared, target)
                finally:
                    if target.is_dir():
                        self._sizes[(node.name, declared.name)] = collection.bytes - before
        except Stopped as stopped:
            if stopped.reason:
                collection.warnings.append(stopped.reason)
        return collection.warnings

    def infos(self, node: Node) -> tuple[ArtifactInfo, ...]:
        """Each artifact's file and size in bytes (a declared file artifact: the sum of its files)."""
        infos = []
        for name in sorted(node.artifact_names()):
            path = self.path(node.name, name)
            if name in _STREAMS:
                try:
                    size = path.stat().st_size
                except OSError:
                    continue
            elif (size_or_none := self._sizes.get((node.name, name))) is not None:
                size = size_or_none
            elif path.is_dir():  # put in place, not collected: taken from an earlier run
                size = sum(item.stat().st_size for item in path.rglob("*") if item.is_file())
            else:
                continue
            infos.append(ArtifactInfo(name, path, size))
        return tuple(infos)


def _retrieve(task: asyncio.Future[list[str]]) -> None:
    if not task.cancelled():
        task.exception()


def _mask_json(value: Any, masker: Masker) -> Any:
    if isinstance(value, str):
        return masker.text(value)
    if isinstance(value, list):
        return [_mask_json(item, masker) for item in value]
    if isinstance(value, dict):
        return {masker.text(key): _mask_json(item, masker) for key, item in value.items()}
    return value


def _keep_attempt(paths: tuple[Path, ...], attempt: int) -> None:
    """Keep a failed attempt's output beside the next attempt's, as ``stdout.attempt-N.log``."""
    for path in paths:
        if path.exists():
            path.rename(path.with_name(f"{path.stem}.attempt-{attempt}{path.suffix}"))


class TooManyOpenFiles(OSError):
    """A node's files could not be opened: this process, or the system, has too many open."""

    def __str__(self) -> str:
        return self.strerror or super().__str__()


def open_files_advice(error: int) -> str:
    """What limit ``EMFILE`` or ``ENFILE`` means, and what to do about it."""
    if error == errno.ENFILE:
        return (
            "too many open files in the system (the kernel's limit, fs.file-max): "
            "run fewer nodes at once with --max-parallel"
        )
    import resource  # only when the limit is hit

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return (
        f"too many open files: this process may have {soft:,} open (ulimit -n); "
        "raise the limit with 'ulimit -n', or run fewer nodes at once with --max-parallel"
    )


def _open_files(paths: tuple[Path, ...]) -> list[BinaryIO]:
    """Open (create or truncate) each file for writing, making its directory if needed."""
    try:
        return _open_each(paths)
    except OSError as exc:
        if exc.errno not in {errno.EMFILE, errno.ENFILE}:
            raise
        raise TooManyOpenFiles(exc.errno, open_files_advice(exc.errno)) from exc


def _open_each(paths: tuple[Path, ...]) -> list[BinaryIO]:
    files: list[BinaryIO] = []
    try:
        for path in paths:
            try:
                files.append(open(path, "wb"))  # noqa: SIM115 - closed by close_files
            except FileNotFoundError:
                path.parent.mkdir(parents=True, exist_ok=True)
                files.append(open(path, "wb"))  # noqa: SIM115 - closed by close_files
    except BaseException:
        close_files(files)
        raise
    return files


class _Kept(io.BytesIO):
    """A memory file that stays readable after its writer has closed it."""

    def close(self) -> None:
        """Keep the bytes."""


_MEMORY = Path("/nonexistent/wtflow-memory-store")


class MemoryStore:
    """Artifacts in memory, for tests: ``data[(node, name)]`` holds what each node wrote.

    Streams of retried attempts are kept as ``stdout.attempt-N``. Paths are made up: nothing
    is on disk, so a function node cannot write its result here.
    """

    def __init__(self, *, mask_files: bool = True) -> None:
        self.mask_files = mask_files
        self.run_dir = _MEMORY
        self._masker = Masker()
        self._files: dict[tuple[str, str], _Kept] = {}
        self.collected: list[str] = []

    @property
    def data(self) -> dict[tuple[str, str], bytes]:
        """Every stream written so far, by (node, name)."""
        return {key: kept.getvalue() for key, kept in self._files.items()}

    async def open_run(self, run_id: str, nodes: Iterable[str], masker: Masker) -> Path:
        """Nothing to make."""
        self.run_dir = _MEMORY / run_id
        self._masker = masker
        return self.run_dir

    def node_dir(self, node: str) -> Path:
        """A made-up directory."""
        return self.run_dir / safe_dir_name(node)

    def path(self, node: str, artifact: str) -> Path:
        """A made-up path."""
        return self.node_dir(node) / FILE_NAMES.get(artifact, artifact)

    def output(self, node: str, attempt: int, forward: Forward, files: list[BinaryIO] | None = None) -> OutputWriter:
        """Memory files for the attempt, the earlier attempt's kept under its number."""
        if attempt > 1:
            for stream in (STDOUT, STDERR):
                if (node, stream) in self._files:
                    self._files[(node, f"{stream}.attempt-{attempt - 1}")] = self._files.pop((node, stream))
        opening: asyncio.Future[list[BinaryIO]] = asyncio.get_running_loop().create_future()
        opening.set_result(files if files is not None else self.open_output(node))
        return OutputWriter(opening, forward, masker=self._masker, mask_files=self.mask_files)

    def open_output(self, node: str) -> list[BinaryIO]:
        """The node's memory files."""
        return [self._files.setdefault((node, stream), _Kept()) for stream in (STDOUT, STDERR)]

    def link_streams(self, node: str, sources: Mapping[str, Path]) -> bool:
        """Memory holds no links: the caller writes the streams."""
        return False

    async def collect(self, node: Node, cwd: Path | None) -> list[str]:
        """Note that the node's files would have been collected."""
        if node.artifacts:
            self.collected.append(node.name)
        return []

    def infos(self, node: Node) -> tuple[ArtifactInfo, ...]:
        """The streams the node wrote, with their sizes."""
        data = self.data
        return tuple(
            ArtifactInfo(name, self.path(node.name, name), len(data[(node.name, name)]))
            for name in sorted(node.artifact_names())
            if (node.name, name) in data
        )
