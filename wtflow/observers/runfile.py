"""Keeps ``<run dir>/run.json`` up to date: written when the run starts and when it ends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wtflow.artifacts import write_json_atomic
from wtflow.events import BaseObserver, Event, NodeFinished, RunFinished, RunStarted


def _time(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


class RunFileWriter(BaseObserver):
    """The run's summary: workflow, run id, status, exit code, times and every node."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {}

    def notify(self, event: Event) -> None:
        """Fold the event into the summary; write it at the run's start and end."""
        if isinstance(event, RunStarted):
            self.data = {
                "workflow": event.workflow.name,
                "run_id": event.run_id,
                "status": "running",
                "exit_code": None,
                "started_at": _time(event.started_at),
                "finished_at": None,
                "host": event.host,
                "pid": event.pid,
                "nodes": {},
            }
            write_json_atomic(self.path, self.data)
        elif isinstance(event, NodeFinished):
            self.data["nodes"][event.node] = {
                "path": event.path,
                "status": str(event.status),
                "exit_code": event.exit_code,
                "attempts": event.attempt,
                "started_at": _time(event.started_at),
                "finished_at": _time(event.finished_at),
                "duration": event.duration,
                "error": event.error,
                "artifacts": {info.name: {"path": str(info.path), "size": info.size} for info in event.artifacts},
            }
        elif isinstance(event, RunFinished):
            self.data.update(
                status=str(event.status),
                exit_code=event.exit_code,
                finished_at=_time(event.finished_at),
                error=event.error,
            )
            write_json_atomic(self.path, self.data)
