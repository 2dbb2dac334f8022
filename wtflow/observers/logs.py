"""Logs a run's lifecycle with structlog; in JSON mode, node output too, as ``output`` events."""

from __future__ import annotations

from typing import Any

import structlog

from wtflow.events import (
    BaseObserver,
    Event,
    NodeFinished,
    NodeOutput,
    NodeRetrying,
    NodeStarted,
    RunFinished,
    RunStarted,
    RunStatus,
)
from wtflow.log import OutputLines


class LogObserver(BaseObserver):
    """Run and node started/finished, retries; with ``output=True`` every output line as an event."""

    def __init__(self, *, output: bool = False) -> None:
        self.output = output
        # Bound now, with the configuration of now: the lazy proxy would build a logger per call.
        self.log = structlog.get_logger("wtflow").bind()
        self._lines = OutputLines.for_configured() if output else None

    def _log(self, level: str, event: str, **fields: Any) -> None:
        getattr(self.log, level)(event, **fields)

    def notify(self, event: Event) -> None:
        """Log the event."""
        if isinstance(event, NodeOutput):
            if self.output:
                lines = event.data.decode("utf-8", "replace").splitlines()
                replayed = {"replayed": True} if event.replayed else {}
                if self._lines is None or not self._lines.write(event.node, event.stream, lines, **replayed):
                    for line in lines:
                        self.log.info("output", node=event.node, stream=event.stream, line=line, **replayed)
            return
        if isinstance(event, RunStarted):
            structlog.contextvars.bind_contextvars(run_id=event.run_id)
            self._log(
                "info",
                "run_started",
                workflow=event.workflow.name,
                nodes=len(event.workflow.user_nodes),
                run_dir=str(event.run_dir),
            )
        elif isinstance(event, NodeStarted):
            replaying = {"replaying": event.replaying} if event.replaying else {}
            self._log("info", "node_started", node=event.node, attempt=event.attempt, **replaying)
        elif isinstance(event, NodeRetrying):
            self._log(
                "warning",
                "node_retrying",
                node=event.node,
                attempt=event.attempt,
                exit_code=event.exit_code,
                delay=event.delay,
                **({"error": event.error} if event.error else {}),
            )
        elif isinstance(event, NodeFinished):
            fields: dict[str, object] = {"error": event.error} if event.error else {}
            if event.reused_from is not None:
                saved = round(event.saved, 3) if event.saved is not None else None
                fields.update(reused_from=event.reused_from, saved=saved)
            self._log(
                "error" if event.status.is_failure else "info",
                "node_finished",
                node=event.node,
                status=str(event.status),
                exit_code=event.exit_code,
                duration=round(event.duration, 3) if event.duration is not None else None,
                attempt=event.attempt,
                **fields,
            )
        elif isinstance(event, RunFinished):
            self._log(
                "info" if event.status is RunStatus.SUCCEEDED else "error",
                "run_finished",
                workflow=event.workflow,
                status=str(event.status),
                exit_code=event.exit_code,
                duration=round((event.finished_at - event.started_at).total_seconds(), 3),
            )
            structlog.contextvars.unbind_contextvars("run_id")
