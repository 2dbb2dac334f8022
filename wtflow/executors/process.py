"""Running a child process in its own process group, streaming its output, and stopping it.

Every process starts a new session, so it and all it starts share one process group. Stopping
means SIGTERM to the whole group, then SIGKILL after a grace period. When the main process
exits, whatever it left running in its group is stopped the same way, so no orphan holds the
output pipes open or outlives its node.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
from collections.abc import Sequence
from pathlib import Path

from wtflow.executors.base import Job, Outcome, OutputSink
from wtflow.model import STDERR, STDOUT

CHUNK = 1 << 18  # bytes per read: large reads keep per-byte Python work low


def signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to process group ``pgid``; ``False`` if no process is left in it."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:  # a member changed user: nothing more we may do
        return False
    return True


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


class Child:
    """A started process leading its own process group: its output streams, its exit, how to stop it."""

    pid: int
    stdout: asyncio.StreamReader
    stderr: asyncio.StreamReader

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


async def start(argv: Sequence[str], *, stdin: bool, env: dict[str, str], cwd: Path | None) -> SubprocessChild:
    """Start ``argv`` as the leader of a new process group, with piped stdout and stderr."""
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


async def _pump(reader: asyncio.StreamReader, stream: str, sink: OutputSink) -> BaseException | None:
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
    _, pending = await asyncio.wait(pumps, timeout=max(grace, 1.0))
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


def exit_code_of(returncode: int) -> int:
    """A shell-style exit code: 128 + N for a process killed by signal N."""
    return 128 - returncode if returncode < 0 else returncode


async def run_process(argv: Sequence[str], job: Job, sink: OutputSink, stdin: bytes | None = None) -> Outcome:
    """Run ``argv`` for ``job``: stream its output, honour its timeout, stop it when cancelled."""
    try:
        child = await start(argv, stdin=stdin is not None, env=dict(job.env), cwd=job.cwd)
    except OSError as exc:
        return await start_failed(argv[0], job, sink, exc)
    feeder = asyncio.create_task(_feed(child.process, stdin)) if stdin is not None else None
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
