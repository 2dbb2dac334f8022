"""Runs :class:`~wtflow.model.PyFunc` nodes, each in a fresh Python process.

The child's file descriptors 1 and 2 are the output pipes, so output from C extensions and
subprocesses the function starts is captured as well.
"""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import sys
from pathlib import Path

from wtflow.artifacts import FILE_NAMES
from wtflow.executors.base import BaseExecutor, Job, Outcome, OutputSink
from wtflow.executors.descriptors import make_room
from wtflow.executors.forkserver import ForkServer
from wtflow.executors.supervise import run_process, supervise
from wtflow.model import RESULT, STDERR, PyFunc, Workflow

CHILD = str(Path(__file__).with_name("pychild.py"))


def _main_header(func_module: str | None) -> dict[str, str]:
    """How the child finds functions of the parent's ``__main__``, as multiprocessing spawn does."""
    if func_module != "__main__":
        return {}
    main = sys.modules["__main__"]
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name and not spec.name.endswith("__main__"):
        return {"main_module": spec.name}
    main_file = getattr(main, "__file__", None)
    return {"main_path": str(Path(main_file).resolve())} if main_file else {}


class PyFuncExecutor(BaseExecutor):
    """Runs each function in its own process.

    Where the platform can fork, the process is forked from a warm helper (the fork server),
    which costs far less than starting an interpreter; else it is a fresh
    ``python -u pychild.py`` that reads the job on stdin.
    """

    def __init__(self, *, fork_server: bool = hasattr(os, "fork")) -> None:
        self._use_fork_server = fork_server
        self._server: ForkServer | None = None
        self._server_main: dict[str, str] = {}
        self._starting = asyncio.Lock()

    async def preflight(self, workflow: Workflow, max_parallel: int) -> None:
        """Make room in the descriptor table for every node that can run at once."""
        make_room(workflow, max_parallel)

    async def execute(self, job: Job, sink: OutputSink) -> Outcome:
        """Run the function of ``job`` in its own process."""
        function = job.executable
        assert isinstance(function, PyFunc)
        try:
            body = pickle.dumps((function.func, function.args, function.kwargs), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # noqa: BLE001 - any pickling failure is the node's failure
            message = f"cannot send the arguments of {function.name} to its process: {exc}"
            await sink.write(STDERR, f"wtflow: {message}\n".encode())
            return Outcome(exit_code=None, error=message)
        result_path = str(job.node_dir / FILE_NAMES[RESULT])
        await sink.ready()  # the function writes its result into the node's directory
        main = _main_header(getattr(function.func, "__module__", None))
        server = await self._fork_server(main)
        if server is not None:
            try:
                child = await server.spawn(body, result_path, job.cwd, dict(job.env))
            except (OSError, ConnectionError):
                pass  # the server is gone: start this job the slow way
            else:
                return await supervise(child, job, sink)
        header = {"sys_path": sys.path, "result_path": result_path, **main}
        stdin = json.dumps(header).encode() + b"\n" + body
        return await run_process([sys.executable, "-u", CHILD], job, sink, stdin=stdin)

    async def _fork_server(self, main: dict[str, str]) -> ForkServer | None:
        """The run's fork server, started on first use; ``None`` if it cannot serve this job."""
        if not self._use_fork_server:
            return None
        async with self._starting:
            if self._server is None:
                server = ForkServer()
                try:
                    await server.start({"sys_path": sys.path, **main})
                except OSError:
                    self._use_fork_server = False
                    return None
                self._server, self._server_main = server, main
        # A server loaded without the parent's __main__ cannot unpickle functions defined there.
        return self._server if not main or main == self._server_main else None

    async def aclose(self) -> None:
        """Stop the fork server."""
        if self._server is not None:
            await self._server.aclose()
            self._server = None
