"""Starting a node's process as the leader of a new process group, with its stdout and stderr piped.

On Linux the process is started with ``posix_spawn`` (or with ``subprocess.Popen`` when it runs
in another directory) and watched through a pidfd, its pipes read by the loop itself
(:class:`SpawnedChild`); on other systems, and for a process fed input, asyncio's subprocess
machinery starts it (:class:`SubprocessChild`). Either way :func:`start` gives back a
:class:`~wtflow.executors.child.Child`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from wtflow.executors.child import Child
from wtflow.executors.pipes import CHUNK, PipeReader

# Why a program could not be run (missing, not executable, not a binary), as opposed to a lack of
# resources.
NOT_RUNNABLE = frozenset({errno.ENOENT, errno.EACCES, errno.EPERM, errno.ENOEXEC, errno.ENOTDIR, errno.ELOOP})


@functools.cache
def _devnull() -> int:
    """One read-only descriptor of /dev/null for every child's stdin, opened once.

    ``subprocess.DEVNULL`` opens and closes /dev/null for each process started.
    """
    return os.open(os.devnull, os.O_RDONLY)


class _Protocol(asyncio.subprocess.SubprocessStreamProtocol):
    """Stream protocol that also reports the moment the process exits.

    ``Process.wait()`` only returns once the output pipes are closed too, and a background
    process the command left behind may hold them open; the engine needs to know when the
    main process itself has exited.
    """

    def __init__(self, limit: int, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=limit, loop=loop)
        self.exited: asyncio.Future[None] = loop.create_future()

    def process_exited(self) -> None:
        super().process_exited()
        if not self.exited.done():
            self.exited.set_result(None)


class SubprocessChild(Child):
    """A child started with asyncio's subprocess machinery."""

    def __init__(self, process: asyncio.subprocess.Process, protocol: _Protocol) -> None:
        self.process = process
        self.pid = process.pid
        assert process.stdout is not None
        assert process.stderr is not None
        self.stdout = process.stdout
        self.stderr = process.stderr
        self._protocol = protocol

    @property
    def returncode(self) -> int | None:
        """The exit status (negative for a signal), once the process has exited."""
        return self.process.returncode

    async def exited(self) -> None:
        """Wait until the process itself has exited (its pipes may still be open)."""
        await asyncio.shield(self._protocol.exited)

    def close(self) -> None:
        """Close the transport and its pipes."""
        self.process._transport.close()  # type: ignore[attr-defined]


class SpawnedChild(Child):
    """A child started with ``posix_spawn``, its exit learnt from a pidfd (Linux).

    Its pipes and pidfd join the loop's selector on the loop's next turn: nodes that become
    ready together all start their processes first, and the registrations follow while those
    run. The selector reports what happened in between.
    """

    def __init__(
        self,
        pid: int,
        stdout_fd: int,
        stderr_fd: int,
        loop: asyncio.AbstractEventLoop,
        popen: subprocess.Popen[bytes] | None = None,
    ) -> None:
        self.pid = pid
        self._popen = popen  # told the status once collected, so it never waits for the child itself
        self.stdout, self.stderr = self._streams = (PipeReader(stdout_fd, loop), PipeReader(stderr_fd, loop))
        self._loop = loop
        self._returncode: int | None = None
        self._waiters: list[asyncio.Future[None]] = []  # one per exited() call: a cancelled call cancels only its own
        self._pidfd: int | None = os.pidfd_open(pid)
        loop.call_soon(self._watch)

    def _watch(self) -> None:
        if self._pidfd is not None:  # not released meanwhile
            self._loop.add_reader(self._pidfd, self._reap)

    def _reap(self) -> None:
        # A readable pidfd means the process has ended: collecting its status does not block.
        self._release_pidfd()
        try:
            _, status = os.waitpid(self.pid, 0)
            self._returncode = os.waitstatus_to_exitcode(status)
        except ChildProcessError:  # collected by someone else: its status is lost
            self._returncode = 255
        if self._popen is not None:
            self._popen.returncode = self._returncode
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    def _release_pidfd(self) -> None:
        if self._pidfd is not None:
            self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None

    @property
    def returncode(self) -> int | None:
        """The exit status (negative for a signal), once the process has exited."""
        return self._returncode

    async def exited(self) -> None:
        """Wait until the process itself has exited (its pipes may still be open)."""
        # A future of its own rather than shield() around a shared one: shield wakes its caller
        # a turn later, which every node of a chain would wait for.
        if self._returncode is None:
            waiter = self._loop.create_future()
            self._waiters.append(waiter)
            await waiter

    def close(self) -> None:
        """Close the pipes (and the pidfd, if the process has not been collected)."""
        for stream in self._streams:
            stream.close()
        self._release_pidfd()


# posix_spawn and a pidfd start and watch a process with less Python work than subprocess.Popen
# and asyncio's transports. Linux only, and only where the two mean the same: no other working
# directory to change to (posix_spawn cannot here), no input to feed, and a program found on
# PATH (else Popen starts it, or reports why it cannot).
_CAN_SPAWN = sys.platform == "linux" and hasattr(os, "pidfd_open") and hasattr(os, "posix_spawn")
# What Popen(restore_signals=True) puts back to the default in the child: Python ignores SIGPIPE.
_DEFAULT_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ)


def _is_current_dir(cwd: Path | None) -> bool:
    """Whether a child started here runs in ``cwd`` without changing directory.

    A workflow file's nodes run in its directory, usually the one wtflow was started in.
    """
    if cwd is None:
        return True
    try:
        here = os.getcwd()  # noqa: PTH109 - compared as a string first: each node's start asks
    except OSError:  # this process's directory is gone
        return False
    return os.fspath(cwd) == here or cwd == Path(here)


@functools.cache
def _inherited_fds() -> tuple[int, ...]:
    """Inheritable descriptors above 2 this process had when its first node started.

    Python makes every descriptor it opens non-inheritable (PEP 446), so these are what the
    process itself inherited (a CI shell's open pipes, say). ``Popen(close_fds=True)`` keeps
    them from the children; posix_spawn has no such switch, so each is closed explicitly.
    """
    try:
        names = [entry.name for entry in Path("/proc/self/fd").iterdir()]
    except OSError:
        return ()
    found = []
    for fd in sorted(int(name) for name in names if name.isdigit() and int(name) > 2):
        with contextlib.suppress(OSError):  # the directory's own descriptor, closed by now
            if os.get_inheritable(fd):
                found.append(fd)
    return tuple(found)


def _closing_inherited() -> list[tuple[int, int]]:
    actions = []
    for fd in _inherited_fds():
        with contextlib.suppress(OSError):  # closed since: nothing to close
            if os.get_inheritable(fd):  # not reused by a descriptor of ours
                actions.append((os.POSIX_SPAWN_CLOSE, fd))
    return actions


# Where programs were found on a PATH, kept as a shell's command hash keeps them: many nodes
# run the same few programs, and each lookup searches the PATH's directories. A program that
# has gone is looked up afresh.
_found: dict[tuple[str, str], str] = {}


def _find(program: str, path: str) -> str | None:
    key = (program, path)
    found = _found.get(key)
    if found is None:
        found = shutil.which(program, path=path)
        if found is not None and found.startswith("/"):  # from a relative PATH entry: not kept
            _found[key] = found
    return found


def _spawn(argv: Sequence[str], env: Mapping[str, str]) -> SpawnedChild | None:
    """Start ``argv`` with posix_spawn, or ``None`` when Popen must (see ``_CAN_SPAWN``)."""
    global _CAN_SPAWN  # noqa: PLW0603 - switched off for good if this system lacks a feature
    program = argv[0]
    key = (program, env.get("PATH", os.defpath))
    known = key in _found
    if "/" not in program:
        found = _find(*key)
        if found is None:
            return None
        program = found

    def spawn(out: int, err: int) -> tuple[int, None]:
        pid = os.posix_spawn(
            program,
            list(argv),
            env,
            file_actions=[
                (os.POSIX_SPAWN_DUP2, _devnull(), 0),
                (os.POSIX_SPAWN_DUP2, out, 1),
                (os.POSIX_SPAWN_DUP2, err, 2),
                *_closing_inherited(),
            ],
            setsid=True,
            setsigdef=_DEFAULT_SIGNALS,
        )
        return pid, None

    try:
        started = _piped(spawn)
    except NotImplementedError:  # a C library without POSIX_SPAWN_SETSID
        _CAN_SPAWN = False
        return None
    except OSError as exc:
        if known and exc.errno in NOT_RUNNABLE:  # removed or changed since it was found
            del _found[key]
            return _spawn(argv, env)
        raise
    return _watched(*started)


_Started = tuple[int, int, int, subprocess.Popen[bytes] | None]  # pid, stdout and stderr read ends, Popen


def _piped(start: Callable[[int, int], tuple[int, subprocess.Popen[bytes] | None]]) -> _Started:
    """Start a child with ``start``, given the write ends of two new pipes for its stdout and stderr."""
    out_read, out_write = os.pipe()
    err_read, err_write = os.pipe()
    try:
        pid, popen = start(out_write, err_write)
    except BaseException:
        os.close(out_read)
        os.close(err_read)
        raise
    finally:
        os.close(out_write)
        os.close(err_write)
    return pid, out_read, err_read, popen


def _watched(pid: int, out_read: int, err_read: int, popen: subprocess.Popen[bytes] | None = None) -> SpawnedChild:
    """The child ``pid`` just started, watched; killed if it cannot be (a process no one watches must not run)."""
    try:
        return SpawnedChild(pid, out_read, err_read, asyncio.get_running_loop(), popen)
    except BaseException:  # e.g. no descriptor left for its pidfd
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        if popen is not None:
            popen.returncode = os.waitstatus_to_exitcode(status)
        os.close(out_read)
        os.close(err_read)
        raise


def _popen(argv: Sequence[str], env: Mapping[str, str], cwd: Path | None) -> SpawnedChild:
    """Start ``argv`` in another directory with Popen (posix_spawn cannot change directory), watched by a pidfd.

    asyncio's subprocess machinery does more work per node, and on Python 3.11 takes a thread
    per child unless the caller set up a pidfd child watcher.
    """

    def popen(out: int, err: int) -> tuple[int, subprocess.Popen[bytes]]:
        process = subprocess.Popen(
            list(argv), stdin=_devnull(), stdout=out, stderr=err, env=env, cwd=cwd, start_new_session=True
        )
        return process.pid, process

    return _watched(*_piped(popen))


async def start(
    argv: Sequence[str], *, stdin: bool, env: dict[str, str], cwd: Path | None, pass_fds: Sequence[int] = ()
) -> Child:
    """Start ``argv`` as the leader of a new process group, with piped stdout and stderr.

    ``pass_fds`` are descriptors the child inherits under the same numbers (as ``Popen``'s).
    """
    if _CAN_SPAWN and not stdin and not pass_fds:
        if not _is_current_dir(cwd):
            return _popen(argv, env, cwd)
        if (child := _spawn(argv, env)) is not None:
            return child
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.subprocess_exec(
        lambda: _Protocol(CHUNK, loop),
        *argv,
        stdin=asyncio.subprocess.PIPE if stdin else _devnull(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=cwd,
        start_new_session=True,
        pass_fds=tuple(pass_fds),
    )
    return SubprocessChild(asyncio.subprocess.Process(transport, protocol, loop), protocol)
