"""Sends each job to the executor for its kind: commands, functions, commands in containers."""

from __future__ import annotations

from wtflow.executors.base import BaseExecutor, Executor, Job, Outcome, OutputSink
from wtflow.model import Command, PyFunc, Workflow


class DispatchExecutor(BaseExecutor):
    """The executor a run uses by default: each job goes to the executor of its executable's kind.

    The executors for functions and containers are made on first use: a workflow of commands
    never imports them.
    """

    def __init__(self) -> None:
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
        """Ask each executor the workflow's nodes need whether it can serve the run."""
        needed: dict[int, Executor] = {}
        for node in workflow.nodes.values():
            if node.executable is not None:
                executor = self._executor_for(node.executable)
                needed[id(executor)] = executor
        # Containers last: their check starts a worker thread, and room in the descriptor table
        # is made more cheaply in a process without threads.
        for executor in sorted(needed.values(), key=lambda executor: executor is self._containers):
            await executor.preflight(workflow, max_parallel)

    async def execute(self, job: Job, sink: OutputSink) -> Outcome:
        """Run ``job`` with the executor for its kind."""
        return await self._executor_for(job.executable).execute(job, sink)

    async def aclose(self) -> None:
        """Close every executor that was made."""
        for executor in (self._commands, self._functions, self._containers):
            if executor is not None:
                await executor.aclose()
