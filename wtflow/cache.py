"""The cache of finished nodes: keys from what a node is and reads, entries holding what it left.

A node's key (:func:`cache_key`) is the blake3 of a canonical encoding of its description (what
the scheduler says defines it: command, environment, ...), the content digests of its source
files (:func:`expand_sources` finds them, :class:`SourceHasher` digests them) and the keys of
the nodes it depends on, so a change anywhere upstream changes every key below it. An entry
(:class:`CacheStore`) holds what the node left: stdout, stderr, result, outputs and declared
files; a later run with the same key restores them instead of running the node.

Layout of a cache directory, plain files only (no absolute paths, locks or sockets), so CI can
carry it between jobs (``actions/cache``)::

    <root>/CACHEDIR.TAG, .gitignore            (backup tools and git leave the directory alone)
    <root>/entries/<key[:2]>/<key>/manifest.json    (written last: every file's size, blake3 and mode)
    <root>/entries/<key[:2]>/<key>/stdout.log
    <root>/entries/<key[:2]>/<key>/stderr.log
    <root>/entries/<key[:2]>/<key>/result.json      (a PyFunc's return value, when there is one)
    <root>/entries/<key[:2]>/<key>/files/<rel>      (declared files, relative to the working directory)
    <root>/tmp/                                 (entries being written or removed)

An entry is written in ``tmp/`` and renamed into place whole, so a reader sees all of it or none
of it, and a process killed while writing leaves only a directory in ``tmp/``. Every read checks
the files against the manifest, so a torn, truncated or altered entry is a miss, never an error
(entries can arrive from another machine). The entry directory's mtime is its last use, touched
on each hit: :meth:`CacheStore.prune` keeps the most recently used.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import functools
import glob
import json
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Annotated, Any, Protocol

import msgspec
from blake3 import blake3

from wtflow.globs import relative_parts

__all__ = ["Blob", "CacheStore", "Digest", "Entry", "MustRead", "SourceHasher", "cache_key", "expand_sources"]

_CHUNK = 1 << 20  # files are read, hashed and copied this much at a time, never whole
# Part of every key: a change in how keys are encoded (or in what an entry means) changes them all.
_KEY_FORMAT = "wtflow-cache-key/1"
_MANIFEST_FORMAT = 1
_STATE_FORMAT = 2
MANIFEST = "manifest.json"
STDOUT, STDERR, RESULT = "stdout.log", "stderr.log", "result.json"  # as the artifact store names them
STALE_TEMP = 3600.0  # seconds after which a directory in tmp/ is a leftover: no put takes that long
# A file whose mtime or ctime is this close to when it was read is read again next time: a second
# write within the file system's timestamp granularity (up to 2 s on FAT) would keep the same
# stamps. Git calls these entries "racily clean".
RACY_NS = 2_000_000_000
# How close an entry's "last used" (its directory's mtime) is kept to the truth: a hit within this
# many seconds of the last one leaves it (prune allows for it).
USED_RESOLUTION = 60.0
_MAX_STAT_RECORDS = 200_000  # past this, the state file keeps only the files asked about in this run
_MAX_MANIFEST = 16 << 20  # bytes: far beyond any real manifest; a larger one is not read, the entry is bad
_KEY = re.compile(r"[0-9a-f]{8,128}")
# Errors of the machine's limits, not of the file read: an error to report, never a corrupt entry.
_EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM})
_EMPTY_DIGEST = blake3(b"").hexdigest()
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
_CACHEDIR_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file marks wtflow's cache of finished nodes (https://bford.info/cachedir/).\n"
)


# --- sources -------------------------------------------------------------------------------------


def _normal_file(rel: str, what: str) -> str:
    """``rel`` as a normal relative POSIX path of a file (``./a//b`` is ``a/b``); :class:`ValueError` if none."""
    normal = "/".join(relative_parts(rel, what, glob=False))
    if not normal:
        raise ValueError(f"{what} {rel!r} names the working directory itself, not a file")
    return normal


def expand_sources(cwd: Path, patterns: Sequence[str], *, limit: int | None = None) -> list[str]:
    """The files the globs ``patterns`` match in ``cwd``, as sorted, distinct, relative POSIX paths.

    Patterns are pathlib's (``*``, ``?``, ``[...]`` within a name, ``**`` for any depth of
    directories; hidden files match). A pattern ending in ``**`` matches every file below, on
    every Python (3.11 would match only directories). Directories are skipped, and a pattern
    that matches nothing adds nothing. Raises :class:`ValueError`, naming the pattern, for an
    empty or absolute pattern or one with a ``..`` part, and :class:`MustRead` as soon as more
    than ``limit`` paths match (files or not), if given.
    """
    found: set[str] = set()
    root = os.fspath(cwd)
    matched = 0
    for pattern in patterns:
        parts = relative_parts(pattern, "source pattern")
        if not parts:
            continue  # "." is the directory itself
        if parts[-1] == "**":
            parts.append("*")
        for match, is_file in _matches(root, parts):
            matched += 1
            if limit is not None and matched > limit:
                raise MustRead(root)  # many matches: a walk for a thread, not for a quick check
            if is_file():
                found.add(match)
    return sorted(found)


def _matches(root: str, parts: list[str]) -> Iterator[tuple[str, Callable[[], bool]]]:
    """What the glob ``parts`` matches in ``root``: relative POSIX paths, each with a test "is it a file?".

    A glob with wildcards in its last part only (``src/*.c``, the usual sources) is one directory
    listed and matched by :mod:`fnmatch`, whose entries know their type without a stat; any other
    goes to :func:`glob.iglob` (with ``root_dir`` and strings, not ``Path.glob``: this runs on
    every check). Both match hidden names, and an unreadable or missing directory matches nothing.
    """
    *folders, last = parts
    if glob.has_magic(last) and not any(glob.has_magic(part) for part in folders):
        prefix = "".join(f"{part}/" for part in folders)
        try:
            with os.scandir(os.path.join(root, *folders)) as listing:  # noqa: PTH118
                entries = [entry for entry in listing if fnmatch.fnmatch(entry.name, last)]
        except OSError as exc:
            if exc.errno in _EXHAUSTED:
                raise
            return
        for entry in entries:
            yield prefix + entry.name, functools.partial(_is_file, entry)
        return
    for match in glob.iglob("/".join(parts), root_dir=root, recursive=True, include_hidden=True):
        yield match.replace(os.sep, "/"), functools.partial(os.path.isfile, os.path.join(root, match))  # noqa: PTH118


def _is_file(entry: os.DirEntry[str]) -> bool:
    """Whether the entry is a file or a link to one, as ``os.path.isfile`` says (a link loop is not)."""
    try:
        return entry.is_file()
    except OSError:
        return False


def _open_regular(path: str | Path) -> tuple[IO[bytes], os.stat_result]:
    """``path`` opened for reading, unbuffered, and its stat; :class:`OSError` unless it is a regular file.

    Opened without blocking, so a FIFO named by mistake is refused instead of hanging the read.
    """
    file = open(os.open(path, _READ_FLAGS), "rb", buffering=0)  # noqa: SIM115 - returned to the caller
    found = os.fstat(file.fileno())
    if not stat.S_ISREG(found.st_mode):
        file.close()
        code = errno.EISDIR if stat.S_ISDIR(found.st_mode) else errno.EINVAL
        raise OSError(code, "not a regular file", str(path))
    return file, found


def _read_digest(path: str, *, quick: bool = False) -> tuple[bytes, os.stat_result]:
    """The blake3 of the file at ``path`` and its stat as it was opened (the one place sources are read).

    On the descriptor itself, without a file object: sources are mostly small, and many. With
    ``quick``, :class:`MustRead` instead of reading more than :data:`QUICK_READ` bytes.
    """
    fd = os.open(path, _READ_FLAGS)
    try:
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode):
            code = errno.EISDIR if stat.S_ISDIR(before.st_mode) else errno.EINVAL
            raise OSError(code, "not a regular file", path)
        if quick and before.st_size > QUICK_READ:
            raise MustRead(path)
        hasher = blake3()
        want = min(before.st_size + 1, _CHUNK)  # a small file in one read (and one more to see its end)
        total = 0
        while chunk := os.read(fd, want):
            total += len(chunk)
            if quick and total > QUICK_READ:
                raise MustRead(path)  # it grew after fstat: a thread reads it whole
            hasher.update(chunk)
            want = _CHUNK
        return hasher.digest(), before
    finally:
        os.close(fd)


class MustRead(Exception):
    """A quick check would have to read this file's content (it is over :data:`QUICK_READ` bytes) or write it.

    Also raised where such a check would look at more than :data:`QUICK_FILES` files: it is
    meant to be cheap enough for an event loop, and a walk of a large tree is not. ``key`` is the
    node's cache key when it was known by then.
    """

    key: str | None = None


QUICK_FILES = 256
# A quick check reads a file this small whose stat is not known (one just written, or edited): on
# the loop that costs microseconds, a thread's hand-off more. It looks at up to QUICK_FILES sources,
# as many entry files and the node's outputs, so it reads a few tens of MiB at the very worst.
QUICK_READ = 64 * 1024


class Digest(Protocol):
    """How content is digested: blake3 of a file; with ``quick``, :class:`MustRead` rather than reading a large one."""

    def __call__(self, path: str | os.PathLike[str], *, quick: bool = False) -> bytes:
        """The digest of the file at ``path``."""
        ...


class _StatState(msgspec.Struct, frozen=True):
    """The state file of a :class:`SourceHasher`: absolute path -> (size, mtime_ns, ctime_ns, inode, blake3).

    Held in memory as it is in the file, so loading it builds nothing more.
    """

    format: int
    files: dict[str, tuple[int, int, int, int, bytes]]


class SourceHasher:
    """Content digests of files, re-reading a file only when its stat says it changed, as git and doit do.

    A file is read again when its size, mtime, ctime or inode differ from when it was last read
    (ctime too, as git does: a tool that restores an mtime after writing still moves the ctime).
    The trade-off: a file rewritten with the same size that keeps all four (possible only within
    one tick of the file system's clock) keeps its old digest; a file read less than two seconds
    after it was last modified or its inode changed (its ctime: a tool that sets an old mtime,
    as ``cp -p`` and ``rsync -t`` do, still moves it) is read again each time, so that case
    cannot arise across runs.

    With ``state_file``, what is known is loaded from it (a missing or unreadable file, or one
    from another version, counts as empty) and :meth:`save` writes it back. Paths in it are
    absolute: it only saves reads on this machine, and a copy moved elsewhere simply misses.
    :meth:`digest` may be called from several threads at once.
    """

    def __init__(self, state_file: Path | None = None) -> None:
        self.state_file = state_file
        self._known: dict[str, tuple[int, int, int, int, bytes]] = {}
        self._asked: set[str] = set()
        self._changed = False
        if state_file is not None:
            self._known = _load_stat_state(state_file)

    def digest(self, path: str | os.PathLike[str], *, quick: bool = False) -> bytes:
        """The blake3 (32 bytes) of the content of the file at ``path``, streamed in chunks.

        Raises :class:`OSError` when it cannot be read or is not a regular file (the caller
        names the file), and with ``quick`` :class:`MustRead` instead of reading over
        :data:`QUICK_READ` bytes.
        """
        # Strings, not Paths: this is the warm path, a lookup and one stat per file.
        name = os.fspath(path)
        if not name.startswith("/"):  # a POSIX absolute path is taken as it is: it is only a lookup key
            name = os.path.abspath(name)  # noqa: PTH100 - links kept: resolve() would cost a syscall per part
        self._asked.add(name)
        known = self._known.get(name)
        if known is not None:
            now = os.stat(name)  # noqa: PTH116
            if (now.st_size, now.st_mtime_ns, now.st_ctime_ns, now.st_ino) == known[:4]:
                return known[4]
        digest, seen = _read_digest(name, quick=quick)
        if time.time_ns() - max(seen.st_mtime_ns, seen.st_ctime_ns) > RACY_NS:
            self._known[name] = (seen.st_size, seen.st_mtime_ns, seen.st_ctime_ns, seen.st_ino, digest)
            self._changed = True
        elif self._known.pop(name, None) is not None:
            self._changed = True
        return digest

    def save(self) -> None:
        """Write what is known to the state file, atomically (a concurrent save may win; none is torn)."""
        if self.state_file is None or not self._changed:
            return
        self._changed = False  # before the copy: a digest recorded meanwhile marks it changed again
        known = dict(self._known)
        if len(known) > _MAX_STAT_RECORDS:
            known = {name: record for name, record in known.items() if name in self._asked}
        state = _StatState(format=_STATE_FORMAT, files=known)
        try:
            _write_atomic(self.state_file, msgspec.json.encode(state))
        except BaseException:
            self._changed = True
            raise


def _load_stat_state(state_file: Path) -> dict[str, tuple[int, int, int, int, bytes]]:
    try:
        state = msgspec.json.decode(state_file.read_bytes(), type=_StatState)
    except (OSError, msgspec.DecodeError, ValueError):  # a missing or corrupt state: start afresh
        return {}
    return state.files if state.format == _STATE_FORMAT else {}


def _write_atomic(target: Path, data: bytes) -> None:
    """Replace ``target`` with ``data`` through a temporary file beside it: readers see old or new, never part."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    temp = Path(name)
    try:
        with open(fd, "wb") as file:
            file.write(data)
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


# --- keys ----------------------------------------------------------------------------------------


def cache_key(description: Mapping[str, Any], sources: Sequence[tuple[str, bytes]], upstream: Sequence[str]) -> str:
    """The key of a node: hex blake3 of a canonical encoding of what defines it.

    ``description`` (JSON values only: its keys are sorted, so their order does not count),
    ``sources`` (each file's relative path and digest; a set: their order does not count) and
    ``upstream`` (the keys of the nodes it depends on, in order) are encoded as one JSON
    document, which frames every string unambiguously. Raises :class:`TypeError` for a value
    JSON cannot hold and :class:`ValueError` for NaN or infinity.
    """
    document = [
        _KEY_FORMAT,
        description,
        sorted([path, digest.hex()] for path, digest in sources),
        list(upstream),
    ]
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return blake3(text.encode("utf-8", "surrogatepass")).hexdigest()


# --- entries -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """A finished node's results as the cache keeps them, under ``path``."""

    key: str
    node: str
    path: Path  # the entry's directory
    stdout: Path
    stderr: Path
    result: Path | None
    outputs: dict[str, str]  # the node's outputs (key=value)
    files: tuple[str, ...]  # relative paths of the node's declared files, kept under path / "files"
    duration: float  # seconds the node took when it filled the entry
    created: datetime  # aware, UTC
    size: int  # bytes of the entry: its files and manifest
    blobs: Mapping[str, Blob]  # each of its files as its manifest describes it, by its path inside path


class Blob(msgspec.Struct, array_like=True, frozen=True):
    """One file of an entry as its manifest describes it: its size, blake3 (hex) and permission bits."""

    size: int
    digest: str
    mode: int


class _Manifest(msgspec.Struct, frozen=True, kw_only=True):
    format: int
    key: str
    node: str
    created: Annotated[datetime, msgspec.Meta(tz=True)]
    duration: float
    outputs: dict[str, str]
    result: bool
    files: list[str]
    blobs: dict[str, Blob]  # path inside the entry -> what it holds


class _Missing(Exception):
    """No entry (not an error: a miss)."""


class _BadEntry(Exception):
    """An entry that cannot be trusted; the message says why."""


def _copy(source: str | Path, target: Path) -> Blob:
    """Copy ``source`` (a regular file) to a new file ``target`` in chunks; what was copied."""
    src, found = _open_regular(source)
    hasher = blake3()
    size = 0
    with src, open(target, "xb") as dst:
        while chunk := src.read(_CHUNK):
            hasher.update(chunk)
            dst.write(chunk)
            size += len(chunk)
    return Blob(size, hasher.hexdigest(), stat.S_IMODE(found.st_mode))


def _holds(path: Path, blob: Blob, digest: Digest, *, quick: bool) -> bool:
    """Whether ``path``, a regular file of ``blob``'s size, holds what ``blob`` describes (``False`` if unreadable)."""
    if not blob.size:
        return blob.digest == _EMPTY_DIGEST  # every empty file holds it: nothing to read
    try:
        return digest(path, quick=quick).hex() == blob.digest
    except OSError as exc:
        if exc.errno in _EXHAUSTED:
            raise
        return False


def _matching(path: Path, blob: Blob, digest: Digest, *, quick: bool) -> os.stat_result | None:
    """The lstat of ``path`` if it is a regular file (not a link) holding exactly what ``blob`` describes."""
    try:
        found = os.lstat(path)
    except OSError:
        return None
    if stat.S_ISREG(found.st_mode) and found.st_size == blob.size and _holds(path, blob, digest, quick=quick):
        return found
    return None


def _digest_file(path: str | os.PathLike[str], *, quick: bool = False) -> bytes:
    return _read_digest(os.fspath(path), quick=quick)[0]


def _read_manifest(path: Path) -> bytes:
    """The bytes of an entry's manifest: a regular file (a FIFO is not waited on) of at most :data:`_MAX_MANIFEST`."""
    file, found = _open_regular(path)
    with file:
        if found.st_size > _MAX_MANIFEST:
            raise OSError(errno.EFBIG, f"{found.st_size} bytes, far more than a manifest holds", str(path))
        # As large as its stat says: a file that grows meanwhile is cut short, and so corrupt.
        return file.read(found.st_size)


def _restore_file(source: Path, target: Path, blob: Blob) -> None:
    """Copy ``source`` over ``target`` through a temporary file beside it (a link at ``target`` is replaced)."""
    temp = target.with_name(f".{target.name}.{os.urandom(6).hex()}.wtflow-restore")
    try:
        copied = _copy(source, temp)
        if (copied.size, copied.digest) == (blob.size, blob.digest):
            temp.chmod(blob.mode & 0o777)
            os.replace(temp, target)
            return
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    temp.unlink(missing_ok=True)
    raise OSError(errno.EIO, "the cached file no longer matches its manifest", str(source))


def _tree_size(path: Path) -> int:
    total = 0
    for directory, _dirs, names in os.walk(path):
        for name in names:
            with contextlib.suppress(OSError):
                total += (Path(directory) / name).lstat().st_size
    return total


class CacheStore:
    """Entries of finished nodes, by key, in the directory ``root`` (made on the first :meth:`put`).

    Any number of runs may use one directory at once: entries appear whole, a key put twice keeps
    the first, and removal renames an entry away before deleting it. ``warnings`` collects one
    message per bad entry met (truncated, altered, missing files or manifest); bad entries are
    misses, never errors.

    ``digest`` gives the blake3 of a file's content, by which entries and restored files are
    checked: by default each file is read; a :class:`SourceHasher`'s reads only files whose stat
    changed since it last read them (so an altered entry is still found: altering moves its ctime).
    """

    def __init__(self, root: Path, digest: Digest | None = None) -> None:
        self.root = root
        self.warnings: list[str] = []
        self._digest = digest or _digest_file

    # -- reading

    def get(self, key: str, *, quick: bool = False) -> Entry | None:
        """The entry of ``key`` once its files match its manifest (sizes and content); ``None`` on a miss.

        A hit marks the entry as used now (to within :data:`USED_RESOLUTION`), for :meth:`prune`.
        Raises :class:`ValueError` for a key that is not lowercase hex, and with ``quick``
        :class:`MustRead` where a file over :data:`QUICK_READ` bytes would have to be read.
        """
        directory = self._entry_dir(key)
        try:
            entry = self._load(directory, key, check_content=True, quick=quick)
        except _Missing:
            return None
        except _BadEntry as exc:
            self._warn(key, exc)
            return None
        with contextlib.suppress(OSError):  # a read-only cache still serves hits
            if time.time() - directory.stat().st_mtime > USED_RESOLUTION:
                os.utime(directory)  # a write per hit otherwise, for a date prune counts in days
        return entry

    def entries(self) -> list[Entry]:
        """Every entry, by key; bad ones are skipped with a warning. Checks sizes only, not content."""
        found: list[Entry] = []
        for directory, key in self._scan():
            try:
                found.append(self._load(directory, key, check_content=False))
            except _Missing:
                continue
            except _BadEntry as exc:
                self._warn(key, exc)
        return found

    def _entry_dir(self, key: str) -> Path:
        if not _KEY.fullmatch(key):
            raise ValueError(f"{key!r} is not a cache key (8 to 128 lowercase hex digits)")
        return self.root / "entries" / key[:2] / key

    def _warn(self, key: str, exc: Exception) -> None:
        self.warnings.append(f"cache entry {key[:12]} is unusable, treated as a miss: {exc}")

    def _scan(self) -> Iterator[tuple[Path, str]]:
        """The directories of ``entries/`` that can hold an entry, with their keys, by key."""
        for prefix in _listdir(self.root / "entries"):
            for key in _listdir(self.root / "entries" / prefix):
                if _KEY.fullmatch(key) and key[:2] == prefix:
                    yield self.root / "entries" / prefix / key, key

    def _manifest(self, directory: Path, key: str) -> tuple[_Manifest, int]:
        """The manifest of the entry in ``directory``, checked against ``key``, and its size in bytes."""
        try:
            raw = _read_manifest(directory / MANIFEST)
        except FileNotFoundError:
            if not directory.is_dir():
                raise _Missing from None
            raise _BadEntry("its manifest is missing (an incomplete copy?)") from None
        except OSError as exc:
            if exc.errno in _EXHAUSTED:
                raise
            raise _BadEntry(f"its manifest cannot be read: {exc.strerror or exc}") from None
        try:
            manifest = msgspec.json.decode(raw, type=_Manifest)
        except msgspec.DecodeError as exc:
            raise _BadEntry(f"its manifest is corrupt ({exc})") from None
        if manifest.format != _MANIFEST_FORMAT:
            raise _BadEntry(f"its manifest has format {manifest.format}, not {_MANIFEST_FORMAT} (another wtflow?)")
        if manifest.key != key:
            raise _BadEntry(f"its manifest is that of key {manifest.key[:12]!r}")
        if any("\0" in rel for rel in manifest.files):
            raise _BadEntry("its manifest lists a file name holding a NUL character")
        try:
            normal = [_normal_file(rel, "file") for rel in manifest.files]
        except ValueError as exc:
            raise _BadEntry(f"its manifest lists a file outside the working directory: {exc}") from None
        expected = {STDOUT, STDERR, *((RESULT,) if manifest.result else ()), *(f"files/{rel}" for rel in normal)}
        if normal != manifest.files or len(normal) != len(set(normal)) or set(manifest.blobs) != expected:
            raise _BadEntry("its manifest's list of files is inconsistent")
        return manifest, len(raw)

    def _load(self, directory: Path, key: str, *, check_content: bool, quick: bool = False) -> Entry:
        """The entry in ``directory``, its files checked against its manifest: sizes, and content if asked."""
        manifest, size = self._manifest(directory, key)
        if quick and len(manifest.blobs) > QUICK_FILES:
            raise MustRead(str(directory))
        for name, blob in manifest.blobs.items():
            path = directory / name
            try:
                found = os.lstat(path)
            except OSError:
                raise _BadEntry(f"{name} is missing") from None
            if not stat.S_ISREG(found.st_mode):
                raise _BadEntry(f"{name} is not a regular file")
            if found.st_size != blob.size:
                raise _BadEntry(f"{name} holds {found.st_size} bytes, not {blob.size} (truncated or altered)")
            if check_content and not _holds(path, blob, self._digest, quick=quick):
                raise _BadEntry(f"the content of {name} differs from what was stored (corrupt or altered)")
            size += blob.size
        return Entry(
            key=key,
            node=manifest.node,
            path=directory,
            stdout=directory / STDOUT,
            stderr=directory / STDERR,
            result=directory / RESULT if manifest.result else None,
            outputs=dict(manifest.outputs),
            files=tuple(manifest.files),
            duration=manifest.duration,
            created=manifest.created.astimezone(UTC),
            size=size,
            blobs=manifest.blobs,
        )

    # -- writing

    def put(
        self,
        key: str,
        *,
        node: str,
        stdout: Path,
        stderr: Path,
        result: Path | None,
        outputs: Mapping[str, str],
        cwd: Path,
        files: Sequence[str],
        duration: float,
        replace: bool = False,
    ) -> Entry:
        """Keep what ``node`` left under ``key``; the entry kept (another run's, if it put ``key`` first).

        ``replace`` puts this entry in place of a good one already there (a run forced to run the node).

        ``stdout``, ``stderr`` and ``result`` are files (the artifact store's); ``files`` are the
        node's declared files, relative to ``cwd``. Everything is copied in chunks into a
        directory in ``tmp/``, the manifest last, and the directory is renamed into place. A bad
        entry already in place is replaced. Raises :class:`ValueError` for a bad key or a file
        path that is absolute, has ``..`` or leads out of ``cwd`` through a link, and
        :class:`OSError` when a file cannot be read or the cache written; nothing is left behind.
        """
        final = self._entry_dir(key)
        rels = sorted({_normal_file(rel, "declared file") for rel in files})
        base = cwd.resolve()
        for rel in rels:
            if not (base / rel).resolve().is_relative_to(base):
                raise ValueError(f"declared file {rel!r} leads out of the working directory {cwd} (a symbolic link)")
        existing = self._valid(final, key)
        if existing is not None and not replace:
            return existing
        temp = self._prepare() / f"put-{os.getpid()}-{os.urandom(6).hex()}"
        temp.mkdir()
        try:
            blobs = {STDOUT: _copy(stdout, temp / STDOUT), STDERR: _copy(stderr, temp / STDERR)}
            for stream in (STDOUT, STDERR):  # a hit's run may link them as its own logs: never written
                (temp / stream).chmod(0o444)
            if result is not None:
                blobs[RESULT] = _copy(result, temp / RESULT)
            for rel in rels:
                target = temp / "files" / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                blobs[f"files/{rel}"] = _copy(base / rel, target)
            manifest = _Manifest(
                format=_MANIFEST_FORMAT,
                key=key,
                node=node,
                created=datetime.now(UTC),
                duration=duration,
                outputs=dict(outputs),
                result=result is not None,
                files=rels,
                blobs=blobs,
            )
            (temp / MANIFEST).write_bytes(msgspec.json.encode(manifest))
            if replace and existing is not None:
                self._discard(final)  # the forced run's result is the newer one
            return self._publish(temp, final, key)
        finally:
            shutil.rmtree(temp, ignore_errors=True)  # gone already once published

    def _valid(self, directory: Path, key: str) -> Entry | None:
        try:
            return self._load(directory, key, check_content=True)
        except (_Missing, _BadEntry):
            return None

    def _publish(self, temp: Path, final: Path, key: str) -> Entry:
        """Rename the complete entry ``temp`` to ``final``, unless a good entry got there first."""
        for _ in range(3):
            final.parent.mkdir(parents=True, exist_ok=True)
            try:
                temp.rename(final)
            except OSError as exc:
                if exc.errno not in {errno.ENOTEMPTY, errno.EEXIST}:
                    raise
            else:
                try:
                    return self._load(final, key, check_content=False)
                except (_Missing, _BadEntry) as exc:  # removed or replaced at once by another run's prune
                    raise OSError(
                        errno.ENOENT, f"cache entry {key[:12]} was removed as it was stored", str(final)
                    ) from exc
            theirs = self._valid(final, key)
            if theirs is not None:
                return theirs  # another run put the same key meanwhile: theirs is as good as ours
            self._discard(final)  # a bad entry in the way
        raise OSError(errno.EEXIST, f"cache entry {key[:12]} kept being replaced while it was stored", str(final))

    def _prepare(self) -> Path:
        """Make the cache directory if needed; its ``tmp/`` directory."""
        temp = self.root / "tmp"
        temp.mkdir(parents=True, exist_ok=True)
        (self.root / "entries").mkdir(exist_ok=True)
        for name, text in (("CACHEDIR.TAG", _CACHEDIR_TAG), (".gitignore", "# wtflow's cache\n*\n")):
            with contextlib.suppress(FileExistsError), open(self.root / name, "x") as file:
                file.write(text)
        return temp

    def _discard(self, directory: Path) -> bool:
        """Remove an entry: renamed into ``tmp/`` (gone at once for readers), then deleted. Whether it was there."""
        trash = self._prepare() / f"trash-{os.getpid()}-{os.urandom(6).hex()}"
        try:
            directory.rename(trash)
        except FileNotFoundError:
            return False  # another run removed it first
        shutil.rmtree(trash, ignore_errors=True)
        return True

    # -- restoring

    def restore(self, entry: Entry, cwd: Path, *, quick: bool = False) -> list[str]:
        """Copy the entry's declared files back into ``cwd``; the relative paths written, in order.

        A file is written only when it is missing or its content differs (one whose permission
        bits alone differ is only chmod-ed), through a temporary file renamed over it, so a link
        in its place is replaced, not followed. What each file holds is the entry's manifest as
        :meth:`get` read it. Raises :class:`OSError` when a file cannot be written, would land
        outside ``cwd`` (a directory on its way is a link leading out), no longer matches the
        manifest, or is gone with its entry (``ENOENT``: another run removed it); with ``quick``,
        :class:`MustRead` before a file would be written or one over :data:`QUICK_READ` bytes read.
        """
        base: Path | None = None
        restored: list[str] = []
        for rel in entry.files:
            blob = entry.blobs[f"files/{rel}"]
            target = cwd / rel
            matches = _matching(target, blob, self._digest, quick=quick)
            if matches is not None and stat.S_IMODE(matches.st_mode) == blob.mode & 0o777:
                continue  # nothing to write: where it lies does not matter
            base = base or cwd.resolve()
            # resolve() follows every link on the way, existing or not yet: where the file would really land.
            if not target.parent.resolve().is_relative_to(base):
                raise OSError(errno.EXDEV, f"{rel} would be written outside the working directory {cwd}", str(target))
            if quick:
                raise MustRead(str(target))
            if matches is not None:
                target.chmod(blob.mode & 0o777)
                restored.append(rel)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                _restore_file(entry.path / "files" / rel, target, blob)
            except FileNotFoundError:
                if entry.path.is_dir():
                    raise
                raise OSError(
                    errno.ENOENT, f"cache entry {entry.key[:12]} cannot be restored: it was removed", str(entry.path)
                ) from None
            restored.append(rel)
        return restored

    # -- pruning

    def prune(self, *, max_size: int | None = None, older_than: float | None = None) -> tuple[int, int]:
        """Remove entries; ``(entries removed, bytes freed)``.

        First bad entries (with a warning) and those not used for more than ``older_than``
        seconds (and :data:`USED_RESOLUTION` more, unless 0: a use is never missed), then the least
        recently used until the entries take at most ``max_size``
        bytes; also leftovers in ``tmp/`` (and the state file's temporary files) older than
        :data:`STALE_TEMP`, whose bytes count as freed but which are no entries.
        """
        now = time.time()
        removed = freed = 0
        kept: list[tuple[float, int, Path]] = []  # last use, size, directory
        for directory, key in self._scan():
            try:
                entry = self._load(directory, key, check_content=False)
                last_used = directory.stat().st_mtime
            except (_Missing, FileNotFoundError):  # none, or removed by another run meanwhile
                continue
            except _BadEntry as exc:
                self._warn(key, exc)
                size = _tree_size(directory)
                if self._discard(directory):
                    removed, freed = removed + 1, freed + size
                continue
            if older_than is not None and now - last_used > older_than + (USED_RESOLUTION if older_than else 0):
                if self._discard(directory):
                    removed, freed = removed + 1, freed + entry.size
            else:
                kept.append((last_used, entry.size, directory))
        if max_size is not None:
            total = sum(size for _used, size, _directory in kept)
            for _used, size, directory in sorted(kept):
                if total <= max_size:
                    break
                if self._discard(directory):
                    removed, freed = removed + 1, freed + size
                total -= size
        return removed, freed + self._remove_leftovers(now)

    def _remove_leftovers(self, now: float) -> int:
        freed = 0
        leftovers = [self.root / "tmp" / name for name in _listdir(self.root / "tmp")]
        # The state file's temporary files (see _write_atomic), if it is kept here.
        leftovers += [self.root / name for name in _listdir(self.root) if name[:1] == "." and name.endswith(".tmp")]
        for path in leftovers:
            try:
                found = os.lstat(path)
            except FileNotFoundError:
                continue
            if now - found.st_mtime <= STALE_TEMP:
                continue  # perhaps a put still at work
            if stat.S_ISDIR(found.st_mode):
                size = _tree_size(path)
                shutil.rmtree(path, ignore_errors=True)
            else:
                size = found.st_size
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            freed += size
        return freed


def _listdir(path: Path) -> list[str]:
    """The names in directory ``path``, sorted; none if it is missing (or not a directory)."""
    try:
        return sorted(child.name for child in path.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
