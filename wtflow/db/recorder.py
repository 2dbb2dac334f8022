"""Records a run's events in the database from one writer thread, in batched transactions.

The event loop only puts events on a queue. The writer thread drains whatever has queued up
and writes it in one transaction, so a busy run costs a few commits, not one per event. If
the database stops answering, events stay queued and are written when it answers again.
"""

from __future__ import annotations

import asyncio
import os
import queue
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from wtflow.db.connect import display_url, open_engine
from wtflow.db.schema import upgrade
from wtflow.db.tables import ArtifactRow, NodeRunRow, RunRow
from wtflow.errors import BackendUnavailable
from wtflow.events import BaseObserver, Event, NodeFinished, NodeStarted, NodeStatus, RunFinished, RunStarted

_STOP = object()
# How long the writer keeps retrying an unreachable database after the run has ended.
CLOSE_RETRY_SECONDS = 30.0
# The writer refreshes its run's heartbeat this often; runs silent for STALE_AFTER count as crashed.
HEARTBEAT_SECONDS = 15.0
STALE_AFTER = timedelta(minutes=5)
# How long the writer gathers events before writing them in one transaction.
BATCH_SECONDS = 0.2
_NODE_DEFAULTS: dict[str, Any] = {
    "path": "",
    "status": "pending",
    "exit_code": None,
    "attempts": 0,
    "started_at": None,
    "finished_at": None,
    "error": None,
}
_Item = Event | object


def connect(url: str) -> Engine:
    """Open ``url``, bring the schema up to date and mark crashed runs; :class:`BackendUnavailable` if unreachable."""
    engine = open_engine(url)
    try:
        upgrade(engine)
        mark_crashed(engine)
    except (OperationalError, DBAPIError) as exc:
        engine.dispose()
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise BackendUnavailable(f"database {display_url(url)} is unavailable: {reason}") from None
    return engine


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: it exists
    return True


def mark_crashed(engine: Engine, now: datetime | None = None) -> int:
    """Mark ``running`` runs whose owner is gone as ``crashed``; return how many.

    A run's owner is gone when it ran on this host and its pid no longer exists, or when its
    heartbeat is older than :data:`STALE_AFTER` (runs of other hosts).
    """
    now = now or datetime.now(UTC)
    host = socket.gethostname()
    stale_before = now - STALE_AFTER
    crashed: list[str] = []
    with Session(engine) as session:
        for run_id, run_host, pid, heartbeat in session.execute(
            select(RunRow.id, RunRow.host, RunRow.pid, RunRow.heartbeat_at).where(RunRow.status == "running")
        ):
            beat = heartbeat.replace(tzinfo=UTC) if heartbeat is not None and heartbeat.tzinfo is None else heartbeat
            if (run_host == host and not _alive(pid)) or (beat is not None and beat < stale_before):
                crashed.append(run_id)
    if crashed:
        with Session(engine) as session, session.begin():
            session.execute(
                update(RunRow)
                .where(RunRow.id.in_(crashed), RunRow.status == "running")
                .values(status="crashed", finished_at=now, error="the process running it ended without closing it")
            )
            session.execute(
                update(NodeRunRow)
                .where(NodeRunRow.run_id.in_(crashed), NodeRunRow.status.in_(["running", "pending"]))
                .values(status="cancelled", finished_at=now)
            )
    return len(crashed)


class DatabaseRecorder(BaseObserver):
    """Writes runs, node executions and artifacts as the events arrive."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._engine: Engine | None = None
        self._known_nodes: set[tuple[str, str]] = set()
        self._positions: dict[str, int] = {}
        self.lost: list[Event] = []
        self._run_id: str | None = None
        self.last_error: str | None = None

    async def aopen(self) -> None:
        """Connect and create the schema (in a thread); fails the run before it starts if unreachable."""
        self._engine = await asyncio.to_thread(connect, self.url)
        # Not a daemon: at interpreter exit Python waits for it, so queued rows are not lost.
        self._thread = threading.Thread(target=self._drain, name="wtflow-db-writer")
        self._thread.start()

    def notify(self, event: Event) -> None:
        """Queue the events that change rows."""
        if isinstance(event, RunStarted):
            self._positions = {name: index for index, name in enumerate(event.workflow.nodes)}
            self._run_id = event.run_id
        if isinstance(event, RunStarted | NodeStarted | NodeFinished | RunFinished) and self._thread is not None:
            self._queue.put(event)

    async def aclose(self) -> None:
        """Write everything queued, then close the connection pool."""
        if self._thread is None:
            return
        self._queue.put(_STOP)
        await asyncio.to_thread(self._thread.join)
        self._thread = None
        if self._engine is not None:
            self._engine.dispose()

    # -- writer thread ----------------------------------------------------------------------

    def _drain(self) -> None:
        pending: list[Event] = []
        stopping = False
        give_up_at = 0.0
        retry_delay = 0.1
        while True:
            # Wait for work (or for the next retry), then gather what else arrives for a moment,
            # so a busy run costs a few transactions instead of one per event.
            first = self._get(timeout=retry_delay if pending else HEARTBEAT_SECONDS)
            if first is None and not pending:
                if not threading.main_thread().is_alive():
                    first = _STOP  # the program ended without closing us: write what is queued, then stop
                else:
                    self._beat()
                    continue
            batch: list[_Item] = [] if first is None else [first]
            deadline = time.monotonic() + BATCH_SECONDS
            while _STOP not in batch and (remaining := deadline - time.monotonic()) > 0:
                item = self._get(timeout=remaining)
                if item is None:
                    break
                batch.append(item)
            while (item := self._get(timeout=0)) is not None:
                batch.append(item)
            if _STOP in batch and not stopping:
                stopping = True
                give_up_at = time.monotonic() + CLOSE_RETRY_SECONDS
            pending.extend(event for event in batch if event is not _STOP)  # type: ignore[misc]
            if pending:
                try:
                    self._write(pending)
                except (OperationalError, DBAPIError) as exc:
                    self.last_error = str(exc.orig or exc)
                    if not (stopping and time.monotonic() >= give_up_at):
                        retry_delay = min(retry_delay * 2, 5.0)
                        continue
                    self.lost.extend(pending)
                pending = []
                retry_delay = 0.1
            if stopping:
                return

    def _beat(self) -> None:
        """Tell other processes this run's owner is alive (see :func:`mark_crashed`)."""
        if self._engine is None or self._run_id is None:
            return
        try:
            with Session(self._engine) as session, session.begin():
                session.execute(update(RunRow).where(RunRow.id == self._run_id).values(heartbeat_at=datetime.now(UTC)))
        except (OperationalError, DBAPIError) as exc:
            self.last_error = str(exc.orig or exc)

    def _get(self, timeout: float | None) -> _Item | None:
        try:
            if timeout == 0:
                return self._queue.get_nowait()
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def _write(self, events: list[Event]) -> None:
        """Write ``events`` in one transaction, merging each node's events into one row change."""
        assert self._engine is not None
        new_runs: list[dict[str, Any]] = []
        run_changes: dict[str, dict[str, Any]] = {}
        node_changes: dict[tuple[str, str], dict[str, Any]] = {}
        artifacts: list[dict[str, Any]] = []
        for event in events:
            if isinstance(event, RunStarted):
                new_runs.append(
                    {
                        "id": event.run_id,
                        "workflow": event.workflow.name,
                        "status": "running",
                        "started_at": event.started_at,
                        "host": event.host,
                        "pid": event.pid,
                        "heartbeat_at": event.started_at,
                    }
                )
            elif isinstance(event, NodeStarted):
                node_changes.setdefault((event.run_id, event.node), {}).update(
                    path=event.path, status=str(NodeStatus.RUNNING), attempts=event.attempt, started_at=event.started_at
                )
            elif isinstance(event, NodeFinished):
                change = node_changes.setdefault((event.run_id, event.node), {})
                change.update(
                    path=event.path,
                    status=str(event.status),
                    exit_code=event.exit_code,
                    attempts=event.attempt,
                    finished_at=event.finished_at,
                    error=event.error,
                )
                if event.started_at is not None:
                    change["started_at"] = event.started_at
                artifacts.extend(
                    {"run_id": event.run_id, "node": event.node, "name": a.name, "path": str(a.path), "size": a.size}
                    for a in event.artifacts
                )
            elif isinstance(event, RunFinished):
                run_changes[event.run_id] = {
                    "status": str(event.status),
                    "exit_code": event.exit_code,
                    "finished_at": event.finished_at,
                    "error": event.error,
                }
        inserts = [
            {**_NODE_DEFAULTS, "run_id": run_id, "name": name, "position": self._positions.get(name, 0), **change}
            for (run_id, name), change in node_changes.items()
            if (run_id, name) not in self._known_nodes
        ]
        with Session(self._engine) as session, session.begin():
            if new_runs:
                session.execute(insert(RunRow), new_runs)
            if inserts:
                session.execute(insert(NodeRunRow), inserts)
            for (run_id, name), change in node_changes.items():
                if (run_id, name) in self._known_nodes:
                    session.execute(
                        update(NodeRunRow).where(NodeRunRow.run_id == run_id, NodeRunRow.name == name).values(**change)
                    )
            if artifacts:
                session.execute(insert(ArtifactRow), artifacts)
            for run_id, change in run_changes.items():
                session.execute(update(RunRow).where(RunRow.id == run_id).values(**change))
        self._known_nodes.update(node_changes)
