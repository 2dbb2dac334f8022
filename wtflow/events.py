"""What happens during a run, as events, and the interface of everything that listens.

The engine emits events; observers (database recorder, console, logs, run file) receive them
in order, on the event loop. ``notify`` must not block: an observer that does I/O hands the
work to a thread of its own and finishes it in ``aclose``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from wtflow.model import Workflow


class NodeStatus(StrEnum):
    """Where a node is in its life."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"
    CACHED = "cached"  # not run: a cache entry of the same inputs gave its output (a success)
    REUSED = "reused"  # not run: an earlier run's result was taken (``--rerun-failed``; a success)

    @property
    def is_failure(self) -> bool:
        """Whether this status means the node did not do its work."""
        return self in {NodeStatus.FAILED, NodeStatus.TIMED_OUT}


class RunStatus(StrEnum):
    """Where a run is in its life; ``crashed`` is set when its owner vanished."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    CRASHED = "crashed"


@dataclass(frozen=True)
class ArtifactInfo:
    """A stored artifact: its name, file and size in bytes."""

    name: str
    path: Path
    size: int


@dataclass(frozen=True)
class RunStarted:
    """A run began; ``run_dir`` holds its artifacts."""

    run_id: str
    workflow: Workflow
    run_dir: Path
    started_at: datetime
    host: str
    pid: int


@dataclass(frozen=True)
class NodeStarted:
    """A node began an attempt (group nodes have no executable and one attempt)."""

    run_id: str
    node: str
    path: str
    started_at: datetime
    attempt: int = 1
    # Not run: its output, from the cache or an earlier run, follows (``cached``, ``reused``).
    replaying: str | None = None


@dataclass(frozen=True)
class NodeOutput:
    """Whole lines (or a long line's piece) a node wrote to ``stream``; ``replayed`` when not written now."""

    run_id: str
    node: str
    stream: str
    data: bytes
    replayed: bool = False


@dataclass(frozen=True)
class NodeRetrying:
    """A node's attempt failed and it will be tried again after ``delay`` seconds; ``error`` says why it failed."""

    run_id: str
    node: str
    attempt: int
    exit_code: int | None
    delay: float
    error: str | None = None


@dataclass(frozen=True)
class NodeFinished:
    """A node reached its final status."""

    run_id: str
    node: str
    path: str
    status: NodeStatus
    exit_code: int | None
    started_at: datetime | None
    finished_at: datetime
    attempt: int = 1
    error: str | None = None
    artifacts: tuple[ArtifactInfo, ...] = field(default=())
    outputs: Mapping[str, str] = field(default_factory=dict)
    # For a cached or reused node: where its result came from (a cache key, a run id), and the
    # seconds the node took when it actually ran, which this run saved.
    reused_from: str | None = None
    saved: float | None = None
    # The address of the cluster worker its last attempt ran on; None when it ran on this machine.
    worker: str | None = None

    @property
    def duration(self) -> float | None:
        """Seconds from start to finish; ``None`` if the node never started."""
        if self.started_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


@dataclass(frozen=True)
class RunFinished:
    """A run reached its final status; ``exit_code`` is what ``Engine.run`` returns."""

    run_id: str
    workflow: str
    status: RunStatus
    exit_code: int
    started_at: datetime
    finished_at: datetime
    error: str | None = None


Event = RunStarted | NodeStarted | NodeOutput | NodeRetrying | NodeFinished | RunFinished


class Observer(Protocol):
    """Receives a run's events. ``aopen`` may refuse the run before any node starts."""

    async def aopen(self) -> None:
        """Get ready (connect, start helpers); raise to stop the run before it starts."""

    def notify(self, event: Event) -> None:
        """Take one event; must not block the event loop.

        Events arrive in the order they happened, on the loop, within a turn or two: a node's
        process may already run when its start is told. An exception fails the run at its end.
        """

    async def aclose(self) -> None:
        """Finish all pending work; called once, also when the run failed or was cancelled."""

    def helper_pids(self) -> Collection[int]:
        """Processes this observer started and still owns: not orphans of the run, never stopped as such."""

    def warnings(self) -> list[str]:
        """After :meth:`aclose`: what went wrong beside the run (rows a database lost), for the caller to show."""


class BaseObserver:
    """An observer that ignores everything: subclass it and override what you need."""

    async def aopen(self) -> None:
        """Nothing to prepare."""

    def notify(self, event: Event) -> None:
        """Ignore the event."""

    async def aclose(self) -> None:
        """Nothing to finish."""

    def helper_pids(self) -> Collection[int]:
        """No helper processes."""
        return ()

    def warnings(self) -> list[str]:
        """Nothing went wrong."""
        return []


_EVENT_NAMES = {
    RunStarted: "run_started",
    NodeStarted: "node_started",
    NodeOutput: "node_output",
    NodeRetrying: "node_retrying",
    NodeFinished: "node_finished",
    RunFinished: "run_finished",
}


def event_name(event: Event) -> str:
    """The event's name in logs and ``events.jsonl``: ``run_started``, ``node_finished``..."""
    return _EVENT_NAMES[type(event)]


def to_record(event: Event) -> dict[str, object]:
    """The event as JSON-ready data (times in ISO 8601, paths and statuses as text)."""
    record: dict[str, object] = {"event": event_name(event)}
    if isinstance(event, RunStarted):
        record.update(
            run_id=event.run_id,
            workflow=event.workflow.name,
            run_dir=str(event.run_dir),
            started_at=event.started_at.isoformat(),
            host=event.host,
            pid=event.pid,
        )
    elif isinstance(event, NodeStarted):
        record.update(
            run_id=event.run_id,
            node=event.node,
            path=event.path,
            attempt=event.attempt,
            started_at=event.started_at.isoformat(),
        )
        if event.replaying is not None:
            record.update(replaying=event.replaying)
    elif isinstance(event, NodeOutput):
        record.update(
            run_id=event.run_id, node=event.node, stream=event.stream, data=event.data.decode("utf-8", "replace")
        )
        if event.replayed:
            record.update(replayed=True)
    elif isinstance(event, NodeRetrying):
        record.update(
            run_id=event.run_id,
            node=event.node,
            attempt=event.attempt,
            exit_code=event.exit_code,
            delay=event.delay,
            error=event.error,
        )
    elif isinstance(event, NodeFinished):
        record.update(
            run_id=event.run_id,
            node=event.node,
            path=event.path,
            status=str(event.status),
            exit_code=event.exit_code,
            attempt=event.attempt,
            started_at=event.started_at.isoformat() if event.started_at else None,
            finished_at=event.finished_at.isoformat(),
            duration=event.duration,
            error=event.error,
            artifacts={info.name: {"path": str(info.path), "size": info.size} for info in event.artifacts},
            outputs=dict(event.outputs),
        )
        if event.reused_from is not None:
            record.update(reused_from=event.reused_from, saved=event.saved)
        if event.worker is not None:
            record.update(worker=event.worker)
    else:
        record.update(
            run_id=event.run_id,
            workflow=event.workflow,
            status=str(event.status),
            exit_code=event.exit_code,
            started_at=event.started_at.isoformat(),
            finished_at=event.finished_at.isoformat(),
            duration=(event.finished_at - event.started_at).total_seconds(),
            error=event.error,
        )
    return record
