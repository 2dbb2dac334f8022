"""The executor interface: run one job, stream its output to a sink, report how it ended."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from wtflow.model import Command, PyFunc, Workflow


@dataclass(frozen=True)
class Job:
    """One attempt at one node's executable, with everything needed to run it.

    ``env`` is the full environment of a local process; ``declared_env`` only what the workflow
    declares plus the ``WTFLOW_*`` variables (what a container gets). ``runs_on`` is where the
    node asked to run (``local``, ``dask``; ``None``: wherever the run sends nodes by default) and
    ``resources`` what a worker of a cluster must have to run it (``{"GPU": 1}``).
    """

    run_id: str
    node: str
    executable: Command | PyFunc
    env: Mapping[str, str]
    cwd: Path | None
    node_dir: Path
    kill_grace: float
    declared_env: Mapping[str, str] = field(default_factory=dict)
    timeout: float | None = None  # seconds the attempt may take, if limited
    runs_on: str | None = None
    resources: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended: an exit code, a timeout, or an error that kept it from running.

    ``worker`` names the cluster worker the attempt ran on (its address); ``None`` on this machine.
    """

    exit_code: int | None
    timed_out: bool = False
    error: str | None = None
    worker: str | None = None

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
    """Runs one job at a time per call; many calls may run at once.

    ``preflight`` checks, before any node runs, what the workflow needs from this executor (an
    engine that answers, images, room for ``max_parallel`` processes); ``aclose`` releases what
    the executor holds for the run. On cancellation ``execute`` stops what it started, then
    re-raises.
    """

    async def preflight(self, workflow: Workflow, max_parallel: int) -> None:
        """Refuse the run before it starts if this executor cannot serve it."""

    async def execute(self, job: Job, sink: OutputSink) -> Outcome:
        """Run ``job`` to the end, streaming its output into ``sink``."""

    async def aclose(self) -> None:
        """Release what the executor holds for the run, after the last job; calling it again does nothing."""

    def helper_pids(self) -> Collection[int]:
        """Processes this executor started that outlive :meth:`aclose` and end with this process: not orphans."""


class BaseExecutor:
    """No-op ``preflight``, ``aclose`` and ``helper_pids``: subclass it and write ``execute``."""

    async def preflight(self, workflow: Workflow, max_parallel: int) -> None:
        """Nothing to check."""

    async def execute(self, job: Job, sink: OutputSink) -> Outcome:
        """Run ``job``; subclasses say how."""
        raise NotImplementedError

    async def aclose(self) -> None:
        """Nothing to release."""

    def helper_pids(self) -> Collection[int]:
        """No helper processes."""
        return ()
