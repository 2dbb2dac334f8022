"""The executor interface: run one job, stream its output to a sink, report how it ended."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from wtflow.model import Command, PyFunc, Workflow


@dataclass(frozen=True)
class Job:
    """One attempt at one node's executable, with everything needed to run it.

    ``env`` is the full environment of a local process; ``declared_env`` only what the workflow
    declares plus the ``WTFLOW_*`` variables (what a container gets).
    """

    run_id: str
    node: str
    executable: Command | PyFunc
    env: Mapping[str, str]
    cwd: Path | None
    node_dir: Path
    kill_grace: float
    declared_env: Mapping[str, str] = field(default_factory=dict)

    @property
    def timeout(self) -> float | None:
        """Seconds the attempt may take, if limited."""
        return self.executable.timeout


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended: an exit code, a timeout, or an error that kept it from running."""

    exit_code: int | None
    timed_out: bool = False
    error: str | None = None

    @property
    def succeeded(self) -> bool:
        """Exit code 0, no timeout and no error."""
        return self.exit_code == 0 and not self.timed_out and self.error is None


class OutputSink(Protocol):
    """Where an executor sends output, chunk by chunk, as it is produced.

    The node's artifact files are created just after its process starts; an executor whose process
    writes into the node's directory itself (a function's ``result.json``) awaits :meth:`ready`
    before starting it.
    """

    async def write(self, stream: str, data: bytes) -> None:
        """Store and forward ``data`` written to ``stream`` (``stdout`` or ``stderr``)."""

    async def ready(self) -> None:
        """Wait until the node's directory and artifact files exist (``OSError`` if they cannot)."""


class Executor(Protocol):
    """Runs one job. On cancellation it stops what it started, then re-raises."""

    async def execute(self, job: Job, sink: OutputSink) -> Outcome:
        """Run ``job`` to the end, streaming its output into ``sink``."""


class DispatchExecutor:
    """Sends each job to the executor registered for its executable's type."""

    def __init__(self, executors: Mapping[type, Executor] | None = None) -> None:
        if executors is None:
            from wtflow.executors.shell import CommandExecutor

            executors = {Command: CommandExecutor()}
            self._functions_by_default = True  # made on first use: a workflow of commands never imports them
        else:
            self._functions_by_default = False
        self._executors = dict(executors)
        self._containers: Executor | None = None

    def _executor_for(self, kind: type) -> Executor | None:
        if kind is PyFunc and kind not in self._executors and self._functions_by_default:
            from wtflow.executors.pyfunc import PyFuncExecutor

            self._executors[PyFunc] = PyFuncExecutor()
        return self._executors.get(kind)

    def _container_executor(self) -> Executor:
        if self._containers is None:
            from wtflow.executors.container import ContainerExecutor

            self._containers = ContainerExecutor()
        return self._containers

    async def preflight(self, workflow: Workflow) -> None:
        """Check, before any node runs, what the workflow's containers need (an engine, images)."""
        from wtflow.executors.container import containers_of

        if containers_of(workflow):
            await self._container_executor().preflight(workflow)  # type: ignore[attr-defined]

    async def aclose(self) -> None:
        """Release what the executors hold for the run (the fork server)."""
        for executor in [*self._executors.values(), self._containers]:
            close = getattr(executor, "aclose", None)
            if close is not None:
                await close()

    async def execute(self, job: Job, sink: OutputSink) -> Outcome:
        """Run ``job`` with the executor for its type."""
        if isinstance(job.executable, Command) and job.executable.container is not None:
            return await self._container_executor().execute(job, sink)
        executor = self._executor_for(type(job.executable))
        if executor is None:
            return Outcome(exit_code=None, error=f"no executor for {type(job.executable).__name__}")
        return await executor.execute(job, sink)
