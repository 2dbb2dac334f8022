"""Runs :class:`~wtflow.model.Command` nodes as local processes."""

from __future__ import annotations

from wtflow.executors.base import Job, Outcome, OutputSink
from wtflow.executors.process import run_process
from wtflow.model import Command


class CommandExecutor:
    """A string through ``/bin/sh -c``; a list executed directly, never through a shell."""

    async def execute(self, job: Job, sink: OutputSink) -> Outcome:
        """Run the command of ``job``."""
        assert isinstance(job.executable, Command)
        return await run_process(job.executable.argv, job, sink)
