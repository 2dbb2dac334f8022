"""Copying a node's declared files into the store: safely, within limits, stoppable.

Globs are matched by walking the node's working directory without following symbolic links
into directories (so link loops end and nothing outside is reached); links that lead out of
the working directory, devices, FIFOs and sockets are skipped with a warning. The walk stops at
:data:`MAX_FILES`, :data:`MAX_BYTES` or :data:`MAX_SECONDS` per node, or when told to stop.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import os
import shutil
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from wtflow.model import FileArtifact

# What one node's declared files may take (all its artifacts together): past a limit, collection
# stops, what was copied is kept and a warning says so. Collection runs after the node's process
# has ended, outside its timeout, and a glob such as ``**`` can reach a huge tree.
MAX_FILES = 10_000
MAX_BYTES = 1 << 30
MAX_SECONDS = 60.0
_COPY_CHUNK = 1 << 20  # the stop flag and the limits are checked between chunks


class Stopped(Exception):
    """The collection stops: a limit was reached (``reason`` says which) or the run is stopping."""

    def __init__(self, reason: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason


def _magic(part: str) -> bool:
    return any(char in part for char in "*?[")


class Collection:
    """One node's declared files copied from its working directory ``base``, within the limits.

    Symbolic links are never followed into directories: a wildcard does not enter them and a
    copied tree keeps them as links, made relative, when their target stays inside ``base``;
    other links, and devices, FIFOs and sockets, are skipped with a warning. A matched link to a
    regular file inside ``base`` is copied as that file (a directory named in the pattern
    without wildcards is followed, if it stays inside ``base``).
    """

    def __init__(self, base: Path, stop: threading.Event) -> None:
        self.base = base
        self.stop = stop
        self.deadline = time.monotonic() + MAX_SECONDS
        self.files = 0
        self.bytes = 0
        self.warnings: list[str] = []
        self._last_listing: tuple[str | None, list[tuple[str, bool]]] = (None, [])

    def check(self) -> None:
        """Stop if the run is stopping or collection has taken too long."""
        if self.stop.is_set():
            raise Stopped
        if time.monotonic() > self.deadline:
            raise Stopped(f"artifact collection stopped after {MAX_SECONDS:g} s (the limit): later files are not kept")

    def inside(self, path: Path) -> bool:
        """Whether ``path`` (absolute, normalized) is ``base`` or below it."""
        return path.is_relative_to(self.base)

    def declared(self, declared: FileArtifact, target: Path) -> None:
        """Copy what ``declared.path`` matches into ``target``."""
        parts = [part for part in declared.path.split("/") if part not in {"", "."}]
        copied: set[str] = set()  # directories copied whole: what is below them is already kept
        for match in self._matches("", parts):
            if not copied.isdisjoint(_ancestors(match)):
                continue
            if self._entry(declared.name, match, target / match, matched=True):
                copied.add(match)

    def _matches(self, rel: str, parts: list[str]) -> Iterator[str]:
        """The paths (relative to ``base``) below ``rel`` that ``parts`` match, as ``glob`` finds them."""
        self.check()
        if not parts:
            yield rel
        elif parts[0] == "**":
            yield from self._recursive(rel, parts[1:])
        elif _magic(parts[0]):
            part, rest = parts[0], parts[1:]
            for name, is_dir in self._listing(rel):
                if fnmatch.fnmatchcase(name, part) and (part.startswith(".") or not name.startswith(".")):
                    if not rest:
                        yield _join(rel, name)
                    elif is_dir:
                        yield from self._matches(_join(rel, name), rest)
        else:
            path = _join(rel, parts[0])
            full = self.base / path
            if len(parts) == 1:
                if full.is_symlink() or full.exists():
                    yield path
            # A named directory may be a link (``build -> build-x86``): followed, if it stays inside.
            elif full.is_dir() and self.inside(full.resolve()):
                yield from self._matches(path, parts[1:])

    def _recursive(self, rel: str, rest: list[str]) -> Iterator[str]:
        """What ``**/rest`` matches below ``rel``: ``**`` is ``rel`` and every directory below, not hidden."""
        if not rest:  # everything below: the directory itself, or the working directory's entries
            if rel:
                yield rel
            else:
                yield from (name for name, _ in self._listing(rel) if not name.startswith("."))
            return
        stack = [rel]
        while stack:
            directory = stack.pop()
            yield from self._matches(directory, rest)
            below = [name for name, is_dir in self._listing(directory) if is_dir and not name.startswith(".")]
            stack.extend(_join(directory, name) for name in reversed(below))

    def _listing(self, rel: str) -> list[tuple[str, bool]]:
        """The entries of directory ``rel``, sorted, each with whether it is a directory (not a link to one)."""
        self.check()
        if self._last_listing[0] == rel:  # ``**`` matches in a directory, then walks below it
            return self._last_listing[1]
        try:
            with os.scandir(self.base / rel) as entries:
                found = sorted((entry.name, entry.is_dir(follow_symlinks=False)) for entry in entries)
        except (NotADirectoryError, FileNotFoundError, PermissionError):
            found = []
        self._last_listing = (rel, found)
        return found

    def _entry(self, artifact: str, rel: str, destination: Path, *, matched: bool = False) -> bool:
        """Copy one entry (a directory with what it holds); whether a directory was copied."""
        self.check()
        source = self.base / rel
        mode = source.lstat().st_mode
        shown = rel or "."
        if stat.S_ISLNK(mode):
            real = source.resolve()
            if not self.inside(real):
                self._skip(artifact, shown, f"a symbolic link to {real}, outside the working directory")
            elif matched and real.is_file():
                self._file(artifact, shown, real, destination)
            else:
                self._link(artifact, shown, source, destination)
            return False
        if stat.S_ISDIR(mode):
            self._tree(artifact, rel, destination)
            return True
        if stat.S_ISREG(mode):
            self._file(artifact, shown, source, destination)
        else:
            self._skip(artifact, shown, "not a regular file (a device, FIFO or socket)")
        return False

    def _tree(self, artifact: str, rel: str, destination: Path) -> None:
        destination.mkdir(parents=True, exist_ok=True)
        for name, _ in self._listing(rel):
            self._entry(artifact, _join(rel, name), destination / name)
        with contextlib.suppress(OSError):  # the times and mode are a courtesy
            shutil.copystat(self.base / rel, destination)

    def _skip(self, artifact: str, rel: str, why: str) -> None:
        self.warnings.append(f"artifact {artifact!r}: skipped {rel}: {why}")

    def _count_file(self) -> None:
        if self.files >= MAX_FILES:
            raise Stopped(f"artifact collection stopped at {MAX_FILES:,} files (the limit): later files are not kept")
        self.files += 1

    def _link(self, artifact: str, shown: str, source: Path, destination: Path) -> None:
        """Make ``destination`` a relative link to where ``source`` points (which resolves inside ``base``)."""
        target = Path(os.path.normpath(source.parent / source.readlink()))
        if not self.inside(target):  # out and back in through other links: the copy would point out
            self._skip(artifact, shown, f"a symbolic link to {target}, outside the working directory")
            return
        self._count_file()
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.unlink(missing_ok=True)
        destination.symlink_to(os.path.relpath(target, source.parent))

    def _file(self, artifact: str, shown: str, source: Path, destination: Path) -> None:
        """Copy a regular file in chunks, within the byte limit; never through a link, never from a FIFO."""
        self._count_file()
        try:
            fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            self._skip(artifact, shown, "it became a symbolic link while it was collected")
            return
        with open(fd, "rb") as reader:
            if not stat.S_ISREG(os.fstat(fd).st_mode):  # replaced since it was looked at
                self._skip(artifact, shown, "not a regular file (a device, FIFO or socket)")
                return
            destination.parent.mkdir(parents=True, exist_ok=True)
            if destination.is_symlink():
                destination.unlink()
            with open(destination, "wb") as writer:
                while chunk := reader.read(_COPY_CHUNK):
                    self.check()
                    if self.bytes + len(chunk) > MAX_BYTES:
                        writer.write(chunk[: MAX_BYTES - self.bytes])
                        self.bytes = MAX_BYTES
                        raise Stopped(
                            f"artifact collection stopped at {_amount(MAX_BYTES)} (the limit): "
                            f"{shown} is cut short and later files are not kept"
                        )
                    writer.write(chunk)
                    self.bytes += len(chunk)
        with contextlib.suppress(OSError):
            shutil.copystat(source, destination)


def _amount(size: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if size and size % (1 << shift) == 0:
            return f"{size >> shift:,} {unit}"
    return f"{size:,} bytes"


def _ancestors(rel: str) -> Iterator[str]:
    """``rel`` and the directories above it: ``a/b/c``, ``a/b``, ``a``."""
    while rel:
        yield rel
        rel = rel.rpartition("/")[0]


def _join(rel: str, name: str) -> str:
    return f"{rel}/{name}" if rel else name
