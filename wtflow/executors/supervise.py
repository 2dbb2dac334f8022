"""Supervising a job's process: streaming its output, its timeout, stopping it, and how it ended.

A child is stopped with SIGTERM to its whole process group, then SIGKILL after the job's grace
period. When the main process exits, whatever it left running in its group is stopped the same
way, so no orphan holds the output pipes open or outlives its node.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Sequence

from wtflow.executors.base import Job, Outcome, OutputSink
from wtflow.executors.child import Child, Readable, signal_group
from wtflow.executors.pipes import CHUNK
from wtflow.executors.spawn import NOT_RUNNABLE, SubprocessChild, start
from wtflow.model import STDERR, STDOUT


async def run_process(
    argv: Sequence[str],
    job: Job,
    sink: OutputSink,
    stdin: bytes | None = None,
    *,
    fallback: Sequence[str] | None = None,
    pass_fds: Sequence[int] = (),
    begun: Awaitable[None] | None = None,
) -> Outcome:
    """Run ``argv`` for ``job``: stream its output, honour its timeout, stop it when cancelled.

    If the program of ``argv`` cannot be run (missing, not executable, not a binary) and there
    is a ``fallback``, that is run instead; a lack of resources fails the node either way.
    ``pass_fds`` are inherited by the process; ``begun`` is as for :func:`supervise`.
    """
    try:
        child = await start(argv, stdin=stdin is not None, env=dict(job.env), cwd=job.cwd, pass_fds=pass_fds)
    except OSError as exc:
        if fallback is not None and exc.errno in NOT_RUNNABLE:
            return await run_process(fallback, job, sink, stdin, pass_fds=pass_fds, begun=begun)
        return await start_failed(argv[0], job, sink, exc)
    feeder = None
    if stdin is not None:
        assert isinstance(child, SubprocessChild)  # input is fed through asyncio's pipe
        feeder = asyncio.create_task(_feed(child.process, stdin))
    try:
        return await supervise(child, job, sink, begun=begun)
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


async def supervise(child: Child, job: Job, sink: OutputSink, *, begun: Awaitable[None] | None = None) -> Outcome:
    """Stream ``child``'s output into ``sink`` until it ends; stop it on timeout or cancellation.

    The job's timeout clock starts when the process starts or, given ``begun``, once ``begun``
    completes (or the process exits first): a process with work to do before the job's own (a
    function's process imports its module) says so through it. ``begun`` bounds that work
    itself: the ``TimeoutError`` it raises stops the process, its message saying why.
    """
    pumps = [
        asyncio.create_task(_pump(child.stdout, STDOUT, sink)),
        asyncio.create_task(_pump(child.stderr, STDERR, sink)),
    ]
    timed_out: str | None = None
    try:
        try:
            if begun is not None:
                await _until_begun(child, begun)
            async with asyncio.timeout(job.timeout):
                await child.exited()
        except TimeoutError as exc:
            timed_out = str(exc) or f"timed out after {job.timeout:g}s"
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
    if timed_out is not None:
        return Outcome(exit_code=code, timed_out=True, error=timed_out)
    if returncode < 0:
        return Outcome(exit_code=code, error=f"killed by signal {signal_name(-returncode)}")
    return Outcome(exit_code=code)


def signal_name(number: int) -> str:
    """``SIGTERM`` for 15; the number itself for signals Python does not name."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


async def _until_begun(child: Child, begun: Awaitable[None]) -> None:
    """Wait for ``begun`` (whose errors propagate) or the process's exit, whichever comes first."""
    beginning = asyncio.ensure_future(begun)
    exiting = asyncio.ensure_future(child.exited())
    try:
        await asyncio.wait([beginning, exiting], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (beginning, exiting):
            task.cancel()
        await asyncio.gather(beginning, exiting, return_exceptions=True)
    if beginning.done() and not beginning.cancelled():
        beginning.result()


async def _feed(process: asyncio.subprocess.Process, data: bytes) -> None:
    assert process.stdin is not None
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        process.stdin.write(data)
        await process.stdin.drain()
        process.stdin.close()
        await process.stdin.wait_closed()


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
