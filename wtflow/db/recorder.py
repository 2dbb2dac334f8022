"""Records a run in the database: the observer that turns events into messages for the writer process.

The event loop only turns the events that change rows into tuples and hands them to the
writer process (:mod:`wtflow.db.writer_process` owns its life, :mod:`wtflow.db.writer` does the
SQL).
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from wtflow.db.messages import Message, to_micros, workflow_dir
from wtflow.db.writer_process import WriterProcess
from wtflow.events import BaseObserver, Event, NodeFinished, NodeStarted, RunFinished, RunStarted


def message(event: Event) -> Message | None:
    """What the writer needs of ``event``; ``None`` for events that change no row."""
    if isinstance(event, NodeStarted):
        return ("started", event.node, event.path, event.attempt, to_micros(event.started_at))
    if isinstance(event, NodeFinished):
        return (
            "finished",
            event.node,
            event.path,
            str(event.status),
            event.exit_code,
            event.attempt,
            to_micros(event.started_at) if event.started_at is not None else None,
            to_micros(event.finished_at),
            event.error,
            tuple((a.name, str(a.path), a.size) for a in event.artifacts),
            tuple(event.outputs.items()),
            event.reused_from,
            event.saved,
            event.worker,
        )
    if isinstance(event, RunStarted):
        workflow = event.workflow
        started = to_micros(event.started_at)
        place = workflow_dir(workflow.base_dir)
        return ("opened", event.run_id, workflow.name, started, event.host, event.pid, tuple(workflow.nodes), place)
    if isinstance(event, RunFinished):
        finished = to_micros(event.finished_at)
        return ("closed", event.run_id, str(event.status), event.exit_code, finished, event.error)
    return None


class DatabaseRecorder(BaseObserver):
    """Writes runs, node executions, their artifacts and outputs as the events arrive."""

    def __init__(self, url: str, *, retry: float) -> None:
        self.url = url
        self.retry = retry  # seconds to keep retrying rows after the run if the database went away
        self._writer: WriterProcess | None = None
        self._helpers: tuple[int, ...] = ()
        self._run_dir: Path | None = None
        self._problem: str | None = None

    async def aopen(self) -> None:
        """Connect and create the schema; fails the run before it starts if the database is unreachable."""
        self._writer = await WriterProcess.open(self.url, self.retry)
        self._helpers = (self._writer.pid,)

    def notify(self, event: Event) -> None:
        """Send the events that change rows to the writer."""
        if isinstance(event, RunStarted):
            self._run_dir = event.run_dir
        if self._writer is not None and (row := message(event)) is not None:
            self._writer.send(row)

    async def aclose(self) -> None:
        """Let the writer write everything sent (retrying a lost database for a while), then end it."""
        writer, self._writer = self._writer, None
        if writer is None:
            return
        try:
            self._problem = await writer.aclose(self.retry)
        finally:
            self._helpers = ()

    def helper_pids(self) -> Collection[int]:
        """The writer process, while it runs: not an orphan of the run's to stop."""
        return self._helpers

    def warnings(self) -> list[str]:
        """After :meth:`aclose`: what did not reach the database, and where every event is instead."""
        if self._problem is None:
            return []
        if self._run_dir is None:  # no run was started
            return [self._problem]
        return [f"{self._problem}; {self._run_dir / 'events.jsonl'} has every event"]
