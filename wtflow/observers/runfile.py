"""Keeps ``<run dir>/run.json`` up to date: written when the run starts and when it ends."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from wtflow.events import BaseObserver, Event, NodeFinished, RunFinished, RunStarted


def _time(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


class RunFileWriter(BaseObserver):
    """The run's summary: workflow, run id, status, exit code, times and every node."""

    def __init__(self) -> None:
        self.path: Path | None = None
        self.data: dict[str, Any] = {}

    def notify(self, event: Event) -> None:
        """Fold the event into the summary; write it at the run's start and end."""
        if isinstance(event, RunStarted):
            self.path = event.run_dir / "run.json"
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
        elif self.path is None:
            return
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
                "outputs": dict(event.outputs),
                # A cached or reused node: the cache key or earlier run its result came from, and the seconds saved.
                "reused_from": event.reused_from,
                "saved": event.saved,
                # The cluster worker its last attempt ran on (None: this machine).
                "worker": event.worker,
            }
        elif isinstance(event, RunFinished):
            self.data.update(
                status=str(event.status),
                exit_code=event.exit_code,
                finished_at=_time(event.finished_at),
                error=event.error,
            )
            write_json_atomic(self.path, self.data)


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as JSON so readers see the old file or the new one, never half of one.

    Top-level keys and the entries of nested objects get a line each: readable, and every line
    is encoded by json's C encoder (``indent`` would switch to its slower pure-Python one).
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(_json_lines(data))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk leaves the old file, not half of a new one beside it
        raise


def _json_lines(data: dict[str, Any]) -> str:
    def entry(key: str, value: Any, indent: str) -> str:
        return f"{indent}{json.dumps(key)}: {json.dumps(value, default=str)}"

    parts = []
    for key, value in data.items():
        if isinstance(value, dict) and value:
            inner = ",\n".join(entry(k, v, "    ") for k, v in value.items())
            parts.append(f"  {json.dumps(key)}: {{\n{inner}\n  }}")
        else:
            parts.append(entry(key, value, "  "))
    return "{\n" + ",\n".join(parts) + "\n}\n"
