"""Nodes that need not run: a cache entry of the same inputs, or an earlier run's result.

The scheduler asks before starting a node. A cached node (``sources``, or ``cache: true``)
gets its key from :func:`describe` (what it runs, in which environment and directory), the
digests of its source files and the keys of what it waits for; when the cache holds that key,
the entry's output is replayed and its files restored (:class:`NodeCache`). ``wtflow run
--rerun-failed`` hands over what succeeded in an earlier run instead (:class:`Earlier` by node
name). Either way the node ends ``cached`` or ``reused`` without a process.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from wtflow.cache import (
    QUICK_FILES,
    QUICK_READ,
    STDERR,
    STDOUT,
    CacheStore,
    MustRead,
    SourceHasher,
    cache_key,
    expand_sources,
)
from wtflow.events import NodeStatus
from wtflow.executors.base import Job
from wtflow.model import Artifact, Command, Node, PyFunc

# Variables a run sets for every node that name the run itself: they must not change the key.
RUN_VARIABLES = ("WTFLOW_RUN_ID", "WTFLOW_RUN_DIR", "WTFLOW_NODE", "WTFLOW_STEP_SUMMARY", "WTFLOW_OUTPUT")


@dataclass(frozen=True)
class Earlier:
    """A node's result taken instead of running it: its streams, result, outputs and files."""

    status: NodeStatus  # CACHED or REUSED
    source: str  # the cache key, or the earlier run's id
    stdout: Path | None
    stderr: Path | None
    result: Path | None
    outputs: Mapping[str, str] = field(default_factory=dict)
    saved: float | None = None  # seconds the node took when it ran
    files: Path | None = None  # the earlier run's declared file artifacts (its node directory's files/)
    replay: bool = True  # show its output again on the console
    # The streams' bytes when they are small, read with everything else a hit does in one thread
    # call: the file of a stream left None here is streamed instead.
    data: Mapping[str, bytes] = field(default_factory=dict)
    # A cache hit's larger streams, opened when it was checked: a prune removing the entry before
    # they are replayed cannot take them away. Whoever takes the hit closes them (close_opened).
    opened: Mapping[str, BinaryIO] = field(default_factory=dict)

    def close_opened(self) -> None:
        """Close the streams opened when the hit was checked."""
        _close_all(self.opened)


SMALL = 1 << 20  # a cached stream up to this size is read whole when the hit is checked


def _close_all(opened: Mapping[str, BinaryIO]) -> None:
    for handle in opened.values():
        handle.close()


def describe(executable: Command | PyFunc, env: Mapping[str, str], cwd: Path | None, base: Path) -> dict[str, Any]:
    """What defines a node for its cache key: its executable, environment and working directory (from ``base``)."""
    place = None
    if cwd is not None:
        place = cwd.relative_to(base).as_posix() if cwd.is_relative_to(base) else str(cwd)
    description: dict[str, Any] = {
        "env": sorted((name, value) for name, value in env.items() if name not in RUN_VARIABLES),
        "cwd": place,
    }
    if isinstance(executable, PyFunc):
        description["function"] = executable.name
        description["args"] = _canonical([executable.args, executable.kwargs], set())
    else:
        description["command"] = executable.cmd if isinstance(executable.cmd, str) else list(executable.cmd)
        container = executable.container
        if container is not None:
            description["container"] = {
                "image": container.image,
                "env": sorted((container.env or {}).items()),
                "volumes": list(container.volumes),
                "workdir": container.workdir,
                "network": container.network,
                "user": container.user,
            }
    return description


def _canonical(value: Any, path: set[int]) -> Any:
    """A function's argument as JSON values that tell apart what Python does.

    A tuple from a list, the key 1 from the key "1", NaN from the string "nan": every dict,
    tuple, set, non-finite float, artifact or other object becomes an object tagged with its
    kind, so no two of them encode alike. Dicts and sets count whatever their order. Other
    objects count by their ``repr``. :class:`ValueError` for a structure that contains itself.
    ``path`` holds the containers being encoded around ``value``.
    """
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"float": repr(value)}
    if isinstance(value, Artifact):
        return {"artifact": f"{value.node}.{value.name}"}  # what it holds is in the producer's key
    if isinstance(value, list | tuple | dict | set | frozenset):
        if id(value) in path:
            raise ValueError(f"an argument contains itself ({type(value).__name__}): it cannot be part of a cache key")
        path.add(id(value))
        try:
            return _container(value, path)
        finally:
            path.discard(id(value))
    try:
        return {"repr": repr(value)}
    except Exception as exc:  # noqa: BLE001 - a user's __repr__ may raise anything
        raise ValueError(f"an argument ({type(value).__name__}) cannot be part of a cache key: {exc!r}") from None


def _container(value: list[Any] | tuple[Any, ...] | dict[Any, Any] | set[Any] | frozenset[Any], path: set[int]) -> Any:
    if isinstance(value, list):
        return [_canonical(item, path) for item in value]
    if isinstance(value, tuple):
        return {"tuple": [_canonical(item, path) for item in value]}
    if isinstance(value, dict):
        pairs = [[_canonical(key, path), _canonical(item, path)] for key, item in value.items()]
        return {"dict": sorted(pairs, key=_sort_key)}
    return {"set": sorted((_canonical(item, path) for item in value), key=_sort_key)}


def _sort_key(encoded: Any) -> str:
    return json.dumps(encoded, sort_keys=True, ensure_ascii=False)


def output_files(cwd: Path, patterns: Sequence[str]) -> list[str]:
    """The files the ``outputs`` globs match, directories walked, as sorted relative paths."""
    return expand_sources(cwd, [form for pattern in patterns for form in (pattern, f"{pattern.rstrip('/')}/**/*")])


class NodeCache:
    """The cache as a run uses it: keys, hits and filling.

    Every method blocks: call it in a thread, except :meth:`check` with ``quick``, which
    looks at a bounded number of files' stats and small files only.
    """

    def __init__(self, root: Path, *, force: bool = False, force_nodes: Sequence[str] = ()) -> None:
        self.hasher = SourceHasher(root / "stat-cache.json")
        self.store = CacheStore(root, self.hasher.digest)
        self.force = force
        self.force_nodes = frozenset(force_nodes)

    def key(
        self,
        job: Job,
        node: Node,
        upstream: Sequence[str],
        *,
        base: Path | None = None,
        read: Sequence[Path] = (),
        quick: bool = False,
    ) -> str:
        """The key of ``node`` as ``job`` runs it; :class:`OSError` naming a source file that cannot be read.

        Its working directory counts relative to ``base`` (the workflow file's directory), so a
        checkout at another path has the same keys. ``upstream`` names what it waits for;
        ``read`` are artifact files it is given whose producers have no key: their content counts.
        ``quick``: :class:`~wtflow.cache.MustRead` where a file over ``QUICK_READ`` bytes would
        be read, or where sources could be many (a ``**`` walk, more than ``QUICK_FILES``).
        """
        cwd = job.cwd or Path.cwd()
        sources = node.sources
        if quick and any("**" in pattern for pattern in sources):
            raise MustRead(str(cwd))
        description = describe(job.executable, job.declared_env, job.cwd, base or Path.cwd())
        description["outputs"] = list(node.outputs)
        upstream = [*upstream, *(f"read:{self._digest_tree(path, quick)}" for path in read)]
        digests = []
        root = os.fspath(cwd)  # strings, not Paths: this runs for every source of every cached node
        found = expand_sources(cwd, sources, limit=QUICK_FILES if quick else None)
        for relative in found:
            try:
                digests.append((relative, self.hasher.digest(os.path.join(root, relative), quick=quick)))  # noqa: PTH118
            except OSError as exc:
                raise OSError(exc.errno, f"source {relative} cannot be read: {exc.strerror or exc}") from None
        return cache_key(description, digests, upstream)

    def _digest_tree(self, path: Path, quick: bool) -> str:
        """The content of an artifact: one file, or every file of a declared artifact's directory."""
        if path.is_dir():
            if quick:
                raise MustRead(str(path))  # a walk of any size
            files = sorted(item for item in path.rglob("*") if item.is_file())
            parts = [f"{item.relative_to(path).as_posix()}={self.hasher.digest(item).hex()}" for item in files]
            return ";".join(parts)
        try:
            return self.hasher.digest(path, quick=quick).hex()
        except FileNotFoundError:
            return "missing"

    def check(
        self,
        job: Job,
        node: Node,
        upstream: Sequence[str],
        *,
        base: Path | None,
        read: Sequence[Path],
        result: Path | None,
        quick: bool = False,
        key: str | None = None,
    ) -> tuple[str, Earlier | None]:
        """The node's key, and on a hit everything it takes, in one call (one thread hop per node).

        A hit's output files are already restored into the working directory, its ``result``
        copied to ``result`` (this run's file), and its small streams read into ``data``. An
        entry removed while it is read (another run pruning the cache) is a miss.
        ``quick``: :class:`~wtflow.cache.MustRead` before a file over ``QUICK_READ`` bytes would
        be read (its stat changed since it was last read) or a file written, and only streams
        up to ``QUICK_READ`` are read; once the key is known, the exception carries it
        (``MustRead.key``), to be given back as ``key`` to the full check.
        """
        if key is None:
            key = self.key(job, node, upstream, base=base, read=read, quick=quick)
        if self.force or node.name in self.force_nodes:
            return key, None
        entry = None
        opened: dict[str, BinaryIO] = {}
        try:
            entry = self.store.get(key, quick=quick)
            if entry is None:
                return key, None
            self.store.restore(entry, job.cwd or Path.cwd(), quick=quick)
            if quick and entry.result is not None and result is not None:
                raise MustRead(str(entry.result))  # noqa: TRY301 - the key is added below, as for the others
            if entry.result is not None and result is not None:
                result.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(entry.result, result)
            small = QUICK_READ if quick else SMALL
            data: dict[str, bytes] = {}
            for stream, path, size in (
                ("stdout", entry.stdout, entry.blobs[STDOUT].size),
                ("stderr", entry.stderr, entry.blobs[STDERR].size),
            ):
                if size <= small:
                    data[stream] = path.read_bytes() if size else b""
                else:
                    opened[stream] = open(path, "rb")  # noqa: SIM115 - closed by whoever takes the hit
        except BaseException as exc:
            _close_all(opened)  # no hit is taken: nothing holds them
            if isinstance(exc, MustRead):
                exc.key = key
                raise
            if not isinstance(exc, OSError) or entry is None or exc.errno != errno.ENOENT or entry.path.is_dir():
                raise
            self.store.warnings.append(f"cache entry {key[:12]} was removed while it was read (a prune?): a miss")
            return key, None
        return key, Earlier(
            NodeStatus.CACHED,
            key,
            entry.stdout,
            entry.stderr,
            None,
            dict(entry.outputs),
            entry.duration,
            data=data,
            opened=opened,
        )

    def fill(
        self,
        key: str,
        *,
        node: str,
        streams: tuple[Path, Path],
        result: Path | None,
        outputs: Mapping[str, str],
        cwd: Path,
        patterns: Sequence[str],
        duration: float,
    ) -> list[str]:
        """Keep a node that succeeded under ``key`` (in place of an entry there when it was forced to run).

        Problems (``outputs`` matching nothing) come back as warnings.
        """
        files = output_files(cwd, patterns)
        warnings = (
            [f"outputs {', '.join(patterns)} matched no file after the node succeeded"]
            if patterns and not files
            else []
        )
        self.store.put(
            key,
            node=node,
            stdout=streams[0],
            stderr=streams[1],
            result=result if result is not None and result.is_file() else None,
            outputs=outputs,
            cwd=cwd,
            files=files,
            duration=duration,
            replace=self.force or node in self.force_nodes,
        )
        return warnings

    def close(self) -> list[str]:
        """Keep what was learnt of source files for the next run; the cache's warnings (bad entries)."""
        with contextlib.suppress(OSError):  # a read-only cache still serves hits
            self.hasher.save()
        return list(dict.fromkeys(self.store.warnings))
