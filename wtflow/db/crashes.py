"""Runs whose owner is gone: found and closed as ``crashed``, so history does not show them running forever.

A run's owner is gone when it ran on this host and its pid no longer exists, or when its
heartbeat (refreshed by its writer every :data:`HEARTBEAT_SECONDS`) is older than
:data:`STALE_AFTER`, which is how runs of other hosts are judged.
"""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, bindparam, select, update

from wtflow.db.tables import node_runs, runs

HEARTBEAT_SECONDS = 15.0
STALE_AFTER = timedelta(minutes=5)
CRASHED_ERROR = "the process running it ended without closing it"

_RUNNING = select(runs.c.id, runs.c.host, runs.c.pid, runs.c.heartbeat_at).where(runs.c.status == "running")
_CRASH_RUN = (
    update(runs)
    .where(runs.c.id == bindparam("crashed_id"), runs.c.status == "running")
    .values(status="crashed", finished_at=bindparam("now"), error=CRASHED_ERROR)
)
_CANCEL_NODES = (
    update(node_runs)
    .where(node_runs.c.run_id == bindparam("crashed_id"), node_runs.c.status.in_(("running", "pending")))
    .values(status="cancelled", finished_at=bindparam("now"))
)


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

    The driver's errors come as SQLAlchemy's ``DBAPIError``.
    """
    now = now or datetime.now(UTC)
    host = socket.gethostname()
    stale_before = now - STALE_AFTER
    with engine.connect() as connection:
        running = connection.execute(_RUNNING).all()
    crashed = [
        run.id
        for run in running
        if (run.host == host and not _alive(run.pid))
        or (run.heartbeat_at is not None and run.heartbeat_at < stale_before)
    ]
    if crashed:
        crash(engine, crashed, now)
    return len(crashed)


def crash(engine: Engine, run_ids: list[str], now: datetime) -> None:
    """Close the runs ``run_ids`` as crashed, and their unfinished nodes as cancelled, if they are still running."""
    rows = [{"crashed_id": run_id, "now": now} for run_id in run_ids]
    with engine.begin() as connection:
        connection.execute(_CRASH_RUN, rows)
        connection.execute(_CANCEL_NODES, rows)
