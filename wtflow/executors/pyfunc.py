"""Runs :class:`~wtflow.model.PyFunc` nodes, each in a fresh Python process.

The child's file descriptors 1 and 2 are the output pipes, so output from C extensions and
subprocesses the function starts is captured as well.

A node's ``timeout`` is its function's: the clock starts when the function is about to be
called, once its module is imported and its arguments unpickled in the child. The child says so
through a pipe (``pychild.announce``). Getting there is bounded as well, so that an import that
hangs cannot hang the run: it may take ``max(timeout, import_limit)`` seconds from the node's
start (``IMPORT_LIMIT`` unless the executor is given another), after which the node is stopped
and ends ``timed_out``. A node without a timeout has no bound on either.

What a module prints while it is imported is part of the node's stdout and stderr: the child
imports the function's module with its fds 1 and 2 already the node's pipes, and what the parent's
main module printed when the fork server loaded it is written to the node of each function
defined there before the function's own output (as if its process had loaded it, as it does
without the server).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pickle
import sys
from collections.abc import Sequence
from pathlib import Path

from wtflow.artifacts import FILE_NAMES
from wtflow.executors.base import BaseExecutor, Job, Outcome, OutputSink
from wtflow.executors.descriptors import make_room
from wtflow.executors.forkserver import ForkServer
from wtflow.executors.supervise import run_process, start_failed, supervise
from wtflow.model import RESULT, STDERR, STDOUT, PyFunc, Workflow

CHILD = str(Path(__file__).with_name("pychild.py"))
# Seconds a function node with a timeout may take to reach the call of its function (start its
# process, import its module), if its timeout is shorter. Cold imports of large libraries take
# many seconds on a busy machine; an import that hangs is stopped.
IMPORT_LIMIT = 60.0


async def pickled_call(function: PyFunc, sink: OutputSink) -> bytes | Outcome:
    """``(func, args, kwargs)`` of ``function`` pickled for its process; the node's failed outcome if they cannot be."""
    try:
        return pickle.dumps((function.func, function.args, function.kwargs), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # noqa: BLE001 - any pickling failure is the node's failure
        message = f"cannot send the arguments of {function.name} to its process: {exc}"
        await sink.write(STDERR, f"wtflow: {message}\n".encode())
        return Outcome(exit_code=None, error=message)


def main_header(func_module: str | None) -> dict[str, str]:
    """How the child finds functions of the parent's ``__main__``, as multiprocessing spawn does."""
    if func_module != "__main__":
        return {}
    main = sys.modules["__main__"]
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name and not spec.name.endswith("__main__"):
        return {"main_module": spec.name}
    main_file = getattr(main, "__file__", None)
    return {"main_path": str(Path(main_file).resolve())} if main_file else {}


class _Call:
    """When a function is about to be called, told by its child through a pipe; and the bound on getting there.

    The child writes one byte to :attr:`write_end` just before the call. Until then the node may
    take ``limit`` seconds, counted from when this is made.
    """

    def __init__(self, limit: float) -> None:
        self._loop = asyncio.get_running_loop()
        self.limit = limit
        self.deadline = self._loop.time() + limit
        self._called: asyncio.Future[None] = self._loop.create_future()
        self._read_end, self.write_end = os.pipe()
        os.set_blocking(self._read_end, False)
        self._loop.add_reader(self._read_end, self._readable)

    @property
    def late(self) -> str:
        """Why a node that did not get to the call in time was stopped."""
        return f"timed out after {self.limit:g}s before the function was called (starting its process, importing)"

    def _readable(self) -> None:
        try:
            os.read(self._read_end, 1)  # the byte, or the end: the child calls the function, or is gone
        except BlockingIOError:
            return
        except OSError:
            pass
        self._loop.remove_reader(self._read_end)
        if not self._called.done():
            self._called.set_result(None)

    async def made(self) -> None:
        """Return when the function is about to be called or the child is gone; past the bound, ``TimeoutError``."""
        try:
            async with asyncio.timeout_at(self.deadline):
                await asyncio.shield(self._called)
        except TimeoutError:
            raise TimeoutError(self.late) from None

    def close_write_end(self) -> None:
        """Close this process's copy of the write end, once the child has its own."""
        if self.write_end >= 0:
            os.close(self.write_end)
            self.write_end = -1

    def close(self) -> None:
        """Stop listening and close the pipe."""
        self.close_write_end()
        if self._read_end >= 0:
            self._loop.remove_reader(self._read_end)
            os.close(self._read_end)
            self._read_end = -1


class PyFuncExecutor(BaseExecutor):
    """Runs each function in its own process.

    Where the platform can fork, the process is forked from a warm helper (the fork server),
    which costs far less than starting an interpreter; else it is a fresh
    ``python -u pychild.py`` that reads the job on stdin. ``import_limit`` bounds the time a node
    with a timeout may take before its function is called (see the module's docstring).
    ``sys_path`` is where the processes find the functions' modules: this process's ``sys.path``
    unless given (a cluster's worker gives the runner's). ``serve_main=False`` starts a function
    defined in the parent's ``__main__`` in a fresh interpreter, never from a fork server that
    loaded that script earlier: an executor that outlives a run (a worker's) would otherwise
    run the script, and what it imports, as they were when it first loaded them.
    """

    def __init__(
        self,
        *,
        fork_server: bool = hasattr(os, "fork"),
        import_limit: float = IMPORT_LIMIT,
        sys_path: Sequence[str] | None = None,
        serve_main: bool = True,
    ) -> None:
        self._use_fork_server = fork_server
        self._serve_main = serve_main
        self._import_limit = import_limit
        self._sys_path = list(sys_path) if sys_path is not None else None
        self._server: ForkServer | None = None
        self._server_main: dict[str, str] = {}
        self._retired: list[ForkServer] = []
        self._starting = asyncio.Lock()

    async def preflight(self, workflow: Workflow, max_parallel: int) -> None:
        """Make room in the descriptor table for every node that can run at once."""
        make_room(workflow, max_parallel)

    async def execute(self, job: Job, sink: OutputSink) -> Outcome:
        """Run the function of ``job`` in its own process."""
        function = job.executable
        assert isinstance(function, PyFunc)
        call = await pickled_call(function, sink)
        if isinstance(call, Outcome):
            return call
        return await self.run_call(job, sink, call, main_header(getattr(function.func, "__module__", None)))

    def _path(self) -> list[str]:
        return sys.path if self._sys_path is None else self._sys_path

    async def run_call(self, job: Job, sink: OutputSink, body: bytes, main: dict[str, str]) -> Outcome:
        """Run a function call pickled by :func:`pickled_call` for ``job``; ``main`` as :func:`main_header` gave it.

        The function's process unpickles ``body``: the process that calls this need not import
        the function's module (a cluster's worker does not).
        """
        result_path = str(job.node_dir / FILE_NAMES[RESULT])
        await sink.ready()  # the function writes its result into the node's directory
        # The clock of a node without a timeout does not matter: its child is not asked to tell.
        try:
            call = None if job.timeout is None else _Call(max(job.timeout, self._import_limit))
        except OSError as exc:  # no descriptor left for its pipe
            return await start_failed(sys.executable, job, sink, exc)
        try:
            server = await self._fork_server(main)
            if server is not None:
                outcome = await self._run_forked(
                    server=server, main=main, body=body, result_path=result_path, job=job, sink=sink, call=call
                )
                if outcome is not None:
                    return outcome
            header: dict[str, object] = {"sys_path": self._path(), "result_path": result_path, **main}
            if call is not None:
                header["begun_fd"] = call.write_end
            stdin = json.dumps(header).encode() + b"\n" + body
            argv = [sys.executable, "-u", CHILD]
            if call is None:
                return await run_process(argv, job, sink, stdin=stdin)
            made = call.made()
            try:
                return await run_process(argv, job, sink, stdin=stdin, pass_fds=(call.write_end,), begun=made)
            finally:
                made.close()  # never awaited if the process could not start
        finally:
            if call is not None:
                call.close()

    async def _run_forked(
        self,
        *,
        server: ForkServer,
        main: dict[str, str],
        body: bytes,
        result_path: str,
        job: Job,
        sink: OutputSink,
        call: _Call | None,
    ) -> Outcome | None:
        """Run the job in a child forked by ``server``; ``None`` if the server is gone (start it the slow way)."""
        try:
            async with asyncio.timeout_at(None if call is None else call.deadline):
                child = await server.spawn(
                    body, result_path, job.cwd, dict(job.env), None if call is None else call.write_end
                )
        except TimeoutError:  # before OSError, of which it is a subclass
            assert call is not None
            if server.loading:  # stuck loading the main module: it will serve no job
                await self._retire(server, job.kill_grace)
            if main:
                await _write_load_output(server, sink)
            return Outcome(exit_code=None, timed_out=True, error=call.late)
        except (OSError, ConnectionError):
            return None
        if main:  # the server loaded the main module for this node (done before it forks any child)
            await _write_load_output(server, sink)
        if call is None:
            return await supervise(child, job, sink)
        call.close_write_end()
        made = call.made()
        try:
            return await supervise(child, job, sink, begun=made)
        finally:
            made.close()

    async def _fork_server(self, main: dict[str, str]) -> ForkServer | None:
        """The run's fork server, started on first use; ``None`` if it cannot serve this job."""
        if not self._use_fork_server or (main and not self._serve_main):
            return None
        async with self._starting:
            if self._server is None:
                server = ForkServer()
                try:
                    await server.start({"sys_path": self._path(), **main})
                except OSError:
                    self._use_fork_server = False
                    await server.aclose()
                    return None
                self._server, self._server_main = server, main
        # A server loaded without the parent's __main__ cannot unpickle functions defined there.
        return self._server if not main or main == self._server_main else None

    async def _retire(self, server: ForkServer, grace: float) -> None:
        """Kill a server stuck loading the main module; later jobs start the slow way, each bounded alone."""
        server.kill()
        if self._server is server:
            self._server = None
            self._use_fork_server = False
            self._retired.append(server)
        with contextlib.suppress(TimeoutError):  # until its output is in (it ends when the server does)
            async with asyncio.timeout(max(grace, 1.0)):
                await server.loaded()

    async def aclose(self) -> None:
        """Stop the fork server (and any killed one)."""
        servers, self._retired = [*self._retired, self._server], []
        self._server = None
        for server in servers:
            if server is not None:
                await server.aclose()


async def _write_load_output(server: ForkServer, sink: OutputSink) -> None:
    """Write what the main module printed while the server loaded it into this node's output."""
    for stream, data in zip((STDOUT, STDERR), server.load_output(), strict=True):
        if data:
            await sink.write(stream, data)
