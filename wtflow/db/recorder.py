"""Records a run's events in the database from one writer thread, in batched transactions.

The event loop only puts events on a queue. The writer thread drains whatever has queued up
and writes it in one transaction, so a busy run costs a few commits, not one per event. If
the database stops answering, events stay queued and are written when it answers again.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from typing import Any

from sqlalchemy import Engine, insert, update
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
_Item = Event | object


def connect(url: str) -> Engine:
    """Open ``url``, make sure the schema exists; :class:`BackendUnavailable` if it cannot be reached."""
    engine = open_engine(url)
    try:
        upgrade(engine)
    except (OperationalError, DBAPIError) as exc:
        engine.dispose()
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise BackendUnavailable(f"database {display_url(url)} is unavailable: {reason}") from None
    return engine


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
        delay = 0.1
        while True:
            item = self._queue.get() if not pending else self._get(timeout=delay)
            batch: list[_Item] = [] if item is None else [item]
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if _STOP in batch and not stopping:
                stopping = True
                give_up_at = time.monotonic() + CLOSE_RETRY_SECONDS
            pending.extend(event for event in batch if event is not _STOP)  # type: ignore[misc]
            if not pending:
                if stopping:
                    return
                continue
            try:
                self._write(pending)
            except (OperationalError, DBAPIError) as exc:
                self.last_error = str(exc.orig or exc)
                if stopping and time.monotonic() >= give_up_at:
                    self.lost.extend(pending)
                    return
                delay = min(delay * 2, 5.0)
                continue
            pending = []
            delay = 0.1
            if stopping:
                return

    def _get(self, timeout: float) -> _Item | None:
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def _write(self, events: list[Event]) -> None:
        assert self._engine is not None
        inserted: set[tuple[str, str]] = set()
        with Session(self._engine) as session, session.begin():
            for event in events:
                self._apply(session, event, inserted)
        self._known_nodes |= inserted

    def _apply(self, session: Session, event: Event, inserted: set[tuple[str, str]]) -> None:
        if isinstance(event, RunStarted):
            session.execute(
                insert(RunRow).values(
                    id=event.run_id,
                    workflow=event.workflow.name,
                    status="running",
                    started_at=event.started_at,
                    host=event.host,
                    pid=event.pid,
                    heartbeat_at=event.started_at,
                )
            )
        elif isinstance(event, NodeStarted):
            self._upsert_node(
                session,
                event.run_id,
                event.node,
                inserted,
                path=event.path,
                status=str(NodeStatus.RUNNING),
                attempts=event.attempt,
                started_at=event.started_at,
            )
        elif isinstance(event, NodeFinished):
            self._upsert_node(
                session,
                event.run_id,
                event.node,
                inserted,
                path=event.path,
                status=str(event.status),
                exit_code=event.exit_code,
                attempts=event.attempt,
                finished_at=event.finished_at,
                error=event.error,
                **({"started_at": event.started_at} if event.started_at else {}),
            )
            if event.artifacts:
                session.execute(
                    insert(ArtifactRow),
                    [
                        {
                            "run_id": event.run_id,
                            "node": event.node,
                            "name": a.name,
                            "path": str(a.path),
                            "size": a.size,
                        }
                        for a in event.artifacts
                    ],
                )
        elif isinstance(event, RunFinished):
            session.execute(
                update(RunRow)
                .where(RunRow.id == event.run_id)
                .values(
                    status=str(event.status),
                    exit_code=event.exit_code,
                    finished_at=event.finished_at,
                    error=event.error,
                )
            )

    def _upsert_node(
        self, session: Session, run_id: str, name: str, inserted: set[tuple[str, str]], **values: Any
    ) -> None:
        key = (run_id, name)
        if key in self._known_nodes or key in inserted:
            session.execute(
                update(NodeRunRow).where(NodeRunRow.run_id == run_id, NodeRunRow.name == name).values(**values)
            )
        else:
            session.execute(
                insert(NodeRunRow).values(run_id=run_id, name=name, position=self._positions.get(name, 0), **values)
            )
            inserted.add(key)
