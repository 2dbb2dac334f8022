"""Running a child process in its own process group, streaming its output, and stopping it.

Every process starts a new session, so it and all it starts share one process group. Stopping
means SIGTERM to the whole group, then SIGKILL after a grace period. When the main process
exits, whatever it left running in its group is stopped the same way, so no orphan holds the
output pipes open or outlives its node.

On Linux a node's process is started with ``posix_spawn`` (or with ``subprocess.Popen`` when it
runs in another directory) and watched through a pidfd, its pipes read by the loop itself; on
other systems, and for a node fed input, asyncio's subprocess machinery starts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import functools
import os
import resource
import shutil
import signal
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from wtflow.executors.base import Job, Outcome, OutputSink
from wtflow.model import STDERR, STDOUT

CHUNK = 1 << 18  # bytes per read: large reads keep per-byte Python work low
# A pipe holds 64 KiB. One a child fills (output as fast as it can write) is grown to 1 MiB, so
# a read takes up to CHUNK at once and the child waits less for the runner: 1 GiB of output
# took a quarter less CPU (bench/RESULTS.md). Grown pipes count against the user's pipe memory
# (fs.pipe-user-pages-soft, 64 MiB by default, past which each new pipe of the user gets two
# pages, the nodes' own pipelines included), so only MAX_GROWN_PIPES are grown at a time.
PIPE_SIZE = 1 << 16
GROWN_PIPE_SIZE = 1 << 20
MAX_GROWN_PIPES = 8
_grown_pipes = 0


def signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to process group ``pgid``; ``False`` if no process is left in it."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:  # a member changed user: nothing more we may do
        return False
    return True


# Descriptors a running node holds: two pipes' read ends, a pidfd and two artifact files.
FDS_PER_NODE = 5


def reserve_descriptors(count: int) -> None:
    """Make room in this process's descriptor table for ``count`` more descriptors, in one step.

    Linux grows the table by doubling as descriptors are opened, and in a process with threads
    each growth waits for an RCU grace period (``synchronize_rcu``). Starting W7's 500 nodes
    grew it five times: each ``pipe()`` averaged 40-60 us instead of 5-8, 40-60 ms of the start
    burst. One growth up front, to ``count`` above the lowest free descriptor (never past the
    open-files limit), costs one grace period at most, and none in a single-threaded process.
    The table never shrinks; its size costs 8 bytes a descriptor.
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    try:
        target = fd + count if soft == resource.RLIM_INFINITY else min(fd + count, soft - 1)
        if target > fd:
            # F_DUPFD takes the lowest free descriptor >= target: it never replaces an open one.
            os.close(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, target))
    except OSError:  # no room after all: the table grows as it is used, as it would have
        pass
    finally:
        os.close(fd)


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


class Readable(Protocol):
    """An output stream of a child: ``read`` returns up to ``n`` bytes, ``b""`` at the end."""

    async def read(self, n: int) -> bytes:
        """Up to ``n`` bytes, as soon as some are there; ``b""`` once the stream has ended."""
        ...


class Child:
    """A started process leading its own process group: its output streams, its exit, how to stop it."""

    pid: int
    stdout: Readable
    stderr: Readable

    @property
    def returncode(self) -> int | None:
        """The exit status (negative for a signal), once the process has exited."""
        raise NotImplementedError

    async def exited(self) -> None:
        """Wait until the process itself has exited (its pipes may still be open)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the pipes (a process that left the group may still hold their other ends)."""

    async def terminate(self, grace: float) -> None:
        """SIGTERM the process's group, then SIGKILL it if the process outlives ``grace`` seconds."""
        signal_group(self.pid, signal.SIGTERM)
        try:
            async with asyncio.timeout(grace):
                await self.exited()
        except TimeoutError:
            signal_group(self.pid, signal.SIGKILL)
            await self.exited()


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


class PipeReader:
    """The read end of a child's output pipe, drained by the loop into a bounded queue of chunks.

    The loop reads whenever the pipe has data, so the child seldom waits on a full pipe while the
    consumer stores the previous chunk. Past ``limit`` queued bytes it stops reading until the
    consumer catches up: a slow consumer makes the child wait rather than fill the memory.
    """

    def __init__(self, fd: int, loop: asyncio.AbstractEventLoop, limit: int = 2 * CHUNK) -> None:
        os.set_blocking(fd, False)
        self._fd = fd
        self._loop = loop
        self._limit = limit
        self._chunks: deque[bytes] = deque()
        self._queued = 0
        self._eof = False
        self._reading = False
        self._closed = False
        self._may_grow = hasattr(fcntl, "F_SETPIPE_SZ")  # Linux
        self._grown = False
        self._waiter: asyncio.Future[None] | None = None
        loop.call_soon(self._resume)  # see SpawnedChild: after the other processes of this turn start

    def _on_readable(self) -> None:
        try:
            data = os.read(self._fd, CHUNK)
        except BlockingIOError:
            return
        except OSError:  # EIO and the like: the stream is over
            data = b""
        if data:
            if len(data) >= PIPE_SIZE and self._may_grow:
                self._grow()
            self._chunks.append(data)
            self._queued += len(data)
            if self._queued >= self._limit:
                self._stop_reading()
        else:
            self._eof = True
            self._stop_reading()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _grow(self) -> None:
        global _grown_pipes  # noqa: PLW0603 - a budget shared by every pipe of this process
        self._may_grow = False  # tried once
        if _grown_pipes >= MAX_GROWN_PIPES:
            return
        try:
            fcntl.fcntl(self._fd, fcntl.F_SETPIPE_SZ, GROWN_PIPE_SIZE)
        except OSError:  # above fs.pipe-max-size, or the user's pipe memory is spent: keep 64 KiB
            return
        self._grown = True
        _grown_pipes += 1

    @property
    def grown(self) -> bool:
        """Whether this pipe was grown to ``GROWN_PIPE_SIZE`` (and still counts in the budget)."""
        return self._grown

    def _stop_reading(self) -> None:
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._fd)

    async def read(self, n: int) -> bytes:
        """Up to ``n`` bytes, as soon as some are there; ``b""`` once every writer has closed the pipe."""
        waited = False
        while not self._chunks:
            if self._eof or self._closed:
                return b""
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
            waited = True
        if waited and not self._eof and self._queued < n // 4:
            await asyncio.sleep(0)  # let a stream in full flow queue up more than a pipe's worth
        if len(self._chunks[0]) >= n:
            first = self._chunks.popleft()
            data, rest = first[:n], first[n:]
            if rest:
                self._chunks.appendleft(rest)
        else:  # what has queued up, joined into one chunk of at most n bytes
            parts = []
            size = 0
            while self._chunks and size + len(self._chunks[0]) <= n:
                part = self._chunks.popleft()
                parts.append(part)
                size += len(part)
            data = parts[0] if len(parts) == 1 else b"".join(parts)
        self._queued -= len(data)
        self._resume()
        return data

    def _resume(self) -> None:
        if not self._reading and not self._eof and not self._closed and self._queued < self._limit:
            self._reading = True
            self._loop.add_reader(self._fd, self._on_readable)

    def close(self) -> None:
        """Stop reading and close the read end (once)."""
        global _grown_pipes  # noqa: PLW0603 - see _grow
        if not self._closed:
            self._closed = True
            self._stop_reading()
            os.close(self._fd)
            if self._grown:
                self._grown = False
                _grown_pipes -= 1
            if self._waiter is not None and not self._waiter.done():
                self._waiter.set_result(None)


class SpawnedChild(Child):
    """A child started with ``posix_spawn``, its exit learnt from a pidfd (Linux).

    Its pipes and pidfd join the loop's selector on the loop's next turn: nodes that become
    ready together (W7's 500) all start their processes first, and the registrations, 0.05 ms
    a node, follow while those run. The selector reports what happened in between.
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
        # a turn later (20-25 us a node in a chain).
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
# and asyncio's transports: a chain of 1,000 `true` run in-process took 0.97 ms a node against
# 1.11 (medians of 8 interleaved runs each). Linux only, and only where the two mean the same:
# no other working directory to change to (posix_spawn cannot here), no input to feed, and a
# program found on PATH (else Popen starts it, or reports why it cannot).
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


# Where programs were found on a PATH, kept as a shell's command hash keeps them: W7's 500 nodes
# looked `sleep` up 500 times, at 25 us each. A program that has gone is looked up afresh.
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
        if known and exc.errno in _NOT_RUNNABLE:  # removed or changed since it was found
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

    asyncio's subprocess machinery, which did this before, cost 15-20 % more a node, and on
    Python 3.11 a thread per child unless the caller set up a pidfd child watcher.
    """

    def popen(out: int, err: int) -> tuple[int, subprocess.Popen[bytes]]:
        process = subprocess.Popen(
            list(argv), stdin=_devnull(), stdout=out, stderr=err, env=env, cwd=cwd, start_new_session=True
        )
        return process.pid, process

    return _watched(*_piped(popen))


async def start(argv: Sequence[str], *, stdin: bool, env: dict[str, str], cwd: Path | None) -> Child:
    """Start ``argv`` as the leader of a new process group, with piped stdout and stderr."""
    if _CAN_SPAWN and not stdin:
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
    )
    return SubprocessChild(asyncio.subprocess.Process(transport, protocol, loop), protocol)


async def _pump(reader: Readable, stream: str, sink: OutputSink) -> BaseException | None:
    """Copy ``reader`` into ``sink`` until EOF; keep draining after a sink error so the child never blocks."""
    error: BaseException | None = None
    while chunk := await reader.read(CHUNK):
        if error is None:
            try:
                await sink.write(stream, chunk)
            except OSError as exc:
                error = exc
    return error


async def _finish(child: Child, pumps: list[asyncio.Task[BaseException | None]], grace: float) -> None:
    """After the main process ended: stop what is left of its group, then let the pumps reach EOF."""
    if signal_group(child.pid, 0):
        signal_group(child.pid, signal.SIGTERM)
        _, pending = await asyncio.wait(pumps, timeout=grace)
        if pending:
            signal_group(child.pid, signal.SIGKILL)
    # A process that left the group (setsid) may still hold a pipe: do not wait for it forever.
    if all(pump.done() for pump in pumps):  # as usual: they read EOF in the turn the process ended
        return
    _, pending = await asyncio.wait(pumps, timeout=max(grace, 1.0))
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


def exit_code_of(returncode: int) -> int:
    """A shell-style exit code: 128 + N for a process killed by signal N."""
    return 128 - returncode if returncode < 0 else returncode


_NOT_RUNNABLE = frozenset({errno.ENOENT, errno.EACCES, errno.EPERM, errno.ENOEXEC, errno.ENOTDIR, errno.ELOOP})


async def run_process(
    argv: Sequence[str],
    job: Job,
    sink: OutputSink,
    stdin: bytes | None = None,
    *,
    fallback: Sequence[str] | None = None,
) -> Outcome:
    """Run ``argv`` for ``job``: stream its output, honour its timeout, stop it when cancelled.

    If the program of ``argv`` cannot be run (missing, not executable, not a binary) and there
    is a ``fallback``, that is run instead; a lack of resources fails the node either way.
    """
    try:
        child = await start(argv, stdin=stdin is not None, env=dict(job.env), cwd=job.cwd)
    except OSError as exc:
        if fallback is not None and exc.errno in _NOT_RUNNABLE:
            return await run_process(fallback, job, sink, stdin)
        return await start_failed(argv[0], job, sink, exc)
    feeder = None
    if stdin is not None:
        assert isinstance(child, SubprocessChild)  # input is fed through asyncio's pipe
        feeder = asyncio.create_task(_feed(child.process, stdin))
    try:
        return await supervise(child, job, sink)
    finally:
        if feeder is not None:
            feeder.cancel()
            await asyncio.gather(feeder, return_exceptions=True)


async def start_failed(program: str, job: Job, sink: OutputSink, exc: OSError) -> Outcome:
    """The outcome of a process that could not start, explained in its stderr."""
    where = f" in {job.cwd}" if job.cwd is not None else ""
    message = f"cannot start {program!r}{where}: {exc.strerror or exc}"
    await sink.write(STDERR, f"wtflow: {message}\n".encode())
    return Outcome(exit_code=127 if isinstance(exc, FileNotFoundError) else 126, error=message)


async def supervise(child: Child, job: Job, sink: OutputSink) -> Outcome:
    """Stream ``child``'s output into ``sink`` until it ends; stop it on timeout or cancellation."""
    pumps = [
        asyncio.create_task(_pump(child.stdout, STDOUT, sink)),
        asyncio.create_task(_pump(child.stderr, STDERR, sink)),
    ]
    timed_out = False
    try:
        try:
            async with asyncio.timeout(job.timeout):
                await child.exited()
        except TimeoutError:
            timed_out = True
            await child.terminate(job.kill_grace)
        except asyncio.CancelledError:
            await child.terminate(job.kill_grace)
            raise
    finally:
        if child.returncode is None:  # cancelled again while stopping: no more grace
            signal_group(child.pid, signal.SIGKILL)
            await child.exited()
        await _finish(child, pumps, job.kill_grace)
        child.close()

    returncode = child.returncode
    assert returncode is not None
    code = exit_code_of(returncode)
    for pump in pumps:
        if not pump.cancelled() and (store_error := pump.result()) is not None:
            return Outcome(exit_code=code, error=f"cannot store output: {store_error}")
    if timed_out:
        return Outcome(exit_code=code, timed_out=True, error=f"timed out after {job.timeout:g}s")
    if returncode < 0:
        return Outcome(exit_code=code, error=f"killed by signal {signal_name(-returncode)}")
    return Outcome(exit_code=code)


def signal_name(number: int) -> str:
    """``SIGTERM`` for 15; the number itself for signals Python does not name."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


async def _feed(process: asyncio.subprocess.Process, data: bytes) -> None:
    assert process.stdin is not None
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        process.stdin.write(data)
        await process.stdin.drain()
        process.stdin.close()
        await process.stdin.wait_closed()
