"""What runs on a Dask worker for a node attempt: the task :func:`run_node`.

A worker process keeps one event loop of its own for nodes, in a thread (its *node host*),
started by the first node it runs. There each node runs with the executors that run nodes on the
runner's machine (:mod:`wtflow.executors.shell`, :mod:`~wtflow.executors.pyfunc`,
:mod:`~wtflow.executors.container`): its own process group, its environment and working
directory, its timeout, SIGTERM then SIGKILL after the grace period when it is stopped, and the
same exit codes. The Dask task only waits, in the worker's thread, for the attempt to end: the
thread is the worker's slot for the node, and Dask cannot stop it, so stopping goes through the
runner's connection instead (see :mod:`wtflow.executors.dask_wire`).

The node writes its outputs, summary and a function's result where the runner reads them, when the
worker sees the run's directory (a shared file system). When it does not, the node writes them
into a directory of the worker's own and they travel back with the attempt's end.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import json
import shutil
import sys
import tempfile
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from wtflow import __version__
from wtflow.errors import WtflowError
from wtflow.executors.base import Executor, Job, Outcome
from wtflow.executors.dask_wire import (
    DONE,
    FILE,
    GO,
    HELLO,
    KILL,
    PROTOCOL,
    SHIPPED_FILES,
    STOP,
    STREAM_FRAMES,
    WORKER_SEND_TIMEOUT,
    Assignment,
    file_payload,
    host_port,
    keep_alive,
    receive,
    refusal,
    send,
)
from wtflow.model import STDERR, Command, PyFunc

# Seconds a worker tries to reach the runner before the attempt fails.
CONNECT_TIMEOUT = 30.0
# A shipped file travels in pieces of this many bytes.
PIECE = 1 << 18
# A closing worker stops its nodes within the 8 s a nanny gives its worker process to close
# (``dask worker``'s ``close(timeout=10)``): SIGTERM, SIGKILL this many seconds later, and no
# longer than CLOSE_DEADLINE in all for their ends to be reported.
CLOSE_GRACE = 3.0
CLOSE_DEADLINE = 6.0
# The first file the runner makes in a node's directory: seeing it, the worker sees that directory.
PROBE = "stdout.log"


def stand_in() -> None:
    """The function a job's executable holds while the real call travels pickled (see ``Assignment.call``)."""
    raise RuntimeError("a function node's call travels pickled beside its job")


def run_node(assignment: Assignment) -> str:
    """The Dask task of one node attempt: run it on this worker, streaming to the runner; the worker's address.

    ``ConnectionError`` if the runner cannot be reached. The attempt's outcome itself goes to the
    runner over the connection. A worker that is closing hands the task back to the scheduler.
    """
    from distributed import Reschedule, get_worker

    found = get_worker()
    host = _node_host()
    nodes = _watched(found, host)
    if nodes is None or nodes.closing is not None:
        raise Reschedule  # another worker runs it
    host.run(_serve(assignment, found.address, nodes))
    return str(found.address)


class WorkerNodes:
    """The attempts one worker runs, and why it stops them once it closes (touched on the host's loop only)."""

    def __init__(self) -> None:
        self.attempts: set[asyncio.Task[Outcome]] = set()
        self.serving: set[asyncio.Task[Any]] = set()  # every connection to a runner
        self.closing: str | None = None

    async def stop_all(self, reason: str) -> None:
        """Stop every attempt, as the runner would: SIGTERM, SIGKILL :data:`CLOSE_GRACE` seconds later.

        Each ends failed with ``reason``, and so does one the runner tells to go from now on.
        Returns once each has told its runner, or after :data:`CLOSE_DEADLINE` seconds.
        """
        self.closing = reason
        deadline = asyncio.get_running_loop().time() + CLOSE_DEADLINE
        running = list(self.attempts)
        for attempt in running:
            attempt.cancel()
        if running:
            _, lingering = await asyncio.wait(running, timeout=CLOSE_GRACE)
            for attempt in lingering:
                attempt.cancel()  # a second cancellation kills the process group at once
        serving = list(self.serving)
        if serving:
            await asyncio.wait(serving, timeout=max(deadline - asyncio.get_running_loop().time(), 0.1))


class _NodeHost:
    """A worker process's event loop for nodes, in a daemon thread, with the executors it keeps."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.executors: dict[object, Executor] = {}
        self._thread = threading.Thread(target=self.loop.run_forever, name="wtflow-nodes", daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run ``coroutine`` on the host's loop; return when it has ended."""
        future: concurrent.futures.Future[None] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        future.result()

    def close(self) -> None:
        """Close the executors it keeps (a fork server's process and socket), then its loop.

        A worker's host lasts as long as the worker's process, whose end closes all of it; a
        process that goes on without it (a test running nodes as a worker would) closes it here.
        """
        for executor in self.executors.values():
            self.run(executor.aclose())
        self.executors.clear()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


_host: _NodeHost | None = None
_host_lock = threading.Lock()
_PLUGIN = "wtflow-stop-nodes"
# Seconds a worker's first node waits for the worker to take the plugin that stops nodes at its close.
PLUGIN_TIMEOUT = 10.0


def _node_host() -> _NodeHost:
    """The worker process's node host, started by its first node."""
    global _host  # noqa: PLW0603 - one per worker process, started by its first node
    with _host_lock:
        if _host is None:
            _host = _NodeHost()
        return _host


def _watched(worker: Any, host: _NodeHost) -> WorkerNodes | None:
    """The nodes of ``worker``, which it stops when it closes; ``None`` if it is no longer running.

    SIGTERM to a worker (systemd, Kubernetes, an autoscaler) closes it, and its plugins'
    teardown with it. The plugin (which holds the worker's nodes) is added before the worker's
    first node starts, on the worker's loop in the same turn as the look at its status: none
    escapes it, and a worker that began to close takes none.
    """
    from distributed.core import Status

    async def adopt() -> WorkerNodes | None:
        if worker.status not in {Status.running, Status.paused}:
            return None
        if _PLUGIN not in worker.plugins:
            await worker.plugin_add(plugin=_stop_nodes_at_close(host), name=_PLUGIN)
        plugin = worker.plugins.get(_PLUGIN)
        return getattr(plugin, "nodes", None)

    adopting = adopt()
    try:
        adding = asyncio.run_coroutine_threadsafe(adopting, worker.loop.asyncio_loop)
    except RuntimeError:  # its loop is closed: the worker is gone
        adopting.close()
        return None
    try:
        return adding.result(PLUGIN_TIMEOUT)
    except (concurrent.futures.TimeoutError, concurrent.futures.CancelledError):  # its loop is stuck or stopping
        adding.cancel()
        return None


def _stop_nodes_at_close(host: _NodeHost) -> Any:
    """A Dask worker plugin holding one worker's nodes on ``host``: its teardown stops them (they would outlive it)."""
    from distributed import WorkerPlugin

    class StopNodesAtClose(WorkerPlugin):
        def __init__(self) -> None:
            self.nodes = WorkerNodes()

        async def teardown(self, worker: Any) -> None:
            """Stop the worker's attempts; its close waits for them (at most :data:`CLOSE_DEADLINE` and a second)."""
            stopping = self.nodes.stop_all(f"worker {worker.address} was shut down while the node ran")
            try:
                future = asyncio.run_coroutine_threadsafe(stopping, host.loop)
            except RuntimeError:  # the process closed its host first: nothing runs there
                stopping.close()
                return
            with contextlib.suppress(TimeoutError):  # a host loop stopped without being closed
                await asyncio.wait_for(asyncio.wrap_future(future), CLOSE_DEADLINE + 1)

    return StopNodesAtClose()


def _executor(assignment: Assignment) -> Executor:
    """The executor for the assignment's kind, made on first use and kept for the worker's later nodes.

    Functions get one per ``sys.path`` of the runners that sent them: its processes (and its fork
    server) find the functions' modules on the runner's ``sys.path``.
    """
    executors = _node_host().executors
    executable = assignment.job.executable
    key: object
    if isinstance(executable, Command):
        key = "containers" if executable.container is not None else "commands"
    else:
        key = assignment.sys_path
    found = executors.get(key)
    if found is None:
        if key == "commands":
            from wtflow.executors.shell import CommandExecutor

            found = CommandExecutor()
        elif key == "containers":
            from wtflow.executors.container import ContainerExecutor

            found = ContainerExecutor()
        else:
            from wtflow.executors.pyfunc import PyFuncExecutor

            path = [*assignment.sys_path, *(entry for entry in sys.path if entry not in assignment.sys_path)]
            # Kept for later runs: a function of a runner's __main__ starts afresh, with the script as it is now.
            found = PyFuncExecutor(sys_path=path, serve_main=False)
        executors[key] = found
    return found


class _Sink:
    """The node's output, sent to the runner chunk by chunk; a send waits while the runner is behind."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer

    async def write(self, stream: str, data: bytes) -> None:
        """Send ``data`` of ``stream``; ``ConnectionError`` (an ``OSError``) once the runner is gone."""
        await send(self._writer, STREAM_FRAMES[stream], data)

    async def ready(self) -> None:
        """The node's directory exists: the runner made it before it sent the job (or it is the worker's own)."""


async def _serve(assignment: Assignment, worker: str, nodes: WorkerNodes | None = None) -> None:
    """Serve one attempt for the runner; ``nodes``: the worker's (a stand-in's of its own if not given)."""
    nodes = nodes or WorkerNodes()
    serving = asyncio.current_task()
    assert serving is not None
    nodes.serving.add(serving)
    serving.add_done_callback(nodes.serving.discard)
    host, port = assignment.runner
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            reader, writer = await asyncio.open_connection(host, port)
    except OSError as exc:  # TimeoutError included
        raise ConnectionError(
            f"worker {worker} cannot connect to the runner at {host_port(host, port)} to run node "
            f"{assignment.job.node!r}: {exc or 'timed out'}; the workers must reach the runner's address "
            "(choose it with --dask-listen)"
        ) from None
    try:
        keep_alive(writer, WORKER_SEND_TIMEOUT)  # a runner lost without a word stops the node too
        hello = {"token": assignment.token, "worker": worker, "protocol": PROTOCOL, "wtflow": __version__}
        await send(writer, HELLO, json.dumps(hello).encode())
        try:
            kind, go = await receive(reader)
        except (EOFError, OSError):
            return  # the runner no longer wants this attempt (stopped, or given up on)
        if kind != GO:
            return
        problem = refusal(go, worker, __version__)
        if problem is not None:  # what the runner sends next may not mean what it would to us
            await _send_done(writer, Outcome(exit_code=None, error=problem))
            return
        await _attempt(assignment, worker, reader, writer, nodes)
    except OSError:  # the runner went away: the attempt was stopped, nobody is left to tell
        pass
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _attempt(
    assignment: Assignment,
    worker: str,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    nodes: WorkerNodes,
) -> None:
    """Run the attempt while the runner's connection may stop it; then send the files it needs and how it ended."""
    if nodes.closing is not None:  # told to go after the worker began to close: it never starts
        await _send_done(writer, Outcome(exit_code=None, error=nodes.closing))
        return
    job, private = _visible(assignment.job)
    running = asyncio.create_task(_execute(assignment, job, worker, _Sink(writer)))
    nodes.attempts.add(running)
    running.add_done_callback(nodes.attempts.discard)
    control = asyncio.create_task(_control(reader, running))
    try:
        try:
            outcome = await running
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
            # By the runner, which is cancelled itself; or by this worker, closing.
            outcome = Outcome(exit_code=None, error=nodes.closing or "stopped")
        except WtflowError as exc:  # the docker engine of the worker is unavailable, say
            outcome = Outcome(exit_code=None, error=f"on worker {worker}: {exc}")
        except Exception as exc:  # noqa: BLE001 - a failure of wtflow on the worker fails the node, and says why
            outcome = Outcome(exit_code=None, error=f"wtflow failed on worker {worker}: {exc!r}")
        if private is not None:
            await _ship(private, writer)
        await _send_done(writer, outcome)
    finally:
        control.cancel()
        await asyncio.gather(control, return_exceptions=True)
        if private is not None:
            await asyncio.to_thread(shutil.rmtree, private, True)


async def _send_done(writer: asyncio.StreamWriter, outcome: Outcome) -> None:
    """Tell the runner how the attempt ended (``DONE``)."""
    done = {"exit_code": outcome.exit_code, "timed_out": outcome.timed_out, "error": outcome.error}
    await send(writer, DONE, json.dumps(done).encode())


async def _execute(assignment: Assignment, job: Job, worker: str, sink: _Sink) -> Outcome:
    if job.cwd is not None and not job.cwd.is_dir():
        message = (
            f"the working directory {job.cwd} does not exist on worker {worker}: "
            "the workers must see the workflow's files at the same paths as the runner"
        )
        await sink.write(STDERR, f"wtflow: {message}\n".encode())
        return Outcome(exit_code=None, error=message)
    executor = _executor(assignment)
    if isinstance(job.executable, PyFunc):
        from wtflow.executors.pyfunc import PyFuncExecutor

        assert isinstance(executor, PyFuncExecutor)
        assert assignment.call is not None
        return await executor.run_call(job, sink, assignment.call, dict(assignment.main))
    return await executor.execute(job, sink)


async def _control(reader: asyncio.StreamReader, running: asyncio.Task[Outcome]) -> None:
    """Stop the attempt as the runner says: the first ``STOP`` gives the grace period, a ``KILL`` cuts it short.

    The runner's connection closing (the runner died) stops the attempt too, with its grace.
    """
    while True:
        try:
            kind, _ = await receive(reader)
        except (EOFError, OSError):
            running.cancel()
            return
        if kind in {STOP, KILL}:
            running.cancel()  # a second cancellation kills the process group at once (see supervise.py)


def _visible(job: Job) -> tuple[Job, Path | None]:
    """``job`` itself if this worker sees the node's directory; else the job moved into a directory of its own."""
    if (job.node_dir / PROBE).exists():
        return job, None
    private = Path(tempfile.mkdtemp(prefix="wtflow-node-"))
    moved = {"WTFLOW_OUTPUT": str(private / "outputs"), "WTFLOW_STEP_SUMMARY": str(private / "summary.md")}
    job = dataclasses.replace(
        job, node_dir=private, env={**job.env, **moved}, declared_env={**job.declared_env, **moved}
    )
    return job, private


async def _ship(directory: Path, writer: asyncio.StreamWriter) -> None:
    """Send what the node wrote into ``directory`` that the runner reads: outputs, summary, a function's result."""
    for name in sorted(SHIPPED_FILES):
        try:
            handle = (directory / name).open("rb")
        except OSError:
            continue
        with handle:
            while piece := handle.read(PIECE):
                await send(writer, FILE, file_payload(name, piece))
