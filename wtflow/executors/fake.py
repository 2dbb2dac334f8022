"""A scripted executor for tests: no processes, full control over timing and results.

Each node name maps to a :class:`Step`. A step can write output, wait on a gate the test opens,
block until cancelled, and end with any exit code or a timeout. The executor records what
started, what was cancelled and how many steps ran at once, so tests can wait on events
instead of sleeping.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from wtflow.executors.base import BaseExecutor, Job, Outcome, OutputSink
from wtflow.model import STDERR, STDOUT


@dataclass
class Step:
    """What the fake does for one node: output, then wait, then end like this."""

    exit_code: int = 0
    stdout: bytes = b""
    stderr: bytes = b""
    timed_out: bool = False
    block: bool = False
    gate: asyncio.Event | None = None
    fail_times: int = 0
    calls: int = field(default=0, init=False)


class FakeExecutor(BaseExecutor):
    """Runs steps by node name; nodes without a step succeed at once with no output."""

    def __init__(self, steps: Mapping[str, Step] | None = None) -> None:
        self.steps = dict(steps or {})
        self.started: list[str] = []
        self.finished: list[str] = []
        self.cancelled: list[str] = []
        self.jobs: dict[str, Job] = {}
        self.running = 0
        self.max_running = 0
        self._started_events: dict[str, asyncio.Event] = {}
        self._changed = asyncio.Condition()

    def started_event(self, node: str) -> asyncio.Event:
        """An event set when ``node`` starts (created on first use)."""
        return self._started_events.setdefault(node, asyncio.Event())

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Return once ``predicate()`` holds; it is checked whenever a step starts or ends."""
        async with self._changed:
            await self._changed.wait_for(predicate)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def execute(self, job: Job, sink: OutputSink) -> Outcome:
        """Play the node's step."""
        step = self.steps.get(job.node, Step())
        step.calls += 1
        self.started.append(job.node)
        self.jobs[job.node] = job
        self.started_event(job.node).set()
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        await self._notify()
        try:
            await asyncio.sleep(0)  # let every ready node start before any finishes
            if step.stdout:
                await sink.write(STDOUT, step.stdout)
            if step.stderr:
                await sink.write(STDERR, step.stderr)
            if step.gate is not None:
                await step.gate.wait()
            if step.block:
                await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.append(job.node)
            raise
        finally:
            self.running -= 1
        await self._notify()
        self.finished.append(job.node)
        if step.calls <= step.fail_times:
            return Outcome(exit_code=1)
        if step.timed_out:
            return Outcome(exit_code=None, timed_out=True, error="timed out")
        return Outcome(exit_code=step.exit_code)
