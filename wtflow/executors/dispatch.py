"""Sends each job where its node runs (this machine or a cluster), then to the executor for its kind."""

from __future__ import annotations

from collections.abc import Callable, Collection

from wtflow.errors import ConfigError
from wtflow.executors.base import BaseExecutor, Executor, Job, Outcome, OutputSink
from wtflow.model import Command, Node, PyFunc, Workflow


class DispatchExecutor(BaseExecutor):
    """Runs jobs on this machine: each goes to the executor of its executable's kind.

    The executors for functions and containers are made on first use: a workflow of commands
    never imports them. ``serves`` says which nodes of a workflow this executor runs (all by
    default): :meth:`preflight` checks what those need only.
    """

    def __init__(self, serves: Callable[[Node], bool] | None = None) -> None:
        self._serves = serves
        self._commands: Executor | None = None
        self._functions: Executor | None = None
        self._containers: Executor | None = None

    def _command_executor(self) -> Executor:
        if self._commands is None:
            from wtflow.executors.shell import CommandExecutor

            self._commands = CommandExecutor()
        return self._commands

    def _function_executor(self) -> Executor:
        if self._functions is None:
            from wtflow.executors.pyfunc import PyFuncExecutor

            self._functions = PyFuncExecutor()
        return self._functions

    def _container_executor(self) -> Executor:
        if self._containers is None:
            from wtflow.executors.container import ContainerExecutor

            self._containers = ContainerExecutor()
        return self._containers

    def _executor_for(self, executable: Command | PyFunc) -> Executor:
        if isinstance(executable, Command):
            return self._command_executor() if executable.container is None else self._container_executor()
        return self._function_executor()

    async def preflight(self, workflow: Workflow, max_parallel: int) -> None:
        """Ask each executor the workflow's nodes (those this one serves) need whether it can serve the run."""
        needed: dict[int, Executor] = {}
        containers = []
        for node in workflow.nodes.values():
            if node.executable is not None and (self._serves is None or self._serves(node)):
                executor = self._executor_for(node.executable)
                needed[id(executor)] = executor
                if isinstance(node.executable, Command) and node.executable.container is not None:
                    containers.append(node.executable.container)
        # Containers last: their check starts a worker thread, and room in the descriptor table
        # is made more cheaply in a process without threads.
        for executor in sorted(needed.values(), key=lambda executor: executor is self._containers):
            if executor is self._containers:
                from wtflow.executors.container import ContainerExecutor

                assert isinstance(executor, ContainerExecutor)
                await executor.check(containers)
            else:
                await executor.preflight(workflow, max_parallel)

    async def execute(self, job: Job, sink: OutputSink) -> Outcome:
        """Run ``job`` with the executor for its kind."""
        return await self._executor_for(job.executable).execute(job, sink)

    async def aclose(self) -> None:
        """Close every executor that was made."""
        for executor in (self._commands, self._functions, self._containers):
            if executor is not None:
                await executor.aclose()


class PlacingExecutor(BaseExecutor):
    """The executor a run uses by default: each job goes where its node runs.

    A node with ``runs_on: dask`` runs on ``cluster``'s workers, a node with ``runs_on: local``
    on this machine (``local``); a node that does not say runs on the cluster when there is one.
    A node that asks for a cluster when there is none makes :meth:`preflight` refuse the run.
    """

    def __init__(self, local: Executor | None = None, cluster: Executor | None = None) -> None:
        self._local = local if local is not None else DispatchExecutor(serves=self._runs_here)
        self._cluster = cluster

    def _runs_here(self, node: Node) -> bool:
        return node.runs_on == "local" or (node.runs_on is None and self._cluster is None)

    async def preflight(self, workflow: Workflow, max_parallel: int) -> None:
        """Check what the nodes of each place need: this machine's executors, the cluster's connection."""
        placed = [node for node in workflow.nodes.values() if node.executable is not None]
        if self._cluster is None:
            asking = [node.name for node in placed if node.runs_on == "dask"]
            if asking:
                shown = ", ".join(repr(name) for name in asking[:3]) + (", ..." if len(asking) > 3 else "")
                raise ConfigError(
                    f"node {shown} {'runs' if len(asking) == 1 else 'run'} on Dask (runs_on: dask), but no Dask "
                    "cluster is configured: give --dask-scheduler ADDRESS (WTFLOW_DASK_SCHEDULER) or --dask-local N"
                )
        if any(self._runs_here(node) for node in placed):
            await self._local.preflight(workflow, max_parallel)
        if self._cluster is not None and not all(self._runs_here(node) for node in placed):
            await self._cluster.preflight(workflow, max_parallel)

    async def execute(self, job: Job, sink: OutputSink) -> Outcome:
        """Run ``job`` on the cluster or on this machine, as its node says."""
        if self._cluster is not None and job.runs_on != "local":
            return await self._cluster.execute(job, sink)
        return await self._local.execute(job, sink)

    def helper_pids(self) -> Collection[int]:
        """The cluster's helper processes (a local cluster's), if any."""
        return self._cluster.helper_pids() if self._cluster is not None else ()

    async def aclose(self) -> None:
        """Close both places' executors."""
        try:
            await self._local.aclose()
        finally:
            if self._cluster is not None:
                await self._cluster.aclose()
